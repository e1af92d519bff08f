"""``Dense``: ``activation(x @ kernel + bias)`` with Keras's arguments and layout."""

from __future__ import annotations

from reglab import activations, constraints, initializers
from reglab.layers import member_linear, narrow_linear, shared_input
from reglab.layers.layer import (
    Layer,
    WeightSpec,
    check_positive_int,
    is_shared,
    resolve_regularizer,
    serialized,
)


class Dense(Layer):
    """A fully connected layer; kernel ``(in, units)``, bias ``(units,)`` as Keras.

    Example:
        >>> from reglab.regularizers import l2
        >>> Dense(64, activation="relu", kernel_regularizer=l2(0.01)).units
        64
    """

    # Members that see the same input (a seed group) share one GEMM: layers/shared_input.py.
    takes_grouped_input = "consumes"
    # Under mixed precision the engine hands over the float32 weights: the shared GEMM casts
    # them while laying them side by side (one pass instead of two).
    casts_own_weights = True
    # As a last layer with a softmax it can give its logits: the engine then fuses the softmax
    # into the crossentropy (engine/softmax_crossentropy.py).
    gives_logits = True

    def __init__(self, units, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(**kwargs)
        self.units = check_positive_int("Dense", "units", units)
        self.activation = activations.get(activation, where="Dense: 'activation'")
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer, "Dense: 'kernel_initializer'")
        self.bias_initializer = initializers.get(bias_initializer, "Dense: 'bias_initializer'")
        self.kernel_regularizer = resolve_regularizer("Dense", "kernel_regularizer", kernel_regularizer)
        self.bias_regularizer = resolve_regularizer("Dense", "bias_regularizer", bias_regularizer)
        self.activity_regularizer = resolve_regularizer(
            "Dense", "activity_regularizer", activity_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint, "Dense: 'kernel_constraint'")
        self.bias_constraint = constraints.get(bias_constraint, "Dense: 'bias_constraint'")

    def weight_specs(self, input_shape):
        specs = [WeightSpec("kernel", (input_shape[-1], self.units), self.kernel_initializer,
                            kind="kernel", regularizer=self.kernel_regularizer,
                            constraint=self.kernel_constraint)]
        if self.use_bias:
            specs.append(WeightSpec("bias", (self.units,), self.bias_initializer, kind="bias",
                                    regularizer=self.bias_regularizer,
                                    constraint=self.bias_constraint))
        return specs

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def structure(self):
        return ("Dense", self.units, activations.structure_key(self.activation), self.use_bias)

    def forward(self, x, weights, values, ctx, input_shape):
        kernel = weights["kernel"]  # (P, in, units)
        members = kernel.shape[0]
        groups = ctx.groups
        if groups is None and is_shared(x, input_shape):  # (B, ..., in): every member sees it
            groups, x = shared_input.MemberGroups.single(members, x.device), x.unsqueeze(0)
        if groups is not None:  # (G, B, ..., in): one row per seed group
            if shared_input.applies(self.units, x):
                lead = x.shape[1:-1]
                y = shared_input.shared_input_linear(
                    x.reshape(x.shape[0], -1, x.shape[-1]), kernel,
                    weights["bias"] if self.use_bias else None, groups)
                y = y.reshape(members, *lead, self.units)
                return y if ctx.logits else activations.apply(self.activation, y)
            x = groups.expand(x)
        if kernel.dtype != x.dtype:  # mixed precision: the compute dtype is the input's
            kernel = kernel.to(x.dtype)
            weights = {**weights, "bias": weights["bias"].to(x.dtype)} if self.use_bias \
                else weights
        lead = x.shape[1:-1]
        x3 = x.reshape(members, -1, x.shape[-1])  # (P, B*, in)
        if narrow_linear.applies(self.units):
            y = narrow_linear.narrow_linear(x3, kernel,
                                            weights["bias"] if self.use_bias else None,
                                            transposed=ctx.logits)
        else:  # (P, B*, units)
            y = member_linear.member_linear(x3, kernel,
                                            weights["bias"] if self.use_bias else None)
        y = y.reshape(members, *lead, self.units)
        return y if ctx.logits else activations.apply(self.activation, y)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "use_bias": self.use_bias,
                **serialized(self, "activation", "kernel_initializer", "bias_initializer",
                             "kernel_regularizer", "bias_regularizer", "activity_regularizer",
                             "kernel_constraint", "bias_constraint")}

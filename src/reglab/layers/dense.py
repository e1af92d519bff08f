"""``Dense``: ``activation(x @ kernel + bias)`` with Keras's arguments and layout."""

from __future__ import annotations

import torch

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


def _cast(grad: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    return grad if grad is None or grad.dtype == dtype else grad.to(dtype)


def _needs(kernel, bias) -> tuple[bool, bool]:
    """Whether the kernel's and the bias's gradients are wanted (a frozen layer's are not)."""
    return kernel.requires_grad, bias is not None and bias.requires_grad


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
        return self._linear(x, weights, ctx, input_shape, explicit=False)[0]

    def forward_and_backward(self, x, weights, values, ctx, input_shape):
        """The forward pass and its backward (``reglab.engine.direct_step``) for a layer
        whose activation is linear or relu (or whose logits are taken); None for the others,
        which autograd differentiates. Under mixed precision the weights come in float32
        and their gradients go back in it, as autograd's casts give them."""
        activation = self.activation
        if not ctx.logits and activation is not activations.linear \
                and activation is not torch.relu:
            return None
        return self._linear(x, weights, ctx, input_shape, explicit=True)

    def _linear(self, x, weights, ctx, input_shape, explicit):
        """``(y, backward)``; ``backward`` None unless ``explicit`` (the products' own
        functions, not their autograd Functions)."""
        kernel = weights["kernel"]  # (P, in, units)
        bias = weights["bias"] if self.use_bias else None
        members = kernel.shape[0]
        groups = ctx.groups
        if groups is None and is_shared(x, input_shape):  # (B, ..., in): every member sees it
            groups, x = shared_input.MemberGroups.single(members, x.device), x.unsqueeze(0)
        backward = None
        # relu made with the products (a pass over the output fewer), where they take it
        relu = explicit and not ctx.logits and self.activation is torch.relu
        activated = False  # whether z is already the relu of the products
        if groups is not None and shared_input.applies(self.units, x):
            # (G, B, ..., in): one row per seed group
            lead = x.shape[1:-1]
            x3 = x if x.dim() == 3 else x.reshape(x.shape[0], -1, x.shape[-1])
            if explicit:
                z = shared_input.forward_grouped(x3, kernel, bias, groups, relu)
                activated = relu

                def backward(dz, need_x):  # the direct step takes a pending gradient
                    return shared_input.backward_grouped(
                        x3, kernel, dz, groups, bias is not None, need_x, *_needs(kernel, bias),
                        pending=True)
            else:
                z = shared_input.shared_input_linear(x3, kernel, bias, groups)
        else:
            if groups is not None:
                x = groups.expand(x)
            weight_dtype, needs = kernel.dtype, _needs(kernel, bias)  # before the casts
            if kernel.dtype != x.dtype:  # mixed precision: the compute dtype is the input's
                kernel = kernel.to(x.dtype)
                bias = None if bias is None else bias.to(x.dtype)
            lead = x.shape[1:-1]
            x3 = x if x.dim() == 3 else x.reshape(members, -1, x.shape[-1])  # (P, B*, in)
            transposed = narrow_linear.applies(self.units)  # (see layers/narrow_linear.py)
            keep_layout = transposed and ctx.logits
            if explicit:
                z, xa, ka = member_linear.forward_product(x3, kernel, bias, transposed,
                                                          keep_layout)

                def backward(dz, need_x):
                    dx, dkernel, dbias = member_linear.backward_product(
                        xa, ka, dz, bias is not None, transposed, need_x, *needs)
                    # the casts' gradients (autograd's: the gradient cast back)
                    return dx, _cast(dkernel, weight_dtype), _cast(dbias, weight_dtype)
            else:
                z = member_linear.member_linear(x3, kernel, bias, transposed, keep_layout)
        if len(lead) != 1:  # (P, B*, units) back to (P, B, ..., units)
            z = z.reshape(members, *lead, self.units)
        if ctx.logits:
            y, activation_backward = z, None
        elif not explicit or self.activation is activations.linear:
            y, activation_backward = activations.apply(self.activation, z), None
        else:  # relu: autograd's own gradient of it
            y = z if activated else torch.relu(z)

            def activation_backward(dy):
                return torch.ops.aten.threshold_backward(dy, y, 0)
        if backward is None:
            return y, None
        product_backward = backward
        in_shape = x.shape

        def layer_backward(dy, need_x):
            dz = dy if activation_backward is None else activation_backward(dy)
            if len(in_shape) != 3:  # (P, B, ..., units) as the products' (P, B*, units)
                dz = dz.reshape(members, -1, self.units)
            dx, dkernel, dbias = product_backward(dz, need_x)
            grads = {} if dkernel is None else {"kernel": dkernel}
            if dbias is not None:
                grads["bias"] = dbias
            if dx is not None and len(in_shape) != 3:
                dx = dx.reshape(in_shape)
            return dx, grads
        return y, layer_backward

    def get_config(self):
        return {**super().get_config(), "units": self.units, "use_bias": self.use_bias,
                **serialized(self, "activation", "kernel_initializer", "bias_initializer",
                             "kernel_regularizer", "bias_regularizer", "activity_regularizer",
                             "kernel_constraint", "bias_constraint")}

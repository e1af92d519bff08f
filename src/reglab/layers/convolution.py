"""``Conv2D`` and ``MaxPooling2D`` on channels-last inputs ``(N, H, W, C)``, as Keras.

Members' convolutions run as one grouped convolution: member p's input
channels and filters form group p. ``'same'`` padding follows Keras/TensorFlow
(the extra row or column goes to the bottom/right when the total is odd).
"""

from __future__ import annotations

import math

import torch.nn.functional as F

from reglab import activations, constraints, initializers
from reglab.errors import ConfigError
from reglab.layers.layer import (
    Layer,
    WeightSpec,
    as_pair,
    check_positive_int,
    is_shared,
    resolve_regularizer,
)


def _padding(owner, padding):
    if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
        raise ConfigError(f"{owner}: 'padding' must be 'valid' or 'same'. Got {padding!r}.")
    return padding.lower()


def output_length(length, kernel, stride, padding, dilation=1):
    """Keras's output length along one spatial axis."""
    effective = (kernel - 1) * dilation + 1
    if padding == "same":
        return math.ceil(length / stride)
    return (length - effective) // stride + 1


def same_pads(length, kernel, stride, dilation=1):
    """(before, after) padding that TensorFlow's 'same' uses."""
    effective = (kernel - 1) * dilation + 1
    total = max((math.ceil(length / stride) - 1) * stride + effective - length, 0)
    return total // 2, total - total // 2


def _to_nchw(x, shared):
    """(B,H,W,C) -> (B,C,H,W); (P,B,H,W,C) -> (B, P*C, H, W)."""
    if shared:
        return x.permute(0, 3, 1, 2)
    members, batch, h, w, c = x.shape
    return x.permute(1, 0, 4, 2, 3).reshape(batch, members * c, h, w)


class Conv2D(Layer):
    """2D convolution; kernel ``(kh, kw, in, filters)`` as Keras.

    Example:
        >>> Conv2D(8, 3, padding="same").compute_output_shape((28, 28, 1))
        (28, 28, 8)
    """

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid",
                 data_format=None, dilation_rate=(1, 1), activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):
            raise ConfigError("Conv2D: 'data_format' must be 'channels_last' (inputs are "
                              f"(N, H, W, C) as in Keras). Got {data_format!r}.")
        self.filters = check_positive_int("Conv2D", "filters", filters)
        self.kernel_size = as_pair("Conv2D", "kernel_size", kernel_size)
        self.strides = as_pair("Conv2D", "strides", strides)
        self.dilation_rate = as_pair("Conv2D", "dilation_rate", dilation_rate)
        self.padding = _padding("Conv2D", padding)
        self.activation = activations.get(activation, where="Conv2D: 'activation'")
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer,
                                                   "Conv2D: 'kernel_initializer'")
        self.bias_initializer = initializers.get(bias_initializer, "Conv2D: 'bias_initializer'")
        self.kernel_regularizer = resolve_regularizer("Conv2D", "kernel_regularizer",
                                                      kernel_regularizer)
        self.bias_regularizer = resolve_regularizer("Conv2D", "bias_regularizer", bias_regularizer)
        self.activity_regularizer = resolve_regularizer("Conv2D", "activity_regularizer",
                                                        activity_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint, "Conv2D: 'kernel_constraint'")
        self.bias_constraint = constraints.get(bias_constraint, "Conv2D: 'bias_constraint'")

    def weight_specs(self, input_shape):
        if len(input_shape) != 3:
            raise ConfigError("Conv2D: expects inputs (height, width, channels) per sample. "
                              f"Got shape {input_shape}. Reshape flat images to (28, 28, 1).")
        kh, kw = self.kernel_size
        specs = [WeightSpec("kernel", (kh, kw, input_shape[-1], self.filters),
                            self.kernel_initializer, kind="kernel",
                            regularizer=self.kernel_regularizer, constraint=self.kernel_constraint)]
        if self.use_bias:
            specs.append(WeightSpec("bias", (self.filters,), self.bias_initializer, kind="bias",
                                    regularizer=self.bias_regularizer,
                                    constraint=self.bias_constraint))
        return specs

    def compute_output_shape(self, input_shape):
        h, w, _ = input_shape
        return (output_length(h, self.kernel_size[0], self.strides[0], self.padding,
                              self.dilation_rate[0]),
                output_length(w, self.kernel_size[1], self.strides[1], self.padding,
                              self.dilation_rate[1]),
                self.filters)

    def structure(self):
        return ("Conv2D", self.filters, self.kernel_size, self.strides, self.padding,
                self.dilation_rate, activations.structure_key(self.activation), self.use_bias)

    def forward(self, x, weights, values, ctx, input_shape):
        shared = is_shared(x, input_shape)
        kernel = weights["kernel"]  # (P, kh, kw, in, out)
        members, kh, kw, cin, cout = kernel.shape
        z = _to_nchw(x, shared)
        if self.padding == "same":
            top, bottom = same_pads(z.shape[2], kh, self.strides[0], self.dilation_rate[0])
            left, right = same_pads(z.shape[3], kw, self.strides[1], self.dilation_rate[1])
            z = F.pad(z, (left, right, top, bottom))
        weight = kernel.permute(0, 4, 3, 1, 2).reshape(members * cout, cin, kh, kw)
        bias = weights["bias"].reshape(-1) if self.use_bias else None
        y = F.conv2d(z, weight, bias, stride=self.strides, dilation=self.dilation_rate,
                     groups=1 if shared else members)  # (B, P*out, H', W')
        batch, _, ho, wo = y.shape
        y = y.view(batch, members, cout, ho, wo).permute(1, 0, 3, 4, 2)  # (P, B, H', W', out)
        return self.activation(y)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": self.kernel_size, "strides": self.strides,
                "padding": self.padding, "dilation_rate": self.dilation_rate,
                "activation": activations.name_of(self.activation), "use_bias": self.use_bias}


class MaxPooling2D(Layer):
    """Max pooling over (height, width); ``strides`` defaults to ``pool_size`` as Keras.

    Example:
        >>> MaxPooling2D().compute_output_shape((28, 28, 8))
        (14, 14, 8)
    """

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None,
                 **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):
            raise ConfigError("MaxPooling2D: 'data_format' must be 'channels_last'. "
                              f"Got {data_format!r}.")
        self.pool_size = as_pair("MaxPooling2D", "pool_size", pool_size)
        self.strides = self.pool_size if strides is None else as_pair(
            "MaxPooling2D", "strides", strides)
        self.padding = _padding("MaxPooling2D", padding)

    def compute_output_shape(self, input_shape):
        h, w, c = input_shape
        return (output_length(h, self.pool_size[0], self.strides[0], self.padding),
                output_length(w, self.pool_size[1], self.strides[1], self.padding), c)

    def structure(self):
        return ("MaxPooling2D", self.pool_size, self.strides, self.padding)

    def forward(self, x, weights, values, ctx, input_shape):
        lead = x.shape[:-3]
        h, w, c = x.shape[-3:]
        z = x.reshape(-1, h, w, c).permute(0, 3, 1, 2)
        if self.padding == "same":
            top, bottom = same_pads(h, self.pool_size[0], self.strides[0])
            left, right = same_pads(w, self.pool_size[1], self.strides[1])
            z = F.pad(z, (left, right, top, bottom), value=-math.inf)
        y = F.max_pool2d(z, self.pool_size, self.strides)
        return y.permute(0, 2, 3, 1).reshape(*lead, *y.shape[2:], c)

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides,
                "padding": self.padding}



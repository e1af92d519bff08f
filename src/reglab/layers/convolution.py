"""``Conv2D`` and ``MaxPooling2D`` on channels-last inputs ``(N, H, W, C)``, as Keras.

Each member's convolution runs on its own (a grouped convolution over all members
would round differently from the member's convolution alone). ``'same'`` padding follows Keras/TensorFlow
(the extra row or column goes to the bottom/right when the total is odd).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from reglab import activations, constraints, initializers
from reglab.errors import ConfigError
from reglab.layers import products
from reglab.layers.layer import (
    Layer,
    WeightSpec,
    as_pair,
    check_channels_last,
    check_positive_int,
    image_shape,
    is_shared,
    resolve_regularizer,
    serialized,
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

    @staticmethod
    def _check_rank(input_shape):
        if len(input_shape) != 3:
            raise ConfigError("Conv2D: expects inputs (height, width, channels) per sample. "
                              f"Got shape {tuple(input_shape)}. Reshape flat images to "
                              "(28, 28, 1).")

    def weight_specs(self, input_shape):
        self._check_rank(input_shape)
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
        self._check_rank(input_shape)
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
        bias = weights["bias"] if self.use_bias else None  # (P, out)
        # One convolution per member, on fresh copies in torch's standard layout: a grouped
        # convolution over all members, one over many filters, an unaligned slice or a
        # one-channel tensor whose strides also read as channels-last each take another
        # oneDNN path than the member's own convolution would alone, and round differently.
        standard = torch.contiguous_format
        outputs = []
        for p in range(kernel.shape[0]):
            z = (x if shared else x[p]).permute(0, 3, 1, 2).clone(memory_format=standard)
            if self.padding == "same":
                top, bottom = same_pads(z.shape[2], self.kernel_size[0], self.strides[0],
                                        self.dilation_rate[0])
                left, right = same_pads(z.shape[3], self.kernel_size[1], self.strides[1],
                                        self.dilation_rate[1])
                z = F.pad(z, (left, right, top, bottom))
            y = products.conv2d(z, kernel[p].permute(3, 2, 0, 1).clone(memory_format=standard),
                                None if bias is None else bias[p], stride=self.strides,
                                dilation=self.dilation_rate)  # (B, out, H', W')
            outputs.append(y.permute(0, 2, 3, 1))
        return activations.apply(self.activation, torch.stack(outputs))  # (P, B, H', W', out)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": self.kernel_size, "strides": self.strides,
                "padding": self.padding, "dilation_rate": self.dilation_rate,
                "use_bias": self.use_bias,
                **serialized(self, "activation", "kernel_initializer", "bias_initializer",
                             "kernel_regularizer", "bias_regularizer", "activity_regularizer",
                             "kernel_constraint", "bias_constraint")}


class _Pooling2D(Layer):
    """Pooling over (height, width) with Keras's arguments: ``strides`` defaults to
    ``pool_size``; ``padding`` 'valid' or 'same'. Subclasses pool the padded windows."""

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None,
                 **kwargs):
        super().__init__(**kwargs)
        name = type(self).__name__
        check_channels_last(name, data_format)
        self.pool_size = as_pair(name, "pool_size", pool_size)
        self.strides = self.pool_size if strides is None else as_pair(name, "strides", strides)
        self.padding = _padding(name, padding)

    def compute_output_shape(self, input_shape):
        h, w, c = image_shape(type(self).__name__, input_shape)
        return (output_length(h, self.pool_size[0], self.strides[0], self.padding),
                output_length(w, self.pool_size[1], self.strides[1], self.padding), c)

    def structure(self):
        return (type(self).__name__, self.pool_size, self.strides, self.padding)

    def forward(self, x, weights, values, ctx, input_shape):
        lead = x.shape[:-3]
        h, w, c = x.shape[-3:]
        z = x.reshape(-1, h, w, c).permute(0, 3, 1, 2)
        pads = None
        if self.padding == "same":
            top, bottom = same_pads(h, self.pool_size[0], self.strides[0])
            left, right = same_pads(w, self.pool_size[1], self.strides[1])
            pads = (left, right, top, bottom)
        y = self._pool(z, pads)
        return y.permute(0, 2, 3, 1).reshape(*lead, *y.shape[2:], c)

    def _pool(self, z, pads):
        raise NotImplementedError

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides,
                "padding": self.padding}


class MaxPooling2D(_Pooling2D):
    """Max pooling over (height, width); ``strides`` defaults to ``pool_size`` as Keras.

    Example:
        >>> MaxPooling2D().compute_output_shape((28, 28, 8))
        (14, 14, 8)
    """

    def _pool(self, z, pads):
        if pads is not None:
            z = F.pad(z, pads, value=-math.inf)
        return F.max_pool2d(z, self.pool_size, self.strides)


class AveragePooling2D(_Pooling2D):
    """Average pooling over (height, width), as Keras: ``strides`` defaults to
    ``pool_size``; with ``padding="same"`` the windows at the border average only the
    values inside the image.

    Example:
        >>> AveragePooling2D().compute_output_shape((28, 28, 8))
        (14, 14, 8)
    """

    def _pool(self, z, pads):
        if pads is None:
            return F.avg_pool2d(z, self.pool_size, self.strides)
        total = F.avg_pool2d(F.pad(z, pads), self.pool_size, self.strides)
        inside = F.avg_pool2d(F.pad(torch.ones_like(z[:1, :1]), pads), self.pool_size,
                              self.strides)
        return total / inside


class _GlobalPooling2D(Layer):
    """A reduction over (height, width) of each channel: ``(H, W, C) -> (C,)`` (or
    ``(1, 1, C)`` with ``keepdims``), as Keras; subclasses say which."""

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        name = type(self).__name__
        check_channels_last(name, data_format)
        if not isinstance(keepdims, bool):
            raise ConfigError(f"{name}: 'keepdims' must be true or false. Got {keepdims!r}.")
        self.keepdims = keepdims

    def compute_output_shape(self, input_shape):
        channels = image_shape(type(self).__name__, input_shape)[2]
        return (1, 1, channels) if self.keepdims else (channels,)

    def structure(self):
        return (type(self).__name__, self.keepdims)

    def get_config(self):
        return {**super().get_config(), "keepdims": self.keepdims}


class GlobalAveragePooling2D(_GlobalPooling2D):
    """The mean over (height, width) of each channel, as Keras.

    Example:
        >>> GlobalAveragePooling2D().compute_output_shape((7, 7, 32))
        (32,)
    """

    def forward(self, x, weights, values, ctx, input_shape):
        return x.mean(dim=(-3, -2), keepdim=self.keepdims)


class GlobalMaxPooling2D(_GlobalPooling2D):
    """The largest value over (height, width) of each channel, as Keras (on torch, its
    gradient shared evenly between equal largest values, as ``torch.amax``'s).

    Example:
        >>> GlobalMaxPooling2D(keepdims=True).compute_output_shape((7, 7, 32))
        (1, 1, 32)
    """

    def forward(self, x, weights, values, ctx, input_shape):
        return x.amax(dim=(-3, -2), keepdim=self.keepdims)

"""Conv2D on NHWC inputs with Keras kernels (kh, kw, Cin, Cout); shape inference pools share."""

from __future__ import annotations

from typing import Any

import numpy as np

from dlcli.core import ops
from dlcli.core.ops.activations import get_activation
from dlcli.core.ops.conv import (
    PaddingSpec,
    effective_kernel,
    normalize_padding,
    pair,
    resolve_padding,
)
from dlcli.core.tensor import Tensor
from dlcli.nn.initializers import get_initializer
from dlcli.nn.layers.base import Layer, Shape, ShapeError
from dlcli.nn.regularizers import get_regularizer, regularizer_config


def spatial_output(
    kind: str, input_shape: Shape, window: tuple[int, int], strides: tuple[int, int],
    padding: PaddingSpec, dilation: tuple[int, int] = (1, 1),
) -> tuple[int, int]:
    """Output (height, width) of a window sliding over (H, W, C); ShapeError if none fits.

    A dilated window covers (k - 1) * d + 1 cells per axis; padding and fit use that extent.
    """
    if len(input_shape) != 3:
        raise ShapeError(
            f"expects an image input (height, width, channels), got {tuple(input_shape)}"
        )
    h, w, c = input_shape
    if min(h, w, c) < 1:
        raise ShapeError(f"input {tuple(input_shape)} has an empty axis")
    extent = effective_kernel(window, dilation)
    (top, bottom), (left, right) = resolve_padding(padding, (h, w), extent, strides)
    ph, pw = h + top + bottom, w + left + right
    if extent[0] > ph or extent[1] > pw:
        padded = f" padded to ({ph}, {pw})" if (ph, pw) != (h, w) else ""
        dilated = f" (dilated to {extent})" if extent != tuple(window) else ""
        raise ShapeError(
            f"{kind} {window}{dilated} is larger than its input {tuple(input_shape)}{padded}"
        )
    window = extent
    out = ((ph - window[0]) // strides[0] + 1, (pw - window[1]) // strides[1] + 1)
    if min(out) < 1:  # unreachable when the window fits, kept so the invariant is explicit
        raise ShapeError(f"the output size falls to {out} for input {tuple(input_shape)}")
    return out


class Conv2D(Layer):
    """2-D convolution, channels last, with Keras's arguments and 'same' padding rule.

    dilation_rate d spreads the kernel's taps d cells apart (an atrous convolution); as in Keras,
    it cannot be combined with strides > 1.
    """

    default_name = "conv2d"

    def __init__(
        self,
        filters: int,
        kernel_size: int | tuple[int, int],
        strides: int | tuple[int, int] = 1,
        padding: PaddingSpec = "valid",
        dilation_rate: int | tuple[int, int] = 1,
        activation: str | None = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        if not isinstance(filters, int | np.integer) or isinstance(filters, bool) or filters < 1:
            raise ValueError(f"Conv2D filters must be a positive integer, got {filters!r}")
        self.filters = int(filters)
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.strides = pair(strides, "strides")
        self.padding = normalize_padding(padding)
        self.dilation_rate = pair(dilation_rate, "dilation_rate")
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:  # Keras's BaseConv refuses it
            raise ValueError(
                f"Conv2D: strides > 1 together with dilation_rate > 1 is not supported (as in "
                f"Keras); got strides={self.strides} and dilation_rate={self.dilation_rate}"
            )
        self.activation = activation
        self.activation_fn = get_activation(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer
        get_initializer(kernel_initializer)  # an unknown name fails here, not at build
        get_initializer(bias_initializer)
        self.kernel_regularizer = get_regularizer(kernel_regularizer)
        self.bias_regularizer = get_regularizer(bias_regularizer)

    def build(self, input_shape: Shape, rng: np.random.Generator) -> Shape:
        ho, wo = spatial_output("kernel", input_shape, self.kernel_size, self.strides, self.padding,
                                self.dilation_rate)
        self.input_shape = tuple(input_shape)
        cin = input_shape[-1]
        self.add_weight("kernel", (*self.kernel_size, cin, self.filters), self.kernel_initializer,
                        rng, regularizer=self.kernel_regularizer)
        if self.use_bias:
            self.add_weight("bias", (self.filters,), self.bias_initializer, rng,
                            regularizer=self.bias_regularizer)
        self.output_shape = (ho, wo, self.filters)
        self.built = True
        return self.output_shape

    def pre_activation(self, x: Tensor, training: bool = False) -> Tensor:
        """The convolution plus bias, before the activation."""
        b = self.params["bias"] if self.use_bias else None
        return ops.conv2d(x, self.params["kernel"], b, strides=self.strides, padding=self.padding,
                          dilation_rate=self.dilation_rate)

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        return self.activation_fn(self.pre_activation(x, training))

    def macs(self) -> int:
        # dilation spreads the taps but does not add any: kh * kw multiply-adds per output
        ho, wo, cout = self.output_shape
        kh, kw = self.kernel_size
        return ho * wo * kh * kw * self.input_shape[-1] * cout

    def get_config(self) -> dict[str, Any]:
        return {
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "dilation_rate": self.dilation_rate,
            "activation": self.activation,
            "use_bias": self.use_bias,
            "kernel_initializer": self.kernel_initializer,
            "bias_initializer": self.bias_initializer,
            "kernel_regularizer": regularizer_config(self.kernel_regularizer),
            "bias_regularizer": regularizer_config(self.bias_regularizer),
            "name": self.name,
        }

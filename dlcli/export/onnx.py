"""A Sequential model as an ONNX graph: raw channels-last inputs in, probabilities out.

The graph starts with the checkpoint's preprocessing ((x - offset) / scale, as
Preprocessor.apply computes it), so it takes inputs as the dataset stores them. Convolutions
and pooling run in NCHW, as ONNX defines them; a Transpose is inserted where the layout has to
change (before the first conv or pool, and back to NHWC before Flatten or a Dense layer, so the
Dense weights after Flatten keep dlcli's channels-last order). BatchNorm right after a Conv2D
or Dense without an activation is folded into its weights; elsewhere it is a
BatchNormalization node with the moving statistics. Dropout and SpatialDropout2D are the identity
at inference and leave no node. A dilated Conv2D is a Conv node with `dilations`, its 'same'
padding computed on the dilated kernel's extent as dlcli computes it. One converter per layer
type, in CONVERTERS.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from dlcli import __version__
from dlcli.core.ops.activations import SELU_ALPHA, SELU_SCALE
from dlcli.core.ops.conv import effective_kernel, resolve_padding
from dlcli.errors import DlcliError
from dlcli.extras import require
from dlcli.nn.layers import (
    Activation,
    AvgPool2D,
    BatchNorm,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAveragePooling2D,
    Layer,
    MaxPool2D,
    SpatialDropout2D,
)
from dlcli.nn.layers.augment import AUGMENTATIONS, RandomCrop
from dlcli.nn.layers.residual import Residual, _Projection
from dlcli.nn.sequential import Sequential

OPSET = 17
INPUT = "input"


class ExportError(DlcliError):
    """A model that cannot be written in the asked format."""


class _Graph:
    """Nodes and initializers being collected, plus where the current tensor stands.

    `x` is the name of the current tensor, `rank` its rank with the batch axis, `nchw` whether a
    rank-4 tensor is channels-first at the moment.
    """

    def __init__(self, helper: Any, numpy_helper: Any, rank: int) -> None:
        self.h, self.nh = helper, numpy_helper
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.x = INPUT
        self.rank = rank
        self.nchw = False
        self._n = 0

    def _name(self, base: str) -> str:
        self._n += 1
        return f"{base}_{self._n}"

    def const(self, base: str, value: np.ndarray) -> str:
        name = self._name(base)
        self.initializers.append(self.nh.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type: str, *inputs: str, name: str | None = None, **attrs: Any) -> str:
        """Append a node on the given inputs (the current tensor when none); it becomes current."""
        out = self._name(name or op_type.lower())
        self.nodes.append(self.h.make_node(op_type, list(inputs) or [self.x], [out],
                                           name=out, **attrs))
        self.x = out
        return out

    def to_nchw(self) -> None:
        if self.rank == 4 and not self.nchw:
            self.op("Transpose", perm=[0, 3, 1, 2], name="to_nchw")
            self.nchw = True

    def to_nhwc(self) -> None:
        if self.nchw:
            self.op("Transpose", perm=[0, 2, 3, 1], name="to_nhwc")
            self.nchw = False

    @property
    def channel_axis(self) -> int:
        return 1 if self.nchw else -1


# -- activations ----------------------------------------------------------------------------
def activation(g: _Graph, name: str | None, layer: Layer) -> None:
    """The activation called `name` on the current tensor (nothing for None/linear)."""
    if name in (None, "linear"):
        return
    simple = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "softplus": "Softplus"}
    if name in simple:
        g.op(simple[name])
    elif name == "leaky_relu":
        g.op("LeakyRelu", alpha=0.2)  # dlcli's (and Keras 3's) default negative_slope
    elif name == "elu":
        g.op("Elu", alpha=1.0)
    elif name == "selu":
        g.op("Selu", alpha=SELU_ALPHA, gamma=SELU_SCALE)
    elif name == "gelu":
        # exact gelu (dlcli's default, approximate=False): x * (1 + erf(x / sqrt 2)) / 2;
        # opset 17 has no Gelu node
        x = g.x
        erf = g.op("Erf", g.op("Div", x, g.const("sqrt2", np.array(math.sqrt(2.0), np.float32))))
        one = g.op("Add", erf, g.const("one", np.array(1.0, np.float32)))
        g.op("Mul", g.op("Mul", x, one), g.const("half", np.array(0.5, np.float32)))
    elif name in ("silu", "swish"):
        x = g.x
        g.op("Mul", x, g.op("Sigmoid", x))
    elif name == "mish":  # opset 17 has no Mish node: x * tanh(softplus(x))
        x = g.x
        g.op("Mul", x, g.op("Tanh", g.op("Softplus", x)))
    elif name == "relu6":
        g.op("Clip", g.x, g.const("zero", np.array(0.0, np.float32)),
             g.const("six", np.array(6.0, np.float32)))
    elif name == "hard_sigmoid":  # Keras 3: relu6(x + 3) / 6
        g.op("HardSigmoid", alpha=1.0 / 6.0, beta=0.5)
    elif name in ("hard_silu", "hard_swish"):  # x * relu6(x + 3) / 6, ONNX's HardSwish
        g.op("HardSwish")
    elif name == "softsign":
        g.op("Softsign")
    elif name == "exponential":
        g.op("Exp")
    elif name == "log_sigmoid":  # -softplus(-x)
        g.op("Neg", g.op("Softplus", g.op("Neg")))
    elif name == "celu":
        g.op("Celu", alpha=1.0)
    elif name == "softmax":
        g.op("Softmax", axis=g.channel_axis)
    elif name == "log_softmax":
        g.op("LogSoftmax", axis=g.channel_axis)
    else:
        raise ExportError(
            f"layer {layer.name} ({type(layer).__name__}): activation {name!r} has no ONNX "
            f"conversion in this dlcli"
        )


# -- BatchNorm arithmetic, shared by folding and the standalone node ---------------------------
def _bn_scale_shift(bn: BatchNorm) -> tuple[np.ndarray, np.ndarray]:
    """(s, t) with BN(x) = x * s + t at inference, in float64."""
    p = {k: v.data.astype(np.float64) for k, v in bn.params.items()}
    s = 1.0 / np.sqrt(p["moving_variance"] + bn.epsilon)
    if "gamma" in p:
        s = s * p["gamma"]
    t = -p["moving_mean"] * s
    if "beta" in p:
        t = t + p["beta"]
    return s, t


def _folded(layer: Conv2D | Dense, bn: BatchNorm | None) -> tuple[np.ndarray, np.ndarray | None]:
    """The layer's kernel and bias with a following BatchNorm folded in (last axis = units)."""
    kernel = layer.params["kernel"].data
    bias = layer.params["bias"].data if layer.use_bias else None
    if bn is None:
        return kernel, bias
    s, t = _bn_scale_shift(bn)
    b = t if bias is None else bias.astype(np.float64) * s + t
    return (kernel.astype(np.float64) * s).astype(np.float32), b.astype(np.float32)


# -- one converter per layer type -----------------------------------------------------------
def _dense(g: _Graph, layer: Dense, bn: BatchNorm | None) -> None:
    g.to_nhwc()  # Dense acts on the last axis, as dlcli computes it
    kernel, bias = _folded(layer, bn)
    w = g.const(f"{layer.name}_kernel", kernel)
    if g.rank == 2 and bias is not None:
        g.op("Gemm", g.x, w, g.const(f"{layer.name}_bias", bias), name=layer.name)
    else:
        g.op("MatMul", g.x, w, name=layer.name)
        if bias is not None:
            g.op("Add", g.x, g.const(f"{layer.name}_bias", bias))
    activation(g, layer.activation, layer)


def _pads(padding: Any, layer: Layer, window: tuple[int, int], strides: tuple[int, int]) -> list:
    h, w = layer.input_shape[:2]
    (top, bottom), (left, right) = resolve_padding(padding, (h, w), window, strides)
    return [top, left, bottom, right]  # ONNX: all begins, then all ends


def _conv2d(g: _Graph, layer: Conv2D, bn: BatchNorm | None) -> None:
    g.to_nchw()
    kernel, bias = _folded(layer, bn)
    inputs = [g.x, g.const(f"{layer.name}_kernel", kernel.transpose(3, 2, 0, 1))]  # OIHW
    if bias is not None:
        inputs.append(g.const(f"{layer.name}_bias", bias))
    # ONNX pads are explicit: 'same' is resolved for the dilated extent (k - 1) * d + 1
    extent = effective_kernel(layer.kernel_size, layer.dilation_rate)
    g.op("Conv", *inputs, name=layer.name, kernel_shape=list(layer.kernel_size),
         strides=list(layer.strides), dilations=list(layer.dilation_rate),
         pads=_pads(layer.padding, layer, extent, layer.strides))
    activation(g, layer.activation, layer)


def _pool(g: _Graph, layer: MaxPool2D | AvgPool2D, bn: None) -> None:
    g.to_nchw()
    attrs = {"kernel_shape": list(layer.pool_size), "strides": list(layer.window_strides),
             "pads": _pads(layer.padding, layer, layer.pool_size, layer.window_strides)}
    if isinstance(layer, MaxPool2D):
        g.op("MaxPool", name=layer.name, **attrs)  # padded cells never win the max (TF 'same')
    else:
        # TF's 'same' averages over the real cells only: count_include_pad=0
        g.op("AveragePool", name=layer.name, count_include_pad=0, **attrs)


def _global_avg(g: _Graph, layer: GlobalAveragePooling2D, bn: None) -> None:
    g.to_nchw()
    g.op("GlobalAveragePool", name=layer.name)
    g.op("Flatten", axis=1)
    g.rank, g.nchw = 2, False


def _flatten(g: _Graph, layer: Flatten, bn: None) -> None:
    g.to_nhwc()  # dlcli flattens channels-last, and the next Dense's rows follow that order
    g.op("Flatten", name=layer.name, axis=1)
    g.rank = 2


def _batch_norm(g: _Graph, layer: BatchNorm, bn: None) -> None:
    if g.rank == 4:
        g.to_nchw()
    if g.rank in (2, 4):  # ONNX BatchNormalization takes the channels on axis 1
        p = layer.params
        c = layer.input_shape[-1]
        gamma = p["gamma"].data if "gamma" in p else np.ones(c, np.float32)
        beta = p["beta"].data if "beta" in p else np.zeros(c, np.float32)
        names = [g.const(f"{layer.name}_{k}", v) for k, v in (
            ("gamma", gamma), ("beta", beta), ("moving_mean", p["moving_mean"].data),
            ("moving_variance", p["moving_variance"].data))]
        g.op("BatchNormalization", g.x, *names, name=layer.name, epsilon=layer.epsilon)
        return
    s, t = _bn_scale_shift(layer)  # other ranks: the same arithmetic on the last axis
    g.op("Mul", g.x, g.const(f"{layer.name}_scale", s.astype(np.float32)), name=layer.name)
    g.op("Add", g.x, g.const(f"{layer.name}_shift", t.astype(np.float32)))


def _activation_layer(g: _Graph, layer: Activation, bn: None) -> None:
    activation(g, layer.activation, layer)


def _dropout(g: _Graph, layer: Dropout | SpatialDropout2D, bn: None) -> None:
    return None  # the identity at inference


def _augmentation(g: _Graph, layer: Layer, bn: None) -> None:
    return None  # augmentation is the identity at inference


def _random_crop(g: _Graph, layer: RandomCrop, bn: None) -> None:
    top, left = layer.offsets()  # the center window, as at inference
    if (top, left) == (0, 0) and tuple(layer.input_shape[:2]) == (layer.height, layer.width):
        return
    axes = [2, 3] if g.nchw else [1, 2]
    g.op("Slice", g.x, g.const("starts", np.array([top, left], np.int64)),
         g.const("ends", np.array([top + layer.height, left + layer.width], np.int64)),
         g.const("axes", np.array(axes, np.int64)), name=layer.name)


def _residual(g: _Graph, layer: Residual, bn: None) -> None:
    x0, nchw0, rank0 = g.x, g.nchw, g.rank
    _convert(g, layer.layers)
    y, y_nchw = g.x, g.nchw
    if layer.projection is not None:  # the shortcut from the block's input
        g.x, g.nchw, g.rank = x0, nchw0, rank0
        inner = layer.projection.inner
        (_conv2d if isinstance(inner, Conv2D) else _dense)(g, inner, None)
        s, s_nchw = g.x, g.nchw
    else:
        s, s_nchw = x0, nchw0
    if s_nchw != y_nchw:  # both branches in one layout before the sum
        s = g.op("Transpose", s, perm=[0, 2, 3, 1] if s_nchw else [0, 3, 1, 2], name="align")
    g.nchw = y_nchw
    g.op("Add", y, s, name=layer.name)
    activation(g, layer.activation, layer)


Converter = Callable[[_Graph, Any, Any], None]
CONVERTERS: dict[type[Layer], Converter] = {
    Dense: _dense, Conv2D: _conv2d, MaxPool2D: _pool, AvgPool2D: _pool,
    GlobalAveragePooling2D: _global_avg, Flatten: _flatten, BatchNorm: _batch_norm,
    Activation: _activation_layer, Dropout: _dropout, SpatialDropout2D: _dropout,
    RandomCrop: _random_crop,
    Residual: _residual,
    **{cls: _augmentation for cls in AUGMENTATIONS if cls is not RandomCrop},
}
_FOLDS_BN = (Conv2D, Dense)


def _plan(layers: list[Layer]) -> list[tuple[Layer, BatchNorm | None]]:
    """Each layer with the BatchNorm folded into it; folded BatchNorms drop out of the list."""
    plan: list[tuple[Layer, BatchNorm | None]] = []
    i = 0
    while i < len(layers):
        layer = layers[i]
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if (isinstance(layer, _FOLDS_BN) and isinstance(nxt, BatchNorm)
                and layer.activation in (None, "linear")):
            plan.append((layer, nxt))
            i += 2
            continue
        plan.append((layer, None))
        i += 1
    return plan


def _convert(g: _Graph, layers: list[Layer]) -> None:
    for layer, bn in _plan(layers):
        CONVERTERS[type(layer)](g, layer, bn)


def build_onnx(
    model: Sequential,
    preprocessing: dict[str, Any],
    *,
    final_activation: str | None = None,
    output_name: str = "output",
    metadata: dict[str, Any] | None = None,
) -> Any:
    """The model as an onnx.ModelProto taking raw float32 inputs (batch, *input_shape).

    Args:
        model: a built Sequential with its trained weights, on the CPU.
        preprocessing: Preprocessor.to_dict() of the checkpoint; applied first in the graph.
        final_activation: "softmax" or "sigmoid" to append (a model trained from logits), else None.
        output_name: the graph output's name ("probabilities" or "output").
        metadata: key -> value written to the model's metadata_props (non-strings as JSON).
    Raises:
        ExportError: a layer or activation without a conversion, naming the layer.
    """
    onnx = require("onnx", "export", "ONNX export")
    from onnx import TensorProto, helper, numpy_helper

    for layer in model.walk():
        if type(layer) not in CONVERTERS and not isinstance(layer, _Projection):
            raise ExportError(
                f"layer {layer.name} ({type(layer).__name__}) cannot be exported to ONNX by "
                f"this dlcli"
            )
    g = _Graph(helper, numpy_helper, rank=len(model.input_shape) + 1)
    mode = preprocessing.get("mode", "none")
    if mode != "none":
        # the same float32 arithmetic as Preprocessor.apply: subtract, then divide
        offset = np.asarray(preprocessing["offset"], np.float32)
        scale = np.asarray(preprocessing["scale"], np.float32)
        g.op("Sub", g.x, g.const("preprocess_offset", offset), name="preprocess")
        g.op("Div", g.x, g.const("preprocess_scale", scale), name="preprocess")
    _convert(g, model.layers)
    if final_activation is not None:
        activation(g, final_activation, model.layers[-1])
    g.to_nhwc()
    g.op("Identity", name="out")
    g.nodes[-1].output[0] = output_name
    g.nodes[-1].name = output_name

    batch = "batch"
    graph = helper.make_graph(
        g.nodes, model.name,
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [batch, *model.input_shape])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT,
                                       [batch, *model.output_shape])],
        initializer=g.initializers,
    )
    proto = helper.make_model(graph, producer_name="dlcli", producer_version=__version__,
                              opset_imports=[helper.make_opsetid("", OPSET)])
    proto.ir_version = 8  # the IR of opset 17, so older runtimes load the file too
    proto.doc_string = (f"{model.name}, exported by dlcli {__version__}: input '{INPUT}' takes raw "
                        f"values (batch, {', '.join(map(str, model.input_shape))}), channels last")
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    onnx.checker.check_model(proto, full_check=True)
    return proto

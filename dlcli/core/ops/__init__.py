"""Every op of the core, one family a module; each op is a Function class plus a function."""

from dlcli.core.ops.activations import (
    celu,
    elu,
    exponential,
    gelu,
    hard_sigmoid,
    hard_silu,
    leaky_relu,
    linear,
    log_sigmoid,
    log_softmax,
    mish,
    relu,
    relu6,
    selu,
    sigmoid,
    silu,
    softmax,
    softplus,
    softsign,
    tanh,
)
from dlcli.core.ops.conv import conv2d
from dlcli.core.ops.elementwise import (
    abs_,
    add,
    clip,
    div,
    exp,
    log,
    maximum,
    minimum,
    mul,
    neg,
    pow,
    sqrt,
    sub,
)
from dlcli.core.ops.losses import (
    binary_crossentropy,
    categorical_crossentropy,
    class_targets,
    huber,
    mean_absolute_error,
    mean_squared_error,
    sigmoid_binary_crossentropy,
    softmax_cross_entropy,
)
from dlcli.core.ops.norm import batch_norm, dropout
from dlcli.core.ops.pool import avg_pool2d, global_avg_pool2d, max_pool2d
from dlcli.core.ops.reduce import max, mean, sum
from dlcli.core.ops.shape import flatten, getitem, matmul, reshape, transpose

__all__ = [
    "celu", "exponential", "hard_sigmoid", "hard_silu", "log_sigmoid", "mish", "relu6", "silu",
    "softsign", "class_targets",
    "abs_", "add", "avg_pool2d", "batch_norm", "binary_crossentropy", "categorical_crossentropy",
    "clip", "conv2d", "div", "dropout", "elu", "exp", "flatten", "gelu", "getitem",
    "global_avg_pool2d", "huber", "leaky_relu", "linear", "log", "log_softmax", "matmul", "max",
    "max_pool2d", "maximum", "mean", "mean_absolute_error", "mean_squared_error", "minimum", "mul",
    "neg", "pow", "relu", "reshape", "selu", "sigmoid", "sigmoid_binary_crossentropy", "softmax",
    "softmax_cross_entropy", "softplus", "sqrt", "sub", "sum", "tanh", "transpose",
]  # fmt: skip

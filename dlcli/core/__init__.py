"""The autodiff core: Tensor, Function, the ops, and the numpy/cupy backend."""

from dlcli.core import ops
from dlcli.core.backend import DEFAULT_DTYPE, get_array_module
from dlcli.core.parallel import get_num_threads, set_num_threads
from dlcli.core.tensor import Function, Tensor, is_grad_enabled, no_grad

__all__ = [
    "DEFAULT_DTYPE", "Function", "Tensor", "get_array_module", "get_num_threads",
    "is_grad_enabled", "no_grad", "ops", "set_num_threads",
]

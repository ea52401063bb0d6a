"""BatchNorm over the last axis (Keras BatchNormalization): 4*C weights, 2*C non-trainable."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from dlcli.core import ops
from dlcli.core.tensor import Tensor
from dlcli.nn.initializers import get_initializer
from dlcli.nn.layers.base import Layer, Shape, ShapeError


class BatchNorm(Layer):
    """Batch statistics while training (and moving averages updated); moving averages otherwise.

    synchronized (Keras's argument): under data-parallel training the statistics are those of
    the global batch; a distributed trainer sets `all_reduce`. Alone it changes nothing.
    """

    default_name = "batch_normalization"

    def __init__(
        self,
        momentum: float = 0.99,
        epsilon: float = 1e-3,
        center: bool = True,
        scale: bool = True,
        beta_initializer: Any = "zeros",
        gamma_initializer: Any = "ones",
        moving_mean_initializer: Any = "zeros",
        moving_variance_initializer: Any = "ones",
        synchronized: bool = False,
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        if not 0 <= momentum <= 1:
            raise ValueError(f"BatchNorm momentum must be in [0, 1], got {momentum!r}")
        if not epsilon > 0:
            raise ValueError(f"BatchNorm epsilon must be > 0, got {epsilon!r}")
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.beta_initializer = beta_initializer
        self.gamma_initializer = gamma_initializer
        self.moving_mean_initializer = moving_mean_initializer
        self.moving_variance_initializer = moving_variance_initializer
        self.synchronized = bool(synchronized)
        self.all_reduce: Callable[[Any], Any] | None = None  # a sum over the ranks, or None
        for init in (beta_initializer, gamma_initializer, moving_mean_initializer,
                     moving_variance_initializer):
            get_initializer(init)  # an unknown name fails here, not at build

    def build(self, input_shape: Shape, rng: np.random.Generator) -> Shape:
        if len(input_shape) < 1 or input_shape[-1] < 1:
            raise ShapeError(f"needs an input with a non-empty last axis, got {tuple(input_shape)}")
        c = (input_shape[-1],)
        # Keras's creation order: gamma, beta, moving_mean, moving_variance
        if self.scale:
            self.add_weight("gamma", c, self.gamma_initializer, rng)
        if self.center:
            self.add_weight("beta", c, self.beta_initializer, rng)
        self.add_weight("moving_mean", c, self.moving_mean_initializer, rng, trainable=False)
        self.add_weight("moving_variance", c, self.moving_variance_initializer, rng,
                        trainable=False)
        self.input_shape = self.output_shape = tuple(input_shape)
        self.built = True
        return self.output_shape

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        p = self.params
        # the moving statistics are raw arrays that the op updates in place while training;
        # a frozen BatchNorm runs in inference mode and leaves them alone (as in Keras)
        return ops.batch_norm(
            x, p.get("gamma"), p.get("beta"), p["moving_mean"].data, p["moving_variance"].data,
            training and self.trainable, momentum=self.momentum, epsilon=self.epsilon,
            reduce=self.all_reduce if self.synchronized else None,
        )

    def macs(self) -> int:
        return math.prod(self.input_shape)

    def get_config(self) -> dict[str, Any]:
        return {
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            "beta_initializer": self.beta_initializer,
            "gamma_initializer": self.gamma_initializer,
            "moving_mean_initializer": self.moving_mean_initializer,
            "moving_variance_initializer": self.moving_variance_initializer,
            "synchronized": self.synchronized,
            "name": self.name,
        }

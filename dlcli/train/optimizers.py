"""Optimizers with Keras 3 update rules and defaults, on numpy or cupy arrays.

Every optimizer follows Keras's `BaseOptimizer.apply` order for one step:
clip each gradient (clipnorm: by its own L2 norm; clipvalue: elementwise), apply decoupled
weight decay (`var -= var * weight_decay * lr`), run the update rule with `t = iterations + 1`,
then count the iteration. Slots (moments, accumulators) live next to the parameters (same
array module and dtype) and are updated in place, with a per-parameter scratch buffer, so a
step allocates almost nothing.
"""

from __future__ import annotations

import abc
import inspect
import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np

from dlcli.core.backend import get_array_module, to_host
from dlcli.core.tensor import Tensor


class Optimizer(abc.ABC):
    """Base class: gradient clipping, weight decay, slots, iteration count and state.

    Args:
        params: the Tensors to update (their `.grad` is read by `step()`).
        learning_rate: step size; schedules set it between epochs.
        weight_decay: decoupled decay, `var -= var * weight_decay * learning_rate`, before
            the update.
        clipnorm: clip each gradient to this L2 norm (each by its own norm, as Keras).
        clipvalue: clip each gradient elementwise to [-clipvalue, clipvalue].
        global_clipnorm: clip all gradients together to this global L2 norm.
        gradient_accumulation_steps: update every n steps with the mean of the n gradients
            (Keras: the iteration count still advances every step).
        use_ema: keep an exponential moving average of the weights, `average =
            m * average + (1 - m) * weight` after each update (m = ema_momentum, 0 on the
            first step); `averaged()` swaps it in for evaluation and checkpoints.
    """

    name: ClassVar[str] = "optimizer"
    # how many scratch buffers (shaped like the parameter) one update needs
    n_scratch: ClassVar[int] = 1

    def __init__(
        self,
        params: Iterable[Tensor],
        learning_rate: float,
        weight_decay: float | None = None,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
        gradient_accumulation_steps: int | None = None,
        use_ema: bool = False,
        ema_momentum: float = 0.99,
    ) -> None:
        self.params = list(params)
        for i, p in enumerate(self.params):
            if not isinstance(p, Tensor):
                raise TypeError(f"params[{i}] is a {type(p).__name__}, expected a Tensor")
        if sum(v is not None for v in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError("only one of clipnorm, clipvalue and global_clipnorm can be set")
        for label, v in (("clipnorm", clipnorm), ("clipvalue", clipvalue),
                         ("global_clipnorm", global_clipnorm)):
            if v is not None and not v > 0:
                raise ValueError(f"{label} must be > 0, got {v}")
        if weight_decay is not None and weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.clipnorm = clipnorm
        self.clipvalue = clipvalue
        self.global_clipnorm = global_clipnorm
        steps = gradient_accumulation_steps
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int)
                                  or steps < 1):
            raise ValueError(f"gradient_accumulation_steps must be an integer >= 1, got {steps}")
        self.accumulation = steps if steps and steps > 1 else None
        if not 0.0 <= ema_momentum <= 1.0:
            raise ValueError(f"ema_momentum must be in [0, 1], got {ema_momentum}")
        self.use_ema, self.ema_momentum = bool(use_ema), float(ema_momentum)
        self.iterations = 0
        # slot name -> one array per parameter, e.g. self.slots["m"][3]
        self.slots: dict[str, list[Any]] = {}
        specs = dict(self.slot_specs())
        if self.accumulation:
            specs["accumulated"] = 0.0
        for slot, init in specs.items():
            self.slots[slot] = [_full_like(p.data, init) for p in self.params]
        if self.use_ema:
            self.slots["average"] = [p.data.copy() for p in self.params]
        self._scratch: list[list[Any] | None] = [None] * len(self.params)

    # -- what subclasses define -----------------------------------------------------------
    def slot_specs(self) -> dict[str, float]:
        """Slot names this optimizer keeps per parameter, with their initial value."""
        return {}

    @abc.abstractmethod
    def _update(self, i: int, var: Any, g: Any, lr: float, t: int, s: list[Any]) -> None:
        """Update `var` in place from gradient `g` (t = 1-based step, s = scratch buffers)."""

    def _fused(self, i: int, lr: float, t: int) -> Fused | None:
        """The update of parameter i as one elementwise kernel for cupy (the numpy statements
        of `_update`, in the same order and precision); None where there is none."""
        return None

    def _begin_step(self, t: int) -> None:
        """Per-step work shared by all parameters (Nadam's momentum-cache product)."""
        return None

    def _extra_state(self) -> dict[str, float]:
        """Scalar state beyond iterations, learning rate and slots."""
        return {}

    def _load_extra_state(self, state: dict[str, float]) -> None:
        """Restore what `_extra_state` returned."""
        return None

    # -- public API -----------------------------------------------------------------------
    @property
    def learning_rate(self) -> float:
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        value = float(value)
        if not value >= 0:
            raise ValueError(f"learning_rate must be >= 0, got {value}")
        self._learning_rate = value

    def step(self) -> None:
        """Apply one update to every parameter that has a gradient (others are skipped)."""
        todo = [(i, p) for i, p in enumerate(self.params) if p.grad is not None]
        if not todo:  # Keras makes apply() a no-op when there are no gradients
            return
        t = self.iterations + 1
        grads = {i: p.grad for i, p in todo}
        if self.accumulation:
            acc = self.slots["accumulated"]
            if t % self.accumulation:  # not an update step: only add up (Keras)
                for i, g in grads.items():
                    acc[i] += g
                self._update_average(todo)
                self.iterations = t
                return
            # the update uses the mean of the accumulated and the current gradients
            grads = {i: (g + acc[i]) / self.accumulation for i, g in grads.items()}
            for i in grads:
                acc[i][...] = 0
        lr = self._learning_rate
        self._begin_step(t)
        scale = self._global_scale(grads) if self.global_clipnorm is not None else None
        for i, p in todo:
            g = self._clip(grads[i], p.data)
            if scale is not None:
                g = g * scale.astype(g.dtype)
            if self.weight_decay is not None:
                # var - var*wd*lr, in place (the same value as Keras's assign)
                p.data *= 1.0 - self.weight_decay * lr
            if not isinstance(p.data, np.ndarray):  # cupy: the whole rule in one kernel
                fused = self._fused(i, lr, t)
                if fused is not None:
                    fused.run(g, p.data)
                    continue
            s = self._scratch[i]
            if s is None:
                xp = get_array_module(p.data)
                s = self._scratch[i] = [xp.empty_like(p.data) for _ in range(self.n_scratch)]
            self._update(i, p.data, g, lr, t, s)
        self._update_average(todo)
        self.iterations = t

    def _update_average(self, todo: list[tuple[int, Tensor]]) -> None:
        """Keras moves the average on every step, accumulation steps included:
        average = m * average + (1 - m) * weight, with m = 0 on the very first step."""
        if not self.use_ema:
            return
        m = self.ema_momentum if self.iterations != 0 else 0.0
        for i, p in todo:
            avg = self.slots["average"][i]
            avg *= m
            avg += (1.0 - m) * p.data

    def _global_scale(self, grads: dict[int, Any]) -> Any:
        """global_clipnorm / max(global norm, global_clipnorm) over every gradient (Keras)."""
        xp = get_array_module(next(iter(grads.values())))
        sq = sum(xp.dot(g.reshape(-1), g.reshape(-1)) for g in grads.values())
        norm = xp.sqrt(sq)
        return self.global_clipnorm / xp.maximum(norm, self.global_clipnorm)

    @contextmanager
    def averaged(self) -> Iterator[None]:
        """With use_ema, the parameters hold their moving averages inside this block (for
        evaluation and checkpoints) and their trained values again after it."""
        if not self.use_ema:
            yield
            return
        avg = self.slots["average"]
        for i, p in enumerate(self.params):
            p.data, avg[i] = avg[i], p.data
        try:
            yield
        finally:
            for i, p in enumerate(self.params):
                p.data, avg[i] = avg[i], p.data

    def finalize(self) -> None:
        """Keras's finalize_variable_values: with use_ema, the weights become their averages."""
        if self.use_ema:
            for p, avg in zip(self.params, self.slots["average"], strict=True):
                p.data[...] = avg

    def zero_grad(self) -> None:
        """Forget every parameter's gradient (the next backward starts from zero)."""
        for p in self.params:
            p.grad = None

    def state_dict(self) -> dict[str, np.ndarray]:
        """Flat, npz-storable copy of the state: "iterations", "learning_rate", "<slot>/<index>"."""
        state: dict[str, np.ndarray] = {
            "iterations": np.asarray(self.iterations, dtype=np.int64),
            "learning_rate": np.asarray(self._learning_rate, dtype=np.float64),
        }
        for key, value in self._extra_state().items():
            state[key] = np.asarray(value, dtype=np.float64)
        for slot, arrays in self.slots.items():
            for i, a in enumerate(arrays):
                state[f"{slot}/{i}"] = to_host(a).copy()
        if self.use_ema:
            # checkpoints hold the averages as the model's weights; the trained values, which
            # training continues from, are kept here
            for i, p in enumerate(self.params):
                state[f"trained/{i}"] = to_host(p.data).copy()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict()`; keys and shapes must match this optimizer and its params."""
        expected = set(self.state_dict_keys())
        given = set(state)
        if expected != given:
            missing = sorted(expected - given)
            unexpected = sorted(given - expected)
            raise ValueError(
                f"optimizer state does not match {self.name} with {len(self.params)} params: "
                f"missing keys {missing}, unexpected keys {unexpected}"
            )
        for slot, arrays in self.slots.items():
            for i, a in enumerate(arrays):
                value = np.asarray(to_host(state[f"{slot}/{i}"]))
                if value.shape != a.shape:
                    raise ValueError(
                        f"optimizer state '{slot}/{i}' has shape {value.shape}, "
                        f"expected {tuple(a.shape)}"
                    )
        for slot, arrays in self.slots.items():
            for i, a in enumerate(arrays):
                xp = get_array_module(a)
                a[...] = xp.asarray(to_host(state[f"{slot}/{i}"]), dtype=a.dtype)
        if self.use_ema:
            for i, p in enumerate(self.params):
                value = np.asarray(to_host(state[f"trained/{i}"]))
                if value.shape != p.shape:
                    raise ValueError(f"optimizer state 'trained/{i}' has shape {value.shape}, "
                                     f"expected {tuple(p.shape)}")
                p.data[...] = get_array_module(p.data).asarray(value, dtype=p.data.dtype)
        self.iterations = int(np.asarray(to_host(state["iterations"])))
        self.learning_rate = float(np.asarray(to_host(state["learning_rate"])))
        extra = {k: float(np.asarray(to_host(state[k]))) for k in self._extra_state()}
        self._load_extra_state(extra)

    def state_dict_keys(self) -> list[str]:
        """The keys `state_dict()` produces."""
        keys = ["iterations", "learning_rate", *self._extra_state()]
        keys += [f"{slot}/{i}" for slot in self.slots for i in range(len(self.params))]
        if self.use_ema:
            keys += [f"trained/{i}" for i in range(len(self.params))]
        return keys

    def __repr__(self) -> str:
        lr, n = self._learning_rate, len(self.params)
        return f"{type(self).__name__}(learning_rate={lr}, params={n})"

    # -- helpers --------------------------------------------------------------------------
    def _clip(self, g: Any, like: Any) -> Any:
        """The gradient to use: cast to the parameter's dtype and clipped; never p.grad mutated."""
        xp = get_array_module(g)
        if g.dtype != like.dtype:
            g = g.astype(like.dtype)
        if self.clipnorm is not None:
            # Keras clip_by_norm: g * clipnorm / max(||g||, clipnorm); stays on device (no sync)
            flat = g.reshape(-1)
            norm = xp.sqrt(xp.dot(flat, flat))
            g = g * (self.clipnorm / xp.maximum(norm, self.clipnorm)).astype(like.dtype)
        elif self.clipvalue is not None:
            g = xp.clip(g, -self.clipvalue, self.clipvalue)
        return g


def _full_like(a: Any, value: float) -> Any:
    xp = get_array_module(a)
    return xp.full_like(a, value) if value else xp.zeros_like(a)


# -- fused updates on cupy (Chainer's update_core_gpu) -------------------------------------------
# `_max` is numpy's maximum: NaN wins (CUDA's max/fmax would drop it)
_PREAMBLE = ("template <typename T> __device__ T _max(T a, T b) "
             "{ return (a != a || a >= b) ? a : b; }")
_kernels: dict[str, Any] = {}


class Fused:
    """One optimizer update as a cupy ElementwiseKernel: inputs `g` and the named scalars, in/out
    `var` and the named slots, each of the parameter's type T; `body` is CUDA C, one statement
    per numpy statement of `_update`. Compiled without fused multiply-adds (--fmad=false), so
    every operation rounds as numpy's does and the two paths agree to the last bit.
    """

    def __init__(self, name: str, body: str, scalars: dict[str, float],
                 slots: dict[str, Any]) -> None:
        self.name, self.body, self.scalars, self.slots = name, body, scalars, slots

    def kernel(self) -> Any:
        k = _kernels.get(self.name)
        if k is None:
            import cupy

            ins = ", ".join(["T g", *(f"T {n}" for n in self.scalars)])
            outs = ", ".join(["T var", *(f"T {n}" for n in self.slots)])
            k = _kernels[self.name] = cupy.ElementwiseKernel(
                ins, outs, self.body, f"dlcli_{self.name}", preamble=_PREAMBLE,
                options=("--fmad=false",))
        return k

    def run(self, g: Any, var: Any) -> None:
        self.kernel()(g, *self.scalars.values(), var, *self.slots.values())


class SGD(Optimizer):
    """Gradient descent with optional (Nesterov) momentum, as keras.optimizers.SGD.

    velocity = momentum * velocity - lr * g;  w += velocity
    (nesterov: w += momentum * velocity - lr * g)
    """

    name = "sgd"

    def __init__(
        self,
        params: Iterable[Tensor],
        learning_rate: float = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float | None = None,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
        gradient_accumulation_steps: int | None = None,
        use_ema: bool = False,
        ema_momentum: float = 0.99,
    ) -> None:
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be a float in [0, 1], got {momentum}")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        super().__init__(params, learning_rate, weight_decay, clipnorm, clipvalue,
                         global_clipnorm, gradient_accumulation_steps, use_ema, ema_momentum)

    def slot_specs(self) -> dict[str, float]:
        return {"momentum": 0.0} if self.momentum != 0 else {}

    def _fused(self, i: int, lr: float, t: int) -> Fused:
        if self.momentum == 0:
            return Fused("sgd", "var -= g * lr;", {"lr": lr}, {})
        m = {"m": self.slots["momentum"][i]}
        if self.nesterov:
            return Fused("sgd_nesterov", "T glr = g * lr; m = m * mu - glr; var -= glr; "
                         "var += m * mu;", {"lr": lr, "mu": self.momentum}, m)
        return Fused("sgd_momentum", "T glr = g * lr; m = m * mu - glr; var += m;",
                     {"lr": lr, "mu": self.momentum}, m)

    def _update(self, i: int, var: Any, g: Any, lr: float, t: int, s: list[Any]) -> None:
        xp = get_array_module(var)
        glr = xp.multiply(g, lr, out=s[0])
        if self.momentum == 0:
            var -= glr
            return
        m = self.slots["momentum"][i]
        m *= self.momentum
        m -= glr
        if self.nesterov:
            var -= glr
            var += xp.multiply(m, self.momentum, out=s[0])
        else:
            var += m


class RMSprop(Optimizer):
    """RMSprop as keras.optimizers.RMSprop (epsilon inside the square root).

    v = rho*v + (1-rho)*g^2;  centered: a = rho*a + (1-rho)*g, denom = v - a^2 + eps, else v + eps
    inc = lr*g/sqrt(denom);  momentum: mom = momentum*mom + inc, w -= mom;  else w -= inc
    """

    name = "rmsprop"

    def __init__(
        self,
        params: Iterable[Tensor],
        learning_rate: float = 0.001,
        rho: float = 0.9,
        momentum: float = 0.0,
        epsilon: float = 1e-7,
        centered: bool = False,
        weight_decay: float | None = None,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
        gradient_accumulation_steps: int | None = None,
        use_ema: bool = False,
        ema_momentum: float = 0.99,
    ) -> None:
        self.rho = float(rho)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.centered = bool(centered)
        super().__init__(params, learning_rate, weight_decay, clipnorm, clipvalue,
                         global_clipnorm, gradient_accumulation_steps, use_ema, ema_momentum)

    def slot_specs(self) -> dict[str, float]:
        specs = {"velocity": 0.0}
        if self.momentum > 0:
            specs["momentum"] = 0.0
        if self.centered:
            specs["average_gradient"] = 0.0
        return specs

    def _fused(self, i: int, lr: float, t: int) -> Fused:
        slots = {"v": self.slots["velocity"][i]}
        body = "v = v * rho + g * g * omr; "
        if self.centered:
            slots["a"] = self.slots["average_gradient"][i]
            body += "a = a * rho + g * omr; T d = v - a * a + eps; "
        else:
            body += "T d = v + eps; "
        body += "T inc = g / sqrt(d) * lr; "
        if self.momentum > 0:
            slots["mom"] = self.slots["momentum"][i]
            body += "mom = mom * mu + inc; var -= mom;"
        else:
            body += "var -= inc;"
        name = f"rmsprop{'_centered' * self.centered}{'_momentum' * (self.momentum > 0)}"
        return Fused(name, body, {"rho": self.rho, "omr": 1 - self.rho, "eps": self.epsilon,
                                  "lr": lr, "mu": self.momentum}, slots)

    def _update(self, i: int, var: Any, g: Any, lr: float, t: int, s: list[Any]) -> None:
        xp = get_array_module(var)
        rho, buf = self.rho, s[0]
        v = self.slots["velocity"][i]
        v *= rho
        xp.multiply(g, g, out=buf)
        buf *= 1 - rho
        v += buf
        if self.centered:
            a = self.slots["average_gradient"][i]
            a *= rho
            a += xp.multiply(g, 1 - rho, out=buf)
            xp.multiply(a, a, out=buf)
            xp.subtract(v, buf, out=buf)
            buf += self.epsilon
        else:
            xp.add(v, self.epsilon, out=buf)
        xp.sqrt(buf, out=buf)
        xp.divide(g, buf, out=buf)
        buf *= lr
        if self.momentum > 0:
            mom = self.slots["momentum"][i]
            mom *= self.momentum
            mom += buf
            var -= mom
        else:
            var -= buf


class Adagrad(Optimizer):
    """Adagrad as keras.optimizers.Adagrad: acc += g^2;  w -= lr*g/sqrt(acc + eps)."""

    name = "adagrad"

    def __init__(
        self,
        params: Iterable[Tensor],
        learning_rate: float = 0.001,
        initial_accumulator_value: float = 0.1,
        epsilon: float = 1e-7,
        weight_decay: float | None = None,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
        gradient_accumulation_steps: int | None = None,
        use_ema: bool = False,
        ema_momentum: float = 0.99,
    ) -> None:
        self.initial_accumulator_value = float(initial_accumulator_value)
        self.epsilon = float(epsilon)
        super().__init__(params, learning_rate, weight_decay, clipnorm, clipvalue,
                         global_clipnorm, gradient_accumulation_steps, use_ema, ema_momentum)

    def slot_specs(self) -> dict[str, float]:
        return {"accumulator": self.initial_accumulator_value}

    def _fused(self, i: int, lr: float, t: int) -> Fused:
        return Fused("adagrad", "acc += g * g; var -= g / sqrt(acc + eps) * lr;",
                     {"eps": self.epsilon, "lr": lr}, {"acc": self.slots["accumulator"][i]})

    def _update(self, i: int, var: Any, g: Any, lr: float, t: int, s: list[Any]) -> None:
        xp = get_array_module(var)
        acc, buf = self.slots["accumulator"][i], s[0]
        acc += xp.multiply(g, g, out=buf)
        xp.add(acc, self.epsilon, out=buf)
        xp.sqrt(buf, out=buf)
        xp.divide(g, buf, out=buf)
        buf *= lr
        var -= buf


class Adadelta(Optimizer):
    """Adadelta as keras.optimizers.Adadelta.

    ag = rho*ag + (1-rho)*g^2;  delta = -sqrt(ad + eps)*g/sqrt(ag + eps)
    ad = rho*ad + (1-rho)*delta^2;  w += lr*delta
    """

    name = "adadelta"
    n_scratch = 2

    def __init__(
        self,
        params: Iterable[Tensor],
        learning_rate: float = 0.001,
        rho: float = 0.95,
        epsilon: float = 1e-7,
        weight_decay: float | None = None,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
        gradient_accumulation_steps: int | None = None,
        use_ema: bool = False,
        ema_momentum: float = 0.99,
    ) -> None:
        self.rho = float(rho)
        self.epsilon = float(epsilon)
        super().__init__(params, learning_rate, weight_decay, clipnorm, clipvalue,
                         global_clipnorm, gradient_accumulation_steps, use_ema, ema_momentum)

    def slot_specs(self) -> dict[str, float]:
        return {"accumulated_grad": 0.0, "accumulated_delta_var": 0.0}

    def _fused(self, i: int, lr: float, t: int) -> Fused:
        return Fused(
            "adadelta", "ag = ag * rho + g * g * omr; T d = sqrt(ad + eps) * g / sqrt(ag + eps); "
            "ad = ad * rho + d * d * omr; var -= d * lr;",
            {"rho": self.rho, "omr": 1 - self.rho, "eps": self.epsilon, "lr": lr},
            {"ag": self.slots["accumulated_grad"][i], "ad": self.slots["accumulated_delta_var"][i]})

    def _update(self, i: int, var: Any, g: Any, lr: float, t: int, s: list[Any]) -> None:
        xp = get_array_module(var)
        rho, eps = self.rho, self.epsilon
        ag = self.slots["accumulated_grad"][i]
        ad = self.slots["accumulated_delta_var"][i]
        ag *= rho
        ag += xp.multiply(xp.multiply(g, g, out=s[0]), 1 - rho, out=s[0])
        # s[0] = -delta = sqrt(ad + eps) * g / sqrt(ag + eps)
        xp.sqrt(xp.add(ad, eps, out=s[0]), out=s[0])
        s[0] *= g
        xp.sqrt(xp.add(ag, eps, out=s[1]), out=s[1])
        s[0] /= s[1]
        ad *= rho
        ad += xp.multiply(xp.multiply(s[0], s[0], out=s[1]), 1 - rho, out=s[1])
        s[0] *= lr
        var -= s[0]


class Adam(Optimizer):
    """Adam as keras.optimizers.Adam (epsilon outside the square root).

    alpha = lr*sqrt(1-b2^t)/(1-b1^t);  m += (g-m)*(1-b1);  v += (g^2-v)*(1-b2)
    amsgrad: v_hat = max(v_hat, v), used for v;  w -= alpha*m/(sqrt(v)+eps)
    """

    name = "adam"

    def __init__(
        self,
        params: Iterable[Tensor],
        learning_rate: float = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        amsgrad: bool = False,
        weight_decay: float | None = None,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
        gradient_accumulation_steps: int | None = None,
        use_ema: bool = False,
        ema_momentum: float = 0.99,
    ) -> None:
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)
        self.amsgrad = bool(amsgrad)
        super().__init__(params, learning_rate, weight_decay, clipnorm, clipvalue,
                         global_clipnorm, gradient_accumulation_steps, use_ema, ema_momentum)

    def slot_specs(self) -> dict[str, float]:
        specs = {"m": 0.0, "v": 0.0}
        if self.amsgrad:
            specs["v_hat"] = 0.0
        return specs

    def _fused(self, i: int, lr: float, t: int) -> Fused:
        b1, b2 = self.beta_1, self.beta_2
        alpha = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
        slots = {"m": self.slots["m"][i], "v": self.slots["v"][i]}
        body = "m += (g - m) * omb1; v += (g * g - v) * omb2; "
        if self.amsgrad:
            slots["vh"] = self.slots["v_hat"][i]
            body += "vh = _max(vh, v); var -= m / (sqrt(vh) + eps) * alpha;"
        else:
            body += "var -= m / (sqrt(v) + eps) * alpha;"
        return Fused("adam_amsgrad" if self.amsgrad else "adam", body,
                     {"omb1": 1 - b1, "omb2": 1 - b2, "eps": self.epsilon, "alpha": alpha}, slots)

    def _update(self, i: int, var: Any, g: Any, lr: float, t: int, s: list[Any]) -> None:
        xp = get_array_module(var)
        b1, b2, buf = self.beta_1, self.beta_2, s[0]
        alpha = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
        m, v = self.slots["m"][i], self.slots["v"][i]
        xp.subtract(g, m, out=buf)
        buf *= 1 - b1
        m += buf
        xp.multiply(g, g, out=buf)
        buf -= v
        buf *= 1 - b2
        v += buf
        if self.amsgrad:
            v_hat = self.slots["v_hat"][i]
            xp.maximum(v_hat, v, out=v_hat)
            v = v_hat
        xp.sqrt(v, out=buf)
        buf += self.epsilon
        xp.divide(m, buf, out=buf)
        buf *= alpha
        var -= buf


class AdamW(Adam):
    """Adam with decoupled weight decay (Keras AdamW: weight_decay defaults to 0.004)."""

    name = "adamw"

    def __init__(
        self,
        params: Iterable[Tensor],
        learning_rate: float = 0.001,
        weight_decay: float = 0.004,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        amsgrad: bool = False,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
        gradient_accumulation_steps: int | None = None,
        use_ema: bool = False,
        ema_momentum: float = 0.99,
    ) -> None:
        if weight_decay is None:
            raise ValueError("adamw needs a float weight_decay, got None")
        super().__init__(
            params, learning_rate, beta_1, beta_2, epsilon, amsgrad,
            weight_decay=weight_decay, clipnorm=clipnorm, clipvalue=clipvalue,
            global_clipnorm=global_clipnorm,
            gradient_accumulation_steps=gradient_accumulation_steps, use_ema=use_ema,
            ema_momentum=ema_momentum,
        )


class Adamax(Optimizer):
    """Adamax as keras.optimizers.Adamax.

    m += (g-m)*(1-b1);  u = max(b2*u, |g|);  w -= lr*m/((1-b1^t)*(u+eps))
    """

    name = "adamax"

    def __init__(
        self,
        params: Iterable[Tensor],
        learning_rate: float = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        weight_decay: float | None = None,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
        gradient_accumulation_steps: int | None = None,
        use_ema: bool = False,
        ema_momentum: float = 0.99,
    ) -> None:
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)
        super().__init__(params, learning_rate, weight_decay, clipnorm, clipvalue,
                         global_clipnorm, gradient_accumulation_steps, use_ema, ema_momentum)

    def slot_specs(self) -> dict[str, float]:
        return {"m": 0.0, "u": 0.0}

    def _fused(self, i: int, lr: float, t: int) -> Fused:
        b1 = self.beta_1
        return Fused("adamax", "m += (g - m) * omb1; u = _max(u * b2, fabs(g)); "
                     "var -= m / (u + eps) * step;",
                     {"omb1": 1 - b1, "b2": self.beta_2, "eps": self.epsilon,
                      "step": lr / (1 - b1**t)},
                     {"m": self.slots["m"][i], "u": self.slots["u"][i]})

    def _update(self, i: int, var: Any, g: Any, lr: float, t: int, s: list[Any]) -> None:
        xp = get_array_module(var)
        b1, buf = self.beta_1, s[0]
        m, u = self.slots["m"][i], self.slots["u"][i]
        xp.subtract(g, m, out=buf)
        buf *= 1 - b1
        m += buf
        u *= self.beta_2
        xp.maximum(u, xp.abs(g, out=buf), out=u)
        xp.add(u, self.epsilon, out=buf)
        xp.divide(m, buf, out=buf)
        buf *= lr / (1 - b1**t)
        var -= buf


class Nadam(Optimizer):
    """Nadam as keras.optimizers.Nadam (Dozat's momentum schedule u_t = b1*(1 - 0.5*0.96^t)).

    m, v as Adam;  m_hat = u_{t+1}*m/(1 - prod u_1..u_{t+1}) + (1-u_t)*g/(1 - prod u_1..u_t)
    v_hat = v/(1-b2^t);  w -= lr*m_hat/(sqrt(v_hat)+eps)
    """

    name = "nadam"
    n_scratch = 2

    def __init__(
        self,
        params: Iterable[Tensor],
        learning_rate: float = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        weight_decay: float | None = None,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
        gradient_accumulation_steps: int | None = None,
        use_ema: bool = False,
        ema_momentum: float = 0.99,
    ) -> None:
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)
        self.u_product = 1.0  # prod of u_1..u_t, advanced once per step before the updates
        super().__init__(params, learning_rate, weight_decay, clipnorm, clipvalue,
                         global_clipnorm, gradient_accumulation_steps, use_ema, ema_momentum)

    def slot_specs(self) -> dict[str, float]:
        return {"m": 0.0, "v": 0.0}

    def _u(self, t: int) -> float:
        return self.beta_1 * (1.0 - 0.5 * 0.96**t)

    def _begin_step(self, t: int) -> None:
        self.u_product *= self._u(t)

    def _extra_state(self) -> dict[str, float]:
        return {"u_product": self.u_product}

    def _load_extra_state(self, state: dict[str, float]) -> None:
        self.u_product = state["u_product"]

    def _fused(self, i: int, lr: float, t: int) -> Fused:
        b1, b2 = self.beta_1, self.beta_2
        u_t, u_t1 = self._u(t), self._u(t + 1)
        u_prod_t = self.u_product
        u_prod_t1 = u_prod_t * u_t1
        return Fused("nadam", "m += (g - m) * omb1; v += (g * g - v) * omb2; "
                     "var -= (m * c1 + g * c2) / (sqrt(v * c3) + eps) * lr;",
                     {"omb1": 1 - b1, "omb2": 1 - b2, "c1": u_t1 / (1 - u_prod_t1),
                      "c2": (1 - u_t) / (1 - u_prod_t), "c3": 1.0 / (1 - b2**t),
                      "eps": self.epsilon, "lr": lr},
                     {"m": self.slots["m"][i], "v": self.slots["v"][i]})

    def _update(self, i: int, var: Any, g: Any, lr: float, t: int, s: list[Any]) -> None:
        xp = get_array_module(var)
        b1, b2 = self.beta_1, self.beta_2
        u_t, u_t1 = self._u(t), self._u(t + 1)
        u_prod_t = self.u_product
        u_prod_t1 = u_prod_t * u_t1
        m, v = self.slots["m"][i], self.slots["v"][i]
        xp.subtract(g, m, out=s[0])
        s[0] *= 1 - b1
        m += s[0]
        xp.multiply(g, g, out=s[0])
        s[0] -= v
        s[0] *= 1 - b2
        v += s[0]
        # s[0] = m_hat
        xp.multiply(m, u_t1 / (1 - u_prod_t1), out=s[0])
        s[0] += xp.multiply(g, (1 - u_t) / (1 - u_prod_t), out=s[1])
        # s[1] = sqrt(v_hat) + eps
        xp.multiply(v, 1.0 / (1 - b2**t), out=s[1])
        xp.sqrt(s[1], out=s[1])
        s[1] += self.epsilon
        s[0] /= s[1]
        s[0] *= lr
        var -= s[0]


OPTIMIZERS: dict[str, type[Optimizer]] = {
    cls.name: cls for cls in (SGD, RMSprop, Adagrad, Adadelta, Adam, AdamW, Adamax, Nadam)
}


def optimizer_fields(name: str | None = None) -> dict[str, Any]:
    """The config fields (constructor args except params) of an optimizer, with their defaults.

    The constructors are the one home of Keras's defaults; the config schema reads them here.
    name None: the options every optimizer has, with the base class's defaults.
    """
    cls = Optimizer if name is None else _lookup(name)
    sig = inspect.signature(cls.__init__)
    return {k: p.default for k, p in sig.parameters.items()
            if k not in ("self", "params") and p.default is not inspect.Parameter.empty}


def build_optimizer(cfg: dict[str, Any], params: Iterable[Tensor]) -> Optimizer:
    """Build an optimizer from its config dict.

    Args:
        cfg: {"type": name (case-insensitive), plus Keras-named fields}; "lr" is accepted for
            learning_rate. Unknown fields or type raise ValueError.
        params: the Tensors to optimize.
    Returns:
        The optimizer.
    Example:
        >>> opt = build_optimizer({"type": "Adam", "learning_rate": 1e-3}, model.trainable_weights)
    """
    cfg = dict(cfg)
    if "type" not in cfg:
        raise ValueError(f"optimizer config needs a 'type', one of {sorted(OPTIMIZERS)}")
    name = str(cfg.pop("type")).lower()
    cls = _lookup(name)
    if "lr" in cfg:
        if cfg.get("learning_rate") is not None:
            raise ValueError("optimizer config gives both 'lr' and 'learning_rate'")
        cfg.pop("learning_rate", None)
        cfg["learning_rate"] = cfg.pop("lr")
    fields = optimizer_fields(name)
    unknown = sorted(set(cfg) - set(fields))
    if unknown:
        raise ValueError(
            f"unknown field(s) {unknown} for optimizer '{name}'; valid fields: {sorted(fields)}"
        )
    return cls(params, **cfg)


def _lookup(name: str) -> type[Optimizer]:
    cls = OPTIMIZERS.get(name.lower())
    if cls is None:
        raise ValueError(f"unknown optimizer '{name}'; valid names: {sorted(OPTIMIZERS)}")
    return cls

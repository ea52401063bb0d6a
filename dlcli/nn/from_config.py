"""Build a Sequential model from a validated Config, turning shape problems into config errors.

Shapes and sizes are checked first by a dry pass that runs each layer's own build() with weight
creation replaced by a note of the weight's shape, so a model too large for memory is refused
before anything is allocated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from dlcli.config.errors import ConfigError, Loc
from dlcli.config.schema import Config, ModelConfig
from dlcli.nn.layers import LAYERS, Layer, ShapeError
from dlcli.nn.layers.base import shapes_only
from dlcli.nn.sequential import Sequential

# float32 weights past this are refused (training needs about three times as much again for the
# gradients and the optimizer's state)
MAX_WEIGHT_BYTES = 8 * 2**30
# one batch's output of one layer past this is refused: training keeps every layer's output
MAX_ACTIVATION_BYTES = 8 * 2**30
_FLOAT32 = 4


def _gib(n_bytes: int) -> str:
    return f"{n_bytes / 2**30:,.1f} GiB"


@dataclass
class LayerPlan:
    """One layer as the dry pass saw it: its output shape and the shapes of its weights."""

    index: int
    layer_type: str
    output_shape: tuple[int, ...]
    weights: dict[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def params(self) -> int:
        return sum(math.prod(shape) for shape in self.weights.values())


@dataclass
class ModelPlan:
    """The layers' shapes and weight counts, and every problem found, without any weight made."""

    layers: list[LayerPlan] = field(default_factory=list)
    problems: list[tuple[Loc, str]] = field(default_factory=list)

    def count_params(self) -> int:
        """Parameters of the whole model, as Sequential.count_params counts them once built."""
        return sum(layer.params for layer in self.layers)


def make_layer(spec: Any) -> Layer:
    """The layer a config entry describes (a block's layers too), frozen when it says so."""
    kwargs = spec.layer_kwargs()
    if "layers" in kwargs:  # a Residual block: its layers first
        kwargs["layers"] = [make_layer(s) for s in kwargs["layers"]]
    layer = LAYERS[spec.layer_type](**kwargs)
    if not spec.trainable:  # a frozen block freezes every layer in it (Keras)
        layer.trainable = False
    return layer


def _make_layers(model: ModelConfig, problems: list[tuple[Loc, str]]) -> list[Layer]:
    layers = []
    for i, spec in enumerate(model.layers):
        try:
            layers.append(make_layer(spec))
        except ValueError as err:  # the schema should catch these; the layer has the last word
            problems.append((("model", "layers", i), f"{spec.layer_type}: {err}"))
    return layers


def _dry_build(layer: Layer, index: int, input_shape: tuple[int, ...]
               ) -> tuple[tuple[int, ...], dict[str, tuple[int, ...]]]:
    """(output shape, weight shapes) from layer.build, with no weight allocated (shapes_only:
    add_weight notes shapes instead, for the layers inside a block too).

    Raises:
        ShapeError: with layer_index set to `index`, as Sequential.build raises it.
    """
    with shapes_only() as notes:
        try:
            output = layer.build(input_shape, None)  # type: ignore[arg-type]  # no rng: no draws
        except ShapeError as err:
            raise err.at(index, layer) from None
    own = f"{layer.name or type(layer).__name__}/"
    weights = {k.removeprefix(own): v for k, v in notes.items()}
    return tuple(int(n) for n in output), weights


def plan_model(model: ModelConfig, batch_size: int | None = None) -> ModelPlan:
    """Every layer's output and weight shapes, checked against the memory limits; no weights.

    Args:
        model: a validated model section.
        batch_size: the training batch (data.batch_size), for the size of each layer's output;
            None checks one sample.

    Returns:
        A ModelPlan; its problems are (key path, message) pairs, empty when the model is fine.
    """
    plan = ModelPlan()
    layers = _make_layers(model, plan.problems)
    if plan.problems:
        return plan
    batch = batch_size or 1
    shape = tuple(model.input_shape)
    if math.prod(shape) * batch * _FLOAT32 > MAX_ACTIVATION_BYTES:
        plan.problems.append((("model", "input_shape"), (
            f"one batch of {batch} inputs of shape {shape} takes "
            f"{_gib(math.prod(shape) * batch * _FLOAT32)} as float32, over the "
            f"{_gib(MAX_ACTIVATION_BYTES)} limit; lower data.batch_size or the input size")))
        return plan
    total = 0
    for i, (layer, spec) in enumerate(zip(layers, model.layers, strict=True)):
        loc: Loc = ("model", "layers", i)
        kind = type(layer).__name__
        try:
            shape, weights = _dry_build(layer, i, shape)
        except ShapeError as err:  # worded as Sequential.build words it, at the layer's key
            plan.problems.append((("model", "layers", err.layer_index), str(err)))
            return plan
        step = LayerPlan(i, spec.layer_type, shape, weights)
        plan.layers.append(step)
        total += step.params
        if total * _FLOAT32 > MAX_WEIGHT_BYTES:
            listed = ", ".join(f"{name} {dims}" for name, dims in weights.items())
            plan.problems.append((loc, (
                f"{kind}: its weights ({listed}) hold {step.params:,} parameters, which take "
                f"the model's float32 weights to {_gib(total * _FLOAT32)}, over the "
                f"{_gib(MAX_WEIGHT_BYTES)} limit; use fewer units or filters, or pool or "
                "stride before it")))
            return plan
        out_bytes = math.prod(shape) * batch * _FLOAT32
        if out_bytes > MAX_ACTIVATION_BYTES:
            plan.problems.append((loc, (
                f"{kind}: its output {shape} for a batch of {batch} takes {_gib(out_bytes)} as "
                f"float32, over the {_gib(MAX_ACTIVATION_BYTES)} limit; lower data.batch_size "
                "or shrink the output")))
            return plan
    return plan


def model_issues(model: ModelConfig, batch_size: int | None = None) -> list[tuple[Loc, str]]:
    """The shape and size problems of a model section (a ModelCheck for dlcli.config.load)."""
    return plan_model(model, batch_size).problems


def build_model(cfg: Config) -> Sequential:
    """The config's model, built (weights drawn from cfg.seed) and shape-checked.

    Shapes and sizes are checked before any weight is allocated (see plan_model).

    Args:
        cfg: a validated Config (see dlcli.config.load_config).

    Returns:
        A built Sequential named cfg.name.

    Raises:
        ConfigError: a layer that cannot take its input shape, a model too large for memory (or
            other arguments a layer refuses), pointing at model.layers[i] and its line in the
            YAML file.

    Example:
        model = build_model(load_config("configs/fashion_mnist_cnn.yaml"))
        model.count_params()
    """
    source = cfg.source
    problems = model_issues(cfg.model, cfg.data.batch_size)
    if problems:
        raise ConfigError([source.issue(loc, msg) for loc, msg in problems], source.filename)
    layers = [make_layer(spec) for spec in cfg.model.layers]
    model = Sequential(layers, input_shape=cfg.model.input_shape, name=cfg.name)
    try:
        model.build(cfg.seed)
    except MemoryError:  # within the limits, yet more than this machine has
        raise ConfigError(
            [source.issue(("model",), f"the model is too large to allocate on this machine "
                          f"({_gib(plan_model(cfg.model).count_params() * _FLOAT32)} of "
                          "float32 weights)")],
            source.filename,
        ) from None
    return model

"""The experiment config: pydantic models that are the single source of truth for the YAML file.

Every model forbids unknown keys so a typo is an error, not a silently ignored setting. Layers,
optimizers and schedules are discriminated unions on `type`; defaults are Keras's.

Example:
    cfg = Config.model_validate(yaml.safe_load(text))
    cfg.model.layers[0].type        # "Conv2D"
    cfg.optimizer.learning_rate     # 0.001
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Union, get_args

import yaml
from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    PlainValidator,
    PrivateAttr,
    StrictBool,
    Tag,
    model_validator,
)
from pydantic_core import PydanticCustomError

from dlcli.config.errors import Loc, SourceMap, closest

# -- scalar types -------------------------------------------------------------------------------
# Strict ints and bools: YAML already types its scalars, so "units: '128'" or "units: yes" is a
# mistake worth reporting rather than coercing. Strict floats still accept ints (lr: 1).
StrictInt = Annotated[int, Field(strict=True)]
PositiveInt = Annotated[int, Field(strict=True, ge=1)]
NonNegativeInt = Annotated[int, Field(strict=True, ge=0)]
StrictFloat = Annotated[float, Field(strict=True)]
PositiveFloat = Annotated[float, Field(strict=True, gt=0)]
NonNegativeFloat = Annotated[float, Field(strict=True, ge=0)]
Fraction = Annotated[float, Field(strict=True, ge=0, lt=1)]  # [0, 1)
LayerName = Annotated[str, Field(min_length=1, pattern=r"^[^/]+$")]


def _int_or_pair(value: Any) -> int | tuple[int, int]:
    def positive(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 1

    if positive(value):
        return value
    if isinstance(value, list | tuple) and len(value) == 2 and all(positive(v) for v in value):
        return (value[0], value[1])
    raise PydanticCustomError(
        "int_or_pair", "expected a positive int or a pair [height, width] of positive ints"
    )


# One validator instead of `int | tuple[int, int]` so a bad value gives one clear error, not one
# per union member; the JSON Schema still shows both forms.
IntOrPair = Annotated[
    Any, PlainValidator(_int_or_pair, json_schema_input_type=int | tuple[int, int])
]

ActivationName = Literal[
    "linear", "relu", "leaky_relu", "elu", "selu", "gelu", "sigmoid", "tanh", "softplus",
    "softmax", "log_softmax",
]  # fmt: skip
InitializerName = Literal[
    "glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform", "lecun_normal",
    "orthogonal", "random_normal", "random_uniform", "zeros", "ones",
]  # fmt: skip
ACTIVATIONS: tuple[str, ...] = get_args(ActivationName)
INITIALIZERS: tuple[str, ...] = get_args(InitializerName)
Padding = Literal["valid", "same"]


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class RegularizerConfig(StrictModel):
    """Weight penalty l1 * sum|w| + l2 * sum w^2: {l1: x}, {l2: x} or both."""

    l1: NonNegativeFloat = Field(0.0, description="L1 factor")
    l2: NonNegativeFloat = Field(0.0, description="L2 factor")

    @model_validator(mode="before")
    @classmethod
    def _not_empty(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data:
            raise ValueError("a regularizer needs l1 and/or l2, e.g. {l2: 1.0e-4}")
        return data


# -- layers -------------------------------------------------------------------------------------
class LayerConfigBase(StrictModel):
    """Fields shared by every layer; subclasses set `layer_type`, the canonical type name."""

    layer_type: ClassVar[str]
    name: LayerName | None = Field(
        None, description="Layer name; unique, Keras-style default (dense, dense_1, ...)"
    )

    def layer_kwargs(self) -> dict[str, Any]:
        """The constructor arguments of dlcli.nn.layers.LAYERS[layer_type]."""
        kwargs = {k: getattr(self, k) for k in type(self).model_fields if k != "type"}
        for k, v in kwargs.items():
            if isinstance(v, RegularizerConfig):
                kwargs[k] = v.model_dump()
        return kwargs


class _WeightedLayer(LayerConfigBase):
    activation: ActivationName | None = Field(None, description="Activation applied to the output")
    use_bias: StrictBool = True
    kernel_initializer: InitializerName = "glorot_uniform"
    bias_initializer: InitializerName = "zeros"
    kernel_regularizer: RegularizerConfig | None = None
    bias_regularizer: RegularizerConfig | None = None


class DenseConfig(_WeightedLayer):
    """Fully connected layer: units outputs."""

    layer_type: ClassVar[str] = "Dense"
    type: Literal["Dense"]
    units: PositiveInt = Field(description="Number of outputs")


class Conv2DConfig(_WeightedLayer):
    """2-D convolution over (height, width, channels) inputs."""

    layer_type: ClassVar[str] = "Conv2D"
    type: Literal["Conv2D"]
    filters: PositiveInt = Field(description="Number of output channels")
    kernel_size: IntOrPair = Field(description="Kernel height and width (an int or a pair)")
    strides: IntOrPair = Field(1, description="Step between windows (an int or a pair)")
    padding: Padding = Field("valid", description="'valid' (no padding) or 'same' (TF rule)")


class _PoolConfig(LayerConfigBase):
    pool_size: IntOrPair = Field(2, description="Window height and width (an int or a pair)")
    strides: IntOrPair | None = Field(None, description="Step between windows (default: pool_size)")
    padding: Padding = "valid"


class MaxPool2DConfig(_PoolConfig):
    """Max over each window (Keras MaxPooling2D)."""

    layer_type: ClassVar[str] = "MaxPool2D"
    type: Literal["MaxPool2D", "MaxPooling2D"]


class AvgPool2DConfig(_PoolConfig):
    """Mean over each window (Keras AveragePooling2D)."""

    layer_type: ClassVar[str] = "AvgPool2D"
    type: Literal["AvgPool2D", "AveragePooling2D"]


class GlobalAveragePooling2DConfig(LayerConfigBase):
    """Mean over height and width: (H, W, C) -> (C,)."""

    layer_type: ClassVar[str] = "GlobalAveragePooling2D"
    type: Literal["GlobalAveragePooling2D", "GlobalAvgPool2D"]


class DropoutConfig(LayerConfigBase):
    """Zero a fraction `rate` of the inputs while training."""

    layer_type: ClassVar[str] = "Dropout"
    type: Literal["Dropout"]
    rate: Fraction = Field(description="Fraction of inputs to drop, in [0, 1)")
    seed: NonNegativeInt | None = Field(None, description="Own seed (default: the model's stream)")


class BatchNormConfig(LayerConfigBase):
    """Batch normalization over the last axis (Keras BatchNormalization)."""

    layer_type: ClassVar[str] = "BatchNorm"
    type: Literal["BatchNorm", "BatchNormalization"]
    momentum: Annotated[float, Field(strict=True, ge=0, le=1)] = 0.99
    epsilon: PositiveFloat = 1e-3
    center: StrictBool = True
    scale: StrictBool = True
    beta_initializer: InitializerName = "zeros"
    gamma_initializer: InitializerName = "ones"
    moving_mean_initializer: InitializerName = "zeros"
    moving_variance_initializer: InitializerName = "ones"


class FlattenConfig(LayerConfigBase):
    """Flatten everything but the batch axis."""

    layer_type: ClassVar[str] = "Flatten"
    type: Literal["Flatten"]


class ActivationConfig(LayerConfigBase):
    """Apply an activation function."""

    layer_type: ClassVar[str] = "Activation"
    type: Literal["Activation"]
    activation: ActivationName


_LAYER_MODELS = (
    DenseConfig, Conv2DConfig, MaxPool2DConfig, AvgPool2DConfig, GlobalAveragePooling2DConfig,
    DropoutConfig, BatchNormConfig, FlattenConfig, ActivationConfig,
)  # fmt: skip
LayerConfig = Annotated[Union[_LAYER_MODELS], Field(discriminator="type")]  # noqa: UP007
# every accepted `type` (aliases included) -> its config model
LAYER_CONFIGS: dict[str, type[LayerConfigBase]] = {
    name: m for m in _LAYER_MODELS for name in get_args(m.model_fields["type"].annotation)
}


# -- data ---------------------------------------------------------------------------------------
DatasetName = Literal[
    "fashion_mnist", "mnist", "cifar10", "spirals", "moons", "circles", "xor", "blobs", "regression"
]
BUILTIN_DATASETS = ("fashion_mnist", "mnist", "cifar10")
SYNTHETIC_DATASETS = ("spirals", "moons", "circles", "xor", "blobs", "regression")


class FileSource(StrictModel):
    """A data file (.npz, .npy, .csv or IDX) with its options."""

    path: str = Field(description="Path of the file")
    labels: str | None = Field(None, description="Labels file for .npy / IDX inputs")
    x_key: str = Field("x", description="Array name of the inputs in an .npz")
    y_key: str = Field("y", description="Array name of the targets in an .npz")
    target: str | StrictInt = Field(-1, description="CSV target column: name or index")
    header: StrictBool | None = Field(None, description="CSV has a header row (null: detect)")


def _path_or_mapping(value: Any) -> str:
    return "<mapping>" if isinstance(value, dict | BaseModel) else "<path>"


# a plain string is a path; a mapping gives the options
FileSpec = Annotated[
    Union[Annotated[str, Tag("<path>")], Annotated[FileSource, Tag("<mapping>")]],  # noqa: UP007
    Discriminator(_path_or_mapping),
]


class DataConfig(StrictModel):
    """Where the data comes from and how it is split, batched and normalized."""

    dataset: DatasetName | None = Field(None, description="A builtin or synthetic dataset")
    train: FileSpec | None = Field(None, description="Training data file (instead of dataset)")
    validation: FileSpec | None = Field(None, description="Validation data file")
    test: FileSpec | None = Field(None, description="Test data file")
    validation_split: Fraction = Field(0.0, description="Fraction of train held out for validation")
    test_split: Fraction = Field(0.0, description="Fraction of train held out for testing")
    batch_size: PositiveInt = 32
    shuffle: StrictBool = True
    normalize: Literal["scale", "standardize", "none"] = Field(
        "none", description="scale: x/255 (or to [0,1]); standardize: zero mean, unit variance"
    )
    n_samples: PositiveInt = Field(1000, description="Synthetic datasets: number of samples")
    noise: NonNegativeFloat = Field(0.1, description="Synthetic datasets: noise level")
    n_classes: Annotated[int, Field(strict=True, ge=2)] | None = Field(
        None, description="Synthetic datasets: number of classes"
    )
    n_features: PositiveInt | None = Field(None, description="Synthetic datasets: input features")

    @model_validator(mode="after")
    def _sources(self) -> DataConfig:
        if (self.dataset is None) == (self.train is None):
            raise ValueError("give exactly one of data.dataset or data.train")
        if self.validation is not None and self.validation_split > 0:
            raise ValueError("give data.validation or data.validation_split, not both")
        if self.validation_split + self.test_split >= 1:
            raise ValueError("data.validation_split + data.test_split must be below 1")
        return self

    @property
    def has_validation(self) -> bool:
        """Whether training will see validation data (so val_* names are logged)."""
        return self.validation is not None or self.validation_split > 0


# -- model --------------------------------------------------------------------------------------
class ModelConfig(StrictModel):
    """A Sequential model: the per-sample input shape and the layers in order."""

    input_shape: Annotated[list[PositiveInt], Field(min_length=1)] = Field(
        description="Shape of one sample, channels last, without the batch axis, e.g. [28, 28, 1]"
    )
    layers: Annotated[list[LayerConfig], Field(min_length=1)]


# -- loss and metrics ---------------------------------------------------------------------------
LossName = Literal[
    "categorical_crossentropy", "sparse_categorical_crossentropy", "binary_crossentropy",
    "mean_squared_error", "mse", "mean_absolute_error", "mae", "huber",
]  # fmt: skip
LOSS_ALIASES = {"mse": "mean_squared_error", "mae": "mean_absolute_error"}


def _canonical_loss(name: str) -> str:
    return LOSS_ALIASES.get(name, name)


CanonicalLossName = Annotated[LossName, AfterValidator(_canonical_loss)]


class LossConfig(StrictModel):
    """A loss with options: {type: huber, delta: 2.0} or {type: ..., from_logits: true}."""

    type: CanonicalLossName
    delta: PositiveFloat | None = Field(None, description="huber only (default 1.0)")
    from_logits: StrictBool = Field(
        False, description="The model outputs logits, not probabilities"
    )

    @model_validator(mode="after")
    def _delta(self) -> LossConfig:
        if self.type == "huber":
            if self.delta is None:
                self.delta = 1.0
        elif self.delta is not None:
            raise ValueError(f"delta is an option of the huber loss, not of {self.type}")
        return self


LossSpec = Annotated[
    Union[Annotated[CanonicalLossName, Tag("<name>")], Annotated[LossConfig, Tag("<mapping>")]],  # noqa: UP007
    Discriminator(lambda v: "<mapping>" if isinstance(v, dict | BaseModel) else "<name>"),
]

MetricName = Literal[
    "accuracy", "top_k_accuracy", "precision", "recall", "f1", "mse", "mae", "rmse", "r2"
]


class TopKAccuracyConfig(StrictModel):
    """Top-k accuracy with its k: {type: top_k_accuracy, k: 3}."""

    type: Literal["top_k_accuracy"]
    k: PositiveInt = 5


# Validated as TopKAccuracyConfig, then kept as the plain dict {"type": ..., "k": ...}: the
# contract's `list[str | {type, k}]`, which the metrics code reads directly.
_TopKDict = Annotated[
    TopKAccuracyConfig,
    AfterValidator(lambda m: m.model_dump()),
    PlainSerializer(lambda v: dict(v)),
]
MetricSpec = Annotated[
    Union[Annotated[MetricName, Tag("<name>")], Annotated[_TopKDict, Tag("<mapping>")]],  # noqa: UP007
    Discriminator(lambda v: "<mapping>" if isinstance(v, dict | BaseModel) else "<name>"),
]


# -- optimizers ---------------------------------------------------------------------------------
def _learning_rate(default: float) -> Any:
    return Field(
        default, gt=0, strict=True, validation_alias=AliasChoices("learning_rate", "lr"),
        description="Step size (`lr` is accepted too)",
    )


class OptimizerConfigBase(StrictModel):
    """Fields every optimizer has."""

    weight_decay: NonNegativeFloat | None = Field(None, description="Decoupled weight decay")
    clipnorm: PositiveFloat | None = Field(None, description="Clip each gradient to this norm")
    clipvalue: PositiveFloat | None = Field(None, description="Clip gradient values to +-this")

    @model_validator(mode="before")
    @classmethod
    def _one_learning_rate(cls, data: Any) -> Any:
        if isinstance(data, dict) and "lr" in data and "learning_rate" in data:
            raise ValueError("give learning_rate or lr, not both")
        return data


Beta = Annotated[float, Field(strict=True, ge=0, lt=1)]


class SGDConfig(OptimizerConfigBase):
    type: Literal["sgd"] = "sgd"
    learning_rate: float = _learning_rate(0.01)
    momentum: Beta = 0.0
    nesterov: StrictBool = False


class RMSpropConfig(OptimizerConfigBase):
    type: Literal["rmsprop"] = "rmsprop"
    learning_rate: float = _learning_rate(0.001)
    rho: Beta = 0.9
    momentum: Beta = 0.0
    epsilon: PositiveFloat = 1e-7
    centered: StrictBool = False


class AdagradConfig(OptimizerConfigBase):
    type: Literal["adagrad"] = "adagrad"
    learning_rate: float = _learning_rate(0.001)
    initial_accumulator_value: NonNegativeFloat = 0.1
    epsilon: PositiveFloat = 1e-7


class AdadeltaConfig(OptimizerConfigBase):
    type: Literal["adadelta"] = "adadelta"
    learning_rate: float = _learning_rate(0.001)
    rho: Beta = 0.95
    epsilon: PositiveFloat = 1e-7


class AdamConfig(OptimizerConfigBase):
    type: Literal["adam"] = "adam"
    learning_rate: float = _learning_rate(0.001)
    beta_1: Beta = 0.9
    beta_2: Beta = 0.999
    epsilon: PositiveFloat = 1e-7
    amsgrad: StrictBool = False


class AdamWConfig(AdamConfig):
    type: Literal["adamw"] = "adamw"
    weight_decay: NonNegativeFloat | None = Field(0.004, description="Decoupled weight decay")


class AdamaxConfig(OptimizerConfigBase):
    type: Literal["adamax"] = "adamax"
    learning_rate: float = _learning_rate(0.001)
    beta_1: Beta = 0.9
    beta_2: Beta = 0.999
    epsilon: PositiveFloat = 1e-7


class NadamConfig(AdamaxConfig):
    type: Literal["nadam"] = "nadam"


_OPTIMIZER_MODELS = (
    SGDConfig, RMSpropConfig, AdagradConfig, AdadeltaConfig, AdamConfig, AdamWConfig,
    AdamaxConfig, NadamConfig,
)  # fmt: skip
OPTIMIZER_CONFIGS: dict[str, type[OptimizerConfigBase]] = {
    get_args(m.model_fields["type"].annotation)[0]: m for m in _OPTIMIZER_MODELS
}


def _type_shorthand(lower: bool, default: str | None = None) -> Any:
    """`adam` means {type: adam}; with lower=True the type is case-insensitive (Adam, ADAM).

    With a default, a mapping without `type` gets it ({learning_rate: 0.01} is adam's).
    """

    def convert(value: Any) -> Any:
        if isinstance(value, str):
            value = {"type": value}
        if default is not None and isinstance(value, dict) and "type" not in value:
            value = {"type": default, **value}
        if lower and isinstance(value, dict) and isinstance(value.get("type"), str):
            value = {**value, "type": value["type"].lower()}
        return value

    return BeforeValidator(convert)


OptimizerConfig = Annotated[
    Union[_OPTIMIZER_MODELS],  # noqa: UP007
    Field(discriminator="type"),
    _type_shorthand(lower=True, default="adam"),
]


# -- training -----------------------------------------------------------------------------------
Mode = Literal["auto", "min", "max"]


class ConstantSchedule(StrictModel):
    """Keep the optimizer's learning rate."""

    type: Literal["constant"] = "constant"


class StepSchedule(StrictModel):
    """Multiply the rate by gamma every step_size epochs."""

    type: Literal["step"] = "step"
    step_size: PositiveInt = Field(description="Epochs between decays")
    gamma: PositiveFloat = 0.1


class ExponentialSchedule(StrictModel):
    """lr * decay_rate ** (epoch / decay_steps)."""

    type: Literal["exponential"] = "exponential"
    decay_rate: PositiveFloat
    decay_steps: PositiveInt = Field(1, description="In epochs")
    staircase: StrictBool = False


class CosineSchedule(StrictModel):
    """Cosine decay to alpha * lr over decay_epochs, after an optional linear warmup."""

    type: Literal["cosine"] = "cosine"
    decay_epochs: PositiveInt | None = Field(None, description="Default: training.epochs")
    alpha: Annotated[float, Field(strict=True, ge=0, le=1)] = 0.0
    warmup_epochs: NonNegativeInt = 0


class ReduceOnPlateauSchedule(StrictModel):
    """Multiply the rate by factor when `monitor` stops improving for `patience` epochs."""

    type: Literal["reduce_on_plateau"] = "reduce_on_plateau"
    monitor: str = "val_loss"
    factor: Annotated[float, Field(strict=True, gt=0, lt=1)] = 0.1
    patience: NonNegativeInt = 10
    min_delta: NonNegativeFloat = 1e-4
    cooldown: NonNegativeInt = 0
    min_lr: NonNegativeFloat = 0.0
    mode: Mode = "auto"


_SCHEDULE_MODELS = (
    ConstantSchedule, StepSchedule, ExponentialSchedule, CosineSchedule, ReduceOnPlateauSchedule
)
ScheduleConfig = Annotated[
    Union[_SCHEDULE_MODELS],  # noqa: UP007
    Field(discriminator="type"),
    _type_shorthand(lower=False),
]


class EarlyStoppingConfig(StrictModel):
    """Stop when `monitor` has not improved by min_delta for `patience` epochs."""

    monitor: str = Field("val_loss", description="A logged name: loss, a metric, or val_*")
    mode: Mode = Field("auto", description="auto: min for losses/errors, max for accuracy-like")
    patience: NonNegativeInt = 0
    min_delta: NonNegativeFloat = 0.0
    start_from_epoch: NonNegativeInt = 0
    restore_best_weights: StrictBool = False


class TrainingConfig(StrictModel):
    """How long to train and how the learning rate and stopping behave."""

    epochs: PositiveInt = 10
    lr_schedule: ScheduleConfig = Field(default_factory=ConstantSchedule)
    early_stopping: EarlyStoppingConfig | None = None


# -- the whole file -----------------------------------------------------------------------------
class Config(StrictModel):
    """One experiment: data, model, loss, metrics, optimizer and training."""

    name: str = Field("experiment", description="Experiment name (used for run directories)")
    seed: NonNegativeInt = Field(42, description="Seed of weights, shuffling and dropout")
    device: Literal["cpu", "gpu"] = "cpu"
    data: DataConfig
    model: ModelConfig
    loss: LossSpec = Field("categorical_crossentropy", description="A loss name or {type, ...}")
    metrics: list[MetricSpec] = Field(
        default_factory=list, description="Metric names, or {type: top_k_accuracy, k: 3}"
    )
    optimizer: OptimizerConfig = Field(default_factory=AdamConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)

    _source: SourceMap | None = PrivateAttr(default=None)

    # -- derived facts --------------------------------------------------------------------------
    @property
    def source(self) -> SourceMap:
        """Where each key came from (file positions, --set overrides); empty if not loaded."""
        return self._source if self._source is not None else SourceMap()

    @property
    def loss_name(self) -> str:
        """The canonical loss name (mse -> mean_squared_error)."""
        return self.loss if isinstance(self.loss, str) else self.loss.type

    @property
    def metric_names(self) -> list[str]:
        """The names metrics are logged under, in order."""
        return [m if isinstance(m, str) else m["type"] for m in self.metrics]

    def monitor_names(self) -> list[str]:
        """Names early stopping and reduce_on_plateau may monitor: what the trainer logs."""
        names = ["loss", *self.metric_names]
        if self.data.has_validation:
            names += [f"val_{n}" for n in names]
        return names

    def cross_check(self) -> list[tuple[Loc, str, str | None]]:
        """Problems that need several sections at once, as (key path, message, suggestion)."""
        problems: list[tuple[Loc, str, str | None]] = []
        names = self.monitor_names()
        watchers: list[tuple[Loc, str, str]] = []
        if self.training.early_stopping is not None:
            es = self.training.early_stopping
            watchers.append((("training", "early_stopping"), es.monitor, es.mode))
        if isinstance(self.training.lr_schedule, ReduceOnPlateauSchedule):
            sched = self.training.lr_schedule
            watchers.append((("training", "lr_schedule"), sched.monitor, sched.mode))
        for loc, monitor, mode in watchers:
            if monitor not in names:
                why = ""
                if monitor.startswith("val_") and not self.data.has_validation:
                    why = (" (val_* names need validation data: set data.validation_split > 0 "
                           "or data.validation)")
                problems.append((
                    (*loc, "monitor"),
                    f"{monitor!r} is not a logged name{why}; valid: {', '.join(names)}",
                    closest(monitor, names),
                ))
            elif mode == "auto" and infer_mode(monitor) is None:
                problems.append(((*loc, "mode"), f"cannot infer whether {monitor!r} should go "
                                 "down or up; set mode: min or mode: max", None))

        seen_metrics: set[str] = set()
        for i, name in enumerate(self.metric_names):
            if name in seen_metrics:
                problems.append((("metrics", i), f"metric {name!r} is listed twice", None))
            seen_metrics.add(name)

        seen_layers: dict[str, int] = {}
        for i, layer in enumerate(self.model.layers):
            if layer.name is None:
                continue
            if layer.name in seen_layers:
                problems.append(((("model", "layers", i, "name")), f"layer name {layer.name!r} "
                                 f"is already used by model.layers[{seen_layers[layer.name]}]",
                                 None))
            seen_layers.setdefault(layer.name, i)

        last = self.model.layers[-1]
        if (isinstance(self.loss, LossConfig) and self.loss.from_logits
                and getattr(last, "activation", None) in ("softmax", "sigmoid")):
            problems.append((("loss", "from_logits"), "from_logits is true but the last layer "
                             f"applies {last.activation}; drop one of them", None))
        return problems


_MIN_SUFFIXES = ("mse", "mae", "rmse")
_MAX_NAMES = ("accuracy", "top_k_accuracy", "precision", "recall", "f1", "r2")


def infer_mode(name: str) -> Literal["min", "max"] | None:
    """Whether a monitored value should go down ("min") or up ("max"); None when unknown.

    Example:
        infer_mode("val_loss") == "min"; infer_mode("val_accuracy") == "max"
    """
    base = name.removeprefix("val_")
    if "loss" in base or base.endswith(_MIN_SUFFIXES):
        return "min"
    if base.endswith(_MAX_NAMES):
        return "max"
    return None


def config_json_schema() -> dict[str, Any]:
    """The JSON Schema of a config file, for editors (yaml-language-server) and `dlcli schema`."""
    schema = Config.model_json_schema()
    # pydantic shows only the first alias; editors should accept `lr` as the loader does
    for definition in schema.get("$defs", {}).values():
        props = definition.get("properties", {})
        if "learning_rate" in props and "lr" not in props:
            props["lr"] = {**props["learning_rate"], "title": "Lr",
                           "description": "Same as learning_rate"}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "dlcli experiment config",
        "description": "One dlcli experiment: data, model, loss, metrics, optimizer, training.",
        **{k: v for k, v in schema.items() if k not in ("title", "description")},
    }


def _type_first(value: Any) -> Any:
    if isinstance(value, dict):
        ordered = {"type": value["type"]} if "type" in value else {}
        ordered.update({k: _type_first(v) for k, v in value.items() if k != "type"})
        return ordered
    if isinstance(value, list):
        return [_type_first(v) for v in value]
    return value


def resolved_yaml(cfg: Config) -> str:
    """The fully resolved config (every default filled in) as YAML; loading it gives cfg back."""
    data = _type_first(cfg.model_dump(mode="json"))
    for layer, spec in zip(data["model"]["layers"], cfg.model.layers, strict=True):
        layer["type"] = spec.layer_type if isinstance(spec, LayerConfigBase) else layer["type"]
    return yaml.dump(data, Dumper=_ResolvedDumper, sort_keys=False, width=100)


class _ResolvedDumper(yaml.SafeDumper):
    """Block style, except lists of scalars ([28, 28, 1]) stay on one line."""

    def represent_list(self, data: Any) -> Any:
        flow = all(not isinstance(v, dict | list) for v in data)
        return self.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_ResolvedDumper.add_representer(list, _ResolvedDumper.represent_list)

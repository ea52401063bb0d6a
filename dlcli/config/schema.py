"""The experiment config: pydantic models that are the single source of truth for the YAML file.

Every model forbids unknown keys so a typo is an error, not a silently ignored setting. Layers,
optimizers and schedules are discriminated unions on `type`; defaults are Keras's (an optimizer's
are read from its constructor). The rules the trainer applies too (an int or a pair, loss aliases,
which way a metric improves) are imported from where they are implemented, not written again.

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
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from dlcli.config.errors import Loc, SourceMap, closest
from dlcli.core.ops.conv import pair
from dlcli.train.losses import canonical_loss_name
from dlcli.train.monitor import infer_mode
from dlcli.train.optimizers import OPTIMIZERS, optimizer_fields

# -- scalar types -------------------------------------------------------------------------------
# Strict ints and bools: YAML already types its scalars, so "units: '128'" or "units: yes" is a
# mistake worth reporting rather than coercing. Strict floats still accept ints (lr: 1).
# Upper bounds where Keras has none but the machine does: a size (units, filters, an axis, a
# batch, a count of epochs) fits the signed 32-bit int that BLAS and array code index with, and
# a seed fits int64. Whether the weights fit in memory is checked from the shapes (nn.from_config).
# Floats are finite: inf or nan in a setting is always a mistake, and it would show up only as a
# nan loss many epochs later.
MAX_SIZE = 2**31 - 1
MAX_SEED = 2**63 - 1
StrictInt = Annotated[int, Field(strict=True, ge=-MAX_SIZE, le=MAX_SIZE)]
PositiveInt = Annotated[int, Field(strict=True, ge=1, le=MAX_SIZE)]
NonNegativeInt = Annotated[int, Field(strict=True, ge=0, le=MAX_SIZE)]
Seed = Annotated[int, Field(strict=True, ge=0, le=MAX_SEED)]
StrictFloat = Annotated[float, Field(strict=True, allow_inf_nan=False)]
PositiveFloat = Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(strict=True, ge=0, lt=1)]  # [0, 1)
LayerName = Annotated[str, Field(min_length=1, pattern=r"^[^/]+$")]
# the run directory is runs/<name>-<timestamp>: no separators, no leading dot, a sane length
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
NAME_RULE = "a letter or digit, then at most 99 letters, digits, '.', '_' or '-'"
ConfigName = Annotated[str, Field(pattern=NAME_PATTERN)]


def _int_or_pair(value: Any) -> int | tuple[int, int]:
    """The value as given (an int stays an int in the resolved config), checked by the ops' rule."""
    try:
        size = pair(value, "size")
    except ValueError:
        size = None
    if size is None or max(size) > MAX_SIZE:
        raise PydanticCustomError(
            "int_or_pair", "expected a positive int or a pair [height, width] of positive ints "
            f"(at most {MAX_SIZE})"
        )
    return value if isinstance(value, int) else size


# One validator instead of `int | tuple[int, int]` so a bad value gives one clear error, not one
# per union member; the JSON Schema still shows both forms.
_Size = Annotated[int, Field(ge=1, le=MAX_SIZE)]
IntOrPair = Annotated[
    Any, PlainValidator(_int_or_pair, json_schema_input_type=_Size | tuple[_Size, _Size])
]

ActivationName = Literal[
    "linear", "relu", "leaky_relu", "elu", "selu", "gelu", "sigmoid", "tanh", "softplus",
    "softmax", "log_softmax", "silu", "swish", "mish", "relu6", "hard_sigmoid", "hard_silu",
    "hard_swish", "softsign", "exponential", "log_sigmoid", "celu",
]  # fmt: skip
InitializerName = Literal[
    "glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform", "lecun_normal",
    "orthogonal", "random_normal", "random_uniform", "truncated_normal", "variance_scaling",
    "constant", "identity", "zeros", "ones",
]  # fmt: skip
ACTIVATIONS: tuple[str, ...] = get_args(ActivationName)
INITIALIZERS: tuple[str, ...] = get_args(InitializerName)
Padding = Literal["valid", "same"]


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


def _name_or_mapping(value: Any) -> str:
    return "<mapping>" if isinstance(value, dict | BaseModel) else "<name>"


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


# Keras's string shorthands, each with factor 0.01 (see dlcli.nn.regularizers.SHORTHANDS)
RegularizerName = Literal["l1", "l2", "l1_l2"]


def _known_regularizer(value: Any) -> Any:
    """A bad shorthand is named as a regularizer (with the mapping form), not as a `value`."""
    names = get_args(RegularizerName)
    if isinstance(value, str) and value not in names:
        guess = closest(value, names)
        hint = f"; did you mean {guess!r}?" if guess else ""
        raise ValueError(f"unknown regularizer {value!r}; expected one of: {', '.join(names)} "
                         f"(factor 0.01) or a mapping {{l1: x, l2: y}}{hint}")
    return value


RegularizerSpec = Annotated[
    Union[Annotated[RegularizerName, BeforeValidator(_known_regularizer), Tag("<name>")],  # noqa: UP007
          Annotated[RegularizerConfig, Tag("<mapping>")]],
    Discriminator(_name_or_mapping),
    Field(description="l1, l2 or l1_l2 (factor 0.01, as Keras), or {l1: x, l2: y}"),
]


# -- initializers: a name (Keras's defaults) or {type: name, arguments} ------------------------
class _InitializerBase(StrictModel):
    """An initializer with arguments; the arguments are Keras's (its `seed` is the config's)."""


class PlainInitializerConfig(_InitializerBase):
    """An initializer without arguments, written as a mapping."""

    type: Literal["glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform",
                  "lecun_normal", "zeros", "ones"]


class OrthogonalInitializerConfig(_InitializerBase):
    """A random orthogonal matrix (rows of the flattened kernel) times gain."""

    type: Literal["orthogonal"]
    gain: StrictFloat = 1.0


class RandomNormalConfig(_InitializerBase):
    """Normal(mean, stddev)."""

    type: Literal["random_normal"]
    mean: StrictFloat = 0.0
    stddev: NonNegativeFloat = 0.05


class TruncatedNormalConfig(_InitializerBase):
    """Normal(mean, stddev) with values beyond two stddev from the mean redrawn."""

    type: Literal["truncated_normal"]
    mean: StrictFloat = 0.0
    stddev: NonNegativeFloat = 0.05


class RandomUniformConfig(_InitializerBase):
    """Uniform on [minval, maxval]."""

    type: Literal["random_uniform"]
    minval: StrictFloat = -0.05
    maxval: StrictFloat = 0.05

    @model_validator(mode="after")
    def _ordered(self) -> RandomUniformConfig:
        if self.minval > self.maxval:
            raise ValueError(f"random_uniform needs minval <= maxval, got {self.minval} and "
                             f"{self.maxval}")
        return self


class VarianceScalingConfig(_InitializerBase):
    """Variance scale / n, n = fan_in, fan_out or their mean (conv kernels: times kh * kw)."""

    type: Literal["variance_scaling"]
    scale: PositiveFloat = 1.0
    mode: Literal["fan_in", "fan_out", "fan_avg"] = "fan_in"
    distribution: Literal["truncated_normal", "untruncated_normal", "uniform", "normal"] = Field(
        "truncated_normal", description="normal means truncated_normal, as in Keras")


class ConstantConfig(_InitializerBase):
    """Every entry equal to value."""

    type: Literal["constant"]
    value: StrictFloat = 0.0


class IdentityConfig(_InitializerBase):
    """gain times the identity matrix; 2-D weights (a Dense kernel) only."""

    type: Literal["identity"]
    gain: StrictFloat = 1.0


_INITIALIZER_MODELS = (
    PlainInitializerConfig, OrthogonalInitializerConfig, RandomNormalConfig, TruncatedNormalConfig,
    RandomUniformConfig, VarianceScalingConfig, ConstantConfig, IdentityConfig,
)  # fmt: skip


def _known_initializer_type(value: Any) -> Any:
    """A mapping's type must be an initializer name: said here, so the error names initializers."""
    if isinstance(value, dict):
        name = value.get("type")
        if name is None:
            raise ValueError(f"an initializer mapping needs a type, one of: "
                             f"{', '.join(INITIALIZERS)}")
        if name not in INITIALIZERS:
            guess = closest(name, list(INITIALIZERS)) if isinstance(name, str) else None
            hint = f"; did you mean {guess!r}?" if guess else ""
            raise ValueError(f"unknown initializer {name!r}; expected one of: "
                             f"{', '.join(INITIALIZERS)}{hint}")
    return value


InitializerSpec = Annotated[
    Union[  # noqa: UP007
        Annotated[InitializerName, Tag("<name>")],
        Annotated[
            Union[_INITIALIZER_MODELS],  # noqa: UP007
            Field(discriminator="type"),
            BeforeValidator(_known_initializer_type),
            Tag("<mapping>"),
        ],
    ],
    Discriminator(_name_or_mapping),
]


def _initializer_name(spec: Any) -> str:
    return spec if isinstance(spec, str) else spec.type


def _not_identity(spec: Any, what: str) -> Any:
    """identity makes 2-D matrices only: refused here for weights that are never 2-D."""
    if _initializer_name(spec) == "identity":
        raise ValueError(f"the identity initializer makes 2-D matrices only; {what}")
    return spec


# -- layers -------------------------------------------------------------------------------------
class LayerConfigBase(StrictModel):
    """Fields shared by every layer; subclasses set `layer_type`, the canonical type name."""

    layer_type: ClassVar[str]
    name: LayerName | None = Field(
        None, description="Layer name; unique, Keras-style default (dense, dense_1, ...)"
    )
    trainable: StrictBool = Field(
        True, description="false freezes the layer: no updates; a BatchNorm keeps its statistics"
    )

    def layer_kwargs(self) -> dict[str, Any]:
        """The constructor arguments of dlcli.nn.layers.LAYERS[layer_type] (trainable is set on
        the layer after it is made, as in Keras)."""
        kwargs = {k: getattr(self, k) for k in type(self).model_fields
                  if k not in ("type", "trainable")}
        for k, v in kwargs.items():
            if isinstance(v, RegularizerConfig | _InitializerBase):
                kwargs[k] = v.model_dump()  # the layers take plain mappings
        return kwargs


class _WeightedLayer(LayerConfigBase):
    activation: ActivationName | None = Field(None, description="Activation applied to the output")
    use_bias: StrictBool = True
    kernel_initializer: InitializerSpec = "glorot_uniform"
    bias_initializer: InitializerSpec = "zeros"
    kernel_regularizer: RegularizerSpec | None = None
    bias_regularizer: RegularizerSpec | None = None

    @field_validator("bias_initializer")
    @classmethod
    def _bias_not_identity(cls, spec: Any) -> Any:
        return _not_identity(spec, "a bias is 1-D")


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
    dilation_rate: IntOrPair = Field(
        1, description="Spacing of the kernel's taps (an int or a pair); not with strides > 1")

    @field_validator("kernel_initializer")
    @classmethod
    def _kernel_not_identity(cls, spec: Any) -> Any:
        return _not_identity(spec, "a Conv2D kernel is 4-D (kh, kw, in, out)")

    @field_validator("dilation_rate")
    @classmethod
    def _not_with_strides(cls, dilation: Any, info: ValidationInfo) -> Any:
        strides = info.data.get("strides")  # absent when strides itself is invalid
        if strides is None:
            return dilation
        s, d = pair(strides, "strides"), pair(dilation, "dilation_rate")
        if max(s) > 1 and max(d) > 1:
            raise ValueError(f"strides > 1 together with dilation_rate > 1 is not supported (as "
                             f"in Keras); got strides {s} and dilation_rate {d}")
        return dilation


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


class _DropoutBase(LayerConfigBase):
    rate: Fraction = Field(description="Fraction of inputs to drop, in [0, 1)")
    seed: Seed | None = Field(None, description="Own seed (default: the model's stream)")


class DropoutConfig(_DropoutBase):
    """Zero a fraction `rate` of the inputs while training."""

    layer_type: ClassVar[str] = "Dropout"
    type: Literal["Dropout"]
    noise_shape: Annotated[list[PositiveInt | None], Field(min_length=1, max_length=32)] | None = (
        Field(None, description="Shape of the mask, batch axis first: null takes the input's "
              "size, 1 shares the draw ([null, 1, 1, null]: whole channels)"))


class SpatialDropout2DConfig(_DropoutBase):
    """Zero whole feature maps (channels) of (H, W, C) inputs while training."""

    layer_type: ClassVar[str] = "SpatialDropout2D"
    type: Literal["SpatialDropout2D"]


class BatchNormConfig(LayerConfigBase):
    """Batch normalization over the last axis (Keras BatchNormalization)."""

    layer_type: ClassVar[str] = "BatchNorm"
    type: Literal["BatchNorm", "BatchNormalization"]
    momentum: Annotated[float, Field(strict=True, ge=0, le=1)] = 0.99
    epsilon: PositiveFloat = 1e-3
    center: StrictBool = True
    scale: StrictBool = True
    beta_initializer: InitializerSpec = "zeros"
    gamma_initializer: InitializerSpec = "ones"
    moving_mean_initializer: InitializerSpec = "zeros"
    moving_variance_initializer: InitializerSpec = "ones"
    synchronized: StrictBool = Field(
        False, description="Under MPI (mpiexec -n N dlcli train): batch statistics over every "
        "rank's share of the batch, not each rank's own (Keras's argument); alone: no effect")

    @field_validator("beta_initializer", "gamma_initializer", "moving_mean_initializer",
                     "moving_variance_initializer")
    @classmethod
    def _not_identity(cls, spec: Any) -> Any:
        return _not_identity(spec, "BatchNorm's weights are 1-D")


class FlattenConfig(LayerConfigBase):
    """Flatten everything but the batch axis."""

    layer_type: ClassVar[str] = "Flatten"
    type: Literal["Flatten"]


class ActivationConfig(LayerConfigBase):
    """Apply an activation function."""

    layer_type: ClassVar[str] = "Activation"
    type: Literal["Activation"]
    activation: ActivationName


# -- augmentation (Keras's preprocessing layers): active only while training -------------------
FactorRange = float | tuple[float, float]
FillMode = Literal["reflect", "wrap", "nearest", "constant"]
Interpolation = Literal["bilinear", "nearest"]


class _AugmentConfig(LayerConfigBase):
    seed: Seed | None = Field(None, description="Own seed (default: the model's stream)")


class _AffineConfig(_AugmentConfig):
    fill_mode: FillMode = Field("reflect", description="How points outside the image are filled")
    interpolation: Interpolation = "bilinear"
    fill_value: float = Field(0.0, description="The value for fill_mode: constant")


class RandomFlipConfig(_AugmentConfig):
    """Flip images left-right and/or upside down, each with probability 1/2."""

    layer_type: ClassVar[str] = "RandomFlip"
    type: Literal["RandomFlip"]
    mode: Literal["horizontal", "vertical", "horizontal_and_vertical"] = "horizontal_and_vertical"


class RandomTranslationConfig(_AffineConfig):
    """Shift images by a random fraction of their height and width."""

    layer_type: ClassVar[str] = "RandomTranslation"
    type: Literal["RandomTranslation"]
    height_factor: FactorRange = Field(description="f for [-f, f], or [lower, upper]")
    width_factor: FactorRange = Field(description="f for [-f, f], or [lower, upper]")


class RandomRotationConfig(_AffineConfig):
    """Rotate images by a random fraction of a full turn."""

    layer_type: ClassVar[str] = "RandomRotation"
    type: Literal["RandomRotation"]
    factor: FactorRange = Field(description="f for [-f, f] of 2 pi, or [lower, upper]")


class RandomZoomConfig(_AffineConfig):
    """Zoom images out (positive factors) or in (negative) about their center."""

    layer_type: ClassVar[str] = "RandomZoom"
    type: Literal["RandomZoom"]
    height_factor: FactorRange = Field(description="f for [-f, f], or [lower, upper]")
    width_factor: FactorRange | None = Field(None, description="Default: keep the aspect ratio")


class RandomCropConfig(_AugmentConfig):
    """A random height x width window while training, the center one otherwise."""

    layer_type: ClassVar[str] = "RandomCrop"
    type: Literal["RandomCrop"]
    height: PositiveInt
    width: PositiveInt


class RandomContrastConfig(_AugmentConfig):
    """Scale each image's spread about its mean by a factor in [1 - lower, 1 + upper]."""

    layer_type: ClassVar[str] = "RandomContrast"
    type: Literal["RandomContrast"]
    factor: FactorRange
    value_range: tuple[float, float] = Field((0, 255), description="Outputs are clipped to it")


class RandomBrightnessConfig(_AugmentConfig):
    """Add a random fraction of the value range to each image."""

    layer_type: ClassVar[str] = "RandomBrightness"
    type: Literal["RandomBrightness"]
    factor: FactorRange
    value_range: tuple[float, float] = Field((0, 255), description="Outputs are clipped to it")


class GaussianNoiseConfig(_AugmentConfig):
    """Add zero-mean normal noise while training."""

    layer_type: ClassVar[str] = "GaussianNoise"
    type: Literal["GaussianNoise"]
    stddev: NonNegativeFloat


class ResidualConfig(LayerConfigBase):
    """A block with a skip connection: activation(F(x) + shortcut(x)); blocks may nest."""

    layer_type: ClassVar[str] = "Residual"
    type: Literal["Residual"]
    layers: Annotated[list[LayerConfig], Field(min_length=1)]  # noqa: F821 (defined below)
    shortcut: Literal["identity", "projection"] = Field(
        "identity", description="identity: x itself; projection: a 1x1 Conv2D or a Dense")
    activation: ActivationName | None = Field(None, description="Applied to the sum")

    def layer_kwargs(self) -> dict[str, Any]:
        kwargs = super().layer_kwargs()
        kwargs["layers"] = list(self.layers)  # configs: dlcli.nn.from_config makes the layers
        return kwargs


_LAYER_MODELS = (
    DenseConfig, Conv2DConfig, MaxPool2DConfig, AvgPool2DConfig, GlobalAveragePooling2DConfig,
    DropoutConfig, SpatialDropout2DConfig, BatchNormConfig, FlattenConfig, ActivationConfig,
    RandomFlipConfig, RandomTranslationConfig, RandomRotationConfig, RandomZoomConfig,
    RandomCropConfig, RandomContrastConfig, RandomBrightnessConfig, GaussianNoiseConfig,
    ResidualConfig,
)  # fmt: skip
LayerConfig = Annotated[Union[_LAYER_MODELS], Field(discriminator="type")]  # noqa: UP007
# every accepted `type` (aliases included) -> its config model
LAYER_CONFIGS: dict[str, type[LayerConfigBase]] = {
    name: m for m in _LAYER_MODELS for name in get_args(m.model_fields["type"].annotation)
}
ResidualConfig.model_rebuild()  # its layers are the union defined just above


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
    n_classes: Annotated[int, Field(strict=True, ge=2, le=MAX_SIZE)] | None = Field(
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

    # numpy arrays have at most 32 axes (numpy 1.x), one of which is the batch
    input_shape: Annotated[list[PositiveInt], Field(min_length=1, max_length=31)] = Field(
        description="Shape of one sample, channels last, without the batch axis, e.g. [28, 28, 1]"
    )
    layers: Annotated[list[LayerConfig], Field(min_length=1)]
    init_from: InitFromConfig | None = Field(
        None, description="Start from another run's weights (transfer learning)")


class InitFromConfig(StrictModel):
    """Weights to start from: layers matched by name and weight shapes."""

    checkpoint: str = Field(description="A dlcli checkpoint, e.g. runs/<run>/checkpoints/best")
    layers: list[LayerName] | None = Field(
        None, description="Layers to take (default: every layer whose name and shapes match)")
    strict: StrictBool = Field(False, description="A layer that cannot be taken is an error")


ModelConfig.model_rebuild()


# -- loss and metrics ---------------------------------------------------------------------------
LossName = Literal[
    "categorical_crossentropy", "sparse_categorical_crossentropy", "binary_crossentropy",
    "mean_squared_error", "mse", "mean_absolute_error", "mae", "huber",
]  # fmt: skip
CanonicalLossName = Annotated[LossName, AfterValidator(canonical_loss_name)]


class LossConfig(StrictModel):
    """A loss with options: {type: huber, delta: 2.0} or {type: ..., from_logits: true}."""

    type: CanonicalLossName
    delta: PositiveFloat | None = Field(None, description="huber only (default 1.0)")
    from_logits: StrictBool = Field(
        False, description="The model outputs logits, not probabilities"
    )
    label_smoothing: Annotated[float, Field(strict=False, ge=0, le=1, allow_inf_nan=False)] = Field(
        0.0, description="Cross-entropy targets become y * (1 - e) + e / classes")

    @model_validator(mode="after")
    def _delta(self) -> LossConfig:
        if self.label_smoothing and "crossentropy" not in self.type:
            raise ValueError(f"label_smoothing is an option of the cross-entropy losses, not of "
                             f"{self.type}")
        if self.type == "huber":
            if self.delta is None:
                self.delta = 1.0
        elif self.delta is not None:
            raise ValueError(f"delta is an option of the huber loss, not of {self.type}")
        return self


LossNameOrConfig = Annotated[
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
MetricNameOrConfig = Annotated[
    Union[Annotated[MetricName, Tag("<name>")], Annotated[_TopKDict, Tag("<mapping>")]],  # noqa: UP007
    Discriminator(lambda v: "<mapping>" if isinstance(v, dict | BaseModel) else "<name>"),
]


# -- optimizers ---------------------------------------------------------------------------------
def _learning_rate(default: float) -> Any:
    return Field(
        default, gt=0, strict=True, allow_inf_nan=False,
        validation_alias=AliasChoices("learning_rate", "lr"),
        description="Step size (`lr` is accepted too)",
    )


# Keras's defaults have one home, the optimizers' constructors: the configs read them there
_COMMON = optimizer_fields()
_DEFAULTS = {name: optimizer_fields(name) for name in OPTIMIZERS}


class OptimizerConfigBase(StrictModel):
    """Fields every optimizer has."""

    weight_decay: NonNegativeFloat | None = Field(
        _COMMON["weight_decay"], description="Decoupled weight decay")
    clipnorm: PositiveFloat | None = Field(
        _COMMON["clipnorm"], description="Clip each gradient to this norm")
    clipvalue: PositiveFloat | None = Field(
        _COMMON["clipvalue"], description="Clip gradient values to +-this")
    global_clipnorm: PositiveFloat | None = Field(
        _COMMON["global_clipnorm"], description="Clip all gradients together to this global norm")
    gradient_accumulation_steps: PositiveInt | None = Field(
        _COMMON["gradient_accumulation_steps"],
        description="Update every n steps with the mean of the n gradients")
    use_ema: StrictBool = Field(
        _COMMON["use_ema"],
        description="Evaluate and save an exponential moving average of the weights")
    ema_momentum: Annotated[float, Field(strict=False, ge=0, le=1)] = _COMMON["ema_momentum"]

    @model_validator(mode="before")
    @classmethod
    def _one_learning_rate(cls, data: Any) -> Any:
        if isinstance(data, dict) and "lr" in data and "learning_rate" in data:
            raise ValueError("give learning_rate or lr, not both")
        return data


Beta = Annotated[float, Field(strict=True, ge=0, lt=1)]


class SGDConfig(OptimizerConfigBase):
    type: Literal["sgd"] = "sgd"
    learning_rate: float = _learning_rate(_DEFAULTS["sgd"]["learning_rate"])
    momentum: Beta = _DEFAULTS["sgd"]["momentum"]
    nesterov: StrictBool = _DEFAULTS["sgd"]["nesterov"]


class RMSpropConfig(OptimizerConfigBase):
    type: Literal["rmsprop"] = "rmsprop"
    learning_rate: float = _learning_rate(_DEFAULTS["rmsprop"]["learning_rate"])
    rho: Beta = _DEFAULTS["rmsprop"]["rho"]
    momentum: Beta = _DEFAULTS["rmsprop"]["momentum"]
    epsilon: PositiveFloat = _DEFAULTS["rmsprop"]["epsilon"]
    centered: StrictBool = _DEFAULTS["rmsprop"]["centered"]


class AdagradConfig(OptimizerConfigBase):
    type: Literal["adagrad"] = "adagrad"
    learning_rate: float = _learning_rate(_DEFAULTS["adagrad"]["learning_rate"])
    initial_accumulator_value: NonNegativeFloat = (
        _DEFAULTS["adagrad"]["initial_accumulator_value"])
    epsilon: PositiveFloat = _DEFAULTS["adagrad"]["epsilon"]


class AdadeltaConfig(OptimizerConfigBase):
    type: Literal["adadelta"] = "adadelta"
    learning_rate: float = _learning_rate(_DEFAULTS["adadelta"]["learning_rate"])
    rho: Beta = _DEFAULTS["adadelta"]["rho"]
    epsilon: PositiveFloat = _DEFAULTS["adadelta"]["epsilon"]


class AdamConfig(OptimizerConfigBase):
    type: Literal["adam"] = "adam"
    learning_rate: float = _learning_rate(_DEFAULTS["adam"]["learning_rate"])
    beta_1: Beta = _DEFAULTS["adam"]["beta_1"]
    beta_2: Beta = _DEFAULTS["adam"]["beta_2"]
    epsilon: PositiveFloat = _DEFAULTS["adam"]["epsilon"]
    amsgrad: StrictBool = _DEFAULTS["adam"]["amsgrad"]


class AdamWConfig(AdamConfig):  # AdamW is Adam with its own weight_decay default
    type: Literal["adamw"] = "adamw"
    weight_decay: NonNegativeFloat | None = Field(
        _DEFAULTS["adamw"]["weight_decay"], description="Decoupled weight decay")


class AdamaxConfig(OptimizerConfigBase):
    type: Literal["adamax"] = "adamax"
    learning_rate: float = _learning_rate(_DEFAULTS["adamax"]["learning_rate"])
    beta_1: Beta = _DEFAULTS["adamax"]["beta_1"]
    beta_2: Beta = _DEFAULTS["adamax"]["beta_2"]
    epsilon: PositiveFloat = _DEFAULTS["adamax"]["epsilon"]


class NadamConfig(AdamaxConfig):  # Nadam takes Adamax's options with the same defaults
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
    device_data_fraction: Annotated[float, Field(strict=True, ge=0, le=1)] = Field(
        0.5, description="device: gpu only: upload the training arrays once when they take at "
                         "most this fraction of the GPU's memory, else stage each batch through "
                         "pinned host memory (0: always stage)")


# -- experiment trackers (optional extras; dlcli.track builds them) -----------------------------
class TensorBoardConfig(StrictModel):
    """TensorBoard event files (tensorboardX): scalars per epoch, hyperparameters, the summary."""

    log_dir: Annotated[str, Field(min_length=1)] | None = Field(
        None, description="Folder shared by runs, one subfolder each (default: each run's "
                          "events in <run_dir>/tensorboard)")


class MlflowConfig(StrictModel):
    """An MLflow run: params, metrics per epoch, the checkpoint and config.yaml as artifacts."""

    tracking_uri: Annotated[str, Field(min_length=1)] | None = Field(
        None, description="Tracking server or store (default MLflow's: MLFLOW_TRACKING_URI or "
                          "./mlruns)")
    experiment: Annotated[str, Field(min_length=1)] | None = Field(
        None, description="Experiment name (default the config's name)")
    run_name: Annotated[str, Field(min_length=1)] | None = Field(
        None, description="Run name (default the run directory's name)")


def _flag_or_mapping(example: str) -> Any:
    """true/false or a mapping; anything else is one error that shows both forms."""

    def check(value: Any) -> Any:
        if not isinstance(value, bool | dict | BaseModel):
            raise ValueError(f"expected true, false or a mapping {example}, got {value!r}"[:200])
        return value

    return BeforeValidator(check)


def _bool_or_mapping(value: Any) -> str:
    return "<mapping>" if isinstance(value, dict | BaseModel) else "<flag>"


TensorBoardSpec = Annotated[
    Union[Annotated[StrictBool, Tag("<flag>")],  # noqa: UP007
          Annotated[TensorBoardConfig, Tag("<mapping>")]],
    Discriminator(_bool_or_mapping),
    _flag_or_mapping("{log_dir: PATH}"),
    Field(description="true (event files in <run_dir>/tensorboard) or {log_dir: PATH}"),
]
MlflowSpec = Annotated[
    Union[Annotated[StrictBool, Tag("<flag>")],  # noqa: UP007
          Annotated[MlflowConfig, Tag("<mapping>")]],
    Discriminator(_bool_or_mapping),
    _flag_or_mapping("{tracking_uri: URI, experiment: NAME, run_name: NAME}"),
    Field(description="true (MLflow's defaults) or {tracking_uri, experiment, run_name}"),
]


class LoggingConfig(StrictModel):
    """Experiment trackers the run also reports to; each is an optional extra."""

    tensorboard: TensorBoardSpec | None = None
    mlflow: MlflowSpec | None = None


# -- the whole file -----------------------------------------------------------------------------
class Config(StrictModel):
    """One experiment: data, model, loss, metrics, optimizer and training."""

    name: ConfigName = Field(
        "experiment", description=f"Experiment name, which names its run directories: {NAME_RULE}"
    )
    seed: Seed = Field(42, description="Seed of weights, shuffling and dropout")
    device: Literal["cpu", "gpu"] = "cpu"
    data: DataConfig
    model: ModelConfig
    loss: LossNameOrConfig = Field(
        "categorical_crossentropy", description="A loss name or {type, ...}")
    metrics: list[MetricNameOrConfig] = Field(
        default_factory=list, description="Metric names, or {type: top_k_accuracy, k: 3}"
    )
    optimizer: OptimizerConfig = Field(default_factory=AdamConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    logging: LoggingConfig | None = Field(
        None, description="Experiment trackers: {tensorboard: true, mlflow: {...}}")

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

        one_unit = _softmax_over_one_unit(self.model.layers, self.loss)
        if one_unit is not None:
            if self.loss_name.endswith("crossentropy"):
                fix = "use activation: sigmoid with binary_crossentropy, or units >= 2"
            else:
                fix = "use activation: linear for one output, or units >= 2"
            problems.append((one_unit, "a softmax over a single unit outputs 1.0 whatever the "
                             f"input, so the model is constant and cannot learn; {fix}", None))

        last = self.model.layers[-1]
        if (isinstance(self.loss, LossConfig) and self.loss.from_logits
                and getattr(last, "activation", None) in ("softmax", "sigmoid")):
            problems.append((("loss", "from_logits"), "from_logits is true but the last layer "
                             f"applies {last.activation}; drop one of them", None))
        return problems


def _softmax_over_one_unit(layers: list[Any], loss: Any) -> Loc | None:
    """Where the model's output is a softmax over one unit (a constant), or None.

    The softmax is the last activation (Dense/Conv2D's own, an Activation layer, or the
    categorical loss's when from_logits); the unit count is the last Dense's units or Conv2D's
    filters before it, through layers that keep the last axis.
    """
    softmax_at: Loc | None = None
    i = len(layers) - 1
    while i >= 0 and isinstance(layers[i], _DropoutBase):
        i -= 1
    if i >= 0 and isinstance(layers[i], ActivationConfig):
        if layers[i].activation != "softmax":
            return None
        softmax_at = ("model", "layers", i, "activation")
        i -= 1
        while i >= 0 and isinstance(layers[i], _DropoutBase | BatchNormConfig | ActivationConfig):
            i -= 1
    if i < 0 or not isinstance(layers[i], DenseConfig | Conv2DConfig):
        return None
    layer = layers[i]
    units = layer.units if isinstance(layer, DenseConfig) else layer.filters
    if units != 1:
        return None
    if softmax_at is not None:
        return softmax_at
    if layer.activation == "softmax":
        return ("model", "layers", i, "activation")
    if (isinstance(loss, LossConfig) and loss.from_logits and layer.activation in (None, "linear")
            and loss.type in ("categorical_crossentropy", "sparse_categorical_crossentropy")):
        return ("loss", "from_logits")  # the loss applies the softmax
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

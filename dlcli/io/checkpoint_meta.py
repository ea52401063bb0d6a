"""The schema of a checkpoint's metadata (`__meta__`), checked before any of it is used.

Every field that `Trainer.checkpoint()` writes and `Trainer._restore()`, eval and predict read
has its type and range here. Unknown keys are allowed (a newer dlcli may add some); known keys
are strict: no bool for an int, no string for a number. The metadata dict itself is kept as it
was read, so a checkpoint saved again round-trips unchanged.
"""

from __future__ import annotations

import math
import reprlib
from typing import Annotated, Any, Literal, get_args

import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from dlcli.data.preprocess import MODES

MAX_COUNT = 2**53  # the largest integer every JSON reader holds exactly
MAX_DEPTH = 64  # nesting of the metadata JSON; dlcli writes at most about 6


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def _pcg64_state(value: dict[str, Any]) -> dict[str, Any]:
    # the trainer's generators are PCG64 (np.random.default_rng); what numpy accepts here is
    # exactly what it accepts on resume, and numpy documents no exception types for it
    try:
        np.random.PCG64().state = value
    except Exception as e:  # noqa: BLE001 - any refusal by numpy is a bad state
        raise ValueError(f"must be a numpy PCG64 bit_generator state ({e})") from None
    return value


Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
Finite = Annotated[float, AfterValidator(_finite)]
RngState = Annotated[dict[str, Any], AfterValidator(_pcg64_state)]


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


class MonitorState(_Model):
    """`Monitor.state_dict()`: the best value (null while there is none) and its mode."""

    best: Finite | None = Field(None, description="a finite number or null")
    mode: Literal["min", "max"] = Field("min", description="'min' or 'max'")


class BestState(MonitorState):
    """The best checkpoint's monitor state and its 0-based epoch."""

    epoch: Count | None = Field(None, description="an integer >= 0 or null")


class EarlyStoppingState(_Model):
    """`EarlyStopping.state_dict()`: every key is read on resume."""

    monitor: MonitorState = Field(description="a monitor state {best, mode}")
    wait: Count = Field(description="an integer >= 0")
    stopped_epoch: Count = Field(description="an integer >= 0")
    best_epoch: Count | None = Field(description="an integer >= 0 or null")


class ScheduleState(_Model):
    """`Schedule.state_dict()`: {} for a pure schedule, all four keys for reduce_on_plateau."""

    lr: Finite = Field(0.0, ge=0, description="a finite number >= 0")
    wait: Count = Field(0, description="an integer >= 0")
    cooldown_counter: Count = Field(0, description="an integer >= 0")
    monitor: MonitorState = Field(default_factory=MonitorState,
                                  description="a monitor state {best, mode}")

    @model_validator(mode="after")
    def _all_or_none(self) -> ScheduleState:
        keys = {"lr", "wait", "cooldown_counter", "monitor"}
        given = keys & self.model_fields_set
        if given and given != keys:
            raise ValueError(f"must be {{}} or have all of {sorted(keys)}, "
                             f"missing {sorted(keys - given)}")
        return self


class RngStates(_Model):
    """Random states of the model (dropout) and of the shuffling."""

    model: RngState | None = Field(None, description="a numpy PCG64 bit_generator state or null")
    shuffle: RngState | None = Field(None, description="a numpy PCG64 bit_generator state or null")
    layers: dict[str, RngState] | None = Field(
        None, description="layer name -> the state of a layer's own seeded generator")


class OptimizerInfo(_Model):
    """What the optimizer was (its arrays are stored under optimizer/)."""

    type: str = Field("", description="a string")
    learning_rate: Finite = Field(0.0, ge=0, description="a finite number >= 0")
    iterations: Count = Field(0, description="an integer >= 0")


class Preprocessing(_Model):
    """`Preprocessor.to_dict()`; unknown keys are refused, as `Preprocessor.from_dict` does."""

    model_config = ConfigDict(strict=True, extra="forbid")

    mode: Literal[MODES] = Field(description=f"one of {', '.join(MODES)}")  # type: ignore[valid-type]
    offset: list[Finite] | None = Field(None, description="a list of finite numbers")
    scale: list[Annotated[Finite, Field(gt=0)]] | None = Field(
        None, description="a list of finite numbers > 0")

    @model_validator(mode="after")
    def _fitted(self) -> Preprocessing:
        if (self.offset is None) != (self.scale is None):
            raise ValueError("must have both offset and scale, or neither")
        if self.offset is not None and not len(self.offset) == len(self.scale) >= 1:
            raise ValueError(f"must have offset and scale of one equal length >= 1, got "
                             f"{len(self.offset)} and {len(self.scale)}")
        if self.mode != "none" and self.offset is None:
            raise ValueError(f"mode {self.mode!r} needs its fitted offset and scale")
        return self


class Position(_Model):
    """Where an interrupted epoch stopped (`trainer.Position.meta()`); every key is read."""

    epoch: Count = Field(description="an integer >= 0")
    batch: Count = Field(description="an integer >= 0")
    seen: Count = Field(description="an integer >= 0")
    data_total: Finite = Field(description="a finite number")
    reg_total: Finite = Field(description="a finite number")
    seconds: Finite = Field(ge=0, description="a finite number >= 0")


class Metadata(_Model):
    """The whole `__meta__` object."""

    format: Literal["dlcli-checkpoint"] = Field(description="'dlcli-checkpoint'")
    format_version: int = Field(ge=1, description="an integer >= 1")
    dlcli_version: str = Field("", description="a string")
    config: dict[str, Any] = Field(description="an object (the run's config)")
    epoch: Count = Field(0, description="an integer >= 0")
    interrupted: bool = Field(False, description="true or false")
    task: Literal["classification", "regression"] = Field(
        "classification", description="'classification' or 'regression'")
    class_names: list[str] | None = Field(None, description="a list of strings or null")
    preprocessing: Preprocessing | None = Field(
        None, description="an object {mode, offset, scale} or null")
    rng: RngStates | None = Field(None, description="an object {model, shuffle} or null")
    optimizer: OptimizerInfo | None = Field(
        None, description="an object {type, learning_rate, iterations} or null")
    schedule: ScheduleState | None = Field(None, description="a schedule state or null")
    early_stopping: EarlyStoppingState | None = Field(
        None, description="an early stopping state or null")
    best: BestState | None = Field(None, description="an object {best, mode, epoch} or null")
    history: list[dict[str, float | None]] | None = Field(
        None, description="a list of {name: number or null} rows")
    position: Position | None = Field(None, description="an epoch position or null")

    @model_validator(mode="after")
    def _consistent(self) -> Metadata:
        if self.best is not None and self.best.epoch is not None \
                and self.best.epoch >= max(self.epoch, 1):
            raise ValueError(f"best.epoch {self.best.epoch} (0-based) must come before the "
                             f"checkpoint's epoch {self.epoch}")
        if self.position is not None and self.position.epoch != self.epoch:
            raise ValueError(f"position.epoch {self.position.epoch} must equal epoch "
                             f"{self.epoch}")
        return self


_TYPED = set(Metadata.model_fields)
_FREE_FORM = {"config", "rng"}  # dicts of anything, checked elsewhere (validate_config, numpy)


class MetadataError(ValueError):
    """Metadata that breaks the schema; `field` is the dotted path, '' for the whole object."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def validate_metadata(meta: Any) -> None:
    """Check the metadata against the schema; raise MetadataError naming the first bad field."""
    if not isinstance(meta, dict):
        raise MetadataError("", f"metadata must be a JSON object, got {_show(meta)}")
    # json allows ~1000 levels and later readers recurse; the schema bounds the depth of the
    # fields it types, so only the free-form ones need walking (not a long history)
    for key, value in meta.items():
        if (key not in _TYPED or key in _FREE_FORM) and _depth(value) > MAX_DEPTH:
            raise MetadataError(str(key), f"metadata field {_show(key)} is nested more than "
                                f"{MAX_DEPTH} levels deep")
    try:
        Metadata.model_validate(meta)
    except ValidationError as err:
        errors = err.errors(include_url=False)
        first = errors[0]
        message = _message(first)
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more problems)"
        raise MetadataError(format_path(first["loc"]), message) from None


def format_path(loc: tuple[Any, ...]) -> str:
    """('history', 2, 'loss') -> 'history[2].loss'; odd keys are quoted."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).isidentifier():
            out += f".{part}" if out else str(part)
        else:
            out += f"[{_show(part, 40)}]"
    return out


# what the value should have been, by pydantic error type, where no field describes it
_EXPECTED = {
    "int_type": "an integer", "float_type": "a number", "bool_type": "true or false",
    "string_type": "a string", "dict_type": "an object", "model_type": "an object",
    "model_attributes_type": "an object", "list_type": "a list",
}
_REPR = reprlib.Repr()  # bounded work and length, whatever the value
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist = 2, 4, 4
_REPR.maxstring = _REPR.maxlong = _REPR.maxother = 40
_RANGE = {"greater_than_equal": ">= {ge}", "greater_than": "> {gt}", "less_than_equal": "<= {le}",
          "less_than": "< {lt}"}


def _message(error: dict[str, Any]) -> str:
    loc, kind, ctx = tuple(error["loc"]), error["type"], error.get("ctx") or {}
    field = format_path(loc)
    where = f"metadata field '{field}'" if field else "metadata"
    if kind == "missing":
        expected = _description(loc)
        return f"{where} is missing" + (f" (expected {expected})" if expected else "")
    if kind == "extra_forbidden":
        return f"{where} is not a known key"
    if kind == "value_error" and (not loc or _description(loc) is None
                                  or isinstance(error["input"], dict)):
        # a check across fields, or a custom check: its message says what was expected
        reason = str(ctx.get("error", error["msg"]))
        return f"{where} {reason}" if loc else f"{where}: {reason}"
    expected = _description(loc)
    if expected is None:
        if kind in _RANGE:
            expected = "a number " + _RANGE[kind].format(**ctx)
        elif kind == "literal_error":
            expected = f"one of {ctx.get('expected')}"
        else:
            expected = _EXPECTED.get(kind, str(error["msg"]).removeprefix("Input should be "))
    return f"{where} must be {expected}, got {_show(error['input'])}"


def _description(loc: tuple[Any, ...]) -> str | None:
    """The description of the field at `loc` when `loc` names fields all the way down."""
    cls: Any = Metadata
    description = None
    for part in loc:
        fields = getattr(cls, "model_fields", None)
        if not fields or not isinstance(part, str) or part not in fields:
            return None
        info = fields[part]
        description = info.description
        cls = _nested_model(info.annotation)
    return description


def _nested_model(annotation: Any) -> Any:
    """The BaseModel inside `X` or `X | None`, else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _show(value: Any, limit: int = 60) -> str:
    """A short one-line repr: hostile values may be megabytes long or hold newlines."""
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _depth(value: Any) -> int:
    """Nesting depth, iteratively (a recursive walk is what a hostile file would aim at)."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, level = todo.pop()
        deepest = max(deepest, level)
        if level <= MAX_DEPTH:  # deeper is refused anyway: stop counting there
            children = item.values() if isinstance(item, dict) else item
            todo.extend((v, level + 1) for v in children if isinstance(v, (dict, list)))
    return deepest

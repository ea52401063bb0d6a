"""Experiment trackers (TensorBoard, MLflow): trainer hooks built from the config's `logging:`.

Each tracker is an optional extra, imported only in its own module. A tracker that fails while
training raises TrackerError, which the trainer logs once as a warning before dropping the hook;
a tracker whose library is missing is a MissingExtraError before training starts.

Example:
    trainer = Trainer(cfg, hooks=hooks_from_config(cfg))
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dlcli.config.schema import Config


class TrackerError(RuntimeError):
    """A tracker failed; its one-line message is what train.log shows."""


def hooks_from_config(cfg: Config) -> list[Any]:
    """The tracker hooks `cfg.logging` asks for (empty without a `logging:` section).

    Raises MissingExtraError (a DlcliError) when a tracker's library is not installed, so the
    CLI stops with one line naming the extra before any data is read.

    Example:
        hooks_from_config(load_config_text("...logging: {tensorboard: true}", []))
    """
    spec = cfg.logging
    if spec is None:
        return []
    hooks: list[Any] = []
    if spec.tensorboard is not None and spec.tensorboard is not False:
        from dlcli.track.tensorboard import TensorBoardTracker

        log_dir = None if spec.tensorboard is True else spec.tensorboard.log_dir
        hooks.append(TensorBoardTracker(log_dir=log_dir))
    if spec.mlflow is not None and spec.mlflow is not False:
        from dlcli.track.mlflow import MlflowTracker

        m = None if spec.mlflow is True else spec.mlflow
        hooks.append(MlflowTracker(
            tracking_uri=m.tracking_uri if m else None,
            experiment=(m.experiment if m else None) or cfg.name,
            run_name=m.run_name if m else None,
        ))
    return hooks


def flatten_config(data: Any, prefix: str = "") -> dict[str, Any]:
    """A resolved config as {dotted.key: scalar}: mappings and lists of mappings are walked
    (model.layers.0.units); a list of scalars stays one value ([28, 28, 1])."""
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        items: Any = data.items()
    elif isinstance(data, list) and any(isinstance(v, dict | list) for v in data):
        items = enumerate(data)
    else:
        return {prefix: data}
    for key, value in items:
        out.update(flatten_config(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def run_params(cfg: Config) -> dict[str, Any]:
    """The hyperparameters a tracker records: the flattened resolved config without `logging`
    (where the run is tracked is not a property of the model, and a URI may hold secrets)."""
    data = cfg.model_dump(mode="json")
    data.pop("logging", None)
    return flatten_config(data)


def as_text(value: Any) -> str:
    """A config value as a string, in YAML/JSON spelling (true, null, [28, 28, 1])."""
    return value if isinstance(value, str) else json.dumps(value)


def epoch_scalars(logs: dict[str, Any]) -> tuple[int, dict[str, float]]:
    """(step, numeric values) of one epoch's logs; the step is history.csv's 1-based epoch."""
    step = int(logs["epoch"])
    values = {k: float(v) for k, v in logs.items()
              if k != "epoch" and isinstance(v, int | float) and not isinstance(v, bool)}
    return step, values


def is_finite(value: Any) -> bool:
    """Whether a value is a finite number (what a final-metrics table can show)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def one_line(err: BaseException, limit: int = 300) -> str:
    """An exception as one short line (MLflow's messages span lines and quote whole URLs).

    When it wraps a network error (requests -> urllib3 -> socket), the socket's reason is
    what the user needs ("Connection refused"), so that is shown instead of the wrappers.
    """
    root, seen = err, {id(err)}
    while (nxt := root.__cause__ or root.__context__) is not None and id(nxt) not in seen:
        seen.add(id(nxt))
        root = nxt
    if root is not err and isinstance(root, OSError):
        text = "cannot connect: " + (" ".join(str(root).split()) or type(root).__name__)
    else:
        text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."

"""What differs between two runs: their configs as dotted key paths, and their metrics.

Example:
    d = diff_runs("runs/mlp-20250101-120000", "mlp-20250102-093000")
    for c in d.config: print(c.key, c.a, c.b)    # optimizer.learning_rate 0.001 0.01
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlcli.errors import DlcliError
from dlcli.runs.index import RunInfo, load_run, read_config

MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING"})()


@dataclass
class ConfigChange:
    """One key path whose value differs; a or b is MISSING where that run lacks the key."""

    key: str
    a: Any
    b: Any

    @property
    def change(self) -> str:
        """"changed", "only in a" or "only in b"."""
        if self.a is MISSING:
            return "only in b"
        return "only in a" if self.b is MISSING else "changed"

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "change": self.change,
                "a": None if self.a is MISSING else self.a,
                "b": None if self.b is MISSING else self.b}


@dataclass
class MetricChange:
    """A metric of both runs (None where a run lacks it) and B - A."""

    metric: str  # test.<name>, or best.<monitor>
    a: float | None
    b: float | None

    @property
    def delta(self) -> float | None:
        return None if self.a is None or self.b is None else self.b - self.a

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.metric, "a": self.a, "b": self.b, "delta": self.delta}


@dataclass
class RunDiff:
    """The differences between run A and run B."""

    a: RunInfo
    b: RunInfo
    config: list[ConfigChange] = field(default_factory=list)
    metrics: list[MetricChange] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"a": {"name": self.a.name, "path": self.a.path, "status": self.a.status},
                "b": {"name": self.b.name, "path": self.b.path, "status": self.b.status},
                "config": [c.to_json() for c in self.config],
                "metrics": [m.to_json() for m in self.metrics]}


def diff_runs(run_a: str | os.PathLike[str], run_b: str | os.PathLike[str],
              root: str | os.PathLike[str] = "runs") -> RunDiff:
    """Compare two runs, each a run directory or a run's name (or unique prefix) under root.

    Raises:
        DlcliError: a run that is not found, or whose config.yaml cannot be read.
    """
    path_a, path_b = resolve_run(run_a, root), resolve_run(run_b, root)
    config_a, config_b = _config_of(path_a), _config_of(path_b)
    a, b = load_run(path_a), load_run(path_b)
    return RunDiff(a, b, diff_configs(config_a, config_b), diff_metrics(a, b))


def resolve_run(ref: str | os.PathLike[str], root: str | os.PathLike[str] = "runs") -> Path:
    """A run directory: ref itself, root/ref, or the one folder in root whose name starts with ref.

    Raises:
        DlcliError: none found, or a prefix that fits several runs.
    """
    path = Path(ref)
    if path.is_dir():
        return path
    base = Path(root)
    if not path.is_absolute() and (base / path).is_dir():
        return base / path
    matches = []
    if base.is_dir() and os.sep not in str(ref):
        matches = sorted(p for p in base.iterdir() if p.is_dir() and p.name.startswith(str(ref)))
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        names = ", ".join(p.name for p in matches[:10]) + (", ..." if len(matches) > 10 else "")
        raise DlcliError(f"{ref!s} fits {len(matches)} runs in {base}/ ({names}); give the full "
                         "name")
    raise DlcliError(f"no run {ref!s}: neither a directory nor a run in {base}/ (`dlcli runs "
                     f"{base}` lists them)")


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings and lists as {dotted.key[i]: scalar}; an empty mapping or list is a value.

    Example:
        flatten({"model": {"layers": [{"rate": 0.3}]}}) == {"model.layers[0].rate": 0.3}
    """
    out: dict[str, Any] = {}
    stack: list[tuple[str, Any]] = [(prefix, value)]
    while stack:  # iterative: a deep config never hits the recursion limit
        key, v = stack.pop()
        if isinstance(v, dict) and v:
            items = [(f"{key}.{k}" if key else str(k), x) for k, x in v.items()]
        elif isinstance(v, list) and v:
            items = [(f"{key}[{i}]", x) for i, x in enumerate(v)]
        else:
            out[key] = v
            continue
        stack.extend(reversed(items))  # keep the file's order
    return out


def diff_configs(a: Any, b: Any) -> list[ConfigChange]:
    """The key paths whose values differ, in A's order, then the keys only B has."""
    flat_a, flat_b = flatten(a), flatten(b)
    changes = [ConfigChange(k, v, flat_b.get(k, MISSING)) for k, v in flat_a.items()
               if k not in flat_b or not _same(v, flat_b[k])]
    changes += [ConfigChange(k, MISSING, v) for k, v in flat_b.items() if k not in flat_a]
    return changes


def diff_metrics(a: RunInfo, b: RunInfo) -> list[MetricChange]:
    """Test metrics of both runs (A's order, then B's others), then the best monitored values."""
    test_a, test_b = a.test or {}, b.test or {}
    names = list(test_a) + [k for k in test_b if k not in test_a]
    out = [MetricChange(f"test.{k}", test_a.get(k), test_b.get(k)) for k in names]
    if a.monitor == b.monitor:
        if a.monitor is not None:
            out.append(MetricChange(f"best.{a.monitor}", a.best, b.best))
    else:  # different quantities: each on its own row, no difference
        if a.monitor is not None:
            out.append(MetricChange(f"best.{a.monitor}", a.best, None))
        if b.monitor is not None:
            out.append(MetricChange(f"best.{b.monitor}", None, b.best))
    return out


def format_value(value: Any) -> str:
    """A config value as a short YAML-like string; MISSING as "(missing)"."""
    if value is MISSING:
        return "(missing)"
    if isinstance(value, str):
        # quote what would read back as another type (or not at all)
        plain = value and value.strip() == value and not _yaml_other_type(value)
        return value if plain else json.dumps(value)
    return json.dumps(value, allow_nan=True, default=str)


def _yaml_other_type(text: str) -> bool:
    import yaml

    try:
        return not isinstance(yaml.safe_load(text), str)
    except yaml.YAMLError:
        return True


def _same(x: Any, y: Any) -> bool:
    # 1 and 1.0 are the same value; True and 1 are not
    if isinstance(x, bool) or isinstance(y, bool):
        return type(x) is type(y) and x == y
    return x == y or (x != x and y != y)  # NaN equals NaN here


def _config_of(path: Path) -> Any:
    try:
        return read_config(path / "config.yaml")
    except FileNotFoundError:
        raise DlcliError(f"run {path} has no config.yaml") from None
    except (OSError, ValueError) as e:
        raise DlcliError(f"cannot read {path / 'config.yaml'}: {getattr(e, 'strerror', None) or e}"
                         ) from None

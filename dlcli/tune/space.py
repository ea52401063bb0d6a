"""The search space of a sweep: dotted config keys mapped to Tune's distributions.

A space file is YAML, read with the config loader (so errors carry line:column), and checked
against the config before Ray starts: every key must exist in the schema, and the config must
validate with each end of a range and with each listed value.

Example (space.yaml):
    optimizer.learning_rate: {loguniform: [1.0e-4, 1.0e-1]}
    model.layers.2.rate: {uniform: [0.0, 0.5]}
    data.batch_size: {choice: [32, 64, 128]}
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import yaml
from pydantic import AllowInfNan, BaseModel, ConfigDict, Field, Strict, ValidationError

from dlcli.config.errors import ConfigError, ConfigIssue, Loc, SourceMap, closest, format_path
from dlcli.config.load import (
    MAX_BYTES,
    ModelCheck,
    load_config_text,
    parse_key,
    parse_yaml,
    sort_issues,
)
from dlcli.config.schema import Config

DISTRIBUTIONS = ("loguniform", "uniform", "choice", "randint", "grid")

_Number = Annotated[float, Strict(), AllowInfNan(False)]  # an int or a float, never a string
_Int = Annotated[int, Strict()]


class Distribution(BaseModel):
    """One key's distribution: exactly one of the fields, as Tune names them."""

    model_config = ConfigDict(extra="forbid")

    loguniform: tuple[_Number, _Number] | None = None
    uniform: tuple[_Number, _Number] | None = None
    randint: tuple[_Int, _Int] | None = None  # [low, high): high is excluded, as in Tune
    choice: Annotated[list[Any], Field(min_length=1)] | None = None
    grid: Annotated[list[Any], Field(min_length=1)] | None = None


_SHAPES = {"loguniform": "[low, high], two numbers with 0 < low < high",
           "uniform": "[low, high], two numbers with low < high",
           "randint": "[low, high], two integers with low < high (high is excluded)",
           "choice": "a non-empty list of values", "grid": "a non-empty list of values"}


@dataclass(frozen=True)
class Param:
    """One searched key: where the space file names it, its config path and distribution."""

    key: str  # as written: "model.layers.2.rate"
    path: tuple[str | int, ...]  # ("model", "layers", 2, "rate")
    kind: str  # one of DISTRIBUTIONS
    args: tuple[Any, ...]  # (low, high) or the values

    def override(self, value: Any) -> str:
        """The --set text that gives this key `value` (JSON is YAML)."""
        return f"{format_path(self.path)}={json.dumps(value)}"

    def candidates(self) -> list[tuple[str, Any, int]]:
        """(what, value, index into args) of the values the config is checked with."""
        lo, hi = (self.args + (None, None))[:2]
        if self.kind in ("uniform", "loguniform"):
            return [(f"{self.kind}'s low end", float(lo), 0),
                    (f"{self.kind}'s high end", float(hi), 1)]
        if self.kind == "randint":
            return [("randint's low end", lo, 0), ("randint's highest value", hi - 1, 1)]
        return [(f"{self.kind} item {i + 1}", v, i) for i, v in enumerate(self.args)]

    def tune_domain(self, tune: Any) -> Any:
        """This distribution as a Tune search-space object (tune is the ray.tune module)."""
        if self.kind == "grid":
            return tune.grid_search(list(self.args))
        if self.kind == "choice":
            return tune.choice(list(self.args))
        return getattr(tune, self.kind)(*self.args)


@dataclass(frozen=True)
class SearchSpace:
    """The searched keys of a space file, checked against a config."""

    params: tuple[Param, ...]
    filename: str | None = None

    @property
    def grid_size(self) -> int:
        """Trials per sample: the product of the grid lengths (1 without grids)."""
        return math.prod(len(p.args) for p in self.params if p.kind == "grid")

    @property
    def only_grid(self) -> bool:
        return all(p.kind == "grid" for p in self.params)

    def overrides(self, values: dict[str, Any]) -> list[str]:
        """The --set texts for one trial's sampled values (keyed as in the space file)."""
        return [p.override(values[p.key]) for p in self.params]


def normalize_key(key: str) -> list[str | int] | None:
    """'model.layers.2.rate' or 'model.layers[2].rate' -> ['model', 'layers', 2, 'rate']."""
    return parse_key(re.sub(r"\.(\d+)(?=\.|\[|$)", r"[\1]", key))


def load_space(path: str | os.PathLike[str], config_text: str, overrides: Sequence[str] = (),
               config_filename: str | None = None, model_check: ModelCheck | None = None
               ) -> SearchSpace:
    """Read a space file and check it against the config (after its --set overrides).

    Args:
        path: the space file.
        config_text: the config's YAML, which every checked value is applied to.
        overrides: the config's --set overrides.
        config_filename: named in messages about the config itself.
        model_check: the shape check validate_config takes (dlcli.nn.from_config.model_issues).

    Raises:
        ConfigError: every problem, located in the space file (line:column).
    """
    filename = os.fspath(path)
    if not os.path.isfile(filename):
        what = "is a directory, not a space file" if os.path.isdir(filename) else "no such file"
        raise ConfigError([ConfigIssue("", what)], filename)
    try:
        with open(filename, encoding="utf-8") as f:
            text = f.read(MAX_BYTES + 1)
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError([ConfigIssue("", f"cannot read the file: {err}")], filename) from None
    if len(text) > MAX_BYTES:
        raise ConfigError([ConfigIssue("", f"the file is longer than {MAX_BYTES // 2**20} MiB; "
                                       "a space file is a few lines")], filename)
    return parse_space(text, config_text, overrides, filename, config_filename, model_check)


def parse_space(text: str, config_text: str, overrides: Sequence[str] = (),
                filename: str | None = None, config_filename: str | None = None,
                model_check: ModelCheck | None = None) -> SearchSpace:
    """Like load_space, from the space file's text."""
    _check_top_level(text, filename)
    data, source = parse_yaml(text, filename)
    issues: list[ConfigIssue] = []
    params: list[Param] = []
    seen: dict[tuple[str | int, ...], str] = {}
    for key, value in data.items():
        param = _param(key, value, source, issues)
        if param is None:
            continue
        clash = next((k for p, k in seen.items()
                      if p[:len(param.path)] == param.path or param.path[:len(p)] == p), None)
        if clash is not None:
            same = "is the same key as" if seen.get(param.path) == clash else "overlaps"
            issues.append(_issue(source, key, (key,), f"{same} {clash!r}; search one or the "
                                 "other"))
            continue
        seen[param.path] = key
        params.append(param)
    if not data:
        issues.append(ConfigIssue("", "the space names no keys; e.g. "
                                  "`optimizer.learning_rate: {loguniform: [1.0e-4, 1.0e-1]}`"))
    base = load_config_text(config_text, list(overrides), config_filename, model_check)
    resolved = base.model_dump(mode="json")
    for param in params:
        issues += _check_against_config(param, config_text, list(overrides), resolved, source,
                                        model_check)
    if issues:
        raise ConfigError(sort_issues(issues), filename)
    return SearchSpace(tuple(params), filename)


def _check_top_level(text: str, filename: str | None) -> None:
    """An empty file or a top level that is not a mapping, said for a space file (the config
    loader's message speaks of configs). Only the first events are parsed."""
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.StreamStartEvent | yaml.DocumentStartEvent):
                continue
            if isinstance(event, yaml.StreamEndEvent | yaml.DocumentEndEvent):
                raise ConfigError([ConfigIssue("", "the file is empty; a space file maps dotted "
                                               "config keys to distributions")], filename)
            if not isinstance(event, yaml.MappingStartEvent):
                mark = event.start_mark
                raise ConfigError([ConfigIssue(
                    "", "the top level must be a mapping of dotted config keys to distributions, "
                    "e.g. `optimizer.learning_rate: {loguniform: [1.0e-4, 1.0e-1]}`",
                    mark.line + 1, mark.column + 1)], filename)
            return
    except yaml.YAMLError:
        return  # parse_yaml reports it with its position


def _param(key: str, value: Any, source: SourceMap, issues: list[ConfigIssue]) -> Param | None:
    """The Param of one entry, or None with its issues added."""
    path = normalize_key(key)
    if path is None:
        issues.append(_issue(source, key, (key,), "not a dotted config key, e.g. "
                             "optimizer.learning_rate or model.layers.2.rate"))
        return None
    if not isinstance(value, dict):
        issues.append(_issue(source, key, (key,), "expected a distribution, one of "
                             f"{', '.join(DISTRIBUTIONS)}, e.g. {{choice: [32, 64]}}; got "
                             f"{_describe(value)}"))
        return None
    try:
        dist = Distribution.model_validate(value)
    except ValidationError as err:
        issues += _distribution_issues(key, value, err, source)
        return None
    given = [name for name in DISTRIBUTIONS if getattr(dist, name) is not None]
    if len(given) != 1:
        issues.append(_issue(source, key, (key,), "give exactly one distribution, one of "
                             f"{', '.join(DISTRIBUTIONS)}; got "
                             f"{', '.join(given) if given else 'none'}"))
        return None
    kind = given[0]
    args = tuple(getattr(dist, kind))
    if kind in ("loguniform", "uniform", "randint"):
        lo, hi = args
        if not lo < hi or (kind == "loguniform" and lo <= 0):
            issues.append(_issue(source, key, (key, kind), f"{kind} takes {_SHAPES[kind]}; "
                                 f"got {_describe(value[kind])}"))
            return None
    return Param(key, tuple(path), kind, args)


def _distribution_issues(key: str, value: dict[str, Any], err: ValidationError,
                         source: SourceMap) -> list[ConfigIssue]:
    """One issue per distribution that pydantic refused (not one per bad item)."""
    out: list[ConfigIssue] = []
    done: set[Any] = set()
    for e in err.errors():
        name = e["loc"][0] if e["loc"] else None
        if name in done:
            continue
        done.add(name)
        if e["type"] == "extra_forbidden":
            out.append(_issue(source, key, (key, name), f"unknown distribution {name!r}; "
                              f"valid: {', '.join(DISTRIBUTIONS)}", closest(name, DISTRIBUTIONS)))
        elif name in _SHAPES:
            out.append(_issue(source, key, (key, name), f"{name} takes {_SHAPES[name]}; got "
                              f"{_describe(value.get(name))}"))
    return out


def _check_against_config(param: Param, config_text: str, overrides: list[str],
                          resolved: dict[str, Any], source: SourceMap,
                          model_check: ModelCheck | None) -> list[ConfigIssue]:
    """The config's problems with each checked value of param, located in the space file."""
    def problems(value: Any) -> list[tuple[str, str, str | None]]:
        return _problems(param, value, config_text, overrides, model_check)

    results = [(what, value, index, problems(value)) for what, value, index in
               param.candidates()]
    failing = [r for r in results if r[3]]
    if not failing:
        return []
    if param.kind in ("uniform", "loguniform") and len(failing) == len(results) and all(
            v.is_integer() and not problems(int(v)) for _, v, _, _ in results):
        return [_issue(source, param.key, (param.key, param.kind), f"{param.kind} draws "
                       "floats, but this key takes an integer; use randint or choice")]
    if len(failing) == len(results) and len({frozenset(r[3]) for r in results}) == 1:
        # the same whatever the value: the key itself is wrong
        return [_located(param, source, (param.key,), "", path, message, hint, resolved)
                for path, message, hint in failing[0][3]]
    return [_located(param, source, (param.key, param.kind, index),
                     f"with {what} ({_describe(value)}): ", path, message, hint, resolved)
            for what, value, index, found in failing for path, message, hint in found]


def _problems(param: Param, value: Any, config_text: str, overrides: list[str],
              model_check: ModelCheck | None) -> list[tuple[str, str, str | None]]:
    """(config path, message, suggestion) of each problem of the config with param = value."""
    try:
        load_config_text(config_text, [*overrides, param.override(value)], None, model_check)
    except ConfigError as err:
        return [(i.path, i.message, i.suggestion) for i in err.issues]
    return []


def _located(param: Param, source: SourceMap, loc: Loc, prefix: str, path: str, message: str,
             hint: str | None, resolved: dict[str, Any]) -> ConfigIssue:
    """A config problem said at the space file's key: its path is named when it is another."""
    where = "" if path == format_path(param.path) else f"{path}: "
    if hint is None:
        hint = _suggest(param.path, resolved)
    return _issue(source, param.key, loc, prefix + where + message, hint)


def _issue(source: SourceMap, key: str, loc: Loc, message: str, hint: str | None = None
           ) -> ConfigIssue:
    """An issue at loc in the space file, named by the key as the file writes it."""
    line, column, _ = source.locate(loc)
    return ConfigIssue(key, message, line, column, hint)


def _suggest(path: tuple[str | int, ...], resolved: Any) -> str | None:
    """The closest key of the resolved config where path leaves it; None if it does not."""
    node = resolved
    for part in path:
        if isinstance(part, int):
            if not isinstance(node, list) or not -len(node) <= part < len(node):
                return None
            node = node[part]
        elif isinstance(node, dict):
            if part not in node:
                return closest(part, [k for k in node if isinstance(k, str)])
            node = node[part]
        else:
            return None
    return None


def _describe(value: Any) -> str:
    """A value as YAML on one line, shortened."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    text = text.removesuffix("...").strip()
    return text if len(text) <= 50 else text[:47] + "..."


def checked_config(space: SearchSpace, config_text: str, overrides: list[str],
                   values: dict[str, Any], filename: str | None = None,
                   model_check: ModelCheck | None = None) -> Config:
    """The config of one trial: the base config with the sampled values set."""
    return load_config_text(config_text, [*overrides, *space.overrides(values)], filename,
                            model_check)

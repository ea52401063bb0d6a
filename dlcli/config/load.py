"""Read a config file: YAML with the line and column of every key, --set overrides, validation.

Every problem found is collected, so one ConfigError lists them all with their locations.

Example:
    cfg = load_config("configs/fashion_mnist_cnn.yaml", ["optimizer.learning_rate=0.01"])
"""

from __future__ import annotations

import os
import re
import types
import typing
from collections.abc import Sequence
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from dlcli.config.errors import ConfigError, ConfigIssue, Loc, SourceMap, closest, format_path
from dlcli.config.schema import Config


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads 1e-4 as a float (YAML 1.1 needs a dot and a signed exponent)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


# -- YAML with positions ------------------------------------------------------------------------
def _mark(node: Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _describe(value: Any) -> str:
    """A value as the user wrote it, short: 'relu', 3, null, [3, 3], a mapping."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, dict):
        return "a mapping" if value else "an empty mapping {}"
    if isinstance(value, list):
        text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
        return text if len(text) <= 40 else f"a list of {len(value)} items"
    return str(value)


_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


class _Composer:
    """Turns composed YAML nodes into plain dicts/lists, recording where every key/item is."""

    def __init__(self, loader: _Loader, source: SourceMap, issues: list[ConfigIssue]) -> None:
        self.loader = loader
        self.source = source
        self.issues = issues

    def convert(self, node: Node, loc: Loc) -> Any:
        if isinstance(node, MappingNode | SequenceNode) and node.tag not in _PLAIN_TAGS:
            # the safe constructor would refuse these too; say where
            raise yaml.MarkedYAMLError(problem=f"unsupported tag {node.tag!r}",
                                       problem_mark=node.start_mark)
        if isinstance(node, MappingNode):
            self.loader.flatten_mapping(node)  # resolves `<<: *anchor` merge keys
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = (self.loader.construct_object(key_node, deep=True)
                       if isinstance(key_node, ScalarNode) else None)
                line, column = _mark(key_node)
                if not isinstance(key, str):
                    self.issues.append(ConfigIssue(
                        format_path(loc), f"keys must be names, got {_describe(key)}", line,
                        column))
                    continue
                if key in out:
                    self.issues.append(ConfigIssue(
                        format_path((*loc, key)), f"duplicate key {key!r}", line, column))
                    continue
                self.source.positions[(*loc, key)] = (line, column)
                out[key] = self.convert(value_node, (*loc, key))
            return out
        if isinstance(node, SequenceNode):
            items = []
            for i, item in enumerate(node.value):
                self.source.positions[(*loc, i)] = _mark(item)
                items.append(self.convert(item, (*loc, i)))
            return items
        return self.loader.construct_object(node, deep=True)


def _yaml_issue(err: yaml.YAMLError) -> ConfigIssue:
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    context = getattr(err, "context", None)
    message = f"invalid YAML: {problem}" + (f" ({context})" if context else "")
    if mark is None:
        return ConfigIssue("", message)
    return ConfigIssue("", message, mark.line + 1, mark.column + 1)


def parse_yaml(text: str, filename: str | None = None) -> tuple[dict[str, Any], SourceMap]:
    """Parse config text into a dict and a SourceMap of every key's position.

    Raises:
        ConfigError: for a syntax error, an empty document, a top level that is not a mapping,
            non-string or duplicate keys.
    """
    source = SourceMap(filename)
    issues: list[ConfigIssue] = []
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError([ConfigIssue(
                "", "the file is empty; a config needs at least `data` and `model`")], filename)
        if not isinstance(node, MappingNode):
            kind = "a list" if isinstance(node, SequenceNode) else "a single value"
            raise ConfigError([ConfigIssue(
                "", f"the top level must be a mapping of keys (data, model, ...), got {kind}",
                *_mark(node))], filename)
        source.positions[()] = _mark(node)
        data = _Composer(loader, source, issues).convert(node, ())
    except yaml.YAMLError as err:
        raise ConfigError([_yaml_issue(err)], filename) from None
    finally:
        loader.dispose()
    if issues:
        raise ConfigError(issues, filename)
    return data, source


# -- --set overrides ----------------------------------------------------------------------------
_NAME = r"[A-Za-z_$][A-Za-z0-9_$-]*"
_KEY_RE = re.compile(rf"^{_NAME}(?:\[-?\d+\])*(?:\.{_NAME}(?:\[-?\d+\])*)*$")
_PART_RE = re.compile(rf"({_NAME})|\[(-?\d+)\]")


def parse_key(key: str) -> list[str | int] | None:
    """'model.layers[7].rate' -> ['model', 'layers', 7, 'rate']; None if malformed."""
    if not _KEY_RE.match(key):
        return None
    return [m.group(1) if m.group(1) is not None else int(m.group(2))
            for m in _PART_RE.finditer(key)]


_SYNONYMS = {"learning_rate": "lr", "lr": "learning_rate"}


def _apply_override(data: dict[str, Any], text: str, source: SourceMap) -> ConfigIssue | None:
    """Set one KEY=VALUE in data (creating missing mappings); an issue if it cannot."""
    origin = f"--set {text}"
    key, sep, raw = text.partition("=")
    parts = parse_key(key.strip()) if sep else None
    if parts is None:
        return ConfigIssue("", "expected KEY=VALUE with a dotted key path, e.g. "
                           "optimizer.learning_rate=0.01 or model.layers[2].rate=0.5",
                           origin=origin)
    try:
        value = yaml.load(raw, Loader=_Loader)  # a SafeLoader subclass
    except yaml.YAMLError as err:
        return ConfigIssue(key, f"cannot parse the value: {_yaml_issue(err).message}",
                           origin=origin)
    node: Any = data
    loc: list[str | int] = []
    for part, nxt in zip(parts, [*parts[1:], None], strict=True):
        if isinstance(part, int):
            if not isinstance(node, list):
                return ConfigIssue(format_path(loc), f"is {_describe(node)}, not a list, so it "
                                   f"has no item [{part}]", origin=origin)
            if not -len(node) <= part < len(node):
                return ConfigIssue(format_path(loc), f"has {len(node)} items, so no item "
                                   f"[{part}]", origin=origin)
            part = part % len(node)
        elif not isinstance(node, dict):
            what = "the top level" if not loc else format_path(loc)
            return ConfigIssue(format_path(loc), f"{what} is {_describe(node)}, not a mapping, "
                               f"so it has no key {part!r}", origin=origin)
        loc.append(part)
        if nxt is None:
            if isinstance(node, dict) and part in _SYNONYMS:
                node.pop(_SYNONYMS[part], None)  # --set learning_rate replaces a file's lr
            node[part] = value
        else:
            if isinstance(node, dict) and part not in node:
                if isinstance(nxt, int):
                    return ConfigIssue(format_path(loc), "is not set, so it has no item "
                                       f"[{nxt}]", origin=origin)
                node[part] = {}
                source.overrides[tuple(loc)] = origin  # created by this override
            node = node[part]
    source.overrides[tuple(loc)] = origin
    return None


# -- pydantic errors -> issues ------------------------------------------------------------------
def _data_loc(loc: Sequence[str | int], data: Any, missing: bool = False) -> Loc:
    """Pydantic's error location minus union tags ('Dense', 'adam', '<mapping>'): a key path.

    With missing=True the last part is a key absent from the data and is kept.
    """
    out: list[str | int] = []
    node = data
    for i, part in enumerate(loc):
        if isinstance(node, dict) and isinstance(part, str) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif missing and isinstance(node, dict) and isinstance(part, str) and i == len(loc) - 1:
            pass  # a missing key: keep it in the path
        else:
            continue  # a union member's tag, not part of the data
        out.append(part)
    return tuple(out)


def _value_at(data: Any, loc: Loc) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _leaf_models(tp: Any) -> list[type[BaseModel]]:
    """The BaseModel classes a type annotation can hold (through Annotated, Union, Optional)."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _leaf_models(typing.get_args(tp)[0])
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    if origin in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(tp) for m in _leaf_models(arg)]
    return []


def _list_item_type(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _list_item_type(typing.get_args(tp)[0])
    if origin is list:
        return typing.get_args(tp)[0]
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            item = _list_item_type(arg)
            if item is not None:
                return item
    return None


def _pick_model(tp: Any, node: Any) -> type[BaseModel] | None:
    """The model a mapping is validated as: the one union member whose `type` matches."""
    models = _leaf_models(tp)
    if len(models) == 1:
        return models[0]
    kind = node.get("type") if isinstance(node, dict) else None
    if isinstance(kind, str):
        for m in models:
            field = m.model_fields.get("type")
            if field is not None and kind.lower() in (str(a).lower()
                                                       for a in typing.get_args(field.annotation)):
                return m
    return None


def _model_at(loc: Loc, data: Any) -> type[BaseModel] | None:
    """The config model that validates the mapping at this key path (None if unclear)."""
    tp: Any = Config
    node = data
    for part in loc:
        if isinstance(part, int):
            tp = _list_item_type(tp)
            if tp is None:
                return None
        else:
            model = _pick_model(tp, node)
            if model is None:
                return None
            field = _field_by_key(model, part)
            if field is None:
                return None
            tp = field.annotation
        node = _value_at(node, (part,))
    return _pick_model(tp, node)


def _field_by_key(model: type[BaseModel], key: str) -> Any:
    for name, field in model.model_fields.items():
        if key == name or key in _aliases(field):
            return field
    return None


def _aliases(field: Any) -> list[str]:
    alias = field.validation_alias
    choices = getattr(alias, "choices", None)
    if choices is not None:
        return [c for c in choices if isinstance(c, str)]
    return [alias] if isinstance(alias, str) else []


def _valid_keys(model: type[BaseModel]) -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        keys.append(name)
        keys += [a for a in _aliases(field) if a != name]
    return keys


_QUOTED = re.compile(r"'((?:[^'\\]|\\.)*)'")

_KINDS = {  # what a misspelt name is, by the key it sits under
    "activation": "activation", "type": "type", "dataset": "dataset", "padding": "padding",
    "normalize": "normalization", "device": "device", "mode": "mode",
}


def _name_kind(loc: Loc) -> str:
    last = next((p for p in reversed(loc) if isinstance(p, str)), "")
    if last.endswith("initializer"):
        return "initializer"
    if "metrics" in loc:
        return "metric"
    if "loss" in loc:
        return "loss"
    if last == "type" and "layers" in loc:
        return "layer type"
    if last == "type" and "optimizer" in loc:
        return "optimizer"
    if last == "type" and "lr_schedule" in loc:
        return "schedule"
    return _KINDS.get(last, "value")


def _kind_of_tagged(loc: Loc) -> str:
    if "layers" in loc:
        return "layer type"
    if "optimizer" in loc:
        return "optimizer"
    if "lr_schedule" in loc:
        return "schedule"
    return "type"


# keys whose value may be a name instead of a mapping
_SHORTHANDS = {
    "optimizer": "an optimizer name (adam, sgd, ...) or a mapping {type: adam, ...}",
    "lr_schedule": "a schedule name (constant, cosine, ...) or a mapping {type: step, ...}",
}


def _translate(err: dict[str, Any], path: Loc, data: Any
               ) -> tuple[Loc, str | None, str | None, str | None]:
    """(path, expected-phrase, full message, suggestion) for one pydantic error.

    Type errors return an expected-phrase so errors of one union at one path can be joined.
    """
    kind = err["type"]
    ctx = err.get("ctx") or {}
    given = err.get("input")
    simple = {
        "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
        "float_type": "a number", "float_parsing": "a number", "bool_type": "true or false",
        "bool_parsing": "true or false", "string_type": "a string", "list_type": "a list",
        "model_type": "a mapping (key: value)", "model_attributes_type": "a mapping (key: value)",
        "dict_type": "a mapping (key: value)", "none_required": "null",
    }
    if kind in simple:
        if kind.startswith(("model", "dict")) and path and path[-1] in _SHORTHANDS:
            return path, _SHORTHANDS[path[-1]], None, None
        return path, simple[kind], None, None
    if kind == "missing":
        return path, None, f"missing required key {path[-1]!r}", None
    if kind == "extra_forbidden":
        key = path[-1]
        model = _model_at(path[:-1], data)
        valid = _valid_keys(model) if model is not None else []
        guess = closest(key, valid)
        msg = f"unknown key {key!r}"
        if guess is None and valid:
            msg += f"; valid keys: {', '.join(valid)}"
        return path, None, msg, guess
    if kind == "literal_error":
        choices = _QUOTED.findall(ctx.get("expected", ""))
        what = _name_kind(path)
        guess = closest(given, choices)
        prefix = f"unknown {what} {_describe(given)}" if isinstance(given, str) else \
            f"expected a {what} name, got {_describe(given)}"
        return path, None, f"{prefix}; expected one of: {', '.join(choices)}", guess
    if kind == "union_tag_invalid":
        tags = _QUOTED.findall(ctx.get("expected_tags", ""))
        tag = ctx.get("tag")
        # the tag of a case-insensitive union is lowered; report what the user wrote
        written = _value_at(data, (*path, "type")) if isinstance(_value_at(data, path), dict) \
            else _value_at(data, path)
        shown = written if isinstance(written, str) else tag
        what = _kind_of_tagged(path)
        return (*path, "type") if isinstance(_value_at(data, path), dict) else path, None, (
            f"unknown {what} {shown!r}; expected one of: {', '.join(tags)}"
        ), closest(shown, tags)
    if kind == "union_tag_not_found":
        what = _kind_of_tagged(path)
        choices = _tag_choices(path)
        hint = f" ({', '.join(choices)})" if choices else ""
        return (*path, "type"), None, f"missing required key 'type': the {what}{hint}", None
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        op = {"greater_than": ("gt", ">"), "greater_than_equal": ("ge", ">="),
              "less_than": ("lt", "<"), "less_than_equal": ("le", "<=")}[kind]
        bound = ctx.get(op[0])
        what = "an integer" if isinstance(bound, int) and not isinstance(bound, bool) else \
            "a number"
        return path, f"{what} {op[1]} {_describe(bound)}", None, None
    if kind == "too_short":
        n = ctx.get("min_length")
        return path, None, (f"expected at least {n} item{'s' if n != 1 else ''}, got "
                            f"{_describe(given)}"), None
    if kind == "too_long":
        return path, None, f"expected at most {ctx.get('max_length')} items, got " \
                           f"{_describe(given)}", None
    if kind == "string_pattern_mismatch":
        return path, None, f"a layer name must not contain '/', got {_describe(given)}", None
    if kind == "string_too_short":
        return path, None, "expected a non-empty string", None
    if kind == "int_or_pair":
        return path, err["msg"].removeprefix("expected "), None, None
    if kind == "value_error":
        return path, None, str(err["msg"]).removeprefix("Value error, "), None
    return path, None, f"{err['msg']}, got {_describe(given)}", None


def _tag_choices(path: Loc) -> list[str]:
    from dlcli.config import schema

    if "layers" in path:
        return list(schema.LAYER_CONFIGS)
    if "optimizer" in path:
        return list(schema.OPTIMIZER_CONFIGS)
    if "lr_schedule" in path:
        return [typing.get_args(m.model_fields["type"].annotation)[0]
                for m in schema._SCHEDULE_MODELS]
    return []


def issues_from_validation_error(err: ValidationError, data: Any, source: SourceMap
                                 ) -> list[ConfigIssue]:
    """Translate pydantic's errors into located ConfigIssues, one per key path and problem."""
    expected: dict[Loc, list[str]] = {}  # type errors per path: union members are joined
    out: list[tuple[Loc, str, str | None]] = []
    for e in err.errors():
        path = _data_loc(e["loc"], data, missing=e["type"] == "missing")
        path, phrase, message, suggestion = _translate(e, path, data)
        if phrase is not None:
            if path not in expected:
                expected[path] = []
                out.append((path, "", None))  # placeholder keeps file order
            if phrase not in expected[path]:
                expected[path].append(phrase)
        else:
            out.append((path, message or "", suggestion))
    issues: list[ConfigIssue] = []
    seen: set[tuple[Loc, str]] = set()
    for path, message, suggestion in out:
        if path in expected and not message:
            message = (f"expected {' or '.join(expected[path])}, got "
                       f"{_describe(_value_at(data, path))}")
        if (path, message) in seen:
            continue
        seen.add((path, message))
        issues.append(source.issue(path, message, suggestion))
    return sort_issues(issues)


def sort_issues(issues: Sequence[ConfigIssue]) -> list[ConfigIssue]:
    """--set problems first, then in file order; issues without a position last."""
    def key(issue: ConfigIssue) -> tuple[int, int, int]:
        if issue.origin is not None:
            return (0, 0, 0)
        if issue.line is None:
            return (2, 0, 0)
        return (1, issue.line, issue.column or 0)

    return sorted(issues, key=key)


# -- public API ---------------------------------------------------------------------------------
def validate_config(data: dict[str, Any], source: SourceMap | None = None) -> Config:
    """Validate a parsed config (schema, then checks across sections) and attach its SourceMap.

    Raises:
        ConfigError: with every issue found.
    """
    source = source if source is not None else SourceMap()
    try:
        cfg = Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(issues_from_validation_error(err, data, source), source.filename) \
            from None
    problems = cfg.cross_check()
    if problems:
        raise ConfigError([source.issue(loc, msg, hint) for loc, msg, hint in problems],
                          source.filename)
    cfg._source = source
    return cfg


def load_config(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> Config:
    """Read, override and validate a YAML config file.

    Args:
        path: the YAML file.
        overrides: "KEY=VALUE" strings applied before validation, e.g.
            "optimizer.learning_rate=0.01" or "model.layers[7].rate=0.5" (values are YAML).

    Returns:
        The validated Config; `cfg.source` tells where each key came from.

    Raises:
        ConfigError: listing every problem with its key path and line/column.
    """
    filename = os.fspath(path)
    if not os.path.exists(filename):
        raise ConfigError([ConfigIssue("", "no such file")], filename)
    if os.path.isdir(filename):
        raise ConfigError([ConfigIssue("", "is a directory, not a config file")], filename)
    try:
        with open(filename, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError([ConfigIssue("", f"cannot read the file: {err}")], filename) from None
    return load_config_text(text, overrides, filename)


def load_config_text(text: str, overrides: Sequence[str] = (), filename: str | None = None
                     ) -> Config:
    """Like load_config, from the YAML text itself."""
    data, source = parse_yaml(text, filename)
    issues = [i for i in (_apply_override(data, o, source) for o in overrides) if i is not None]
    try:
        cfg = validate_config(data, source)
    except ConfigError as err:
        raise ConfigError(issues + err.issues, filename) from None
    if issues:
        raise ConfigError(issues, filename)
    return cfg

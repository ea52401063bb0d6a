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
from collections.abc import Callable, Sequence
from typing import Any

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from dlcli.config.errors import ConfigError, ConfigIssue, Loc, SourceMap, closest, format_path
from dlcli.config.schema import (
    NAME_PATTERN,
    NAME_RULE,
    Config,
    DataConfig,
    ModelConfig,
    PositiveInt,
)

# Limits that keep hostile or broken YAML to one error in well under a second. A real config has
# a few hundred values, nests about six levels deep and is a few kilobytes long.
# values, written or expanded from aliases (an alias bomb has billions); PyYAML composes about
# 25 000 values a second in pure Python, so this also bounds the time spent on a long file
MAX_NODES = 20_000
MAX_DEPTH = 100  # nesting: PyYAML composes recursively, so deeper input exhausts the stack
MAX_BYTES = 2**20  # read no more of a file (or of /dev/zero) than this
MAX_INT_CHARS = 100  # int() of a long digit string is slow, and refused past 4300 digits

_INT_TAG = "tag:yaml.org,2002:int"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_VALUE_TAG = "tag:yaml.org,2002:value"
_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")
_SCALAR_KINDS = {
    "tag:yaml.org,2002:int": "an integer", "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:timestamp": "a date", "tag:yaml.org,2002:bool": "true or false",
    "tag:yaml.org,2002:binary": "base64 data",
}


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads 1e-4 as a float and refuses documents too deep or too large.

    (YAML 1.1 needs a dot and a signed exponent for a float.) The limits are checked while the
    node tree is composed, before any of it is converted, so neither the stack nor memory grows
    with the input.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(yaml.AliasEvent):  # an alias adds no node: it names an existing one
            return super().compose_node(parent, index)
        mark = self.peek_event().start_mark
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise yaml.composer.ComposerError(
                None, None, f"more than {MAX_NODES:,} values; a config has a few hundred", mark)
        if self._depth >= MAX_DEPTH:
            raise yaml.composer.ComposerError(
                None, None, f"nested more than {MAX_DEPTH} levels deep", mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


# -- YAML with positions ------------------------------------------------------------------------
def _mark(node: Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _short(text: str, limit: int = 40) -> str:
    """Text cut to `limit` characters, saying how long it was."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def _size(value: Any, budget: int) -> int:
    """How many scalars value holds, counting no further than budget."""
    if not isinstance(value, dict | list):
        return 1
    total = 1
    for item in value.values() if isinstance(value, dict) else value:
        total += _size(item, budget - total)
        if total > budget:
            break
    return total


def _describe(value: Any) -> str:
    """A value as the user wrote it, short: 'relu', 3, null, [3, 3], a mapping."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and value.bit_length() > 14_000:
        # str() refuses ints past 4300 digits (hex or 1:0:0:... sexagesimal YAML makes them)
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1:,} digits"
    if isinstance(value, int):
        return _short(str(value), 30)
    if isinstance(value, str):
        return repr(value) if len(value) <= 60 else f"{_short(value)!r}"
    if isinstance(value, dict):
        return "a mapping" if value else "an empty mapping {}"
    if isinstance(value, list):
        if _size(value, 20) > 20:  # do not dump a big (or deep) list only to drop the text
            return f"a list of {len(value):,} items"
        text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
        return text if len(text) <= 40 else f"a list of {len(value)} items"
    return str(value)


class _Refused(Exception):
    """A document that must not be read any further: one issue says why."""

    def __init__(self, issue: ConfigIssue) -> None:
        super().__init__(issue.message)
        self.issue = issue


class _Composer:
    """Turns composed YAML nodes into plain dicts/lists, recording where every key/item is.

    Aliases are expanded here, so this is where an alias bomb (a few lines that expand to
    billions of values) or a recursive alias (`&a [*a]`) is refused: every value produced is
    counted, and a node met again inside itself is a cycle.
    """

    def __init__(self, loader: _Loader, source: SourceMap, issues: list[ConfigIssue],
                 origin: str | None = None) -> None:
        self.loader = loader
        self.source = source
        self.issues = issues
        self.origin = origin  # the --set override the text came from, if any
        self.count = 0
        self.active: set[int] = set()  # ids of the collections being converted

    def issue(self, node: Node, loc: Loc, message: str) -> ConfigIssue:
        path = _short(format_path(loc), 60)  # deep inside an alias bomb the path is long
        if self.origin is not None:
            return ConfigIssue(path, message, origin=self.origin)
        return ConfigIssue(path, message, *_mark(node))

    def convert(self, node: Node, loc: Loc) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise _Refused(self.issue(node, loc, (
                f"the aliases here expand to more than {MAX_NODES:,} values; a config has a "
                "few hundred")))
        if len(loc) > MAX_DEPTH:
            raise _Refused(self.issue(node, loc, (
                f"the aliases here nest more than {MAX_DEPTH} levels deep")))
        if isinstance(node, ScalarNode):
            return self.scalar(node, loc)
        if node.tag not in _PLAIN_TAGS:
            # the safe constructor would refuse these too; say where
            raise yaml.MarkedYAMLError(problem=f"unsupported tag {node.tag!r}",
                                       problem_mark=node.start_mark)
        if id(node) in self.active:
            raise _Refused(self.issue(node, loc, (
                "a recursive alias: the value contains itself")))
        self.active.add(id(node))
        try:
            if isinstance(node, MappingNode):
                return self.mapping(node, loc)
            items = []
            for i, item in enumerate(node.value):
                self.source.positions[(*loc, i)] = _mark(item)
                items.append(self.convert(item, (*loc, i)))
            return items
        finally:
            self.active.discard(id(node))

    def mapping(self, node: MappingNode, loc: Loc) -> dict[str, Any]:
        # Merge keys (`<<: *base`) are resolved here rather than by PyYAML's flatten_mapping,
        # which copies every merged pair into the node: merges of merges double at each level
        # before anything could count them. Keys written in the mapping override merged ones;
        # among merged mappings the first wins.
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag != _MERGE_TAG:
                continue
            sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
            for src in sources:
                if not isinstance(src, MappingNode):
                    raise yaml.MarkedYAMLError(
                        problem="a merge key `<<` takes a mapping or a list of mappings",
                        problem_mark=src.start_mark)
                for key, value in self.convert(src, loc).items():
                    out.setdefault(key, value)
        own: set[str] = set()
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = (self.scalar(key_node, loc, is_key=True)
                   if isinstance(key_node, ScalarNode) else None)
            if not isinstance(key, str):
                self.issues.append(self.issue(key_node, loc,
                                              f"keys must be names, got {_describe(key)}"))
                continue
            if key in own:
                self.issues.append(self.issue(key_node, (*loc, key), f"duplicate key {key!r}"))
                continue
            own.add(key)
            self.source.positions[(*loc, key)] = _mark(key_node)
            out[key] = self.convert(value_node, (*loc, key))
        return out

    def scalar(self, node: ScalarNode, loc: Loc, is_key: bool = False) -> Any:
        """The scalar's value; an issue (and None) for one that cannot be read."""
        if node.tag == _VALUE_TAG:  # the YAML 1.1 `=` key, which PyYAML reads as a string
            return node.value
        kind = _SCALAR_KINDS.get(node.tag, "a value")
        if node.tag == _INT_TAG and len(node.value) > MAX_INT_CHARS:
            self.issues.append(self.issue(node, loc, (
                f"the integer {node.value[:20]}... ({len(node.value):,} characters) is out of "
                "range; no setting takes more than 19 digits")))
            return None
        try:
            return self.loader.construct_object(node, deep=True)
        except (ValueError, TypeError, OverflowError) as err:  # e.g. the date 2001-13-45
            what = "key" if is_key else "value"
            self.issues.append(self.issue(node, loc, (
                f"cannot read the {what} {_short(node.value)!r} as {kind} ({err}); quote it "
                "to make it a string")))
            return None


def _yaml_issue(err: yaml.YAMLError, text: str = "") -> ConfigIssue:
    """One located issue for a YAML error, on one line."""
    if isinstance(err, yaml.reader.ReaderError):
        # its str() spans two lines and names a position in characters, not a line
        char = err.character if isinstance(err.character, int) else ord(err.character)
        name = "a NUL character" if char == 0 else f"the character #x{char:04x}"
        message = f"invalid YAML: {name}, which YAML does not allow in a document"
        pos = err.position
        if not text or pos > len(text):
            return ConfigIssue("", message)
        line = text.count("\n", 0, pos) + 1
        return ConfigIssue("", message, line, pos - (text.rfind("\n", 0, pos) + 1) + 1)
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    context = getattr(err, "context", None)
    message = f"invalid YAML: {problem}" + (f" ({context})" if context else "")
    message = " ".join(message.split())  # PyYAML's texts may hold line breaks
    if mark is None:
        return ConfigIssue("", message)
    return ConfigIssue("", message, mark.line + 1, mark.column + 1)


def _compose(text: str) -> tuple[_Loader | None, Node | None, ConfigIssue | None]:
    """The node tree of one YAML document, or the issue that stops it being read."""
    loader = None
    try:
        loader = _Loader(text)  # the reader checks every character here
        return loader, loader.get_single_node(), None
    except yaml.YAMLError as err:
        return loader, None, _yaml_issue(err, text)
    except RecursionError:  # the depth limit should stop this first; keep the promise anyway
        return loader, None, ConfigIssue("", "invalid YAML: nested too deeply")


def parse_yaml(text: str, filename: str | None = None) -> tuple[dict[str, Any], SourceMap]:
    """Parse config text into a dict and a SourceMap of every key's position.

    Raises:
        ConfigError: for a syntax error, an empty document, a top level that is not a mapping,
            non-string or duplicate keys, or a document past the limits on size, nesting and
            alias expansion (MAX_NODES, MAX_DEPTH).
    """
    source = SourceMap(filename)
    issues: list[ConfigIssue] = []
    loader, node, problem = _compose(text)
    try:
        if problem is not None:
            raise ConfigError([problem], filename)
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
        raise ConfigError([_yaml_issue(err, text)], filename) from None
    except _Refused as err:
        raise ConfigError([err.issue], filename) from None
    except RecursionError:  # only from a caller already deep in the stack; MAX_DEPTH is small
        raise ConfigError([ConfigIssue("", "invalid YAML: nested too deeply")], filename) \
            from None
    finally:
        if loader is not None:
            loader.dispose()
    if issues:
        raise ConfigError(issues, filename)
    return data, source


def parse_value(raw: str, key: Loc = (), origin: str | None = None
                ) -> tuple[Any, ConfigIssue | None]:
    """A --set value read as YAML, with a config file's limits: (value, None) or (None, issue).

    Args:
        raw: the text after `=`.
        key: the key path it is for, named in an issue.
        origin: the override as given, where an issue says it came from.
    """
    loader, node, problem = _compose(raw)
    try:
        if problem is not None:
            return None, ConfigIssue(format_path(key), f"cannot parse the value: "
                                     f"{problem.message}", origin=origin)
        if node is None:
            return None, None  # `KEY=` sets null, as YAML reads an empty document
        issues: list[ConfigIssue] = []
        value = _Composer(loader, SourceMap(), issues, origin).convert(node, key)
        return (None, issues[0]) if issues else (value, None)
    except yaml.YAMLError as err:
        return None, ConfigIssue(format_path(key), f"cannot parse the value: "
                                 f"{_yaml_issue(err).message}", origin=origin)
    except _Refused as err:
        return None, err.issue
    finally:
        if loader is not None:
            loader.dispose()


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
    origin = f"--set {_short(text, 60)}"  # a 5000-digit value would bury the message
    key, sep, raw = text.partition("=")
    parts = parse_key(key.strip()) if sep else None
    if parts is None:
        return ConfigIssue("", "expected KEY=VALUE with a dotted key path, e.g. "
                           "optimizer.learning_rate=0.01 or model.layers[2].rate=0.5",
                           origin=origin)
    value, problem = parse_value(raw, tuple(parts), origin)
    if problem is not None:
        return problem
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
        if ctx.get("pattern") == NAME_PATTERN:
            return path, None, (f"a config name is {NAME_RULE}, as it names the run directory; "
                                f"got {_describe(given)}"), None
        return path, None, f"a layer name must not contain '/', got {_describe(given)}", None
    if kind == "finite_number":
        return path, None, f"expected a finite number, got {_describe(given)}", None
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
            given = _value_at(data, path)
            message = f"expected {' or '.join(expected[path])}, got {_describe(given)}"
            if isinstance(given, float) and any("integer" in p for p in expected[path]):
                message += " (a float: write an integer without a '.' or an exponent)"
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
# (model section, batch size or None) -> (key path, message) for each problem of the model
# that needs the layers to see (shapes, sizes); config cannot import dlcli.nn, so it is passed in
ModelCheck = Callable[[ModelConfig, int | None], list[tuple[Loc, str]]]


def validate_config(data: dict[str, Any], source: SourceMap | None = None,
                    model_check: ModelCheck | None = None) -> Config:
    """Validate a parsed config (schema, cross-section checks, model_check); attach its SourceMap.

    When the schema fails only outside `model`, model_check still runs, so shape errors come
    with the others; checks across sections need every section valid, so they wait.

    Raises:
        ConfigError: with every issue found.
    """
    source = source if source is not None else SourceMap()
    try:
        cfg = Config.model_validate(data)
    except ValidationError as err:
        issues = issues_from_validation_error(err, data, source)
        if model_check is not None:
            issues += _check_model_alone(data, err, model_check, source)
        raise ConfigError(sort_issues(issues), source.filename) from None
    issues = [source.issue(loc, msg, hint) for loc, msg, hint in cfg.cross_check()]
    if model_check is not None:
        issues += [source.issue(loc, msg) for loc, msg in
                   model_check(cfg.model, cfg.data.batch_size)]
    if issues:
        raise ConfigError(sort_issues(issues), source.filename)
    cfg._source = source
    return cfg


_BATCH_SIZE: TypeAdapter[int] = TypeAdapter(PositiveInt)


def _check_model_alone(data: dict[str, Any], err: ValidationError, model_check: ModelCheck,
                       source: SourceMap) -> list[ConfigIssue]:
    """model_check's issues when the model section is valid on its own, else none."""
    if any(e["loc"][:1] == ("model",) for e in err.errors()) or "model" not in data:
        return []
    try:
        model = ModelConfig.model_validate(data["model"])
    except ValidationError:  # cannot happen without an error under `model`; stay quiet
        return []
    section = data.get("data")
    batch_size: int | None = DataConfig.model_fields["batch_size"].default
    if isinstance(section, dict) and "batch_size" in section:
        try:  # the schema's rule for it; None (batch size unknown) where it fails
            batch_size = _BATCH_SIZE.validate_python(section["batch_size"])
        except ValidationError:
            batch_size = None
    return [source.issue(loc, msg) for loc, msg in model_check(model, batch_size)]


# binary files a user may hand to a command that wants a config, and what they are
_BINARY_KINDS = {".onnx": "an ONNX model", ".npz": "a numpy archive", ".npy": "a numpy array",
                 ".safetensors": "a safetensors file", ".png": "an image", ".jpg": "an image",
                 ".jpeg": "an image", ".gz": "a gzip file"}


def _not_text(filename: str) -> str:
    """The message for a file that is not UTF-8 text: what it seems to be, and what is wanted."""
    kind = _BINARY_KINDS.get(os.path.splitext(filename)[1].lower(), "a binary file")
    return f"is {kind}, not a YAML config (a UTF-8 text file)"


def load_config(path: str | os.PathLike[str], overrides: Sequence[str] = (),
                model_check: ModelCheck | None = None) -> Config:
    """Read, override and validate a YAML config file.

    Args:
        path: the YAML file.
        overrides: "KEY=VALUE" strings applied before validation, e.g.
            "optimizer.learning_rate=0.01" or "model.layers[7].rate=0.5" (values are YAML).
        model_check: the shape check of the model section (dlcli.nn.from_config.model_issues),
            so that its problems are reported together with those of the schema.

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
            text = f.read(MAX_BYTES + 1)  # not all of a huge file, nor endlessly from a device
    except UnicodeDecodeError:
        raise ConfigError([ConfigIssue("", _not_text(filename))], filename) from None
    except OSError as err:
        raise ConfigError([ConfigIssue("", f"cannot read the file: {err}")], filename) from None
    if len(text) > MAX_BYTES:
        raise ConfigError([ConfigIssue("", f"the file is longer than {MAX_BYTES // 2**20} MiB; "
                                       "a config is a few kilobytes")], filename)
    return load_config_text(text, overrides, filename, model_check)


def load_config_text(text: str, overrides: Sequence[str] = (), filename: str | None = None,
                     model_check: ModelCheck | None = None) -> Config:
    """Like load_config, from the YAML text itself."""
    data, source = parse_yaml(text, filename)
    issues = [i for i in (_apply_override(data, o, source) for o in overrides) if i is not None]
    try:
        cfg = validate_config(data, source, model_check)
    except ConfigError as err:
        raise ConfigError(issues + err.issues, filename) from None
    if issues:
        raise ConfigError(issues, filename)
    return cfg

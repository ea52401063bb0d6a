"""Config errors that say where (key path, YAML line and column), what was expected and what to try.

A ConfigError carries every problem found in one file, so the user fixes them in one pass.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from dlcli.errors import DlcliError

Loc = tuple[str | int, ...]  # a key path as pydantic spells it: ("model", "layers", 3, "units")


def format_path(loc: Sequence[str | int]) -> str:
    """("model", "layers", 3, "kernel_size") -> "model.layers[3].kernel_size"."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def closest(word: object, choices: Iterable[str]) -> str | None:
    """The valid name closest to a misspelt one (case-insensitive); None if nothing is close."""
    if not isinstance(word, str):
        return None
    by_lower = {c.lower(): c for c in choices}
    match = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[match[0]] if match else None


@dataclass(frozen=True)
class ConfigIssue:
    """One problem: where it is, what is wrong, and the closest valid name when there is one.

    line/column are 1-based positions in the YAML file, None when the value came from a
    `--set` override (then `origin` names it) or when the file has no such key.
    """

    path: str
    message: str
    line: int | None = None
    column: int | None = None
    suggestion: str | None = None
    origin: str | None = None

    def render(self, filename: str | None = None) -> str:
        """`file.yaml:12:7: model.layers[3].units: expected ...; did you mean 'units'?`."""
        if self.origin is not None:
            where = self.origin
        elif self.line is not None:
            where = f"{filename or '<config>'}:{self.line}:{self.column}"
        else:
            where = filename or "<config>"
        text = f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"
        if self.suggestion is not None:
            text += f"; did you mean {self.suggestion!r}?"
        return text


# A mutated or generated file can have thousands of problems; past this many the rest of the
# list only hides the first ones, which are the ones to fix first anyway.
MAX_SHOWN_ISSUES = 50


class ConfigError(DlcliError):
    """A config that cannot be used; str() lists every issue, one per line (the first 50)."""

    def __init__(self, issues: Sequence[ConfigIssue], filename: str | None = None) -> None:
        self.issues = list(issues)
        self.filename = filename
        super().__init__(self.render())

    def render(self) -> str:
        lines = [issue.render(self.filename) for issue in self.issues]
        if len(lines) == 1:
            return lines[0]
        head = f"{self.filename or 'config'}: {len(lines)} errors"
        shown = [f"  {line}" for line in lines[:MAX_SHOWN_ISSUES]]
        if len(lines) > MAX_SHOWN_ISSUES:
            shown.append(f"  ... and {len(lines) - MAX_SHOWN_ISSUES} more")
        return "\n".join([head, *shown])

    def __str__(self) -> str:
        return self.render()


@dataclass
class SourceMap:
    """Where each key path of a loaded config came from: a (line, column) or a --set override."""

    filename: str | None = None
    positions: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    overrides: dict[Loc, str] = field(default_factory=dict)

    def locate(self, loc: Sequence[str | int]) -> tuple[int | None, int | None, str | None]:
        """(line, column, origin) of a path, falling back to its nearest located ancestor.

        An override replaces the whole subtree under its path, so any overridden prefix wins
        over positions from the file.
        """
        loc = tuple(loc)
        for n in range(len(loc), -1, -1):
            if loc[:n] in self.overrides:
                return None, None, self.overrides[loc[:n]]
        for n in range(len(loc), -1, -1):
            if loc[:n] in self.positions:
                line, column = self.positions[loc[:n]]
                return line, column, None
        return None, None, None

    def issue(self, loc: Sequence[str | int], message: str, suggestion: str | None = None
              ) -> ConfigIssue:
        """A ConfigIssue for this path with its location filled in."""
        line, column, origin = self.locate(loc)
        return ConfigIssue(format_path(loc), message, line, column, suggestion, origin)

    def error(self, loc: Sequence[str | int], message: str, suggestion: str | None = None
              ) -> ConfigError:
        """A ConfigError with one issue at this path."""
        return ConfigError([self.issue(loc, message, suggestion)], self.filename)

"""All terminal output goes through here; the only module that imports rich.

Messages are printed as plain text (no markup parsing), so a key path like model.layers[3] is
shown as written. rich is imported on the first output, not with this module, so that commands
that print little (`dlcli --help`) start fast.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, Any

from dlcli.jsonsafe import strict

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

# Console objects look up sys.stdout/sys.stderr when they print, so click's test runner (which
# swaps them) captures the output.
_closed = False  # stdout's reader went away: output is dropped, the work goes on


def _silence_stdout() -> None:
    """The reader of stdout is gone (`dlcli train cfg | head -1`): drop all further output,
    and point the file descriptor at /dev/null so the flush at exit does not fail either."""
    global _closed
    _closed = True
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file descriptor (tests)
        pass


@cache
def _console_class() -> type[Console]:
    """rich's Console, except that a closed pipe silences it instead of exiting with 1."""
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True
            if not self.stderr:
                _silence_stdout()

    return _Console


@cache
def _out() -> Console:
    """The one stdout console, made on first use."""
    return _console_class()(highlight=False, soft_wrap=True)


@cache
def _err() -> Console:
    """The one stderr console, made on first use."""
    return _console_class()(stderr=True, highlight=False, soft_wrap=True)


def _emit(write: Any, *args: Any) -> None:
    """Call write(*args) on stdout unless it is closed; a closed pipe silences it for good
    instead of stopping the command (training goes on and writes every file)."""
    if _closed:
        return
    try:
        write(*args)
    except BrokenPipeError:
        _silence_stdout()


def error(message: str) -> None:
    """An error for the user, on stderr: `error: <message>`."""
    from rich.text import Text

    _err().print(Text.assemble(("error: ", "bold red"), message))


def warning(message: str) -> None:
    """A warning on stderr."""
    from rich.text import Text

    _err().print(Text.assemble(("warning: ", "bold yellow"), message))


def info(message: str) -> None:
    """A plain line on stdout."""
    from rich.text import Text

    _emit(_out().print, Text(message))


def success(message: str) -> None:
    """A line on stdout saying something worked."""
    from rich.text import Text

    _emit(_out().print, Text(message, style="green"))


def raw(text: str) -> None:
    """Text exactly as given (JSON, YAML) on stdout: no styling, no wrapping."""
    def write(text: str) -> None:
        _out().file.write(text if text.endswith("\n") else text + "\n")
        _out().file.flush()

    _emit(write, text)


def print_json(obj: Any) -> None:
    """One JSON document on stdout, indented, for scripts: strict JSON, NaN and infinity as null."""
    raw(json.dumps(strict(obj), indent=2, allow_nan=False))


def table(
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    title: str | None = None,
    right_align: Sequence[int] = (),
    footer: Sequence[str] = (),
) -> None:
    """A table in Keras's summary style, then footer lines.

    Args:
        columns: header names.
        rows: cells as strings, one sequence per row.
        title: a line above the table (Keras: `Model: "name"`).
        right_align: indexes of numeric columns.
        footer: lines printed under the table.
    """
    from rich.table import Table
    from rich.text import Text

    t = Table(show_lines=False, header_style="bold")
    for i, name in enumerate(columns):
        t.add_column(name, justify="right" if i in right_align else "left", no_wrap=True)
    for row in rows:
        t.add_row(*(Text(cell) for cell in row))
    out = _out()
    if title:
        _emit(out.print, Text(title))
    # never squeeze the table: wider than the terminal is better than wrapped cells
    needed = out.measure(t, options=out.options.update_width(10_000)).maximum
    wide = _console_class()(file=out.file, width=max(out.width, needed), highlight=False,
                            force_terminal=out.is_terminal, no_color=out.no_color)
    _emit(wide.print, t)
    for line in footer:
        _emit(out.print, Text(line))


@contextmanager
def progress(description: str, total: int | None = None) -> Iterator[Any]:
    """A progress bar; yields an object with advance(n=1) and update(description=...).

    Example:
        with console.progress("epoch 1", total=len(batches)) as bar:
            for batch in batches:
                ...
                bar.advance()
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=_err(), transient=False, disable=not _err().is_terminal,
    )
    with bar:
        task = bar.add_task(description, total=total)
        yield _Task(bar, task)


class _Task:
    """The handle `progress` yields: advance and relabel one bar."""

    def __init__(self, bar: Progress, task: Any) -> None:
        self._bar = bar
        self._task = task

    def advance(self, n: int = 1) -> None:
        self._bar.advance(self._task, n)

    def update(self, description: str | None = None, total: int | None = None) -> None:
        self._bar.update(self._task, description=description, total=total)


class TrainProgress:
    """The trainer's Reporter: a rich bar per epoch on a terminal, plain lines elsewhere.

    The bar shows batches, ETA, samples/s and the running loss; each finished epoch leaves one
    line (the trainer's epoch summary), so a log piped to a file stays readable.
    """

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self._bar: Progress | None = None
        self._task: Any = None
        self._start = 0.0

    def message(self, text: str) -> None:
        self.close()  # a live bar would tangle with the line
        if not self.quiet:
            from rich.text import Text

            _emit(_out().print, Text(text))

    def epoch_begin(self, epoch: int, epochs: int, n_batches: int) -> None:
        if self.quiet or not _err().is_terminal:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(
            TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[rate]}"),
            TextColumn("loss {task.fields[loss]}"), console=_err(), transient=True,
        )
        self._bar.start()
        self._task = self._bar.add_task("train", total=n_batches, epoch=f"{epoch + 1}/{epochs}",
                                        rate="", loss="-")
        self._start = time.perf_counter()

    def batch_end(self, batch: int, logs: dict[str, float], samples: int) -> None:
        if self._bar is None:
            return
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        self._bar.update(self._task, advance=1, loss=f"{logs['loss']:.4f}",
                         rate=f"{samples / elapsed:,.0f} samples/s")

    def epoch_end(self, epoch: int, epochs: int, logs: dict[str, float]) -> None:
        self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


@contextmanager
def download_progress() -> Iterator[Any]:
    """A callback progress(done_bytes, total_bytes_or_None) that drives a rich download bar."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    bar = Progress(TextColumn("downloading"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                   console=_err(), transient=True, disable=not _err().is_terminal)
    task = None

    def update(done: int, total: int | None) -> None:
        nonlocal task
        if task is None or done == 0:
            if task is not None:
                bar.remove_task(task)
            task = bar.add_task("download", total=total)
        bar.update(task, completed=done, total=total)

    with bar:
        yield update


def kv_table(title: str, values: dict[str, Any]) -> None:
    """A two-column table of names and numbers (metrics)."""
    from rich.table import Table
    from rich.text import Text

    t = Table(title=title, header_style="bold", title_justify="left")
    t.add_column("metric")
    t.add_column("value", justify="right")
    for k, v in values.items():
        t.add_row(Text(k), Text(f"{v:.4f}" if isinstance(v, float) else str(v)))
    _emit(_out().print, t)

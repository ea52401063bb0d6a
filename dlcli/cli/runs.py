"""`dlcli runs [DIR]`: the runs under DIR and their status; `dlcli runs diff A B`: what differs.

`runs` is a group whose default command is `list`: arguments that do not start with a
subcommand's name go to `list`, so `dlcli runs`, `dlcli runs other/ --sort best` and
`dlcli runs list diff` (a folder named like a subcommand) all list, and `dlcli runs diff A B`
compares.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import click

from dlcli.cli import console
from dlcli.errors import DlcliError

if TYPE_CHECKING:  # the index is imported when a command runs, not for `dlcli --help`
    from dlcli.runs.index import RunInfo


class _DefaultList(click.Group):
    """A group that runs `list` unless the first argument names another subcommand."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ctx.help_option_names):
            args = ["list", *args]
        return super().parse_args(ctx, args)


@click.group("runs", cls=_DefaultList, invoke_without_command=True)
def runs() -> None:
    """The runs under a folder (default: list runs/), or the differences between two runs.

    \b
    dlcli runs [DIR] [--sort KEY] [--json]     the runs under DIR (default runs/)
    dlcli runs diff RUN_A RUN_B [--json]       config and metric differences
    """


@runs.command("list")
@click.argument("directory", metavar="[DIR]", default="runs", required=False)
@click.option("--sort", "sort_key", default="start", show_default=True, metavar="KEY",
              help="name, start (newest first), status, epochs, best (best first), wall "
                   "(longest first), or a test metric such as test.accuracy (best first).")
@click.option("--reverse", is_flag=True, help="The other way round (runs without the value stay "
                                              "last).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON list.")
def list_runs(directory: str, sort_key: str, reverse: bool, as_json: bool) -> None:
    """The runs under DIR (default runs/), or DIR alone when it is a run: status, epochs, best
    and test metrics, wall time."""
    from dlcli.runs.index import SORT_KEYS, scan_runs, sort_runs

    try:
        found, skipped = scan_runs(directory)
    except FileNotFoundError:
        raise DlcliError(f"no runs folder {directory} (dlcli train CONFIG makes runs/; or pass "
                         "the folder that holds the runs)") from None
    except NotADirectoryError:
        raise DlcliError(f"{directory} is not a folder; pass the folder that holds the runs"
                         ) from None
    except OSError as e:
        raise DlcliError(f"cannot read {directory}: {e.strerror or e}") from None
    if found:
        found = sort_runs(found, sort_key, reverse)  # an unknown key: the error lists the keys
    elif sort_key not in SORT_KEYS and not sort_key.startswith("test."):
        raise DlcliError(f"unknown sort key {sort_key!r}; expected one of: "
                         f"{', '.join(SORT_KEYS)}, test.<metric>")
    if as_json:
        console.print_json([run.to_json() for run in found])
        return
    if not found:
        console.info(f"no runs in {directory}")
        for note in skipped:
            console.info(f"  skipped {note}")
        return
    now = time.time()
    rows = [[run.name, _when(run.started_at), _status(run, now), _epochs(run), _best(run),
             _test(run.test), "-" if run.params is None else f"{run.params:,}",
             _duration(run.wall_s)] for run in found]
    footer = []
    for run in found:
        footer += [f"{run.name}: {note}" for note in run.notes]
        if run.status == "failed" and run.error:
            footer.append(f"{run.name}: {_shorten(run.error)}")
    footer += [f"skipped {note}" for note in skipped]
    console.table(["name", "started", "status", "epochs", "best (epoch)", "test", "params",
                   "wall"], rows, right_align=(3, 6, 7), footer=footer)


@runs.command("diff")
@click.argument("run_a", metavar="RUN_A")
@click.argument("run_b", metavar="RUN_B")
@click.option("--dir", "directory", default="runs", show_default=True,
              help="Where RUN_A and RUN_B are looked up when they are names, not folders.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def diff(run_a: str, run_b: str, directory: str, as_json: bool) -> None:
    """Config differences (dotted key paths) and metric differences (A, B, B - A) of two runs.

    RUN_A and RUN_B are run directories, or names (or the start of a name) under --dir.
    """
    from dlcli.runs.diff import diff_runs, format_value

    d = diff_runs(run_a, run_b, directory)
    if as_json:
        console.print_json(d.to_json())
        return
    console.info(f"A: {d.a.path} ({d.a.status})")
    console.info(f"B: {d.b.path} ({d.b.status})")
    if d.config:
        console.info(f"config: {len(d.config)} difference{'s' if len(d.config) != 1 else ''}")
        for c in d.config:
            console.info(f"  {c.key}: {format_value(c.a)} -> {format_value(c.b)}")
    else:
        console.info("config: identical")
    if d.metrics:
        console.table(["metric", "A", "B", "B - A"],
                      [[m.metric, _num(m.a), _num(m.b),
                        "-" if m.delta is None else f"{m.delta:+.4g}"] for m in d.metrics],
                      right_align=(1, 2, 3))
    else:
        console.info("metrics: neither run has test metrics or a best value")


# -- cells ---------------------------------------------------------------------------------
def _when(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _status(run: RunInfo, now: float) -> str:
    if run.status != "running" or run.updated_at is None:
        return run.status
    ago = f"updated {_duration(max(0.0, now - run.updated_at))} ago"
    return f"running ({ago})" if run.local else f"running on {run.host} ({ago})"


def _epochs(run: RunInfo) -> str:
    if run.epochs_done is None and run.epochs is None:
        return "-"
    done = "?" if run.epochs_done is None else str(run.epochs_done)
    return f"{done}/{'?' if run.epochs is None else run.epochs}"


def _best(run: RunInfo) -> str:
    if run.monitor is None or run.best is None:
        return "-"
    epoch = "" if run.best_epoch is None else f" ({run.best_epoch})"
    return f"{run.monitor} {run.best:.4g}{epoch}"


def _test(test: dict[str, float | None] | None) -> str:
    if not test:
        return "-"
    return ", ".join(f"{k} {_num(v)}" for k, v in test.items())


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def _duration(seconds: float | None) -> str:
    """45s, 3m 12s, 2h 05m, 3d 4h."""
    if seconds is None:
        return "-"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def _shorten(text: str, limit: int = 200) -> str:
    line = text.strip().splitlines()[0] if text.strip() else text
    return line if len(line) <= limit else line[: limit - 3] + "..."

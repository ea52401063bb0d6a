"""The `dlcli` command group: --version, --debug, and one module per command.

Expected errors (DlcliError) become one message on stderr and exit code 2; --debug re-raises
them for a traceback. To add a command, write dlcli/cli/<name>.py with a click command and add
one line to COMMANDS below.
"""

from __future__ import annotations

import signal
import sys
from typing import Any

import click

from dlcli import __version__
from dlcli.cli import console
from dlcli.cli.evaluate import evaluate
from dlcli.cli.export import export
from dlcli.cli.gradcheck import gradcheck
from dlcli.cli.plot import plot
from dlcli.cli.predict import predict
from dlcli.cli.runs import runs
from dlcli.cli.schema import schema
from dlcli.cli.summary import summary
from dlcli.cli.train import train
from dlcli.cli.validate import validate
from dlcli.errors import DlcliError

COMMANDS: list[click.Command] = [train, evaluate, export, predict, validate, summary, schema,
                                 gradcheck, runs, plot]


class _Group(click.Group):
    """A click group that turns DlcliError into `error: ...` and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DlcliError as err:
            if ctx.params.get("debug"):
                raise
            console.error(str(err))
            sys.exit(err.exit_code)
        except KeyboardInterrupt:  # Ctrl-C outside the training loop (which handles its own)
            if ctx.params.get("debug"):
                raise
            console.error("interrupted")
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="dlcli")
@click.option("--debug", is_flag=True, help="Show the full traceback of errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Keras-style training from one YAML file."""
    if hasattr(signal, "SIGXFSZ"):
        # past a file-size limit a write fails with EFBIG (an error we report, naming the
        # file) instead of the process being killed by this signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


for _command in COMMANDS:
    main.add_command(_command)

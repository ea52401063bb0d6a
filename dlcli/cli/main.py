"""The `dlcli` command group: --version, --debug, and one module per command.

Expected errors (DlcliError) become one message on stderr and exit code 2; --debug re-raises
them for a traceback. Each command's module is imported only when that command runs, so
`dlcli --help` stays fast. To add a command, write dlcli/cli/<name>.py with a click command and
add one line to COMMANDS below: its name, "module:attribute", and its short help (the first
sentence of the command's docstring, which `dlcli --help` lists without importing the module;
tests/test_cli_startup.py checks that the two agree).
"""

from __future__ import annotations

import importlib
import signal
import sys
from typing import Any

import click

from dlcli import __version__
from dlcli.errors import DlcliError  # no imports of its own

# name -> (where the click command lives, its short help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("dlcli.cli.train:train",
              "Train the model CONFIG describes; writes history, checkpoints and metrics to a "
              "run dir."),
    "eval": ("dlcli.cli.evaluate:evaluate",
             "Evaluate CHECKPOINT: loss, metrics, confusion matrix and per-class scores."),
    "export": ("dlcli.cli.export:export", "Export the model of CHECKPOINT for use outside dlcli."),
    "predict": ("dlcli.cli.predict:predict",
                "Run MODEL (a checkpoint or an exported .onnx file) on INPUT files."),
    "validate": ("dlcli.cli.validate:validate",
                 "Check CONFIG: every key, every value and every layer's shapes."),
    "summary": ("dlcli.cli.summary:summary",
                "Show the model a CONFIG file (YAML) or a CHECKPOINT (.npz) describes: layers, "
                "shapes, parameters, MACs and activation memory, as Keras's model.summary() "
                "prints them."),
    "schema": ("dlcli.cli.schema:schema", "Print the JSON Schema of config files."),
    "gradcheck": ("dlcli.cli.gradcheck:gradcheck",
                  "Compare each weight's analytic gradient with central differences, in "
                  "float64."),
    "runs": ("dlcli.cli.runs:runs",
             "The runs under a folder (default: list runs/), or the differences between two "
             "runs."),
    "plot": ("dlcli.cli.plot:plot",
             "Compare runs: their training curves overlaid in one picture, labelled by run "
             "name."),
    "tune": ("dlcli.cli.tune:tune",
             "Sweep hyperparameters on Ray Tune: one run per trial, the best config as "
             "best.yaml."),
}


def load_command(name: str) -> click.Command:
    """The click command registered as `name` in COMMANDS, importing its module."""
    module, _, attr = COMMANDS[name][0].partition(":")
    return getattr(importlib.import_module(module), attr)


class _Group(click.Group):
    """A click group that loads commands from COMMANDS on first use and turns DlcliError into
    `error: ...` and exit code 2."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            self.add_command(load_command(cmd_name), cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's listing, except that a command not loaded yet shows its COMMANDS short help
        (a stand-in Command shortens it exactly as the real one would)."""
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.commands.get(name) or click.Command(name, help=COMMANDS[name][1])
            if not cmd.hidden:
                rows.append((name, cmd))
        if rows:
            limit = formatter.width - 6 - max(len(name) for name, _ in rows)
            with formatter.section("Commands"):
                formatter.write_dl([(name, cmd.get_short_help_str(limit)) for name, cmd in rows])

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DlcliError as err:
            if ctx.params.get("debug"):
                raise
            from dlcli.cli import console

            console.error(str(err))
            sys.exit(err.exit_code)
        except KeyboardInterrupt:  # Ctrl-C outside the training loop (which handles its own)
            if ctx.params.get("debug"):
                raise
            from dlcli.cli import console

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

"""`dlcli --help` loads no command module, and the lazy command table agrees with the commands.

What is imported is checked, not how long it takes (timings live in benchmarks/).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest

from dlcli import cli
from dlcli.cli.main import COMMANDS, _Group, load_command, main

# what no help screen may import: the numeric core, the schema, the trainer, rich, the extras
HEAVY = ("numpy", "pydantic", "yaml", "rich", "onnx", "matplotlib", "dlcli.core", "dlcli.nn",
         "dlcli.config", "dlcli.data", "dlcli.train", "dlcli.io", "dlcli.export")

_PROBE = """
import contextlib, io, json, sys
from dlcli.cli.main import COMMANDS, main

def imported(args):
    with contextlib.redirect_stdout(io.StringIO()) as out:
        main.main(args, prog_name="dlcli", standalone_mode=False)
    return out.getvalue(), sorted(sys.modules)

text, top = imported(["--help"])
loaded = sorted(main.commands)
per_command = {name: imported([name, "--help"])[1] for name in COMMANDS}
print(json.dumps({"help": text, "top": top, "loaded": loaded, "per_command": per_command}))
"""


@pytest.fixture(scope="module")
def probe() -> dict:
    """Help screens rendered in a fresh interpreter, with the modules each one left imported."""
    done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                          check=True, cwd=Path(__file__).parent.parent)
    return json.loads(done.stdout)


def _heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)]


def test_help_imports_no_command_module(probe: dict) -> None:
    assert _heavy(probe["top"]) == []
    assert [m for m in probe["top"] if m.startswith("dlcli.cli.") and m != "dlcli.cli.main"] == []
    assert probe["loaded"] == []
    for name in COMMANDS:
        assert f"\n  {name} " in probe["help"], name


def test_command_help_imports_only_its_module(probe: dict) -> None:
    for name, modules in probe["per_command"].items():
        assert _heavy(modules) == [], name


def test_table_matches_the_commands() -> None:
    for name, (target, short_help) in COMMANDS.items():
        cmd = load_command(name)
        assert isinstance(cmd, click.Command), target
        assert cmd.name == name, target
        # the first sentence of its docstring, as click would list it given room
        assert cmd.get_short_help_str(limit=10_000) == short_help, name


def test_every_command_module_is_in_the_table() -> None:
    modules = {target.partition(":")[0] for target, _ in COMMANDS.values()}
    files = {f"dlcli.cli.{p.stem}" for p in Path(cli.__file__).parent.glob("*.py")}
    assert files - modules == {"dlcli.cli.__init__", "dlcli.cli.main", "dlcli.cli.console",
                               "dlcli.cli.options"}


@pytest.mark.parametrize("width", [80, 50])
def test_lazy_listing_equals_the_loaded_one(width: int) -> None:
    def help_text(group: click.Group) -> str:
        return group.get_help(click.Context(group, info_name="dlcli", terminal_width=width))

    lazy = _Group(params=main.params, help=main.help)
    loaded = _Group(params=main.params, help=main.help)
    for name in COMMANDS:
        loaded.add_command(load_command(name), name)
    assert lazy.commands == {}
    assert help_text(lazy) == help_text(loaded)
    assert "Commands:" in help_text(lazy)


def test_unknown_command_is_a_usage_error() -> None:
    from click.testing import CliRunner

    res = CliRunner().invoke(main, ["no-such-command"])
    assert res.exit_code == 2 and "No such command" in res.output

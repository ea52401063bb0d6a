"""`dlcli schema`: the JSON Schema of config files, for editors with a YAML language server."""

from __future__ import annotations

import json

import click

from dlcli.cli import console
from dlcli.errors import DlcliError


def schema_text() -> str:
    """The schema as committed in configs/dlcli.schema.json."""
    from dlcli.config import config_json_schema

    return json.dumps(config_json_schema(), indent=2) + "\n"


@click.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Write the schema to this file instead of printing it.")
def schema(output: str | None) -> None:
    """Print the JSON Schema of config files.

    Point an editor at it with a first line `# yaml-language-server: $schema=./dlcli.schema.json`.
    """
    text = schema_text()
    if output is None:
        console.raw(text)
        return
    try:
        with open(output, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as err:
        raise DlcliError(f"cannot write {output}: {err.strerror or err}") from None
    console.success(f"wrote {output}")

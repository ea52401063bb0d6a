"""`dlcli gradcheck CONFIG`: check every layer's backward pass against central differences."""

from __future__ import annotations

import click

from dlcli.cli import console
from dlcli.cli.options import config_argument, set_option
from dlcli.errors import DlcliError


class GradcheckFailed(DlcliError):
    """A layer's analytic gradient disagrees with the numerical one (exit 1)."""

    exit_code = 1


@click.command()
@config_argument
@set_option
@click.option("--batch-size", type=click.IntRange(min=1), default=4, show_default=True,
              help="Samples in the batch the loss is computed on.")
@click.option("--entries", type=click.IntRange(min=1), default=12, show_default=True,
              help="Entries checked per weight at most (all of a smaller weight).")
@click.option("--data-dir", type=click.Path(file_okay=False),
              help="Folder searched first for built-in datasets (also $DLCLI_DATA).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def gradcheck(config: str, overrides: tuple[str, ...], batch_size: int, entries: int,
              data_dir: str | None, as_json: bool) -> None:
    """Compare each weight's analytic gradient with central differences, in float64.

    Exits 1 when a layer fails (relative difference above 1e-6).
    """
    from dlcli.config import load_config
    from dlcli.train.gradcheck import TOLERANCE, describe
    from dlcli.train.gradcheck import gradcheck as run

    cfg = load_config(config, overrides)
    report = run(cfg, batch_size=batch_size, entries=entries, data_dir=data_dir)
    if as_json:
        console.print_json({"data": report.data, "passed": report.passed,
                            "tolerance": TOLERANCE,
                            "weights": [describe(c) for c in report.checks]})
    else:
        rows = [[c.layer, c.weight, "x".join(map(str, c.shape)), str(c.checked),
                 f"{c.max_abs_error:.2e}", f"{c.relative:.2e}", "pass" if c.passed else "FAIL"]
                for c in report.checks]
        console.table(["layer", "weight", "shape", "checked", "max abs error", "relative error",
                       "result"], rows, title=f"gradient check on {report.data} (float64, "
                       f"relative tolerance {TOLERANCE:g})", right_align=(3, 4, 5))
    failed = sorted({c.layer for c in report.checks if not c.passed})
    if failed:
        raise GradcheckFailed(f"the analytic gradient is wrong in {', '.join(failed)}")
    if not as_json:
        console.success(f"all {len(report.checks)} weights pass")

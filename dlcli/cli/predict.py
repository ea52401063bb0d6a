"""`dlcli predict MODEL INPUT...`: top-k classes (or values) for new inputs."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

import click

from dlcli.cli import console
from dlcli.cli.options import device_option

_SHOWN = 100  # rows printed in the terminal table; -o writes them all
_BAR_FROM = 2000  # inputs from which a progress bar is shown


@click.command()
@click.argument("model", metavar="MODEL")
@click.argument("inputs", metavar="INPUT...", nargs=-1, required=True)
@click.option("--top-k", "-k", "top_k", type=click.IntRange(min=1), default=3, show_default=True,
              help="How many classes to list per input.")
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Write every prediction to a .csv, .json or .npy file.")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True,
              help="Inference batch size.")
@click.option("--resize", is_flag=True,
              help="Resize images to the model's height and width instead of refusing them.")
@device_option
def predict(model: str, inputs: tuple[str, ...], top_k: int, output: str | None,
            batch_size: int, resize: bool, device: str) -> None:
    """Run MODEL (a checkpoint or an exported .onnx file) on INPUT files.

    INPUT: .npy/.npz arrays, CSV/TSV tables (features, optionally with the target column),
    PNG/JPEG images or folders of them. Inputs are raw, as the dataset stores them; the
    model's own preprocessing is applied.
    """
    from dlcli.predict import predict as run

    with ExitStack() as stack:
        bar: dict[str, Any] = {}

        def before(n: int) -> None:
            if n >= _BAR_FROM:
                bar["task"] = stack.enter_context(console.progress("predicting", total=n))

        def advance(n: int) -> None:
            if "task" in bar:
                bar["task"].advance(n)

        preds = run(model, list(inputs), batch_size=batch_size, resize=resize,
                    progress=advance, before=before, device=device)
    import numpy as np

    if not np.isfinite(preds.outputs).all():
        console.warning("the model's outputs are not finite for some inputs")
    if output is not None:
        path = preds.write(output, top_k)
        n = len(preds.names)
        console.success(f"wrote {n:,} prediction{'s' if n != 1 else ''} to {path}")
        return
    _table(preds, top_k)


def _table(preds: Any, k: int) -> None:
    shown = preds.records(k)[:_SHOWN]
    if preds.classification:
        k = len(shown[0]["top_k"]) if shown else k
        columns = ["input", *(c for i in range(1, k + 1) for c in (f"class {i}", f"p {i}"))]
        rows = [[r["input"], *(cell for t in r["top_k"]
                               for cell in (t["class"], _p(t["probability"])))] for r in shown]
        align = range(2, 2 * k + 1, 2)
    else:
        n = len(shown[0]["output"]) if shown else 1
        columns = ["input", *(["output"] if n == 1 else [f"output {j}" for j in range(n)])]
        rows = [[r["input"], *(_p(v) for v in r["output"])] for r in shown]
        align = range(1, n + 1)
    footer = []
    if len(preds.names) > _SHOWN:
        footer.append(f"... {len(preds.names) - _SHOWN:,} more; -o FILE writes them all")
    console.table(columns, rows, title=f"predictions of {preds.info.source}", right_align=align,
                  footer=footer)


def _p(v: float | None) -> str:
    return "nan" if v is None else f"{v:.4f}"

"""`dlcli eval CHECKPOINT`: loss and metrics of a trained model on its test data."""

from __future__ import annotations

import click

from dlcli.cli import console
from dlcli.cli.options import device_option
from dlcli.errors import DlcliError


@click.command("eval")
@click.argument("checkpoint", metavar="CHECKPOINT")
@click.option("--data", type=click.Path(dir_okay=False),
              help="A data file (npz, npy, CSV, IDX) instead of the config's test split.")
@click.option("--labels", type=click.Path(dir_okay=False),
              help="The labels (.npy or IDX) of a --data file that holds features only.")
@click.option("--split", type=click.Choice(["test", "validation", "train"]), default="test",
              show_default=True, help="Which split of the config's data to evaluate.")
@click.option("--data-dir", type=click.Path(file_okay=False),
              help="Folder searched first for built-in datasets (also $DLCLI_DATA).")
@click.option("--batch-size", type=click.IntRange(min=1), help="Inference batch size.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--plots", type=click.Path(file_okay=False),
              help="Folder for confusion_matrix.png (default: the checkpoint's run directory); "
                   "written when matplotlib (dlcli[plot]) is installed.")
@device_option
def evaluate(checkpoint: str, data: str | None, labels: str | None, split: str,
             data_dir: str | None, batch_size: int | None, as_json: bool,
             plots: str | None, device: str) -> None:
    """Evaluate CHECKPOINT: loss, metrics, confusion matrix and per-class scores."""
    from dlcli.train.evaluate import evaluate_checkpoint, write_confusion_plot

    with console.download_progress() as progress:
        report = evaluate_checkpoint(checkpoint, data=data, split=split, labels=labels,
                                     data_dir=data_dir, batch_size=batch_size, progress=progress,
                                     device=device)
    try:
        picture = write_confusion_plot(report, plots)
    except DlcliError as e:
        if plots is not None:  # asked for: an unwritable folder is the command's error
            raise
        picture = None  # the run directory may be read-only: the numbers still count
        report.warnings.append(f"{e}; no confusion matrix picture")
    for message in report.warnings:
        console.warning(message)
    if as_json:
        out = report.to_json()
        if picture is not None:
            out["confusion_matrix_png"] = str(picture)
        console.print_json(out)
        return
    console.info(f"{report.checkpoint} on {report.data} ({report.samples:,} samples)")
    console.kv_table("metrics", report.metrics)
    if report.confusion is not None:
        names = report.class_names or [str(i) for i in range(len(report.confusion))]
        console.table(
            ["true \\ predicted", *names],
            [[names[i], *(f"{v:,}" for v in row)] for i, row in enumerate(report.confusion)],
            title="confusion matrix", right_align=range(1, len(names) + 1),
        )
        console.table(
            ["class", "precision", "recall", "f1", "support"],
            [[r["name"], f"{r['precision']:.4f}", f"{r['recall']:.4f}", f"{r['f1']:.4f}",
              f"{r['support']:,}"] for r in report.per_class],
            title="per class", right_align=(1, 2, 3, 4),
        )
    if picture is not None:
        console.info(f"confusion matrix picture: {picture}")

"""Pictures of runs: curves.png after training, `dlcli plot`, filters, eval's confusion matrix.

Tiny runs on synthetic data and a small image npz; without matplotlib (dlcli[plot]) the
picture tests are skipped, and the tests that block the import still run.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dlcli.cli.main import main
from dlcli.cli.plot import plot
from dlcli.config import load_config_text
from dlcli.runs.plots import CurvesHook, curves_figure, read_run
from dlcli.train.trainer import Trainer

if "plot" not in main.commands:  # until dlcli/cli/main.py registers it
    main.add_command(plot)

needs_mpl = pytest.mark.skipif(
    __import__("importlib").util.find_spec("matplotlib") is None,
    reason="matplotlib (dlcli[plot]) is not installed",
)

BLOBS = """
name: blobs
seed: 7
data: {dataset: blobs, n_samples: 300, validation_split: 0.2, test_split: 0.2, batch_size: 16,
       normalize: standardize}
model:
  input_shape: [2]
  layers:
    - {type: Dense, units: 16, activation: relu, kernel_regularizer: {l2: 0.001}}
    - {type: Dropout, rate: 0.2}
    - {type: BatchNorm}
    - {type: Dense, units: 3, activation: softmax}
loss: categorical_crossentropy
metrics: [accuracy, f1]
optimizer: {type: adam, learning_rate: 0.01}
training: {epochs: 4}
"""

# blobs are separable at once: val_accuracy is 1.0 after epoch 1, so patience 1 stops after 2
EARLY = "training.early_stopping={monitor: val_accuracy, patience: 1}"

IMAGES = """
name: {name}
seed: 4
data: {{train: {data}, validation_split: 0.25, test_split: 0.25, batch_size: 8,
        normalize: scale}}
model:
  input_shape: [8, 8, {channels}]
  layers:
{layers}
loss: sparse_categorical_crossentropy
metrics: [accuracy]
optimizer: {{type: adam, learning_rate: 0.01}}
training: {{epochs: 2}}
"""
CNN_LAYERS = """\
    - {type: Conv2D, filters: 5, kernel_size: 3, activation: relu}
    - {type: Flatten}
    - {type: Dense, units: 3, activation: softmax}"""
MLP_LAYERS = """\
    - {type: Flatten}
    - {type: Dense, units: 12, activation: relu}
    - {type: Dense, units: 3, activation: softmax}"""


def train(text: str, run_dir: Path, *overrides: str, hooks: list | None = None) -> Trainer:
    trainer = Trainer(load_config_text(textwrap.dedent(text), list(overrides)), run_dir=run_dir,
                      hooks=hooks)
    trainer.fit()
    return trainer


def image_config(folder: Path, name: str, channels: int, layers: str) -> str:
    rng = np.random.default_rng(channels)
    data = folder / f"images{channels}.npz"
    if not data.exists():
        np.savez(data, x=rng.integers(0, 256, (96, 8, 8, channels), dtype=np.uint8),
                 y=np.arange(96) % 3)
    return IMAGES.format(name=name, data=data, channels=channels, layers=layers)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two blobs runs (one stopped early), a grey CNN, an RGB CNN and an MLP on images."""
    root = tmp_path_factory.mktemp("runs")
    train(BLOBS, root / "early", EARLY, "training.epochs=10")
    train(BLOBS, root / "full")
    train(image_config(root, "cnn", 1, CNN_LAYERS), root / "cnn")
    train(image_config(root, "rgb", 3, CNN_LAYERS), root / "rgb")
    train(image_config(root, "mlp", 1, MLP_LAYERS), root / "mlp")
    return {p.name: p for p in root.iterdir() if p.is_dir()}


def png_size(path: Path) -> tuple[int, int]:
    image_module = pytest.importorskip("PIL.Image")  # Pillow: the images extra
    with image_module.open(path) as image:
        assert image.format == "PNG"
        return image.size


def block_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if matplotlib were not installed: find_spec says None and the import fails."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)


# -- curves.png at the end of training ------------------------------------------------------
@needs_mpl
def test_curves_png_after_training(tmp_path: Path) -> None:
    trainer = train(BLOBS, tmp_path / "run", EARLY, "training.epochs=10", hooks=[CurvesHook()])
    assert len(trainer.history) == 2 and trainer.best_epoch == 0  # stopped early after 2
    # loss, accuracy, f1 and the learning rate: 4 panels of 480x360 in a 3-column grid
    assert png_size(tmp_path / "run" / "curves.png") == (3 * 480, 2 * 360)
    assert "curves plot failed" not in (tmp_path / "run" / "train.log").read_text()


@needs_mpl
def test_curves_mark_the_best_epoch_and_the_early_stop(runs: dict[str, Path]) -> None:
    run = read_run(runs["early"])
    assert (run.best_epoch, run.stopped_epoch, run.monitor) == (1, 2, "val_accuracy")
    assert run.metrics() == ["accuracy", "f1"]
    fig = curves_figure([run], ["loss", *run.metrics()], with_lr=True)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["loss", "accuracy", "f1", "learning rate"]
    labels = axes[1].get_legend_handles_labels()[1]
    assert labels == ["train", "validation", "best epoch 1 by val_accuracy",
                      "early stop after epoch 2"]
    full = read_run(runs["full"])
    assert full.stopped_epoch is None and full.best_epoch is not None


@needs_mpl
def test_cli_train_writes_and_names_curves(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(textwrap.dedent(BLOBS))
    res = CliRunner().invoke(main, ["train", str(config), "--run-dir", str(tmp_path / "run"),
                                    "--epochs", "2"])
    assert res.exit_code == 0, res.output
    assert f"curves: {tmp_path / 'run' / 'curves.png'}" in res.output
    assert png_size(tmp_path / "run" / "curves.png") == (1440, 720)


def test_cli_train_without_matplotlib_skips_the_curves(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    block_matplotlib(monkeypatch)
    config = tmp_path / "c.yaml"
    config.write_text(textwrap.dedent(BLOBS))
    res = CliRunner().invoke(main, ["train", str(config), "--run-dir", str(tmp_path / "run"),
                                    "--epochs", "2"])
    assert res.exit_code == 0, res.output
    assert "run saved in" in res.output and "curves" not in res.output
    assert (tmp_path / "run" / "history.csv").exists()
    assert not (tmp_path / "run" / "curves.png").exists()
    assert "failed" not in (tmp_path / "run" / "train.log").read_text()


def test_a_failing_curves_hook_never_stops_training(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    block_matplotlib(monkeypatch)  # the hook given anyway: it raises, is logged and dropped
    trainer = train(BLOBS, tmp_path / "run", "training.epochs=2", hooks=[CurvesHook()])
    assert len(trainer.history) == 2
    log = (tmp_path / "run" / "train.log").read_text()
    assert "curves plot failed" in log and "dlcli[plot]" in log
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "finished"


# -- dlcli plot -----------------------------------------------------------------------------
@needs_mpl
def test_plot_two_runs(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "cmp.png"
    res = CliRunner().invoke(main, ["plot", str(runs["early"]), str(runs["full"]), "-o",
                                    str(out)])
    assert res.exit_code == 0, res.output
    assert f"curves of 2 runs written to {out}" in res.output
    # the loss and the first metric, side by side, and the shared legend under them: 7 entries
    # (early: train, validation, best, stop; full: train, validation, best) in 2 columns
    assert png_size(out) == (2 * 480, 360 + 4 * 15 + 20)


@needs_mpl
def test_several_runs_share_one_legend_under_the_curves(runs: dict[str, Path]) -> None:
    early, full = read_run(runs["early"]), read_run(runs["full"])
    early.name, full.name = "a-long-run-name-" * 3 + "early", "a-long-run-name-" * 3 + "full"
    fig = curves_figure([early, full], ["loss", "accuracy"])
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert all(ax.get_legend() is None for ax in axes)  # nothing drawn over the curves
    (legend,) = fig.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert len(labels) == len(set(labels)) == 7  # each once, though both panels draw it
    assert f"{early.name}: early stop after epoch 2" in labels
    assert f"{full.name}: validation" in labels
    # one run alone keeps its legend inside each panel
    fig = curves_figure([early], ["loss"])
    assert not fig.legends and fig.axes[0].get_legend() is not None


@needs_mpl
def test_plot_one_metric(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "one.png"
    res = CliRunner().invoke(main, ["plot", str(runs["early"]), str(runs["full"]),
                                    "--metric", "val_accuracy", "-o", str(out)])
    assert res.exit_code == 0, res.output
    # one panel, its legend under it in one column: 5 entries (early: validation, best,
    # stop; full: validation, best)
    assert png_size(out) == (480, 360 + 5 * 15 + 20)


@needs_mpl
def test_plot_default_output_is_plot_png(runs: dict[str, Path], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["plot", str(runs["full"])])
    assert res.exit_code == 0, res.output
    assert png_size(tmp_path / "plot.png") == (960, 360)


@needs_mpl
@pytest.mark.parametrize("args,fragments", [
    (["--metric", "val_acc"], ["unknown metric 'val_acc'", "val_accuracy", "loss", "lr"]),
    (["{missing}"], ["no run directory at"]),
    (["{empty}"], ["has no history.csv"]),
])
def test_plot_errors_are_one_line(runs: dict[str, Path], tmp_path: Path, args: list[str],
                                  fragments: list[str]) -> None:
    (tmp_path / "empty").mkdir()
    args = [a.format(missing=tmp_path / "missing", empty=tmp_path / "empty") for a in args]
    res = CliRunner().invoke(main, ["plot", str(runs["full"]), *args,
                                    "-o", str(tmp_path / "x.png")])
    assert res.exit_code == 2, res.output
    assert all(f in res.output for f in fragments), res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "x.png").exists()


def test_plot_without_matplotlib_names_the_extra(runs: dict[str, Path], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    block_matplotlib(monkeypatch)
    for args in ([str(runs["full"])], ["--filters", str(runs["cnn"])]):
        res = CliRunner().invoke(main, ["plot", *args, "-o", str(tmp_path / "x.png")])
        assert res.exit_code == 2, res.output
        assert "pip install 'dlcli[plot]'" in res.output and "Traceback" not in res.output


# -- dlcli plot --filters -------------------------------------------------------------------
@needs_mpl
@pytest.mark.parametrize("run,checkpoint,size", [
    ("cnn", False, (8 * 80 + 140, 80 + 60)),  # 5 filters: one row of tiles
    ("rgb", True, (8 * 80 + 140, 80 + 60)),
    ("mlp", True, (8 * 80 + 140, 2 * 80 + 60)),  # 12 units on the 8x8 image: two rows
])
def test_filters(runs: dict[str, Path], tmp_path: Path, run: str, checkpoint: bool,
                 size: tuple[int, int]) -> None:
    source = runs[run] / "checkpoints" / "best" if checkpoint else runs[run]
    out = tmp_path / "filters.png"
    res = CliRunner().invoke(main, ["plot", "--filters", str(source), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert f"written to {out}" in res.output
    assert png_size(out) == size


@needs_mpl
def test_filters_of_a_model_without_images_is_an_error(runs: dict[str, Path],
                                                       tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["plot", "--filters", str(runs["full"]),
                                    "-o", str(tmp_path / "f.png")])
    assert res.exit_code == 2, res.output
    assert "nothing to draw" in res.output and "no Conv2D layer" in res.output
    res = CliRunner().invoke(main, ["plot", "--filters", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "no run directory or checkpoint at" in res.output


# -- dlcli eval: confusion_matrix.png -------------------------------------------------------
@needs_mpl
def test_eval_writes_the_confusion_matrix(runs: dict[str, Path], tmp_path: Path) -> None:
    png = runs["cnn"] / "confusion_matrix.png"
    png.unlink(missing_ok=True)
    runner = CliRunner()
    res = runner.invoke(main, ["eval", str(runs["cnn"] / "checkpoints" / "best")])
    assert res.exit_code == 0, res.output
    assert f"confusion matrix picture: {png}" in res.output
    width, height = png_size(png)
    assert width > height >= 480
    res = runner.invoke(main, ["eval", str(runs["cnn"] / "checkpoints" / "last"), "--json",
                               "--plots", str(tmp_path / "pics")])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["confusion_matrix_png"] == str(tmp_path / "pics" / "confusion_matrix.png")
    assert png_size(tmp_path / "pics" / "confusion_matrix.png") == (width, height)


def test_eval_without_matplotlib_skips_the_picture(runs: dict[str, Path],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    png = runs["mlp"] / "confusion_matrix.png"
    png.unlink(missing_ok=True)
    block_matplotlib(monkeypatch)
    res = CliRunner().invoke(main, ["eval", str(runs["mlp"] / "checkpoints" / "best")])
    assert res.exit_code == 0, res.output
    assert "confusion matrix" in res.output and "picture" not in res.output
    assert not png.exists()

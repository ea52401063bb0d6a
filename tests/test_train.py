"""Training, checkpoints and evaluation on synthetic data and small files the tests write."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dlcli.cli.main import main
from dlcli.config import load_config_text
from dlcli.errors import DlcliError
from dlcli.io.checkpoint import load_checkpoint, save_checkpoint
from dlcli.nn.restore import restore_model
from dlcli.train.evaluate import evaluate_checkpoint
from dlcli.train.trainer import Interrupted, NullReporter, Trainer

SPIRALS = """
name: spirals
seed: 3
data: {dataset: spirals, n_samples: 600, noise: 0.05, validation_split: 0.2, test_split: 0.2,
       batch_size: 32, normalize: standardize}
model:
  input_shape: [2]
  layers:
    - {type: Dense, units: 64, activation: relu}
    - {type: Dense, units: 64, activation: relu}
    - {type: Dense, units: 2, activation: softmax}
loss: sparse_categorical_crossentropy
metrics: [accuracy]
optimizer: {type: adam, learning_rate: 0.01}
training: {epochs: 60}
"""

SMALL = """
name: small
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


def cfg_of(text: str, *overrides: str):
    return load_config_text(textwrap.dedent(text), list(overrides))


def fit(text: str, tmp_path: Path, *overrides: str, name: str = "run", **kw):
    trainer = Trainer(cfg_of(text, *overrides), run_dir=tmp_path / name, **kw)
    return trainer, trainer.fit()


def history_without_time(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


def test_mlp_learns_spirals(tmp_path: Path) -> None:
    _, result = fit(SPIRALS, tmp_path)
    assert result.test_metrics["accuracy"] >= 0.95
    assert result.history[-1]["accuracy"] >= 0.95


def test_run_directory_contents(tmp_path: Path) -> None:
    _, result = fit(SMALL, tmp_path)
    run = result.run_dir
    for name in ("config.yaml", "history.csv", "summary.txt", "metrics.json", "train.log",
                 "checkpoints/best.npz", "checkpoints/last.npz"):
        assert (run / name).is_file(), name
    assert not [p for p in run.rglob("*.tmp")], "temporary files left behind"
    rows = list(csv.DictReader(open(run / "history.csv")))
    assert len(rows) == 4
    assert {"epoch", "lr", "loss", "data_loss", "regularization", "accuracy", "f1",
            "val_loss", "val_accuracy", "val_f1", "seconds"} <= set(rows[0])
    # the regularization term is logged apart from the data loss, and adds up to the loss
    r = rows[-1]
    assert float(r["regularization"]) > 0
    assert float(r["loss"]) == pytest.approx(float(r["data_loss"]) + float(r["regularization"]))
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["test"]) == {"loss", "accuracy", "f1"}
    # the resolved config reloads to the same config
    again = load_config_text((run / "config.yaml").read_text())
    assert again.model_dump() == cfg_of(SMALL).model_dump()
    assert "Total params" in (run / "summary.txt").read_text()


def test_same_seed_repeats_exactly(tmp_path: Path) -> None:
    _, a = fit(SMALL, tmp_path, name="a")
    _, b = fit(SMALL, tmp_path, name="b")
    ha = history_without_time(a.run_dir / "history.csv")
    assert ha == history_without_time(b.run_dir / "history.csv")
    _, c = fit(SMALL, tmp_path, "seed=8", name="c")
    assert history_without_time(c.run_dir / "history.csv") != ha


def test_early_stopping_stops_and_restores(tmp_path: Path) -> None:
    # a learning rate this high makes val_loss bounce, so patience 1 stops early
    trainer, result = fit(
        SMALL, tmp_path, "training.epochs=40", "optimizer.learning_rate=0.5",
        "training.early_stopping={monitor: val_loss, patience: 1, restore_best_weights: true}",
    )
    assert result.stopped_epoch is not None and result.stopped_epoch < 40
    assert len(result.history) == result.stopped_epoch
    losses = [h["val_loss"] for h in result.history]
    assert result.best_epoch == int(np.argmin(losses)) + 1
    assert result.best_epoch < result.stopped_epoch
    best = load_checkpoint(result.run_dir / "checkpoints" / "best")
    last = load_checkpoint(result.run_dir / "checkpoints" / "last")
    now = trainer.model.get_weights()
    for k, v in best.weights.items():
        np.testing.assert_array_equal(now[k], v)
    assert any(not np.array_equal(last.weights[k], v) for k, v in best.weights.items())
    # the restored model scores the best epoch's validation loss
    assert trainer.evaluate(trainer.splits.x_val, trainer.splits.y_val)["loss"] == pytest.approx(
        min(losses), rel=1e-5)


def test_restore_best_weights_without_stopping(tmp_path: Path) -> None:
    trainer, result = fit(
        SMALL, tmp_path, "training.epochs=6", "optimizer.learning_rate=0.5",
        "training.early_stopping={monitor: val_loss, patience: 100, restore_best_weights: true}",
    )
    assert result.stopped_epoch is None
    best = load_checkpoint(result.run_dir / "checkpoints" / "best")
    for k, v in best.weights.items():
        np.testing.assert_array_equal(trainer.model.get_weights()[k], v)


def test_resume_continues_exactly(tmp_path: Path) -> None:
    _, full = fit(SMALL, tmp_path, "training.epochs=4", name="full")
    _, first = fit(SMALL, tmp_path, "training.epochs=2", name="first")
    ckpt = load_checkpoint(first.run_dir / "checkpoints" / "last")
    assert ckpt.epoch == 2
    _, rest = fit(SMALL, tmp_path, "training.epochs=4", name="rest", resume=ckpt)
    assert history_without_time(rest.run_dir / "history.csv") == history_without_time(
        full.run_dir / "history.csv")


def test_interrupt_writes_last_checkpoint(tmp_path: Path) -> None:
    class StopAfterTwoBatches(NullReporter):
        def batch_end(self, batch, logs, samples):
            if batch == 1:
                trainer.request_stop()

    trainer = Trainer(cfg_of(SMALL), run_dir=tmp_path / "run", reporter=StopAfterTwoBatches())
    with pytest.raises(Interrupted) as err:
        trainer.fit()
    assert err.value.exit_code == 130
    assert "last.npz" in str(err.value)
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "last")
    assert ckpt.meta["interrupted"] is True
    assert ckpt.epoch == 0


def test_ctrl_c_in_the_cli_exits_130(tmp_path: Path) -> None:
    config = tmp_path / "long.yaml"
    config.write_text(textwrap.dedent(SMALL).replace("epochs: 4", "epochs: 100000"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "dlcli", "train", str(config), "--run-dir", str(tmp_path / "r")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    for line in proc.stdout:  # wait until training runs
        if line.startswith("epoch 2/"):
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "last.npz" in err
    assert "Traceback" not in err
    assert load_checkpoint(tmp_path / "r" / "checkpoints" / "last").meta["interrupted"]


def test_checkpoint_round_trip_and_eval(tmp_path: Path) -> None:
    trainer, result = fit(SMALL, tmp_path)
    ckpt = load_checkpoint(result.run_dir / "checkpoints" / "best")
    assert ckpt.meta["preprocessing"]["mode"] == "standardize"
    assert ckpt.meta["class_names"] == ["class_0", "class_1", "class_2"]
    assert {"model", "shuffle"} <= set(ckpt.meta["rng"])
    assert any(k.startswith("m/") for k in ckpt.optimizer)
    assert any("moving_mean" in k for k in ckpt.weights)
    cfg, model = restore_model(ckpt)
    for k, v in trainer.model.get_weights().items():
        np.testing.assert_array_equal(model.get_weights()[k], v)
    report = evaluate_checkpoint(result.run_dir / "checkpoints" / "best")
    assert report.metrics["accuracy"] == pytest.approx(result.test_metrics["accuracy"])
    assert report.metrics["loss"] == pytest.approx(result.test_metrics["loss"], rel=1e-5)
    assert report.confusion.sum() == report.samples == len(trainer.splits.x_test)


def test_save_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trainer, result = fit(SMALL, tmp_path)
    path = result.run_dir / "checkpoints" / "best.npz"
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError):
        save_checkpoint(path, trainer.checkpoint(1))
    assert path.read_bytes() == before
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def write_npz(path: Path, n: int, seed: int, labels_offset: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, 3)).astype(np.float32) + y[:, None] * 2.0
    np.savez(path, x=x, y=y + labels_offset)
    return path


FILES = """
name: files
data: {{train: {train}, test: {test}, validation_split: 0.2, batch_size: 16}}
model:
  input_shape: [3]
  layers: [{{type: Dense, units: 8, activation: relu}}, {{type: Dense, units: 2,
            activation: softmax}}]
loss: sparse_categorical_crossentropy
metrics: [accuracy, precision, recall]
training: {{epochs: 3}}
"""


def test_cli_train_and_eval_on_files(tmp_path: Path) -> None:
    train, test = write_npz(tmp_path / "tr.npz", 200, 0), write_npz(tmp_path / "te.npz", 60, 1)
    config = tmp_path / "c.yaml"
    config.write_text(FILES.format(train=train, test=test))
    runner = CliRunner()
    res = runner.invoke(main, ["train", str(config), "--run-dir", str(tmp_path / "run"),
                               "--epochs", "2"])
    assert res.exit_code == 0, res.output
    assert "epoch 2/2" in res.output and "run saved in" in res.output
    rows = list(csv.DictReader(open(tmp_path / "run" / "history.csv")))
    assert len(rows) == 2  # --epochs overrides the config
    res = runner.invoke(main, ["eval", str(tmp_path / "run" / "checkpoints" / "best"), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["samples"] == 60 and 0 <= report["accuracy"] <= 1
    assert len(report["confusion_matrix"]) == 2
    other = write_npz(tmp_path / "other.npz", 40, 2)
    res = runner.invoke(main, ["eval", str(tmp_path / "run" / "checkpoints" / "last"),
                               "--data", str(other)])
    assert res.exit_code == 0, res.output
    assert "confusion matrix" in res.output and "(40 samples)" in res.output
    # an existing run directory is never overwritten
    res = runner.invoke(main, ["train", str(config), "--run-dir", str(tmp_path / "run")])
    assert res.exit_code == 2 and "already exists" in res.output
    res = runner.invoke(main, ["summary", str(tmp_path / "run" / "checkpoints" / "best")])
    assert res.exit_code == 0 and "Total params: 50" in res.output


@pytest.mark.parametrize("case,fragment", [
    ("labels", "label"),
    ("shape", "shape"),
])
def test_bad_data_is_reported_before_training(tmp_path: Path, case: str, fragment: str) -> None:
    train = write_npz(tmp_path / "tr.npz", 100, 0, labels_offset=1 if case == "labels" else 0)
    test = write_npz(tmp_path / "te.npz", 30, 1)
    text = FILES.format(train=train, test=test)
    if case == "shape":
        text = text.replace("input_shape: [3]", "input_shape: [4]")
    config = tmp_path / "c.yaml"
    config.write_text(text)
    res = CliRunner().invoke(main, ["train", str(config), "--run-dir", str(tmp_path / "run")])
    assert res.exit_code == 2, res.output
    assert fragment in res.output.lower()
    assert "Traceback" not in res.output
    assert not (tmp_path / "run").exists()  # nothing was started


def test_corrupt_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    _, result = fit(SMALL, tmp_path)
    data = (result.run_dir / "checkpoints" / "best.npz").read_bytes()
    broken = tmp_path / "broken.npz"
    broken.write_bytes(data[: len(data) // 2])
    runner = CliRunner()
    for path, fragment in ((broken, "corrupt or truncated"), (tmp_path / "nope", "no checkpoint"),
                           (tmp_path, "is a folder")):
        res = runner.invoke(main, ["eval", str(path)])
        assert res.exit_code == 2, res.output
        assert fragment in res.output and "Traceback" not in res.output


def test_regression_config_trains(tmp_path: Path) -> None:
    cfg = Path(__file__).parent.parent / "configs" / "regression.yaml"
    res = CliRunner().invoke(main, ["train", str(cfg), "--run-dir", str(tmp_path / "r"),
                                    "--epochs", "3", "--quiet"])
    assert res.exit_code == 0, res.output
    assert res.output == ""
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    rows = list(csv.DictReader(open(tmp_path / "r" / "history.csv")))
    assert "r2" in rows[0] and "val_mae" in rows[0]
    assert metrics["epochs_run"] == 3


def test_diverging_loss_is_reported(tmp_path: Path) -> None:
    with pytest.raises(DlcliError, match="diverged"):
        fit(SMALL, tmp_path, "optimizer={type: sgd, learning_rate: 1.0e+12}",
            "model.layers[0].kernel_regularizer=null")



def test_resume_with_another_optimizer_is_a_clear_error(tmp_path: Path) -> None:
    _, first = fit(SMALL, tmp_path, "training.epochs=1", name="first")
    config = tmp_path / "c.yaml"
    config.write_text(textwrap.dedent(SMALL))
    res = CliRunner().invoke(main, [
        "train", str(config), "--set", "optimizer.type=sgd", "--run-dir", str(tmp_path / "r"),
        "--resume", str(first.run_dir / "checkpoints" / "last")])
    assert res.exit_code == 2, res.output
    assert "cannot resume" in res.output and "Traceback" not in res.output


def test_resume_takes_a_run_directory_for_its_last_checkpoint(tmp_path: Path) -> None:
    _, first = fit(SMALL, tmp_path, "training.epochs=1", name="first")
    config = tmp_path / "c.yaml"
    config.write_text(textwrap.dedent(SMALL))
    weights = {}
    for i, given in enumerate([first.run_dir / "checkpoints" / "last", first.run_dir,
                               first.run_dir / "checkpoints"]):
        res = CliRunner().invoke(main, [
            "train", str(config), "--epochs", "2", "--run-dir", str(tmp_path / f"r{i}"),
            "--resume", str(given), "--quiet"])
        assert res.exit_code == 0, res.output
        weights[i] = load_checkpoint(tmp_path / f"r{i}" / "checkpoints" / "last").weights
    for i in (1, 2):  # the same run continued: the same weights to the last bit
        for k, v in weights[0].items():
            np.testing.assert_array_equal(weights[i][k], v)
    # a folder without a last checkpoint is refused with a hint, never a traceback
    res = CliRunner().invoke(main, ["train", str(config), "--resume", str(tmp_path)])
    assert res.exit_code == 2 and "is a folder" in res.output and "Traceback" not in res.output


def test_resume_keeps_the_best_weights_from_before(tmp_path: Path) -> None:
    stopping = ("training.early_stopping={monitor: val_loss, patience: 100, "
                "restore_best_weights: true}")
    _, full = fit(SMALL, tmp_path, "training.epochs=6", "optimizer.learning_rate=0.5", stopping,
                  name="full")
    assert full.best_epoch is not None
    _, first = fit(SMALL, tmp_path, f"training.epochs={full.best_epoch}",
                   "optimizer.learning_rate=0.5", stopping, name="first")
    config = tmp_path / "c.yaml"
    config.write_text(textwrap.dedent(SMALL))
    res = CliRunner().invoke(main, [
        "train", str(config), "--set", "training.epochs=6", "--set",
        "optimizer.learning_rate=0.5", "--set", stopping, "--run-dir", str(tmp_path / "rest"),
        "--resume", str(first.run_dir / "checkpoints" / "last"), "--quiet"])
    assert res.exit_code == 0, res.output
    # the resumed run ends where the uninterrupted one did: same best epoch, same weights
    want = load_checkpoint(full.run_dir / "checkpoints" / "best")
    got = load_checkpoint(tmp_path / "rest" / "checkpoints" / "best")
    assert got.meta["best"]["epoch"] == want.meta["best"]["epoch"]
    for k, v in want.weights.items():
        np.testing.assert_array_equal(got.weights[k], v)
    metrics = json.loads((tmp_path / "rest" / "metrics.json").read_text())
    assert metrics["test"] == json.loads((full.run_dir / "metrics.json").read_text())["test"]

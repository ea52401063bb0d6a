"""Faults: signals, resume, broken pipes and damaged run directories never lose finished work."""

from __future__ import annotations

import csv
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
from dlcli.io.checkpoint import load_checkpoint
from dlcli.train.trainer import Interrupted, NullReporter, Trainer

# dropout and BatchNorm: the random and the moving state must both carry over a resume
CONFIG = """
name: faults
seed: 11
data: {dataset: blobs, n_samples: 1500, validation_split: 0.2, test_split: 0.2, batch_size: 16,
       normalize: standardize}
model:
  input_shape: [2]
  layers:
    - {type: Dense, units: 32, activation: relu}
    - {type: Dropout, rate: 0.3}
    - {type: BatchNorm}
    - {type: Dense, units: 3, activation: softmax}
loss: categorical_crossentropy
metrics: [accuracy]
optimizer: {type: adam, learning_rate: 0.01}
training: {epochs: 5, lr_schedule: {type: cosine}}
"""


def rows(run: Path) -> list[dict[str, str]]:
    with open(run / "history.csv") as f:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]


def final_weights(run: Path) -> dict[str, np.ndarray]:
    return load_checkpoint(run / "checkpoints" / "last").weights


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run."""
    run = tmp_path_factory.mktemp("ref") / "run"
    Trainer(load_config_text(CONFIG), run_dir=run).fit()
    return run


def same_run(a: Path, b: Path) -> None:
    assert rows(a) == rows(b)  # row by row, to the last digit
    wa, wb = final_weights(a), final_weights(b)
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k], err_msg=k)


class StopAt(NullReporter):
    """Asks the trainer to stop after batch `batch` of epoch `epoch` (0-based)."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch, self.current, self.trainer = epoch, batch, -1, None

    def epoch_begin(self, epoch, epochs, n_batches):
        self.current = epoch

    def batch_end(self, batch, logs, samples):
        if self.current == self.epoch and batch == self.batch:
            self.trainer.request_stop()


@pytest.mark.parametrize("batch", [0, 7, 56])  # first batch, inside, the epoch's last batch
def test_stop_inside_an_epoch_then_resume_is_exact(reference: Path, tmp_path: Path,
                                                   batch: int) -> None:
    reporter = StopAt(1, batch)
    trainer = Trainer(load_config_text(CONFIG), run_dir=tmp_path / "a", reporter=reporter)
    assert trainer._n_batches == 57
    reporter.trainer = trainer
    with pytest.raises(Interrupted) as err:
        trainer.fit()
    ckpt = load_checkpoint(tmp_path / "a" / "checkpoints" / "last")
    assert ckpt.meta["interrupted"] is True
    if batch == 56:  # every batch was done: the epoch is finished, validated and kept
        assert "after epoch 2" in str(err.value)
        assert ckpt.epoch == 2 and "position" not in ckpt.meta
        assert len(rows(tmp_path / "a")) == 2
    else:
        assert f"after batch {batch + 1} of 57" in str(err.value)
        assert ckpt.epoch == 1 and ckpt.meta["position"]["batch"] == batch + 1
    Trainer(load_config_text(CONFIG), run_dir=tmp_path / "b", resume=ckpt).fit()
    same_run(reference, tmp_path / "b")


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143),
                                       (signal.SIGHUP, 129)])
def test_signal_then_resume_matches_the_uninterrupted_run(reference: Path, tmp_path: Path,
                                                          sig: int, code: int) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(textwrap.dedent(CONFIG))
    proc = subprocess.Popen(
        [sys.executable, "-m", "dlcli", "train", str(config), "--run-dir", str(tmp_path / "a")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    for line in proc.stdout:  # wait until the first epoch is done
        if line.startswith("epoch 1/"):
            break
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    name = signal.Signals(sig).name
    assert f"interrupted by {name}" in err and "Traceback" not in err
    log = (tmp_path / "a" / "train.log").read_text()
    assert f"interrupted by {name}" in log
    res = CliRunner().invoke(main, ["train", str(config), "--run-dir", str(tmp_path / "b"),
                                    "--resume", str(tmp_path / "a" / "checkpoints" / "last"),
                                    "--quiet"])
    assert res.exit_code == 0, res.output
    same_run(reference, tmp_path / "b")


def test_a_closed_stdout_does_not_stop_training(reference: Path, tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(textwrap.dedent(CONFIG))
    proc = subprocess.Popen(
        [sys.executable, "-m", "dlcli", "train", str(config), "--run-dir", str(tmp_path / "a")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    proc.stdout.readline()
    proc.stdout.close()  # what `dlcli train cfg | head -1` does
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0, err
    assert "Traceback" not in err
    run = tmp_path / "a"
    for name in ("metrics.json", "checkpoints/best.npz", "checkpoints/last.npz"):
        assert (run / name).is_file(), name
    same_run(reference, run)


def test_resume_with_no_epochs_left_refuses_clearly(reference: Path, tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(textwrap.dedent(CONFIG))
    res = CliRunner().invoke(main, ["train", str(config), "--run-dir", str(tmp_path / "b"),
                                    "--resume", str(reference / "checkpoints" / "last")])
    assert res.exit_code == 2
    assert "nothing to resume" in res.output and "--epochs" in res.output
    assert not (tmp_path / "b").exists()  # no incomplete run directory


def test_a_corrupt_best_does_not_block_resuming_from_last(tmp_path: Path) -> None:
    first = tmp_path / "a"
    Trainer(load_config_text(CONFIG, ["training.epochs=2"]), run_dir=first).fit()
    (first / "checkpoints" / "best.npz").write_bytes(b"PK\x03\x04 garbage")
    orphan = first / "checkpoints" / ".last.npz.abc123.tmp"
    orphan.write_bytes(b"half a checkpoint")
    config = tmp_path / "c.yaml"
    config.write_text(textwrap.dedent(CONFIG))
    res = CliRunner().invoke(main, ["train", str(config), "--run-dir", str(tmp_path / "b"),
                                    "--resume", str(first / "checkpoints" / "last"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "warning" in res.output and "best" in res.output
    assert not orphan.exists()
    assert (tmp_path / "b" / "checkpoints" / "best.npz").is_file()  # tracked anew
    assert "tracked anew" in (tmp_path / "b" / "train.log").read_text()


def test_divergence_is_in_train_log(tmp_path: Path) -> None:
    cfg = load_config_text(CONFIG, ["optimizer={type: sgd, learning_rate: 1.0e+12}"])
    with pytest.raises(DlcliError, match="diverged"):
        Trainer(cfg, run_dir=tmp_path / "a").fit()
    assert "error: the loss became" in (tmp_path / "a" / "train.log").read_text()


# -- where files go ---------------------------------------------------------------------------
def test_run_dir_through_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    config = tmp_path / "c.yaml"
    config.write_text(textwrap.dedent(CONFIG))
    res = CliRunner().invoke(main, ["train", str(config), "--run-dir",
                                    str(tmp_path / "file" / "run")])
    assert res.exit_code == 2
    assert "cannot write the run directory" in res.output and "Traceback" not in res.output


def test_a_name_cannot_leave_the_runs_root(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from dlcli.train.trainer import make_run_dir

    for name in ("../escaped", "a/../../escaped", "/abs/escaped"):
        with pytest.raises(DlcliError, match="outside"):
            make_run_dir(SimpleNamespace(name=name), None, root=str(tmp_path / "runs"))
    assert not list(tmp_path.rglob("escaped*"))
    assert make_run_dir(SimpleNamespace(name="ok"), None, root=str(tmp_path / "runs")).is_dir()


def test_a_data_error_leaves_no_run_directory(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(textwrap.dedent(CONFIG).replace(
        "dataset: blobs", f"train: {tmp_path / 'missing.npz'}").replace("test_split: 0.2,", ""))
    res = CliRunner().invoke(main, ["train", str(config), "--run-dir", str(tmp_path / "r")])
    assert res.exit_code == 2 and "not found" in res.output
    assert not (tmp_path / "r").exists()


def test_a_full_disk_is_one_line_naming_the_file(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(textwrap.dedent(CONFIG))

    def limit() -> None:  # a file-size limit below one checkpoint: writes fail with EFBIG
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (6000, 6000))

    proc = subprocess.run(
        [sys.executable, "-m", "dlcli", "train", str(config), "--run-dir", str(tmp_path / "r")],
        capture_output=True, text=True, timeout=120, preexec_fn=limit,
    )
    assert proc.returncode == 2, proc.stderr
    assert "cannot write checkpoint" in proc.stderr and "best.npz" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list((tmp_path / "r").rglob("*.tmp"))  # no half-written file left


def test_a_failed_checkpoint_write_keeps_the_previous_ones(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    import dlcli.train.trainer as trainer_module

    real, calls = trainer_module.save_checkpoint, []

    def save(path, ckpt):
        calls.append(path)
        if len(calls) == 5:  # epoch 3's first write
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, ckpt)

    monkeypatch.setattr(trainer_module, "save_checkpoint", save)
    with pytest.raises(DlcliError, match=r"cannot write checkpoint .*No space left"):
        Trainer(load_config_text(CONFIG), run_dir=tmp_path / "a").fit()
    assert load_checkpoint(tmp_path / "a" / "checkpoints" / "last").epoch == 2
    assert "No space left" in (tmp_path / "a" / "train.log").read_text()


# -- output that other programs read ------------------------------------------------------------
def test_json_output_is_strict() -> None:
    import json

    from dlcli.cli import console

    data = {"a": float("nan"), "b": [1.0, float("inf")], "c": np.float32("-inf"), "d": "x"}
    assert console.strict(data) == {"a": None, "b": [1.0, None], "c": None, "d": "x"}
    json.dumps(console.strict(data), allow_nan=False)


def test_summary_help_names_config_or_checkpoint() -> None:
    res = CliRunner().invoke(main, ["summary", "--help"])
    assert "CONFIG|CHECKPOINT" in res.output


# -- run status and hooks -------------------------------------------------------------------------
def test_run_json_says_how_the_run_ended(tmp_path: Path) -> None:
    import json

    Trainer(load_config_text(CONFIG, ["training.epochs=2"]), run_dir=tmp_path / "a").fit()
    info = json.loads((tmp_path / "a" / "run.json").read_text())
    assert info["status"] == "finished" and info["epochs_done"] == 2 and info["pid"] > 0
    assert set(info["test"]) == {"loss", "accuracy"} and info["updated_at"] >= info["started_at"]
    reporter = StopAt(0, 3)
    trainer = Trainer(load_config_text(CONFIG), run_dir=tmp_path / "b", reporter=reporter)
    reporter.trainer = trainer
    with pytest.raises(Interrupted):
        trainer.fit()
    assert json.loads((tmp_path / "b" / "run.json").read_text())["status"] == "interrupted"
    cfg = load_config_text(CONFIG, ["optimizer={type: sgd, learning_rate: 1.0e+12}"])
    with pytest.raises(DlcliError):
        Trainer(cfg, run_dir=tmp_path / "c").fit()
    info = json.loads((tmp_path / "c" / "run.json").read_text())
    assert info["status"] == "failed" and "diverged" in info["error"]


def test_a_failing_hook_is_reported_once_and_training_goes_on(tmp_path: Path) -> None:
    calls = []

    class Broken:
        name = "broken tracker"

        def on_epoch_end(self, trainer, epoch, logs):
            calls.append(epoch)
            raise ConnectionError("tracking server unreachable")

    class Good:
        def on_train_end(self, trainer, status):
            calls.append(status)

    Trainer(load_config_text(CONFIG, ["training.epochs=3"]), run_dir=tmp_path / "a",
            hooks=[Broken(), Good()]).fit()
    assert calls == [0, "finished"]  # dropped after its first failure; the other still ran
    log = (tmp_path / "a" / "train.log").read_text()
    assert log.count("broken tracker failed (ConnectionError") == 1
    assert (tmp_path / "a" / "checkpoints" / "last.npz").is_file()


def test_run_json_exists_while_the_data_loads(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    import dlcli.train.trainer as trainer_module

    real, seen = trainer_module.load_splits, []

    def loading(*args, **kwargs):
        seen.append(json.loads((tmp_path / "a" / "run.json").read_text())["status"])
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "load_splits", loading)
    Trainer(load_config_text(CONFIG, ["training.epochs=1"]), run_dir=tmp_path / "a").fit()
    assert seen == ["running"]  # a run killed now would show as interrupted, not be missing

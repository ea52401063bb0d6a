"""A run on the GPU end to end: 2 epochs, a stop inside an epoch and a resume equal to the
uninterrupted run, data uploaded or staged through pinned memory, then eval (on the GPU and on
the CPU) and export."""

from __future__ import annotations

import csv
import importlib.util
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dlcli.cli.main import main
from dlcli.config import load_config_text
from dlcli.io.checkpoint import load_checkpoint
from dlcli.train.evaluate import evaluate_checkpoint
from dlcli.train.trainer import Interrupted, NullReporter, Trainer

pytestmark = pytest.mark.gpu  # and skipped without cupy and a device (conftest)


def _config(data: Path, *extra: str) -> str:
    return textwrap.dedent(f"""
        name: gpu
        seed: 4
        device: gpu
        data: {{train: {data}, validation_split: 0.25, test_split: 0.2, batch_size: 8,
               normalize: scale}}
        model:
          input_shape: [8, 8, 1]
          layers:
            - {{type: RandomFlip}}
            - {{type: GaussianNoise, stddev: 0.05}}
            - {{type: Conv2D, filters: 4, kernel_size: 3, padding: same, activation: relu}}
            - {{type: BatchNorm}}
            - {{type: MaxPool2D}}
            - {{type: Flatten}}
            - {{type: Dropout, rate: 0.3}}
            - {{type: Dense, units: 3, activation: softmax}}
        loss: sparse_categorical_crossentropy
        metrics: [accuracy, f1]
        optimizer: {{type: adam, learning_rate: 0.01}}
        training: {{epochs: 2{"".join(", " + e for e in extra)}}}
    """)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("data") / "img.npz"
    np.savez(path, x=rng.integers(0, 256, (160, 8, 8, 1), dtype=np.uint8),
             y=np.arange(160) % 3)
    return path


def rows(run: Path) -> list[dict[str, str]]:
    with open(run / "history.csv") as f:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]


def weights(run: Path) -> dict[str, np.ndarray]:
    return load_checkpoint(run / "checkpoints" / "last").weights


def same(a: Path, b: Path) -> None:
    assert rows(a) == rows(b)
    wa, wb = weights(a), weights(b)
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k], err_msg=k)


@pytest.fixture(scope="module")
def reference(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("ref") / "run"
    trainer = Trainer(load_config_text(_config(data)), run_dir=run)
    assert trainer.batches.on_device
    trainer.fit()
    return run


def test_the_same_seed_repeats_exactly_on_the_gpu(reference: Path, data: Path,
                                                  tmp_path: Path) -> None:
    Trainer(load_config_text(_config(data)), run_dir=tmp_path / "b").fit()
    same(reference, tmp_path / "b")
    assert len(rows(reference)) == 2


def test_pinned_staging_gives_the_same_run(reference: Path, data: Path, tmp_path: Path) -> None:
    trainer = Trainer(load_config_text(_config(data, "device_data_fraction: 0")),
                      run_dir=tmp_path / "p")
    assert not trainer.batches.on_device
    trainer.fit()
    same(reference, tmp_path / "p")


@pytest.mark.parametrize("batch", [0, 5])
def test_stop_inside_an_epoch_then_resume_is_exact(reference: Path, data: Path, tmp_path: Path,
                                                   batch: int) -> None:
    class Stop(NullReporter):
        epoch = -1

        def epoch_begin(self, epoch, epochs, n_batches):
            self.epoch = epoch

        def batch_end(self, b, logs, samples):
            if self.epoch == 1 and b == batch:
                trainer.request_stop()

    trainer = Trainer(load_config_text(_config(data)), run_dir=tmp_path / "a", reporter=Stop())
    with pytest.raises(Interrupted):
        trainer.fit()
    ckpt = load_checkpoint(tmp_path / "a" / "checkpoints" / "last")
    assert ckpt.meta["rng"]["device"]  # the dropout and noise generators' states
    Trainer(load_config_text(_config(data)), run_dir=tmp_path / "b", resume=ckpt).fit()
    same(reference, tmp_path / "b")


def test_eval_on_the_gpu_and_on_the_cpu(reference: Path) -> None:
    ckpt = reference / "checkpoints" / "best"
    on_gpu = evaluate_checkpoint(ckpt, device="gpu")
    on_cpu = evaluate_checkpoint(ckpt, device="cpu")
    assert on_gpu.samples == on_cpu.samples
    for k, v in on_cpu.metrics.items():
        assert on_gpu.metrics[k] == pytest.approx(v, rel=1e-4, abs=1e-5), k
    res = CliRunner().invoke(main, ["eval", str(ckpt), "--device", "gpu", "--json"])
    assert res.exit_code == 0, res.output


def test_export_from_the_gpu(reference: Path, tmp_path: Path) -> None:
    ckpt = str(reference / "checkpoints" / "best")
    res = CliRunner().invoke(main, ["export", ckpt, "-o", str(tmp_path / "w.npz"),
                                    "--device", "gpu"])
    assert res.exit_code == 0, res.output
    if importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("onnx"):
        res = CliRunner().invoke(main, ["export", ckpt, "-o", str(tmp_path / "m.onnx"),
                                        "--device", "gpu"])
        assert res.exit_code == 0, res.output
        assert "verified with onnxruntime" in res.output
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((3, 8, 8, 1), np.uint8))
    res = CliRunner().invoke(main, ["predict", ckpt, str(x), "--device", "gpu"])
    assert res.exit_code == 0, res.output

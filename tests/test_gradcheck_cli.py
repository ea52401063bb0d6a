"""dlcli gradcheck: every layer of a config against central differences; broken backward fails."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dlcli.cli.main import main

CNN = """
name: gc
seed: 3
data: {{train: {data}, validation_split: 0.2, batch_size: 8, normalize: scale}}
model:
  input_shape: [9, 9, 2]
  layers:
    - {{type: Conv2D, filters: 3, kernel_size: 3, padding: same, activation: relu,
        kernel_regularizer: {{l2: 0.01}}}}
    - {{type: BatchNorm}}
    - {{type: MaxPool2D, pool_size: 2, padding: same}}
    - {{type: Conv2D, filters: 4, kernel_size: 2, strides: 2, activation: tanh}}
    - {{type: AvgPool2D, pool_size: 2, strides: 1, padding: same}}
    - {{type: Flatten}}
    - {{type: Dense, units: 6, activation: gelu, kernel_regularizer: {{l1: 0.01}}}}
    - {{type: Dropout, rate: 0.4}}
    - {{type: Dense, units: 3, activation: softmax}}
loss: sparse_categorical_crossentropy
optimizer: {{type: adam}}
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    data = tmp_path / "img.npz"
    np.savez(data, x=rng.integers(0, 256, (40, 9, 9, 2), dtype=np.uint8), y=np.arange(40) % 3)
    path = tmp_path / "c.yaml"
    path.write_text(CNN.format(data=data))
    return path


def test_a_correct_model_passes(config: Path) -> None:
    res = CliRunner().invoke(main, ["gradcheck", str(config), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["passed"] and "train samples of" in report["data"]
    names = {(w["layer"], w["weight"]) for w in report["weights"]}
    assert ("conv2d", "kernel") in names and ("dense_1", "bias") in names
    assert ("batch_normalization", "moving_mean") not in names  # not learned by gradient
    assert max(w["relative_error"] for w in report["weights"]) < 1e-6


def test_random_inputs_when_the_data_is_gone(config: Path, tmp_path: Path) -> None:
    (tmp_path / "img.npz").unlink()
    res = CliRunner().invoke(main, ["gradcheck", str(config)])
    assert res.exit_code == 0, res.output
    assert "random inputs" in res.output and "all 10 weights pass" in res.output


def test_labels_out_of_range_are_an_error(config: Path, tmp_path: Path) -> None:
    # the cross-entropy op does not check labels, so the data check must run here
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "img.npz", x=rng.integers(0, 256, (40, 9, 9, 2), dtype=np.uint8),
             y=np.arange(40) % 5)
    res = CliRunner().invoke(main, ["gradcheck", str(config)])
    assert res.exit_code == 2, res.output
    assert "label" in res.output and "Traceback" not in res.output


def test_a_broken_backward_fails_with_exit_1(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dlcli.core.ops import activations

    real = activations.Tanh.backward
    monkeypatch.setattr(activations.Tanh, "backward", lambda self, gy: real(self, gy) * 1.01)
    res = CliRunner().invoke(main, ["gradcheck", str(config)])
    assert res.exit_code == 1, res.output
    assert "FAIL" in res.output
    assert "wrong in" in res.output and "conv2d" in res.output  # the layers before the tanh
    line = [r for r in res.output.splitlines() if "dense_1" in r and "kernel" in r][0]
    assert "pass" in line  # the layers after it are still right

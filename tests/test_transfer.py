"""Transfer learning: frozen layers stay put, init_from takes matching layers by name."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from dlcli.config import load_config_text
from dlcli.errors import CheckpointError
from dlcli.io.checkpoint import load_checkpoint
from dlcli.nn.layers import BatchNorm, Dense
from dlcli.nn.sequential import Sequential
from dlcli.nn.summary import summary_dict
from dlcli.train.trainer import Trainer
from dlcli.train.transfer import init_from

BASE = """
name: base
seed: 5
data: {dataset: blobs, n_samples: 400, validation_split: 0.2, batch_size: 16,
       normalize: standardize}
model:
  input_shape: [2]
  layers:
    - {type: Dense, units: 16, activation: relu}
    - {type: BatchNorm}
    - {type: Dense, units: 3, activation: softmax}
loss: sparse_categorical_crossentropy
metrics: [accuracy]
optimizer: {type: adam, learning_rate: 0.01}
training: {epochs: 2}
"""


def test_a_frozen_layer_and_its_batchnorm_do_not_change(tmp_path: Path) -> None:
    trainer = Trainer(load_config_text(textwrap.dedent(BASE)), run_dir=tmp_path / "a")
    first, bn, head = trainer.model.layers
    first.trainable = False
    bn.trainable = False
    before = trainer.model.get_weights()
    trainer.optimizer = type(trainer.optimizer)(trainer.model.trainable_weights)  # as built
    trainer.fit()
    after = trainer.model.get_weights()
    for key in ("dense/kernel", "dense/bias", "batch_normalization/gamma",
                "batch_normalization/moving_mean", "batch_normalization/moving_variance"):
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)
    assert not np.array_equal(after["dense_1/kernel"], before["dense_1/kernel"])


def test_frozen_batchnorm_normalizes_with_its_moving_statistics() -> None:
    bn = BatchNorm()
    model = Sequential([bn], (3,)).build(0)
    bn.params["moving_mean"].data[...] = [1.0, 2.0, 3.0]
    x = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    bn.trainable = False
    frozen = model(x, training=True).data
    np.testing.assert_allclose(frozen, model(x, training=False).data)
    np.testing.assert_array_equal(bn.params["moving_mean"].data, [1.0, 2.0, 3.0])


def test_summary_counts_frozen_weights_as_non_trainable() -> None:
    model = Sequential([Dense(4), BatchNorm(), Dense(2)], (3,)).build(0)
    model.layers[0].trainable = False
    s = summary_dict(model)
    assert s["trainable_params"] == 4 * 2 + (4 * 2 + 2)  # BN gamma/beta + last Dense
    assert s["non_trainable_params"] == (3 * 4 + 4) + 4 * 2
    assert model.layers[0].params["kernel"].requires_grad is False
    model.layers[0].trainable = True
    assert summary_dict(model)["non_trainable_params"] == 4 * 2


def _trained(tmp_path: Path) -> Path:
    Trainer(load_config_text(textwrap.dedent(BASE)), run_dir=tmp_path / "base").fit()
    return tmp_path / "base" / "checkpoints" / "last.npz"


def test_init_from_takes_matching_layers_and_reports_the_rest(tmp_path: Path) -> None:
    source = load_checkpoint(_trained(tmp_path)).weights
    target = Sequential([Dense(16, "relu"), BatchNorm(), Dense(5, "softmax")], (2,)).build(9)
    report = init_from(target, source)
    assert report.loaded == ["dense", "batch_normalization"]
    assert report.problems == ["dense_1: kernel (16, 3) in the checkpoint, (16, 5) here; "
                               "bias (3,) in the checkpoint, (5,) here"]
    np.testing.assert_array_equal(target.get_weights()["dense/kernel"], source["dense/kernel"])
    with pytest.raises(CheckpointError, match=r"strict.*dense_1: kernel \(16, 3\)"):
        init_from(Sequential([Dense(16), BatchNorm(), Dense(5)], (2,)).build(0), source,
                  strict=True)
    only = Sequential([Dense(16), BatchNorm(), Dense(5)], (2,)).build(0)
    assert init_from(only, source, ["dense"], strict=True).loaded == ["dense"]
    with pytest.raises(CheckpointError, match="does not have"):
        init_from(only, source, ["nope"])


def test_trainer_init_from_is_logged(tmp_path: Path) -> None:
    ckpt = _trained(tmp_path)
    cfg = load_config_text(textwrap.dedent(BASE))
    t = Trainer(cfg, run_dir=tmp_path / "b", init_from={"checkpoint": str(ckpt)})
    np.testing.assert_array_equal(t.model.get_weights()["dense/kernel"],
                                  load_checkpoint(ckpt).weights["dense/kernel"])
    t.fit()
    log = (tmp_path / "b" / "train.log").read_text()
    assert "initialized 3 layer(s) from" in log


def test_the_transfer_example_end_to_end(tmp_path: Path) -> None:
    """Train a base model, then a new head on top of its frozen first layer, from the CLI."""
    from click.testing import CliRunner

    from dlcli.cli.main import main

    base = tmp_path / "base.yaml"
    base.write_text(textwrap.dedent(BASE))
    runner = CliRunner()
    res = runner.invoke(main, ["train", str(base), "--run-dir", str(tmp_path / "a"), "-q"])
    assert res.exit_code == 0, res.output
    source = tmp_path / "a" / "checkpoints" / "best.npz"
    head = textwrap.dedent(BASE).replace(
        "- {type: Dense, units: 16, activation: relu}",
        "- {type: Dense, units: 16, activation: relu, trainable: false}").replace(
        "- {type: BatchNorm}", "- {type: BatchNorm, trainable: false}").replace(
        "- {type: Dense, units: 3, activation: softmax}",
        "- {type: Dense, units: 8, activation: relu}\n"
        "    - {type: Dense, units: 3, activation: softmax}")
    new = tmp_path / "head.yaml"
    new.write_text(head.replace("model:\n", f"model:\n  init_from: {{checkpoint: {source}}}\n"))
    summary = runner.invoke(main, ["summary", str(new), "--json"])
    assert json_of(summary)["non_trainable_params"] == (2 * 16 + 16) + 4 * 16
    res = runner.invoke(main, ["train", str(new), "--run-dir", str(tmp_path / "b"), "-q"])
    assert res.exit_code == 0, res.output
    before, after = load_checkpoint(source).weights, load_checkpoint(
        tmp_path / "b" / "checkpoints" / "last.npz").weights
    for key in ("dense/kernel", "batch_normalization/moving_mean"):
        np.testing.assert_array_equal(after[key], before[key])
    log = (tmp_path / "b" / "train.log").read_text()
    assert "initialized 2 layer(s)" in log and "not taken: dense_1" in log
    both = runner.invoke(main, ["train", str(new), "--resume", str(source), "--init-from",
                                str(source)])
    assert both.exit_code == 2 and "give one of them" in both.output


def json_of(result):
    import json

    assert result.exit_code == 0, result.output
    return json.loads(result.output)

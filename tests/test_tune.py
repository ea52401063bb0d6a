"""`dlcli tune`: the space file is checked before Ray starts; sweeps of tiny runs on Ray Tune.

The space tests run without Ray (it is hidden from them); the sweep tests share one local Ray
session, whose start-up is most of their time.
"""

from __future__ import annotations

import csv
import json
import logging
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from dlcli.cli.main import main
from dlcli.config import load_config, load_config_text
from dlcli.nn.from_config import model_issues
from dlcli.runs.index import load_run
from dlcli.train.trainer import Trainer
from dlcli.tune.space import load_space

ROOT = Path(__file__).parent.parent

TINY = """
name: tiny
seed: 1
data: {dataset: blobs, n_samples: 200, validation_split: 0.25, batch_size: 32,
       normalize: standardize}
model:
  input_shape: [2]
  layers:
    - {type: Dense, units: 8, activation: relu}
    - {type: Dropout, rate: 0.1}
    - {type: Dense, units: 3, activation: softmax}
loss: categorical_crossentropy
metrics: [accuracy]
optimizer: {type: adam, learning_rate: 0.01}
training: {epochs: 3}
"""


def write(path: Path, text: str) -> str:
    path.write_text(textwrap.dedent(text).lstrip())
    return str(path)


def invoke(*args: str):
    return CliRunner().invoke(main, ["tune", *args])


@pytest.fixture
def no_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray cannot be imported: what must not need it passes anyway."""
    monkeypatch.setitem(sys.modules, "ray", None)


# -- the space file, without Ray ---------------------------------------------------------------
@pytest.mark.parametrize("space, expected", [
    ("data.batch_size: {choice: [16, 32]}\noptimizer.learning_rat: {loguniform: [1.0e-4, 0.1]}\n",
     "space.yaml:2:1: optimizer.learning_rat: unknown key 'learning_rat'; "
     "did you mean 'learning_rate'?"),
    ("model.layerz.1.rate: {uniform: [0.0, 0.5]}\n",
     "space.yaml:1:1: model.layerz.1.rate: model.layerz: is not set, so it has no item [1]; "
     "did you mean 'layers'?"),
    ("optimizer.learning_rate: {logunifrom: [1.0e-4, 0.1]}\n",
     "space.yaml:1:27: optimizer.learning_rate: unknown distribution 'logunifrom'; valid: "
     "loguniform, uniform, choice, randint, grid; did you mean 'loguniform'?"),
    ("optimizer.learning_rate: {loguniform: [0.0, 0.1]}\n",
     "space.yaml:1:27: optimizer.learning_rate: loguniform takes [low, high], two numbers with "
     "0 < low < high; got [0.0, 0.1]"),
    ("model.layers.1.rate: {uniform: [0.0, 1.5]}\n",
     "space.yaml:1:38: model.layers.1.rate: with uniform's high end (1.5): expected a number < "
     "1.0, got 1.5"),
    ("model.layers.0.units:\n  choice: [4, 0, 8]\n",
     "space.yaml:2:15: model.layers.0.units: with choice item 2 (0): expected an integer >= 1, "
     "got 0"),
    ("data.batch_size: {uniform: [8, 64]}\n",
     "space.yaml:1:19: data.batch_size: uniform draws floats, but this key takes an integer; "
     "use randint or choice"),
    ("optimizer.learning_rate: 0.1\n",
     "space.yaml:1:1: optimizer.learning_rate: expected a distribution"),
    ("seed: {randint: [1, 9], choice: [1]}\n",
     "space.yaml:1:1: seed: give exactly one distribution"),
    ("- {choice: [1]}\n", "space.yaml:1:1: the top level must be a mapping"),
    ("# nothing\n", "space.yaml: the file is empty"),
])
def test_bad_space_is_one_message_before_ray(tmp_path: Path, no_ray: None, space: str,
                                             expected: str) -> None:
    config = write(tmp_path / "tiny.yaml", TINY)
    res = invoke(config, "--space", write(tmp_path / "space.yaml", space))
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert expected in lines[0]
    assert not (tmp_path / "runs").exists()


def test_every_problem_is_listed_with_its_position(tmp_path: Path) -> None:
    space = """
        optimizer.learning_rat: {loguniform: [1.0e-4, 0.1]}
        model.layers.1.rate: {uniform: [0.0, 0.5]}
        model.layers[1].rate: {grid: [0.1]}
        training.epochs: {randint: [5, 2]}
    """
    with pytest.raises(Exception) as err:
        load_space(write(tmp_path / "s.yaml", space), textwrap.dedent(TINY), [], "tiny.yaml",
                   model_issues)
    lines = str(err.value).splitlines()
    assert lines[0].endswith("s.yaml: 3 errors")
    assert ":1:1: optimizer.learning_rat: unknown key" in lines[1]
    assert ":3:1: model.layers[1].rate: is the same key as 'model.layers.1.rate'" in lines[2]
    assert ":4:19: training.epochs: randint takes [low, high]" in lines[3]


def test_metric_and_missing_extra_are_one_line(tmp_path: Path, no_ray: None) -> None:
    config = write(tmp_path / "tiny.yaml", TINY)
    space = write(tmp_path / "space.yaml", "optimizer.learning_rate: {grid: [0.01, 0.1]}\n")
    res = invoke(config, "--space", space, "--metric", "val_acuracy")
    assert res.exit_code == 2
    assert "--metric 'val_acuracy' is not logged" in res.output
    assert "did you mean 'val_accuracy'?" in res.output
    res = invoke(config, "--space", space)
    assert res.exit_code == 2
    assert res.output.strip() == ("error: dlcli tune needs the 'ray' package, which is not "
                                  "installed: pip install 'dlcli[tune]'")


def test_example_space_fits_its_config() -> None:
    config = ROOT / "configs" / "fashion_mnist_mlp.yaml"
    space = load_space(ROOT / "configs" / "spaces" / "fashion_mnist_mlp.yaml", config.read_text(),
                       [], str(config), model_issues)
    assert [p.key for p in space.params] == [
        "optimizer.learning_rate", "model.layers.1.units", "model.layers.2.rate",
        "model.layers.4.rate", "data.batch_size"]


def test_a_hook_stops_training_cleanly(tmp_path: Path) -> None:
    """What a sweep's scheduler does to a trial: the run ends after the epoch, not as a crash."""
    class StopAfterTwo:
        def on_epoch_end(self, trainer, epoch, logs) -> None:
            if epoch == 1:
                trainer.stop_after_epoch("stopped by scheduler")

    cfg = load_config_text(textwrap.dedent(TINY), ["training.epochs=5"])
    result = Trainer(cfg, run_dir=tmp_path / "run", hooks=[StopAfterTwo()]).fit()
    assert len(result.history) == 2 and result.stopped_epoch == 2
    run = load_run(tmp_path / "run")
    assert (run.status, run.epochs_done, run.error) == ("stopped by scheduler", 2, None)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs_run"] == 2
    assert (tmp_path / "run" / "checkpoints" / "last.npz").exists()


# -- sweeps on Ray ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_session():
    """One local Ray for the module (sweeps join a running Ray instead of starting their own)."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.tune")
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR,
             log_to_driver=False)
    yield ray
    ray.shutdown()


def read_trials(sweep: Path) -> list[dict[str, str]]:
    with open(sweep / "trials.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_sweep_of_four_trials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              ray_session) -> None:
    monkeypatch.chdir(tmp_path)
    config = write(tmp_path / "tiny.yaml", TINY)
    space = write(tmp_path / "space.yaml", """
        optimizer.learning_rate: {loguniform: [1.0e-3, 1.0e-1]}
        model.layers.0.units: {choice: [4, 8]}
        model.layers.1.rate: {uniform: [0.0, 0.3]}
    """)
    res = invoke(config, "--space", space, "--trials", "4", "--scheduler", "fifo")
    assert res.exit_code == 0, res.output
    (sweep,) = (tmp_path / "runs").iterdir()
    assert sweep.name.startswith("tiny-tune-")
    runs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [p.name for p in runs] == ["trial-000", "trial-001", "trial-002", "trial-003"]
    for run in runs:
        info = load_run(run)
        assert (info.status, info.epochs_done) == ("finished", 3), run
        assert (run / "config.yaml").exists() and (run / "history.csv").exists()
    rows = read_trials(sweep)
    assert [r["trial"] for r in rows] == [p.name for p in runs]
    assert {r["status"] for r in rows} == {"finished"}
    best = load_config(sweep / "best.yaml", model_check=model_issues)  # ready for dlcli train
    sampled = [(float(r["optimizer.learning_rate"]), int(r["model.layers.0.units"]),
                float(r["model.layers.1.rate"])) for r in rows]
    assert (best.optimizer.learning_rate, best.model.layers[0].units,
            best.model.layers[1].rate) in sampled
    assert min(float(r["best_val_loss"]) for r in rows) == pytest.approx(
        min(float(v) for v in _column(sweep / _best_trial(res.output) / "history.csv",
                                      "val_loss")))
    out = res.output
    assert "optimizer.learning_rate" in out and "best val_loss" in out
    for run in runs:  # each trial's line gives its last value (the table gives the best)
        last = float(_column(run / "history.csv", "val_loss")[-1])
        assert f"{run.name} ended after 3 epochs: last val_loss {last:.4g}" in out, out
    assert f"config in {Path('runs') / sweep.name / 'best.yaml'}" in out


def test_asha_stops_the_weak_trials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    ray_session) -> None:
    """One trial at a time, the good learning rates first: at the first rung the two that
    learn nothing are below the median of those before them, so ASHA stops them."""
    monkeypatch.chdir(tmp_path)
    config = write(tmp_path / "tiny.yaml", TINY)
    space = write(tmp_path / "space.yaml",
                  "optimizer.learning_rate: {grid: [0.05, 0.03, 1.0e-6, 1.0e-7]}\n")
    res = invoke(config, "--space", space, "--max-concurrent", "1", "--set",
                 "training.epochs=8")
    assert res.exit_code == 0, res.output
    (sweep,) = (tmp_path / "runs").iterdir()
    by_lr = {float(r["optimizer.learning_rate"]): r for r in read_trials(sweep)}
    assert by_lr[0.05]["status"] == "finished" and by_lr[0.05]["epochs"] == "8"
    for lr in (1.0e-6, 1.0e-7):
        row = by_lr[lr]
        assert (row["status"], row["epochs"]) == ("stopped by scheduler", "1"), row
        run = sweep / row["run_dir"]
        assert load_run(run).status == "stopped by scheduler"  # ended cleanly, not a crash
        assert (run / "metrics.json").exists() and (run / "checkpoints" / "last.npz").exists()
        assert "stopped by scheduler after epoch 1" in (run / "train.log").read_text()
    best = load_config(sweep / "best.yaml")
    assert best.optimizer.learning_rate in (0.05, 0.03)
    assert "stopped by scheduler" in res.output


def _best_trial(output: str) -> str:
    line = next(line for line in output.splitlines() if line.startswith("* best: "))
    return line.split()[2]


def _column(path: Path, name: str) -> list[str]:
    with open(path, newline="") as f:
        return [row[name] for row in csv.DictReader(f)]

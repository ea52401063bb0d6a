"""`dlcli runs`: the index of run directories, their true status, sorting, JSON, and diffs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from dlcli.cli.main import main
from dlcli.cli.runs import runs
from dlcli.config.load import load_config_text
from dlcli.runs.diff import MISSING, diff_configs, flatten
from dlcli.runs.index import load_run, process_gone, scan_runs
from dlcli.train.trainer import Trainer

if "runs" not in main.commands:
    main.add_command(runs)

TINY = """
name: tiny
seed: 7
data: {dataset: blobs, n_samples: 200, validation_split: 0.2, test_split: 0.2, batch_size: 16,
       normalize: standardize}
model:
  input_shape: [2]
  layers:
    - {type: Dense, units: 8, activation: relu}
    - {type: Dropout, rate: 0.3}
    - {type: Dense, units: 3, activation: softmax}
loss: categorical_crossentropy
metrics: [accuracy]
optimizer: {type: adam, learning_rate: 0.001}
training: {epochs: 2}
"""


def _no_nan(name: str) -> Any:
    raise ValueError(f"not strict JSON: {name}")


def strict_loads(text: str) -> Any:
    return json.loads(text, parse_constant=_no_nan)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two finished runs, `alpha` and `beta`, that differ in learning rate and dropout rate."""
    root = tmp_path_factory.mktemp("trained")
    text = textwrap.dedent(TINY)
    Trainer(load_config_text(text), run_dir=root / "alpha").fit()
    Trainer(load_config_text(text, ["optimizer.learning_rate=0.01", "model.layers[1].rate=0.5"]),
            run_dir=root / "beta").fit()
    return root


def copy_runs(trained: Path, dest: Path, *names: str) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in names or ("alpha", "beta"):
        shutil.copytree(trained / name, dest / name)
    return dest


def clone(trained: Path, root: Path, name: str, **run_json: Any) -> Path:
    """A copy of run alpha named `name`, with run.json fields replaced."""
    path = root / name
    shutil.copytree(trained / "alpha", path)
    info = json.loads((path / "run.json").read_text())
    info.update(run_json)
    (path / "run.json").write_text(json.dumps(info))
    return path


def invoke(*args: str) -> Any:
    return CliRunner().invoke(main, ["runs", *args])


def row_of(output: str, name: str) -> str:
    lines = [line for line in output.splitlines() if f" {name} " in line]
    assert len(lines) == 1, output
    return lines[0]


def exited_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# -- the table -----------------------------------------------------------------------------
def test_lists_trained_runs(trained: Path, tmp_path: Path) -> None:
    root = copy_runs(trained, tmp_path / "runs")
    res = invoke(str(root))
    assert res.exit_code == 0, res.output
    info = json.loads((root / "alpha" / "run.json").read_text())
    metrics = json.loads((root / "alpha" / "metrics.json").read_text())
    row = row_of(res.output, "alpha")
    assert "finished" in row and "2/2" in row
    assert f"{info['params']:,}" in row
    assert f"accuracy {metrics['test']['accuracy']:.4g}" in row
    assert f"val_loss {metrics['best']:.4g} ({metrics['best_epoch']})" in row
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["started_at"]))
    assert started in row
    assert "finished" in row_of(res.output, "beta")


def test_runs_alone_lists_runs_dir_and_list_subcommand(trained: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    copy_runs(trained, tmp_path / "runs")
    monkeypatch.chdir(tmp_path)
    for args in ([], ["list"], ["runs"], ["list", "runs"], ["--sort", "name"]):
        res = invoke(*args)
        assert res.exit_code == 0, (args, res.output)
        assert "alpha" in res.output and "beta" in res.output, args
    # a folder named like a subcommand is listed through `list`
    copy_runs(trained, tmp_path / "diff", "alpha")
    res = invoke("list", "diff")
    assert res.exit_code == 0 and "alpha" in res.output and "beta" not in res.output
    res = invoke("--help")
    assert res.exit_code == 0 and "diff" in res.output and "list" in res.output


def test_json_is_strict_and_complete(trained: Path, tmp_path: Path) -> None:
    root = copy_runs(trained, tmp_path / "runs")
    # an older run whose metrics.json holds NaN (json.dumps writes it as NaN)
    old = root / "old"
    shutil.copytree(trained / "alpha", old)
    (old / "run.json").unlink()
    m = json.loads((old / "metrics.json").read_text())
    m["test"]["loss"] = float("nan")
    (old / "metrics.json").write_text(json.dumps(m))
    res = invoke(str(root), "--json", "--sort", "name")
    assert res.exit_code == 0, res.output
    data = strict_loads(res.output)
    assert [r["name"] for r in data] == ["alpha", "beta", "old"]
    want = {"name", "path", "status", "started_at", "started", "updated_at", "wall_s",
            "epochs_done", "epochs", "best_epoch", "monitor", "best", "test", "params", "host",
            "pid", "error", "notes"}
    assert want <= set(data[0])
    alpha = data[0]
    assert alpha["status"] == "finished" and alpha["epochs_done"] == alpha["epochs"] == 2
    assert alpha["monitor"] == "val_loss" and isinstance(alpha["best"], float)
    assert alpha["wall_s"] >= 0 and set(alpha["test"]) == {"loss", "accuracy"}
    assert data[2]["test"]["loss"] is None and data[2]["status"] == "finished"


# -- true status ---------------------------------------------------------------------------
def test_running_with_a_dead_pid_is_interrupted(trained: Path, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    root.mkdir()
    host = socket.gethostname()
    clone(trained, root, "dead", status="running", pid=exited_pid(), host=host)
    clone(trained, root, "alive", status="running", pid=os.getpid(), host=host,
          started_at=time.time(), updated_at=time.time() - 5)
    clone(trained, root, "remote", status="running", pid=exited_pid(),
          host="another-host.invalid", updated_at=time.time() - 7200)
    res = invoke(str(root))
    assert res.exit_code == 0, res.output
    dead = row_of(res.output, "dead")
    assert "interrupted" in dead and "running" not in dead
    assert "running (updated" in row_of(res.output, "alive")
    remote = row_of(res.output, "remote")
    assert "running on another-host.invalid" in remote and "2h 00m ago" in remote
    assert "is gone" in res.output  # the note says why


def test_reused_pid_is_interrupted(trained: Path, tmp_path: Path) -> None:
    if not Path("/proc/self/stat").exists():
        pytest.skip("needs /proc")
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.2)
        host = socket.gethostname()
        # the same live pid: a run that started an hour before it cannot be this process ...
        old = clone(trained, tmp_path, "old", status="running", pid=proc.pid, host=host,
                    started_at=time.time() - 3600)
        # ... while a run that started after the process began can be
        new = clone(trained, tmp_path, "new", status="running", pid=proc.pid, host=host,
                    started_at=time.time() + 5)
        assert load_run(old).status == "interrupted"
        assert "another process" in " ".join(load_run(old).notes)
        assert load_run(new).status == "running"
    finally:
        proc.kill()
        proc.wait()


def test_process_gone_rules() -> None:
    assert process_gone(exited_pid(), time.time()) is not None
    assert process_gone(os.getpid(), time.time()) is None


def test_sigkill_shows_interrupted(tmp_path: Path) -> None:
    config = tmp_path / "long.yaml"
    config.write_text(textwrap.dedent(TINY).replace("epochs: 2", "epochs: 100000"))
    run_dir = tmp_path / "runs" / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dlcli", "train", str(config), "--run-dir", str(run_dir),
         "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                info = json.loads((run_dir / "run.json").read_text())
                if info["epochs_done"] >= 1:
                    break
            except (OSError, ValueError):
                pass
            assert proc.poll() is None, "training ended before it was killed"
            time.sleep(0.1)
        else:
            pytest.fail("run.json never showed a finished epoch")
        res = invoke(str(tmp_path / "runs"))
        assert "running (updated" in row_of(res.output, "killed")
        os.kill(proc.pid, signal.SIGKILL)
        time.sleep(0.2)
        # not reaped yet: a zombie still answers kill(pid, 0)
        res = invoke(str(tmp_path / "runs"))
        assert res.exit_code == 0, res.output
        assert "interrupted" in row_of(res.output, "killed")
    finally:
        proc.kill()
        proc.wait()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"
    res = invoke(str(tmp_path / "runs"), "--json")
    (run,) = strict_loads(res.output)
    assert run["status"] == "interrupted" and run["epochs_done"] >= 1


def test_failed_old_and_damaged_runs(trained: Path, tmp_path: Path) -> None:
    root = copy_runs(trained, tmp_path / "runs", "alpha")
    clone(trained, root, "failed", status="failed", error="cannot write checkpoint: disk full")
    old = root / "old"
    shutil.copytree(trained / "alpha", old)
    (old / "run.json").unlink()
    unfinished = root / "unfinished"
    shutil.copytree(trained / "alpha", unfinished)
    (unfinished / "run.json").unlink()
    (unfinished / "metrics.json").unlink()
    halted = root / "halted"
    shutil.copytree(unfinished, halted)
    with open(halted / "train.log", "a") as f:
        f.write("2025-01-01 10:00:00 interrupted by SIGINT after epoch 1; last checkpoint ...\n")
    clone(trained, root, "garbled").joinpath("run.json").write_text('{"status": "runn')
    clone(trained, root, "badpid", status="running", pid=-1)  # never os.kill(-1, 0)
    clone(trained, root, "odd", status="sleeping")
    (root / "notarun").mkdir()
    (root / "notarun" / "x.txt").write_text("hello")
    (root / "stray.txt").write_text("not a folder")

    res = invoke(str(root))
    assert res.exit_code == 0, res.output
    assert "failed" in row_of(res.output, "failed")
    assert "disk full" in res.output
    old_row = row_of(res.output, "old")
    assert "finished" in old_row and "2/2" in old_row and "val_loss" in old_row
    log_start = (old / "train.log").read_text()[:19]
    assert log_start in old_row  # the start time comes from train.log
    assert "unknown" in row_of(res.output, "unfinished")
    assert "interrupted" in row_of(res.output, "halted")
    for name in ("garbled", "badpid", "odd"):
        assert "damaged" in row_of(res.output, name), name
    assert "not valid JSON" in res.output and "pid is -1" in res.output
    assert "skipped notarun" in res.output and "stray" not in res.output
    found, skipped = scan_runs(root)
    assert {r.name for r in found} == {"alpha", "failed", "old", "unfinished", "halted",
                                       "garbled", "badpid", "odd"}
    assert len(skipped) == 1


def test_a_sweep_folder_lists_its_trials(trained: Path, tmp_path: Path) -> None:
    # dlcli tune writes runs/<name>-tune-<ts>/trial-NNN/: each trial is a run of its own
    root = copy_runs(trained, tmp_path / "runs", "alpha")
    sweep = root / "mlp-tune-1"
    copy_runs(trained, sweep, "alpha", "beta")
    clone(trained, sweep, "trial-002", status="stopped by scheduler")
    (sweep / "trials.csv").write_text("trial\n")
    (sweep / ".ray").mkdir()
    found, skipped = scan_runs(root)
    assert [r.name for r in found] == ["alpha", "mlp-tune-1/alpha", "mlp-tune-1/beta",
                                       "mlp-tune-1/trial-002"]
    assert skipped == []
    res = invoke(str(root))
    assert res.exit_code == 0, res.output
    assert "stopped by scheduler" in row_of(res.output, "mlp-tune-1/trial-002")


def test_a_run_directory_lists_itself(trained: Path, tmp_path: Path) -> None:
    # `dlcli runs runs/alpha` (the run, not the folder of runs): that run's row, not "no runs"
    root = copy_runs(trained, tmp_path / "runs")
    found, skipped = scan_runs(root / "alpha")
    assert [r.name for r in found] == ["alpha"] and skipped == []
    res = invoke(str(root / "alpha") + "/")
    assert res.exit_code == 0, res.output
    assert "finished" in row_of(res.output, "alpha") and "beta" not in res.output
    # the sweep folder itself still lists its trials (it holds no run files of its own)
    sweep = copy_runs(trained, root / "mlp-tune-1", "beta")
    (sweep / "trials.csv").write_text("trial\n")
    assert [r.name for r in scan_runs(sweep)[0]] == ["beta"]


# -- sort, errors --------------------------------------------------------------------------
def test_sort_orders(trained: Path, tmp_path: Path) -> None:
    root = copy_runs(trained, tmp_path / "runs")
    clone(trained, root, "gamma", test={"loss": 9.0, "accuracy": 0.5}, best=5.0,
          started_at=1.0e9, updated_at=1.0e9 + 3600)
    clone(trained, root, "delta", test=None, best=None, started_at=2.0e9, updated_at=2.0e9 + 1)

    def names(*args: str) -> list[str]:
        res = invoke(str(root), "--json", *args)
        assert res.exit_code == 0, res.output
        return [r["name"] for r in strict_loads(res.output)]

    assert names("--sort", "name") == ["alpha", "beta", "delta", "gamma"]
    assert names("--sort", "start")[0] == "delta" and names("--sort", "start")[-1] == "gamma"
    assert names("--sort", "wall")[0] == "gamma"
    acc = {r.name: r.test["accuracy"] for r in scan_runs(root)[0] if r.test}
    by_acc = names("--sort", "test.accuracy")
    assert by_acc[-1] == "delta"  # no test metrics: last
    assert by_acc[:3] == sorted(acc, key=lambda n: (-acc[n], n))
    assert names("--sort", "test.loss")[2:] == ["gamma", "delta"]
    assert names("--sort", "best")[2:] == ["gamma", "delta"]  # val_loss: lower is better
    assert names("--sort", "best", "--reverse")[:1] == ["gamma"]
    res = invoke(str(root), "--sort", "test.nope")
    assert res.exit_code == 2
    assert "unknown sort key 'test.nope'" in res.output and "test.accuracy" in res.output
    assert "wall" in res.output and "Traceback" not in res.output


def test_missing_and_empty_folders(tmp_path: Path) -> None:
    res = invoke(str(tmp_path / "nope"))
    assert res.exit_code == 2
    assert res.output.strip().count("\n") == 0 and "nope" in res.output
    (tmp_path / "empty").mkdir()
    res = invoke(str(tmp_path / "empty"))
    assert res.exit_code == 0 and f"no runs in {tmp_path / 'empty'}" in res.output
    res = invoke(str(tmp_path / "empty"), "--json")
    assert res.exit_code == 0 and strict_loads(res.output) == []
    res = invoke(str(tmp_path / "empty"), "--sort", "bogus")
    assert res.exit_code == 2


# -- diff ----------------------------------------------------------------------------------
def test_diff_shows_config_and_metric_differences(trained: Path, tmp_path: Path) -> None:
    root = copy_runs(trained, tmp_path / "runs")
    res = invoke("diff", str(root / "alpha"), "beta", "--dir", str(root))
    assert res.exit_code == 0, res.output
    assert "optimizer.learning_rate: 0.001 -> 0.01" in res.output
    assert "model.layers[1].rate: 0.3 -> 0.5" in res.output
    assert "name:" not in res.output and "model.layers[0].units" not in res.output
    ma = json.loads((root / "alpha" / "metrics.json").read_text())
    mb = json.loads((root / "beta" / "metrics.json").read_text())
    line = next(x for x in res.output.splitlines() if "test.accuracy" in x)
    a, b = ma["test"]["accuracy"], mb["test"]["accuracy"]
    assert f"{a:.4g}" in line and f"{b:.4g}" in line and f"{b - a:+.4g}" in line
    assert "best.val_loss" in res.output

    res = invoke("diff", "alpha", "beta", "--dir", str(root), "--json")
    assert res.exit_code == 0, res.output
    d = strict_loads(res.output)
    changes = {c["key"]: c for c in d["config"]}
    assert set(changes) == {"optimizer.learning_rate", "model.layers[1].rate"}
    assert changes["optimizer.learning_rate"] == {"key": "optimizer.learning_rate",
                                                  "change": "changed", "a": 0.001, "b": 0.01}
    metric = {m["metric"]: m for m in d["metrics"]}
    assert metric["best.val_loss"]["delta"] == pytest.approx(mb["best"] - ma["best"])
    assert metric["test.loss"]["a"] == ma["test"]["loss"]


def test_diff_missing_keys_and_errors(trained: Path, tmp_path: Path) -> None:
    root = copy_runs(trained, tmp_path / "runs")
    cfg = (root / "beta" / "config.yaml").read_text()
    assert "  early_stopping: null\n" in cfg
    (root / "beta" / "config.yaml").write_text(cfg.replace(
        "  early_stopping: null\n", "  early_stopping: {monitor: val_loss, patience: 2}\n"))
    res = invoke("diff", "alpha", "beta", "--dir", str(root))
    assert res.exit_code == 0, res.output
    assert "training.early_stopping: null -> (missing)" in res.output
    assert "training.early_stopping.patience: (missing) -> 2" in res.output
    res = invoke("diff", "alpha", "nothing", "--dir", str(root))
    assert res.exit_code == 2 and "no run nothing" in res.output
    res = invoke("diff", "a", "beta", "--dir", str(root))  # a prefix that fits one run
    assert res.exit_code == 0, res.output
    (root / "alpha2").mkdir()
    res = invoke("diff", "al", "beta", "--dir", str(root))
    assert res.exit_code == 2 and "fits 2 runs" in res.output
    res = invoke("diff", "alpha2", "beta", "--dir", str(root))
    assert res.exit_code == 2 and "no config.yaml" in res.output
    res = invoke("diff", "alpha", "alpha", "--dir", str(root))
    assert res.exit_code == 0 and "config: identical" in res.output


def test_flatten_and_diff_configs() -> None:
    cfg = {"a": {"b": [1, {"c": 2}], "e": {}}, "f": None}
    assert flatten(cfg) == {"a.b[0]": 1, "a.b[1].c": 2, "a.e": {}, "f": None}
    changes = diff_configs(cfg, {"a": {"b": [1.0, {"c": 3}, 4]}, "f": False})
    got = [(c.key, c.a, c.b) for c in changes]
    assert got == [("a.b[1].c", 2, 3), ("a.e", {}, MISSING), ("f", None, False),
                   ("a.b[2]", MISSING, 4)]

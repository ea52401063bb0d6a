"""Experiment trackers under `logging:`: the schema, TensorBoard events read back, an MLflow
store read back, failures that only warn, and missing extras."""

from __future__ import annotations

import csv
import json
import struct
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dlcli.config import ConfigError, load_config_text, resolved_yaml
from dlcli.extras import MissingExtraError
from dlcli.track import flatten_config, hooks_from_config
from dlcli.train.trainer import Interrupted, Trainer

TINY = """
name: tiny
seed: 5
data: {dataset: blobs, n_samples: 120, validation_split: 0.25, test_split: 0.25,
       batch_size: 16, normalize: standardize}
model:
  input_shape: [2]
  layers:
    - {type: Dense, units: 8, activation: relu}
    - {type: Dense, units: 3, activation: softmax}
loss: categorical_crossentropy
metrics: [accuracy]
optimizer: {type: adam, learning_rate: 0.01}
training: {epochs: 3}
"""


def config(logging: str, *overrides: str) -> Any:
    return load_config_text(textwrap.dedent(TINY) + logging, list(overrides))


def train(cfg: Any, run_dir: Path, *before: Any) -> Trainer:
    trainer = Trainer(cfg, run_dir=run_dir, hooks=[*before, *hooks_from_config(cfg)])
    trainer.fit()
    return trainer


def history(run_dir: Path) -> list[dict[str, float]]:
    with open(run_dir / "history.csv") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def warnings_in(run_dir: Path) -> list[str]:
    return [line for line in (run_dir / "train.log").read_text().splitlines()
            if "warning:" in line]


def assert_complete(run_dir: Path, epochs: int) -> None:
    for name in ("config.yaml", "summary.txt", "history.csv", "metrics.json",
                 "checkpoints/best.npz", "checkpoints/last.npz"):
        assert (run_dir / name).is_file(), name
    assert len(history(run_dir)) == epochs
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"


# -- schema -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "tensorboard", "mlflow"), [
    ("", None, None),
    ("logging: {tensorboard: true}", True, None),
    ("logging: {tensorboard: false, mlflow: true}", False, True),
    ("logging: {tensorboard: {log_dir: tb}}", {"log_dir": "tb"}, None),
    ("logging: {mlflow: {}}", None, {"tracking_uri": None, "experiment": None, "run_name": None}),
    ("logging: {mlflow: {tracking_uri: 'http://h:5000', experiment: e, run_name: r}}", None,
     {"tracking_uri": "http://h:5000", "experiment": "e", "run_name": "r"}),
])
def test_schema_accepts_logging(text: str, tensorboard: Any, mlflow: Any) -> None:
    cfg = config(text)
    dumped = cfg.model_dump(mode="json")["logging"]
    if not text:
        assert dumped is None
        return
    assert dumped == {"tensorboard": tensorboard, "mlflow": mlflow}
    again = load_config_text(resolved_yaml(cfg), [])  # config.yaml of the run loads back
    assert again.model_dump() == cfg.model_dump()


@pytest.mark.parametrize(("text", "fragment"), [
    ("logging: {tensorbord: true}",
     "logging.tensorbord: unknown key 'tensorbord'; did you mean 'tensorboard'?"),
    ("logging: {tensorboard: {logdir: x}}",
     "logging.tensorboard.logdir: unknown key 'logdir'; did you mean 'log_dir'?"),
    ("logging: {tensorboard: 3}",
     "logging.tensorboard: expected true, false or a mapping {log_dir: PATH}, got 3"),
    ("logging: {mlflow: 'http://h:5000'}", "logging.mlflow: expected true, false or a mapping "
     "{tracking_uri: URI, experiment: NAME, run_name: NAME}, got 'http://h:5000'"),
    ("logging: {mlflow: {uri: x}}", "logging.mlflow.uri: unknown key 'uri'; valid keys: "
     "tracking_uri, experiment, run_name"),
    ("logging: {mlflow: {experiment: ''}}", "logging.mlflow.experiment: expected a non-empty"),
    ("logging: {mlflow: {run_name: 3}}", "logging.mlflow.run_name: expected a string, got 3"),
    ("logging: true", "logging: expected a mapping (key: value), got true"),
])
def test_schema_rejects_logging(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        config(text)
    assert fragment in str(err.value)
    line = len(textwrap.dedent(TINY).splitlines()) + 1  # where the logging section is
    assert str(err.value).startswith(f"<config>:{line}:")


def test_no_tracker_without_logging() -> None:
    assert hooks_from_config(config("")) == []
    assert hooks_from_config(config("logging: {tensorboard: false, mlflow: false}")) == []


def test_flatten_config() -> None:
    data = {"a": 1, "b": {"c": [28, 28, 1], "d": None}, "layers": [{"units": 3}, {"rate": 0.5}]}
    assert flatten_config(data) == {"a": 1, "b.c": [28, 28, 1], "b.d": None,
                                    "layers.0.units": 3, "layers.1.rate": 0.5}


# -- missing extras -----------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "module", "extra"), [
    ("logging: {tensorboard: true}", "tensorboardX", "tensorboard"),
    ("logging: {mlflow: {experiment: x}}", "mlflow", "mlflow"),
])
def test_missing_extra_is_one_line_before_training(
        monkeypatch: pytest.MonkeyPatch, text: str, module: str, extra: str) -> None:
    cfg = config(text)
    monkeypatch.setitem(sys.modules, module, None)  # import now raises ImportError
    with pytest.raises(MissingExtraError) as err:
        hooks_from_config(cfg)
    message = str(err.value)
    assert f"pip install 'dlcli[{extra}]'" in message and f"'{module}'" in message
    assert "\n" not in message


# -- TensorBoard --------------------------------------------------------------------------------
def read_events(folder: Path) -> list[Any]:
    """Every Event of the event files under folder (TFRecord: length, crc, data, crc)."""
    event_pb2 = pytest.importorskip("tensorboardX.proto.event_pb2")
    events = []
    files = sorted(folder.rglob("events.out.tfevents.*"))
    assert files, f"no event file under {folder}"
    for path in files:
        data = path.read_bytes()
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            body = data[pos + 12:pos + 12 + length]
            assert len(body) == length, f"truncated record in {path}"
            event = event_pb2.Event()
            event.ParseFromString(body)
            events.append(event)
            pos += 12 + length + 4
    return events


def scalars(events: list[Any]) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {}
    for event in events:
        for value in event.summary.value:
            if value.HasField("simple_value"):
                out.setdefault(value.tag, {})[event.step] = value.simple_value
    return out


def texts(events: list[Any]) -> dict[str, str]:
    out = {}
    for event in events:
        for value in event.summary.value:
            if value.metadata.plugin_data.plugin_name == "text":
                tag = value.tag.removesuffix("/text_summary")  # tensorboardX's suffix
                out[tag] = value.tensor.string_val[0].decode()
    return out


def test_tensorboard_scalars_equal_history(tmp_path: Path) -> None:
    pytest.importorskip("tensorboardX")
    from dlcli.nn.summary import summary_text

    run = tmp_path / "run"
    trainer = train(config("logging: {tensorboard: true}"), run)
    rows = history(run)
    events = read_events(run / "tensorboard")
    got = scalars(events)
    f32 = np.float32
    for tag, key in [("loss/train", "loss"), ("loss/validation", "val_loss"),
                     ("accuracy/train", "accuracy"), ("accuracy/validation", "val_accuracy"),
                     ("lr", "lr"), ("data_loss", "data_loss"), ("seconds", "seconds")]:
        assert got[tag] == {int(r["epoch"]): pytest.approx(f32(r[key])) for r in rows}, tag
        assert all(got[tag][int(r["epoch"])] == f32(r[key]) for r in rows), tag
    assert sorted(got["loss/train"]) == [1, 2, 3]
    test = json.loads((run / "metrics.json").read_text())["test"]
    assert got["accuracy/test"] == {3: f32(test["accuracy"])}
    assert got["hparam/test_accuracy"] == {3: f32(test["accuracy"])}
    assert got["hparam/val_loss"] == {3: f32(rows[-1]["val_loss"])}
    shown = texts(events)
    # indented four spaces: a markdown code block, so the table stays aligned
    assert [line.removeprefix("    ") for line in shown["model/summary"].splitlines()] == \
        summary_text(trainer.model).rstrip("\n").splitlines()
    assert "learning_rate: 0.01" in shown["config"] and shown["status"] == "finished"
    assert not warnings_in(run)


def test_tensorboard_hparams_are_the_resolved_config(tmp_path: Path) -> None:
    pytest.importorskip("tensorboardX")
    from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData

    run = tmp_path / "run"
    train(config("logging: {tensorboard: true}"), run)
    sessions, experiments = [], []
    for event in read_events(run / "tensorboard"):
        for value in event.summary.value:
            if value.metadata.plugin_data.plugin_name == "hparams":
                data = HParamsPluginData.FromString(value.metadata.plugin_data.content)
                if data.HasField("session_start_info"):
                    sessions.append(data.session_start_info.hparams)
                if data.HasField("experiment"):
                    experiments.append(data.experiment)
    assert len(sessions) == 1 and len(experiments) == 1
    hp = sessions[0]
    assert hp["optimizer.learning_rate"].number_value == 0.01
    assert hp["model.layers.0.units"].number_value == 8
    assert hp["optimizer.type"].string_value == "adam"
    assert hp["data.shuffle"].bool_value is True
    assert hp["model.input_shape"].string_value == "[2]"
    assert not any(k.startswith("logging") for k in hp)
    metrics = {m.name.tag for m in experiments[0].metric_infos}
    assert {"hparam/loss", "hparam/val_accuracy", "hparam/test_accuracy"} <= metrics


def test_tensorboard_log_dir_has_a_folder_per_run(tmp_path: Path) -> None:
    pytest.importorskip("tensorboardX")
    cfg = config(f"logging: {{tensorboard: {{log_dir: '{tmp_path / 'tb'}'}}}}")
    train(cfg, tmp_path / "a")
    train(cfg, tmp_path / "b")
    assert sorted(p.name for p in (tmp_path / "tb").iterdir()) == ["a", "b"]
    assert not (tmp_path / "a" / "tensorboard").exists()
    for name in ("a", "b"):
        got = scalars(read_events(tmp_path / "tb" / name))
        assert sorted(got["loss/train"]) == [1, 2, 3]


def test_tensorboard_failure_warns_once_and_the_run_completes(tmp_path: Path) -> None:
    pytest.importorskip("tensorboardX")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    run = tmp_path / "run"
    train(config(f"logging: {{tensorboard: {{log_dir: '{blocker}'}}}}"), run)
    lines = warnings_in(run)
    assert len(lines) == 1 and "TensorBoard logging failed" in lines[0], lines
    assert_complete(run, 3)


# -- MLflow -------------------------------------------------------------------------------------
@pytest.fixture
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A local file store (MLflow 3 refuses one unless asked; sqlite needs full mlflow)."""
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return (tmp_path / "mlruns").as_uri()


def only_run(uri: str, experiment: str) -> Any:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment!r}"
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    return client, runs[0]


def test_mlflow_params_metrics_artifacts_and_status(tmp_path: Path, mlflow_store: str) -> None:
    import mlflow
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    import dlcli

    long_name = "d" * (MAX_PARAM_VAL_LENGTH + 50)  # a value past MLflow's limit is truncated
    run = tmp_path / "run"
    cfg = config(f"logging: {{mlflow: {{tracking_uri: '{mlflow_store}'}}}}",
                 f"model.layers[0].name={long_name}")
    train(cfg, run)
    assert mlflow.active_run() is None
    client, found = only_run(mlflow_store, "tiny")  # the experiment defaults to the config name
    info, data = found.info, found.data
    assert info.status == "FINISHED" and info.run_name == "run"
    params = data.params
    assert params["optimizer.learning_rate"] == "0.01"
    assert params["model.layers.1.units"] == "3" and params["data.shuffle"] == "true"
    assert params["model.input_shape"] == "[2]" and params["name"] == "tiny"
    assert params["model.layers.0.name"] == long_name[:MAX_PARAM_VAL_LENGTH]
    assert not any(k.startswith("logging") for k in params)
    assert data.tags["dlcli.version"] == dlcli.__version__
    assert data.tags["dlcli.status"] == "finished"
    rows = history(run)
    for key in ("loss", "val_loss", "accuracy", "val_accuracy", "lr", "seconds"):
        metric = client.get_metric_history(info.run_id, key)
        assert [(m.step, m.value) for m in sorted(metric, key=lambda m: m.step)] == \
            [(int(r["epoch"]), r[key]) for r in rows], key
    test = json.loads((run / "metrics.json").read_text())["test"]
    assert data.metrics["test_accuracy"] == test["accuracy"]
    artifacts = {a.path for a in client.list_artifacts(info.run_id)}
    assert {"config.yaml", "checkpoints"} <= artifacts
    assert [a.path for a in client.list_artifacts(info.run_id, "checkpoints")] == \
        ["checkpoints/best.npz"]
    local = Path(client.download_artifacts(info.run_id, "config.yaml", str(tmp_path)))
    assert local.read_text() == (run / "config.yaml").read_text()
    assert not warnings_in(run)


def test_mlflow_run_of_an_interrupted_training_is_killed(tmp_path: Path,
                                                         mlflow_store: str) -> None:
    class StopAfterFirstEpoch:
        def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
            trainer.request_stop()

    import mlflow

    cfg = config(f"logging: {{mlflow: {{tracking_uri: '{mlflow_store}', experiment: stops, "
                 "run_name: first}}")
    with pytest.raises(Interrupted):
        train(cfg, tmp_path / "run", StopAfterFirstEpoch())
    assert mlflow.active_run() is None
    client, found = only_run(mlflow_store, "stops")
    assert found.info.status == "KILLED" and found.info.run_name == "first"
    assert found.data.tags["dlcli.status"] == "interrupted"
    assert [m.step for m in client.get_metric_history(found.info.run_id, "loss")] == [1]
    assert [a.path for a in client.list_artifacts(found.info.run_id, "checkpoints")] == \
        ["checkpoints/best.npz"]


def test_unreachable_mlflow_server_warns_once_and_the_run_completes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mlflow")
    pytest.importorskip("tensorboardX")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    run = tmp_path / "run"
    train(config("logging: {tensorboard: true, mlflow: {tracking_uri: 'http://127.0.0.1:9'}}"),
          run)
    lines = warnings_in(run)
    assert len(lines) == 1, lines
    assert "MLflow tracking failed" in lines[0] and "http://127.0.0.1:9" in lines[0]
    assert "cannot connect" in lines[0]
    assert_complete(run, 3)
    assert sorted(scalars(read_events(run / "tensorboard"))["loss/train"]) == [1, 2, 3]


def test_database_store_without_sqlalchemy_says_what_to_install(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setitem(sys.modules, "sqlalchemy", None)  # as with mlflow-skinny
    run = tmp_path / "run"
    train(config("logging: {mlflow: true}"), run)  # the URI comes from MLflow's default
    lines = warnings_in(run)
    assert len(lines) == 1 and "pip install mlflow" in lines[0], lines
    assert "mlflow.db" in lines[0]
    assert_complete(run, 3)


def test_resumed_run_logs_the_epochs_it_carries(tmp_path: Path, mlflow_store: str) -> None:
    from dlcli.io.checkpoint import load_checkpoint

    class StopAfterFirstEpoch:
        def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
            trainer.request_stop()

    cfg = config(f"logging: {{mlflow: {{tracking_uri: '{mlflow_store}', experiment: resumed}}}}")
    with pytest.raises(Interrupted):
        train(cfg, tmp_path / "a", StopAfterFirstEpoch())
    ckpt = load_checkpoint(tmp_path / "a" / "checkpoints" / "last")
    Trainer(cfg, run_dir=tmp_path / "b", resume=ckpt, hooks=hooks_from_config(cfg)).fit()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_store)
    exp = client.get_experiment_by_name("resumed")
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    assert runs["a"].info.status == "KILLED" and runs["b"].info.status == "FINISHED"
    loss = client.get_metric_history(runs["b"].info.run_id, "loss")
    assert sorted((m.step, m.value) for m in loss) == \
        [(int(r["epoch"]), r["loss"]) for r in history(tmp_path / "b")]
    assert len(loss) == 3

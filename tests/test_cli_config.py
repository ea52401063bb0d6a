"""`dlcli validate`, `dlcli summary`, `dlcli schema` through click's test runner."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from dlcli import __version__
from dlcli.cli.main import main
from dlcli.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]

# line numbers matter: the broken variants below name them
BASE = """\
name: test
seed: 1
data:
  dataset: fashion_mnist
  validation_split: 0.2
  batch_size: 16
model:
  input_shape: [28, 28, 1]
  layers:
    - type: Conv2D
      filters: 4
      kernel_size: 3
      activation: relu
    - type: MaxPool2D
      pool_size: 2
    - type: Flatten
    - type: Dense
      units: 3
      activation: softmax
loss: categorical_crossentropy
metrics: [accuracy]
optimizer:
  type: adam
  learning_rate: 0.01
training:
  epochs: 2
  early_stopping:
    monitor: val_loss
    patience: 1
"""
# conv 3*3*1*4+4 = 40; pool -> (13, 13, 4); flatten 676; dense 676*3+3 = 2031
BASE_PARAMS = 40 + 2031


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_validate_ok(tmp_path: Path) -> None:
    result = run("validate", write(tmp_path, BASE))
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"config.yaml is valid: 4 layers, {BASE_PARAMS:,} parameters"


def test_validate_the_issue_example() -> None:
    result = run("validate", str(ROOT / "configs" / "fashion_mnist_cnn.yaml"))
    assert result.exit_code == 0, result.output
    assert "fashion_mnist_cnn.yaml is valid: 9 layers, 421,770 parameters" in result.output


@pytest.mark.parametrize("name", ["fashion_mnist_mlp.yaml", "fashion_mnist_cnn.yaml",
                                  "binary_moons.yaml", "regression.yaml"])
def test_validate_every_example(name: str) -> None:
    assert run("validate", str(ROOT / "configs" / name)).exit_code == 0


def test_set_is_applied_before_validation(tmp_path: Path) -> None:
    path = write(tmp_path, BASE)
    result = run("validate", path, "--set", "model.layers[3].units=10",
                 "--set", "model.layers[0].filters=8")
    assert result.exit_code == 0, result.output
    # conv 3*3*1*8+8 = 80; dense 13*13*8*10+10 = 13530
    assert f"{80 + 13_530:,} parameters" in result.output
    result = run("summary", path, "--json", "--set", "optimizer.learning_rate=0.5",
                 "--set", "model.input_shape=[10, 10, 1]")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["layers"][0]["output_shape"] == [8, 8, 4]


# (name, old text, new text, extra args, key path, line, suggestion)
BROKEN = [
    ("misspelt top key", "optimizer:\n", "optimiser:\n", (), "optimiser", 22, "optimizer"),
    ("layer type", "    - type: Dense\n", "    - type: Dens\n", (), "model.layers[3].type", 17,
     "Dense"),
    ("layer type case", "    - type: Flatten\n", "    - type: flatten\n", (),
     "model.layers[2].type", 16, "Flatten"),
    ("activation", "activation: relu", "activation: rellu", (), "model.layers[0].activation",
     13, "relu"),
    ("initializer", "      activation: relu\n",
     "      activation: relu\n      kernel_initializer: he_normall\n", (),
     "model.layers[0].kernel_initializer", 14, "he_normal"),
    ("optimizer name", "  type: adam\n", "  type: adamm\n", (), "optimizer.type", 23, "adam"),
    ("loss name", "loss: categorical_crossentropy", "loss: categorical_crossentrop", (), "loss",
     20, "categorical_crossentropy"),
    ("metric name", "metrics: [accuracy]", "metrics: [acuracy]", (), "metrics[0]", 21,
     "accuracy"),
    ("layer key", "      filters: 4\n", "      filter: 4\n", (), "model.layers[0].filter", 11,
     "filters"),
    ("kernel size word", "kernel_size: 3", "kernel_size: three", (),
     "model.layers[0].kernel_size", 12, None),
    ("negative units", "units: 3", "units: -3", (), "model.layers[3].units", 18, None),
    ("fractional units", "units: 3", "units: 3.5", (), "model.layers[3].units", 18, None),
    ("dropout rate", "    - type: Flatten\n",
     "    - type: Flatten\n    - {type: Dropout, rate: 1.5}\n", (), "model.layers[3].rate", 17,
     None),
    ("validation split", "validation_split: 0.2", "validation_split: 1.2", (),
     "data.validation_split", 5, None),
    ("batch size type", "batch_size: 16", "batch_size: big", (), "data.batch_size", 6, None),
    ("dataset name", "dataset: fashion_mnist", "dataset: fashion_mnst", (), "data.dataset", 4,
     "fashion_mnist"),
    ("padding", "      filters: 4\n", "      filters: 4\n      padding: sam\n", (),
     "model.layers[0].padding", 12, "same"),
    ("misspelt layers", "  layers:\n", "  layer:\n", (), "model.layer", 9, "layers"),
    ("monitor name", "monitor: val_loss", "monitor: val_acc", (),
     "training.early_stopping.monitor", 28, "val_accuracy"),
    ("val monitor without validation", "validation_split: 0.2", "validation_split: 0.0", (),
     "training.early_stopping.monitor", 28, None),
    ("kernel larger than input", "kernel_size: 3", "kernel_size: 30", (), "model.layers[0]", 10,
     None),
    ("pool larger than input", "pool_size: 2", "pool_size: 30", (), "model.layers[1]", 14, None),
    ("flatten of flat input", "    - type: Dense\n", "    - type: Flatten\n    - type: Dense\n", (),
     "model.layers[3]", 17, None),
    ("conv on flat input", "input_shape: [28, 28, 1]", "input_shape: [784]", (),
     "model.layers[0]", 10, None),
    ("learning rate", "learning_rate: 0.01", "learning_rate: -1", (), "optimizer.learning_rate",
     24, None),
    ("duplicate key", "      units: 3\n", "      units: 3\n      units: 4\n", (),
     "model.layers[3].units", 19, None),
    ("seed type", "seed: 1", "seed: abc", (), "seed", 2, None),
    ("schedule type", "  epochs: 2\n", "  epochs: 2\n  lr_schedule: {type: cosin}\n", (),
     "training.lr_schedule.type", 27, "cosine"),
    ("regularizer key", "      activation: relu\n",
     "      activation: relu\n      kernel_regularizer: {l22: 0.1}\n", (),
     "model.layers[0].kernel_regularizer.l22", 14, "l2"),
    ("missing units", "      units: 3\n", "", (), "model.layers[3].units", 17, None),
    ("missing layer type", "    - type: Flatten\n", "    - name: flat\n", (),
     "model.layers[2].type", 16, None),
    ("both dataset and train", "  dataset: fashion_mnist\n",
     "  dataset: fashion_mnist\n  train: data.npz\n", (), "data", 3, None),
    ("layer name with slash", "    - type: Flatten\n", "    - {type: Flatten, name: a/b}\n", (),
     "model.layers[2].name", 16, None),
    ("top-level list item", "metrics: [accuracy]", "metrics: accuracy", (), "metrics", 21, None),
]


@pytest.mark.parametrize("case", BROKEN, ids=[c[0] for c in BROKEN])
@pytest.mark.parametrize("command", ["validate", "summary"])
def test_broken_configs(tmp_path: Path, case: tuple, command: str) -> None:
    _, old, new, extra, key_path, line, suggestion = case
    assert old in BASE
    path = write(tmp_path, BASE.replace(old, new, 1))
    result = run(command, path, *extra)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.output.startswith("error: ")
    # the issue line: file:line:column: key.path: message
    matching = [ln for ln in result.output.splitlines() if f": {key_path}: " in ln]
    assert matching, result.output
    assert any(f"config.yaml:{line}:" in ln for ln in matching), result.output
    if suggestion is not None:
        assert any(f"did you mean {suggestion!r}?" in ln for ln in matching), result.output


def test_a_file_with_many_errors_lists_them_all(tmp_path: Path) -> None:
    text = (BASE.replace("activation: relu", "activation: rellu")
            .replace("units: 3", "units: 0").replace("optimizer:\n", "optimiser:\n"))
    result = run("validate", write(tmp_path, text))
    assert result.exit_code == 2
    lines = result.output.splitlines()
    assert lines[0] == f"error: {tmp_path / 'config.yaml'}: 3 errors"
    assert [ln.split(": ")[1] for ln in lines[1:]] == [
        "model.layers[0].activation", "model.layers[3].units", "optimiser"]
    assert [ln.split(":")[1] for ln in lines[1:]] == ["13", "18", "22"]


def test_override_errors(tmp_path: Path) -> None:
    path = write(tmp_path, BASE)
    result = run("validate", path, "--set", "optimizer.learnig_rate=0.1")
    assert result.exit_code == 2
    assert ("--set optimizer.learnig_rate=0.1: optimizer.learnig_rate: unknown key "
            "'learnig_rate'; did you mean 'learning_rate'?") in result.output
    result = run("summary", path, "--set", "model.layers[9].rate=0.5")
    assert result.exit_code == 2 and "model.layers: has 4 items" in result.output
    result = run("validate", path, "--set", "nonsense")
    assert result.exit_code == 2 and "KEY=VALUE" in result.output


@pytest.mark.parametrize("text,fragment", [
    ("", "the file is empty"),
    ("\n# nothing here\n", "the file is empty"),
    ("- a\n- b\n", "the top level must be a mapping"),
    ("just a string\n", "the top level must be a mapping"),
])
def test_file_level_errors_are_one_line(tmp_path: Path, text: str, fragment: str) -> None:
    result = run("validate", write(tmp_path, text))
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1 and fragment in result.output


def test_yaml_syntax_error_gives_line_and_column(tmp_path: Path) -> None:
    text = BASE.replace("metrics: [accuracy]", "metrics: [accuracy")
    result = run("validate", write(tmp_path, text))
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "invalid YAML" in result.output and "config.yaml:22:10:" in result.output
    result = run("validate", write(tmp_path, "a: b: c\n"))
    assert result.exit_code == 2 and "config.yaml:1:5: invalid YAML" in result.output


def test_missing_file(tmp_path: Path) -> None:
    result = run("summary", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {tmp_path / 'nope.yaml'}: no such file"


@pytest.mark.parametrize(
    ("name", "kind"),
    [("model.onnx", "an ONNX model"), ("x.npy", "a numpy array"), ("blob.bin", "a binary file")],
)
def test_binary_file_given_as_config(tmp_path: Path, name: str, kind: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"\x08\x07\x12\x8c\xff\xfe binary")  # not UTF-8
    for command in ("summary", "validate", "train"):
        result = run(command, str(path))
        assert result.exit_code == 2 and "Traceback" not in result.output
        assert result.output.strip() == (
            f"error: {path}: is {kind}, not a YAML config (a UTF-8 text file)"
        )


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = run("--debug", "validate", str(tmp_path / "nope.yaml"))
    assert isinstance(result.exception, ConfigError)
    assert result.exit_code != 0 and result.exit_code != 2


def test_summary_table(tmp_path: Path) -> None:
    result = run("summary", write(tmp_path, BASE))
    assert result.exit_code == 0, result.output
    out = result.output
    assert 'Model: "test"' in out
    for header in ("Layer (type)", "Output Shape", "Param #", "MACs / sample",
                   "Activations / sample"):
        assert header in out
    rows = {ln.split("│")[1].strip(): [c.strip() for c in ln.split("│")[2:-1]]
            for ln in out.splitlines() if ln.startswith("│")}
    assert rows["conv2d (Conv2D)"][:3] == ["(None, 26, 26, 4)", "40", f"{26 * 26 * 4 * 9:,}"]
    assert rows["conv2d (Conv2D)"][3] == "10.56 KB"  # 26*26*4 floats
    assert rows["max_pooling2d (MaxPooling2D)"][:2] == ["(None, 13, 13, 4)", "0"]
    assert rows["flatten (Flatten)"][:2] == ["(None, 676)", "0"]
    assert rows["dense (Dense)"][:3] == ["(None, 3)", "2,031", "2,028"]
    # Keras: 2071 * 4 bytes = 8284 B = 8.09 KB
    assert f"Total params: {BASE_PARAMS:,} (8.09 KB)" in out
    assert f"Trainable params: {BASE_PARAMS:,} (8.09 KB)" in out
    assert "Non-trainable params: 0 (0.00 B)" in out
    assert "Forward MACs per sample:" in out and "Activation memory per sample:" in out


def test_summary_of_the_issue_example() -> None:
    result = run("summary", str(ROOT / "configs" / "fashion_mnist_cnn.yaml"))
    assert result.exit_code == 0, result.output
    assert "conv2d (Conv2D)" in result.output and "(None, 28, 28, 32)" in result.output
    assert "batch_normalization (BatchNormalization)" in result.output
    assert "Total params: 421,770 (1.61 MB)" in result.output
    assert "Non-trainable params: 64 (256.00 B)" in result.output


def test_summary_json(tmp_path: Path) -> None:
    result = run("summary", write(tmp_path, BASE), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [layer["name"] for layer in data["layers"]] == ["conv2d", "max_pooling2d", "flatten",
                                                           "dense"]
    first = data["layers"][0]
    assert {k: first[k] for k in ("name", "type", "output_shape", "params", "trainable_params",
                                  "macs")} == {
        "name": "conv2d", "type": "Conv2D", "output_shape": [26, 26, 4], "params": 40,
        "trainable_params": 40, "macs": 26 * 26 * 4 * 9}
    assert data["total_params"] == data["trainable_params"] == BASE_PARAMS
    assert data["non_trainable_params"] == 0


def test_schema_command(tmp_path: Path) -> None:
    result = run("schema")
    assert result.exit_code == 0
    schema = json.loads(result.output)
    assert schema["title"] == "dlcli experiment config" and "model" in schema["properties"]
    out = tmp_path / "s.json"
    result = run("schema", "-o", str(out))
    assert result.exit_code == 0 and str(out) in result.output
    assert json.loads(out.read_text()) == schema
    assert out.read_text() == (ROOT / "configs" / "dlcli.schema.json").read_text()
    result = run("schema", "-o", str(tmp_path / "missing-dir" / "s.json"))
    assert result.exit_code == 2 and "cannot write" in result.output


def test_version_and_help() -> None:
    result = run("--version")
    assert result.exit_code == 0 and __version__ in result.output
    result = run("--help")
    assert result.exit_code == 0
    for command in ("validate", "summary", "schema"):
        assert command in result.output
    assert "--set" in run("validate", "--help").output


def test_python_dash_m(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "dlcli", "validate",
                             write(tmp_path, BASE.replace("units: 3", "units: x"))],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "model.layers[3].units" in result.stderr

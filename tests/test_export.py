"""dlcli export: ONNX files that compute what dlcli computes, and weights files that reload."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dlcli.cli.main import main
from dlcli.config import load_config_text, validate_config
from dlcli.io.checkpoint import load_checkpoint, save_checkpoint

onnx = pytest.importorskip("onnx")  # the export extra; `make test` installs it
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("safetensors")

from dlcli.export import VerificationError, export_checkpoint, verify_onnx  # noqa: E402
from dlcli.export.onnx import OPSET, ExportError, build_onnx  # noqa: E402
from dlcli.export.weights import load_weights_file  # noqa: E402
from dlcli.nn.from_config import build_model  # noqa: E402
from dlcli.predict import CheckpointModel, OnnxModel  # noqa: E402
from dlcli.train.trainer import NullReporter, Trainer  # noqa: E402

# -- example architectures: (config YAML with {data} for the data file, data maker) ----------
CNN = """
name: cnn
seed: 1
data: {{train: {data}, validation_split: 0.2, test_split: 0.2, batch_size: 16, normalize: scale}}
model:
  input_shape: [11, 11, 3]
  layers:
    - {{type: BatchNorm}}                     # on channels-last input, before any conv
    - {{type: Conv2D, filters: 4, kernel_size: 3, padding: same}}
    - {{type: BatchNorm}}                     # folded: the conv has no activation
    - {{type: Activation, activation: relu}}
    - {{type: MaxPool2D, pool_size: 2, padding: same}}            # 11 -> 6, padded
    - {{type: Conv2D, filters: 6, kernel_size: [3, 2], strides: [2, 1], padding: valid,
        activation: elu}}
    - {{type: BatchNorm, center: false}}      # not folded: after elu
    - {{type: AvgPool2D, pool_size: 3, strides: 1, padding: same}}  # pads excluded
    - {{type: Conv2D, filters: 5, kernel_size: 2, strides: 2, padding: same,
        activation: leaky_relu, use_bias: false}}
    - {{type: Flatten}}
    - {{type: Dense, units: 8, activation: gelu}}
    - {{type: Dropout, rate: 0.3}}
    - {{type: Dense, units: 3, activation: softmax}}
loss: sparse_categorical_crossentropy
metrics: [accuracy]
optimizer: {{type: adam}}
training: {{epochs: 1}}
"""

GAP = """
name: gap
seed: 2
data: {{train: {data}, validation_split: 0.2, test_split: 0.2, batch_size: 16, normalize: scale}}
model:
  input_shape: [11, 11, 3]
  layers:
    - {{type: Conv2D, filters: 4, kernel_size: 5, strides: 3, padding: same, activation: selu}}
    - {{type: Dense, units: 6, activation: tanh}}   # Dense on a 4-d tensor: the last axis
    - {{type: BatchNorm}}
    - {{type: GlobalAveragePooling2D}}
    - {{type: BatchNorm, scale: false}}
    - {{type: Dense, units: 3, activation: softmax}}
loss: categorical_crossentropy
metrics: [accuracy]
optimizer: {{type: adam}}
training: {{epochs: 1}}
"""

MLP = """
name: mlp
seed: 3
data: {{train: {data}, test_split: 0.2, batch_size: 16, normalize: standardize}}
model:
  input_shape: [6]
  layers:
    - {{type: Dense, units: 16}}
    - {{type: BatchNorm}}                        # folded into the Dense
    - {{type: Activation, activation: softplus}}
    - {{type: Dense, units: 8, activation: relu}}
    - {{type: Dropout, rate: 0.5}}
    - {{type: Dense, units: 3, activation: softmax}}
loss: sparse_categorical_crossentropy
metrics: [accuracy]
optimizer: {{type: adam}}
training: {{epochs: 1}}
"""

SEQUENCE = """
name: seq
seed: 4
data: {{train: {data}, test_split: 0.2, batch_size: 16, normalize: standardize}}
model:
  input_shape: [5, 4]
  layers:
    - {{type: Dense, units: 6, activation: relu}}   # on each of the 5 rows
    - {{type: BatchNorm}}                          # rank 3: Mul and Add in the graph
    - {{type: Flatten}}
    - {{type: Dense, units: 3}}
loss: {{type: sparse_categorical_crossentropy, from_logits: true}}
metrics: [accuracy]
optimizer: {{type: adam}}
training: {{epochs: 1}}
"""

BINARY = """
name: binary
seed: 5
data: {{dataset: moons, n_samples: 200, test_split: 0.2, batch_size: 16, normalize: standardize}}
model:
  input_shape: [2]
  layers:
    - {{type: Dense, units: 8, activation: relu}}
    - {{type: Dense, units: 1, activation: sigmoid}}
loss: binary_crossentropy
metrics: [accuracy]
optimizer: {{type: adam, learning_rate: 0.01}}
training: {{epochs: 1}}
"""

REGRESSION = """
name: regression
seed: 6
data: {{dataset: regression, n_samples: 200, n_features: 4, test_split: 0.2, batch_size: 16,
       normalize: standardize}}
model:
  input_shape: [4]
  layers:
    - {{type: Dense, units: 8, activation: relu}}
    - {{type: Dense, units: 1}}
    - {{type: Activation, activation: linear}}
loss: mse
metrics: [mae]
optimizer: {{type: adam}}
training: {{epochs: 1}}
"""


def _images(path: Path, n: int = 60, shape: tuple[int, ...] = (11, 11, 3)) -> Path:
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.integers(0, 256, (n, *shape), dtype=np.uint8),
             y=np.arange(n) % 3)
    return path


def _table(path: Path, shape: tuple[int, ...], n: int = 60) -> Path:
    rng = np.random.default_rng(1)
    x = rng.normal(5.0, 3.0, (n, *shape)).astype(np.float32)
    np.savez(path, x=x, y=np.arange(n) % 3)
    return path


def _shake_batchnorm(ckpt_path: Path) -> None:
    """Give every BatchNorm statistics and scales far from their initial values, so folding and
    the BatchNormalization node are really exercised."""
    ckpt = load_checkpoint(ckpt_path)
    rng = np.random.default_rng(9)
    for key, w in ckpt.weights.items():
        if key.endswith(("moving_mean", "beta")):
            ckpt.weights[key] = rng.normal(0, 0.5, w.shape).astype(np.float32)
        elif key.endswith(("moving_variance", "gamma")):
            ckpt.weights[key] = rng.uniform(0.3, 2.0, w.shape).astype(np.float32)
    save_checkpoint(ckpt_path, ckpt)


def trained(tmp_path: Path, text: str, data: Path | None = None) -> Path:
    """Train one epoch and return the best checkpoint's path."""
    cfg = load_config_text(textwrap.dedent(text.format(data=data)))
    result = Trainer(cfg, run_dir=tmp_path / "run", reporter=NullReporter()).fit()
    path = result.run_dir / "checkpoints" / "last.npz"
    _shake_batchnorm(path)
    return path


@pytest.fixture(params=["cnn", "gap", "mlp", "seq", "binary", "regression"])
def checkpoint(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    name = request.param
    if name in ("cnn", "gap"):
        return trained(tmp_path, CNN if name == "cnn" else GAP, _images(tmp_path / "img.npz"))
    if name == "mlp":
        return trained(tmp_path, MLP, _table(tmp_path / "t.npz", (6,)))
    if name == "seq":
        return trained(tmp_path, SEQUENCE, _table(tmp_path / "t.npz", (5, 4)))
    return trained(tmp_path, BINARY if name == "binary" else REGRESSION)


# -- ONNX ---------------------------------------------------------------------------------------
def test_onnx_export_verifies_and_matches_dlcli(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "model.onnx"
    report = export_checkpoint(checkpoint, out)
    assert report.verification is not None and report.verification.passed
    assert report.verification.max_abs_diff < 1e-5
    assert "samples of" in report.verification.source  # the checkpoint's own data, not random
    proto = onnx.load(out)
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version >= 17 == OPSET
    ops = {n.op_type for n in proto.graph.node}
    assert "Dropout" not in ops
    # independently of the export's own check: onnxruntime on raw inputs, batch sizes 1 and 7
    reference = CheckpointModel(checkpoint)
    rng = np.random.default_rng(3)
    shape = reference.info.input_shape
    raw = (rng.random((7, *shape)) * 255).astype(np.float32)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    ours = reference.predict(raw)
    theirs = sess.run(None, {name: raw})[0]
    one = sess.run(None, {name: raw[:1]})[0]
    assert theirs.shape == ours.shape
    np.testing.assert_allclose(theirs, ours, atol=1e-5 * max(1.0, float(np.abs(ours).max())))
    np.testing.assert_allclose(one, theirs[:1], atol=1e-6)


def test_onnx_layout_conversions_are_where_expected(tmp_path: Path) -> None:
    ckpt = trained(tmp_path, CNN, _images(tmp_path / "img.npz"))
    proto = build_onnx(CheckpointModel(ckpt).model, {"mode": "none"})
    ops = [n.op_type for n in proto.graph.node]
    # BatchNorm after a conv without activation is folded; the other two stay nodes
    assert ops.count("BatchNormalization") == 2
    assert ops.count("Conv") == 3 and "MaxPool" in ops and "AveragePool" in ops
    # one transpose to NCHW before the first BatchNorm, one back to NHWC before Flatten
    assert ops.count("Transpose") == 2
    assert ops.index("Transpose") < ops.index("BatchNormalization")
    assert ops[ops.index("Flatten") - 1] == "Transpose"
    assert ops[-2:] == ["Softmax", "Identity"]


def test_onnx_graph_holds_the_preprocessing_and_metadata(tmp_path: Path) -> None:
    ckpt = trained(tmp_path, CNN, _images(tmp_path / "img.npz"))
    out = tmp_path / "m.onnx"
    export_checkpoint(ckpt, out)
    proto = onnx.load(out)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["dlcli_version"]
    assert json.loads(meta["preprocessing"]) == {"mode": "scale", "offset": [0.0],
                                                "scale": [255.0]}
    assert json.loads(meta["config"])["model"]["input_shape"] == [11, 11, 3]
    assert "raw values" in meta["input"] and "11, 11, 3" in meta["input"]
    assert meta["task"] == "classification"
    assert "class_names" in meta
    first = proto.graph.node[:2]
    assert [n.op_type for n in first] == ["Sub", "Div"]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [11, 11, 3]
    assert proto.graph.output[0].name == "probabilities"


def test_from_logits_model_exports_probabilities(tmp_path: Path) -> None:
    ckpt = trained(tmp_path, SEQUENCE, _table(tmp_path / "t.npz", (5, 4)))
    proto = build_onnx(CheckpointModel(ckpt).model, {"mode": "none"}, final_activation="softmax")
    assert proto.graph.node[-2].op_type == "Softmax"
    out = tmp_path / "m.onnx"
    export_checkpoint(ckpt, out)
    x = np.random.default_rng(0).normal(size=(4, 5, 4)).astype(np.float32)
    probs = OnnxModel(out).predict(x)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def _corrupt_one_weight(path: Path) -> None:
    proto = onnx.load(path)
    init = next(i for i in proto.graph.initializer if "kernel" in i.name)
    w = onnx.numpy_helper.to_array(init).copy()
    w.flat[0] += 0.5
    init.CopyFrom(onnx.numpy_helper.from_array(w, init.name))
    onnx.save(proto, path)


def test_a_corrupted_graph_fails_verification(tmp_path: Path) -> None:
    ckpt = trained(tmp_path, CNN, _images(tmp_path / "img.npz"))
    out = tmp_path / "m.onnx"
    assert export_checkpoint(ckpt, out, verify=False).verification is None
    verify_onnx(out, CheckpointModel(ckpt))  # as written, it passes
    _corrupt_one_weight(out)
    with pytest.raises(VerificationError, match="max abs difference"):
        verify_onnx(out, CheckpointModel(ckpt))


def test_cli_export_fails_with_exit_1_and_leaves_no_file(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import dlcli.export.onnx as onnx_export

    ckpt = trained(tmp_path, MLP, _table(tmp_path / "t.npz", (6,)))
    out = tmp_path / "m.onnx"
    out.write_bytes(b"an older export")
    real = onnx_export.build_onnx

    def broken(*args, **kwargs):
        proto = real(*args, **kwargs)
        init = next(i for i in proto.graph.initializer if "kernel" in i.name)
        w = onnx.numpy_helper.to_array(init) * 1.5
        init.CopyFrom(onnx.numpy_helper.from_array(w, init.name))
        return proto

    monkeypatch.setattr(onnx_export, "build_onnx", broken)
    result = CliRunner().invoke(main, ["export", str(ckpt), "-o", str(out)])
    assert result.exit_code == 1, result.output
    assert "verification failed" in result.output and "max abs difference" in result.output
    assert out.read_bytes() == b"an older export"  # the old file is untouched
    assert not list(tmp_path.glob(".m.onnx.*"))  # and no temporary file is left
    result = CliRunner().invoke(main, ["export", str(ckpt), "-o", str(out), "--no-verify"])
    assert result.exit_code == 0 and "not verified" in result.output


def test_cli_export_prints_the_difference(tmp_path: Path) -> None:
    ckpt = trained(tmp_path, MLP, _table(tmp_path / "t.npz", (6,)))
    out = tmp_path / "sub" / "model.onnx"
    result = CliRunner().invoke(main, ["export", str(ckpt), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "max abs difference" in result.output and "wrote" in result.output
    assert out.is_file() and out.stat().st_mode & 0o044  # an ordinary, readable file


def test_random_inputs_when_the_data_is_gone(tmp_path: Path) -> None:
    data = _table(tmp_path / "t.npz", (6,))
    ckpt = trained(tmp_path, MLP, data)
    data.unlink()
    report = export_checkpoint(ckpt, tmp_path / "m.onnx")
    assert report.verification.passed and "random inputs" in report.verification.source


def test_a_layer_without_conversion_is_one_line(tmp_path: Path) -> None:
    from dlcli.nn.layers import Dense, Layer
    from dlcli.nn.sequential import Sequential

    class Mystery(Layer):
        default_name = "mystery"

        def call(self, x, training=False):
            return x

    model = Sequential([Dense(3), Mystery()], (4,)).build(0)
    with pytest.raises(ExportError, match=r"layer mystery \(Mystery\) cannot be exported"):
        build_onnx(model, {"mode": "none"})


@pytest.mark.parametrize("args, message", [
    (["-o", "m.txt"], "cannot tell the format"),
    (["-o", "m.onnx", "--format", "tflite"], "Invalid value for '--format'"),
])
def test_export_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    ckpt = trained(tmp_path, MLP, _table(tmp_path / "t.npz", (6,)))
    args = [a if not a.startswith("m.") else str(tmp_path / a) for a in args]
    result = CliRunner().invoke(main, ["export", str(ckpt), *args])
    assert result.exit_code == 2 and message in result.output


def test_export_of_a_missing_checkpoint_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["export", str(tmp_path / "nope"), "-o",
                                       str(tmp_path / "m.onnx")])
    assert result.exit_code == 2
    assert result.output.strip().startswith("error:") and "Traceback" not in result.output


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    from dlcli.extras import MissingExtraError, require

    real = builtins.__import__

    def no_onnx(name, *args, **kwargs):
        if name == "onnx" or name.startswith("onnx."):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.delitem(__import__("sys").modules, "onnx")
    monkeypatch.setattr(builtins, "__import__", no_onnx)
    with pytest.raises(MissingExtraError, match=r"pip install 'dlcli\[export\]'"):
        require("onnx", "export", "ONNX export")


# -- safetensors and npz --------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_weights_files_round_trip(checkpoint: Path, tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"weights{suffix}"
    report = export_checkpoint(checkpoint, out)
    assert report.format == suffix[1:] and report.verification is None
    weights, meta = load_weights_file(out)
    ckpt = load_checkpoint(checkpoint)
    assert set(weights) == set(ckpt.weights)  # "layer/weight", as `dlcli summary` names layers
    assert all(np.array_equal(weights[k], ckpt.weights[k]) for k in weights)
    assert meta["config"] == ckpt.config
    assert meta["preprocessing"] == ckpt.meta["preprocessing"]
    # a fresh model from the file alone predicts exactly what the checkpoint does
    fresh = build_model(validate_config(meta["config"]))
    fresh.set_weights(weights)
    reference = CheckpointModel(checkpoint)
    x = np.random.default_rng(0).normal(size=(5, *reference.info.input_shape)).astype(np.float32)
    from dlcli.data import Preprocessor
    from dlcli.predict.runner import model_outputs

    prep = Preprocessor.from_dict(meta["preprocessing"])
    ours = model_outputs(fresh, prep.apply(x), 8, reference.after)
    assert np.array_equal(ours, reference.predict(x))


def test_safetensors_names_are_the_summary_names(tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    ckpt = trained(tmp_path, CNN, _images(tmp_path / "img.npz"))
    out = tmp_path / "w.safetensors"
    export_checkpoint(ckpt, out)
    tensors = load_file(out)
    assert tensors["conv2d/kernel"].shape == (3, 3, 3, 4)  # Keras layout (kh, kw, in, out)
    assert "batch_normalization_1/moving_variance" in tensors
    assert tensors["dense_1/kernel"].shape == (8, 3)
    summary = CliRunner().invoke(main, ["summary", str(ckpt), "--json"])
    names = {layer["name"] for layer in json.loads(summary.output)["layers"]}
    assert {k.split("/")[0] for k in tensors} <= names


@pytest.mark.parametrize("name", [
    "linear", "relu", "leaky_relu", "elu", "selu", "gelu", "sigmoid", "tanh", "softplus",
    "softmax", "log_softmax", "silu", "swish", "mish", "relu6", "hard_sigmoid", "hard_silu",
    "hard_swish", "softsign", "exponential", "log_sigmoid", "celu",
])  # fmt: skip
def test_every_activation_exports(name: str) -> None:
    from dlcli.core.ops.activations import ACTIVATIONS
    from dlcli.nn.layers import Activation, Dense
    from dlcli.nn.sequential import Sequential
    from dlcli.predict.runner import model_outputs

    assert name in ACTIVATIONS  # the list above covers the registry: see the next assert
    assert len(ACTIVATIONS) == 22
    model = Sequential([Dense(5), Activation(name)], (4,)).build(0)
    proto = build_onnx(model, {"mode": "none"})
    x = np.random.default_rng(0).normal(0, 3, (16, 4)).astype(np.float32)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"input": x})[0], model_outputs(model, x, 16),
                               rtol=1e-5, atol=1e-5)

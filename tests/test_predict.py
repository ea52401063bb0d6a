"""dlcli predict: npy, npz, CSV, images and folders, from a checkpoint and from its ONNX file."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dlcli.cli.main import main

pytest.importorskip("onnx")  # the export and images extras; `make test` installs them
pytest.importorskip("onnxruntime")
Image = pytest.importorskip("PIL.Image")

from dlcli.export import export_checkpoint  # noqa: E402
from dlcli.predict import predict  # noqa: E402
from tests.test_export import CNN, MLP, _images, _table, trained  # noqa: E402


@pytest.fixture(scope="module")
def cnn(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A trained CNN checkpoint (11x11x3 inputs, 3 classes) and its ONNX export."""
    tmp = tmp_path_factory.mktemp("cnn")
    ckpt = trained(tmp, CNN, _images(tmp / "img.npz"))
    onnx_path = tmp / "cnn.onnx"
    export_checkpoint(ckpt, onnx_path)
    return ckpt, onnx_path


@pytest.fixture(scope="module")
def mlp(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("mlp")
    ckpt = trained(tmp, MLP, _table(tmp / "t.npz", (6,)))
    onnx_path = tmp / "mlp.onnx"
    export_checkpoint(ckpt, onnx_path)
    return ckpt, onnx_path


def _png(path: Path, size: tuple[int, int] = (11, 11), mode: str = "RGB", seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "L": 1}[mode]
    a = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    Image.fromarray(a[..., 0] if channels == 1 else a, mode).save(path)
    return path


def _same(a, b) -> None:
    assert a.names == b.names
    np.testing.assert_allclose(a.outputs, b.outputs, atol=1e-5)
    assert [t[0][0] for t in a.top_k(1)] == [t[0][0] for t in b.top_k(1)]


def test_npy_images_and_folders_from_checkpoint_and_onnx(cnn, tmp_path: Path) -> None:
    ckpt, onnx_path = cnn
    rng = np.random.default_rng(5)
    np.save(tmp_path / "x.npy", rng.integers(0, 256, (4, 11, 11, 3)).astype(np.uint8))
    folder = tmp_path / "folder"
    folder.mkdir()
    for i in range(3):
        _png(folder / f"{i}.png", seed=i)
    (folder / "notes.txt").write_text("not an image")
    grey = _png(tmp_path / "grey.png", mode="L", seed=9)
    inputs = [str(tmp_path / "x.npy"), str(folder), str(grey)]
    a, b = predict(str(ckpt), inputs), predict(str(onnx_path), inputs)
    _same(a, b)
    assert len(a.names) == 4 + 3 + 1
    assert a.names[4].endswith("0.png") and a.names[-1].endswith("grey.png")
    np.testing.assert_allclose(a.scores().sum(axis=1), 1.0, rtol=1e-5)
    # an image gives what the same pixels give as an array: decoding adds nothing
    pixels = np.asarray(Image.open(folder / "1.png"))[np.newaxis]
    np.save(tmp_path / "one.npy", pixels)
    c = predict(str(ckpt), [str(tmp_path / "one.npy")])
    np.testing.assert_array_equal(c.outputs[0], a.outputs[5])


def test_grey_images_convert_to_rgb_like_pillow(cnn, tmp_path: Path) -> None:
    ckpt, _ = cnn
    grey = _png(tmp_path / "g.png", mode="L")
    rgb = np.repeat(np.asarray(Image.open(grey))[..., None], 3, axis=2)[None]
    np.save(tmp_path / "rgb.npy", rgb)
    a, b = predict(str(ckpt), [str(grey)]), predict(str(ckpt), [str(tmp_path / "rgb.npy")])
    np.testing.assert_array_equal(a.outputs, b.outputs)


def test_csv_with_and_without_target_column(mlp, tmp_path: Path) -> None:
    ckpt, onnx_path = mlp
    x = np.random.default_rng(2).normal(5, 3, (5, 6))
    with open(tmp_path / "feat.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([f"f{i}" for i in range(6)])
        w.writerows(x.tolist())
    with open(tmp_path / "with_target.csv", "w", newline="") as f:
        csv.writer(f).writerows([[*row, 1] for row in x.tolist()])
    np.save(tmp_path / "x.npy", x.astype(np.float32))
    a = predict(str(ckpt), [str(tmp_path / "feat.csv")])
    b = predict(str(onnx_path), [str(tmp_path / "with_target.csv")])
    c = predict(str(ckpt), [str(tmp_path / "x.npy")])
    np.testing.assert_allclose(a.outputs, b.outputs, atol=1e-5)
    np.testing.assert_allclose(a.outputs, c.outputs, atol=1e-6)
    assert a.names[0].endswith("feat.csv[0]")


def test_cli_table_and_files(cnn, tmp_path: Path) -> None:
    ckpt, onnx_path = cnn
    png = _png(tmp_path / "a.png")
    runner = CliRunner()
    result = runner.invoke(main, ["predict", str(ckpt), str(png), "--top-k", "2"])
    assert result.exit_code == 0, result.output
    assert "a.png" in result.output and "class 2" in result.output
    assert "class 3" not in result.output
    for suffix in (".csv", ".json", ".npy"):
        out = tmp_path / f"preds{suffix}"
        result = runner.invoke(main, ["predict", str(onnx_path), str(png), str(png), "-o",
                                      str(out)])
        assert result.exit_code == 0, result.output
        assert "wrote 2 predictions" in result.output
    rows = list(csv.DictReader(open(tmp_path / "preds.csv")))
    assert len(rows) == 2 and {"input", "prediction", "probability", "p_0", "p_2"} <= set(rows[0])
    records = json.loads((tmp_path / "preds.json").read_text())
    assert records[0]["prediction"] == rows[0]["prediction"]
    assert len(records[0]["top_k"]) == 3
    outputs = np.load(tmp_path / "preds.npy")
    assert outputs.shape == (2, 3)
    assert float(rows[0]["probability"]) == pytest.approx(outputs[0].max(), abs=1e-6)


def test_binary_and_regression_outputs(tmp_path: Path) -> None:
    from tests.test_export import BINARY, REGRESSION

    binary = trained(tmp_path / "b", BINARY)
    np.save(tmp_path / "b.npy", np.array([[0.0, 0.5], [1.5, -0.5]], np.float32))
    p = predict(str(binary), [str(tmp_path / "b.npy")])
    assert p.scores().shape == (2, 2)
    np.testing.assert_allclose(p.scores()[:, 1], p.outputs[:, 0])
    regression = trained(tmp_path / "r", REGRESSION)
    np.save(tmp_path / "r.npy", np.ones((3, 4), np.float32))
    result = CliRunner().invoke(main, ["predict", str(regression), str(tmp_path / "r.npy")])
    assert result.exit_code == 0, result.output
    assert "output" in result.output and "class 1" not in result.output


@pytest.mark.parametrize("make, message", [
    (lambda d: _png(d / "big.png", size=(20, 20)), "is 20x20 but the model takes 11x11; pass "
                                                   "--resize"),
    (lambda d: (d / "bad.png").write_bytes(b"\x89PNG not really") and d / "bad.png",
     "cannot read the image"),
    (lambda d: (d / "empty").mkdir() or d / "empty", "holds no images"),
    (lambda d: np.save(d / "x.npy", np.zeros((2, 10, 10, 3))) or d / "x.npy",
     "samples of shape [10, 10, 3] but the model takes [11, 11, 3]"),
    (lambda d: (d / "f.txt").write_text("1,2") and d / "f.txt", "cannot tell what this is"),
    (lambda d: d / "missing.npy", "file not found"),
])
def test_bad_inputs_are_one_line(cnn, tmp_path: Path, make, message: str) -> None:
    ckpt, _ = cnn
    path = make(tmp_path)
    result = CliRunner().invoke(main, ["predict", str(ckpt), str(path)])
    assert result.exit_code == 2, result.output
    assert message in result.output and str(path.name) in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) <= 3


def test_resize_makes_a_big_image_fit(cnn, tmp_path: Path) -> None:
    ckpt, onnx_path = cnn
    big = _png(tmp_path / "big.png", size=(20, 20))
    _same(predict(str(ckpt), [str(big)], resize=True),
          predict(str(onnx_path), [str(big)], resize=True))


def test_wrong_feature_count_in_csv(mlp, tmp_path: Path) -> None:
    ckpt, _ = mlp
    (tmp_path / "t.csv").write_text("1,2,3\n4,5,6\n")
    result = CliRunner().invoke(main, ["predict", str(ckpt), str(tmp_path / "t.csv")])
    assert result.exit_code == 2
    assert "has 3 columns but the model takes 6 features" in result.output


def test_json_output_is_strict(mlp, tmp_path: Path) -> None:
    from dlcli.io.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(mlp[0])
    ckpt.weights["dense_2/bias"][:] = np.inf  # a diverged model: its outputs are NaN
    diverged = save_checkpoint(tmp_path / "diverged.npz", ckpt)
    np.save(tmp_path / "x.npy", np.ones((2, 6), np.float32))
    out = tmp_path / "p.json"
    result = CliRunner().invoke(main, ["predict", str(diverged), str(tmp_path / "x.npy"), "-o",
                                       str(out)])
    assert result.exit_code == 0, result.output
    assert "outputs are not finite" in result.output  # one line, no numpy RuntimeWarning
    assert "RuntimeWarning" not in result.output
    text = out.read_text()
    assert "null" in text
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))


def test_csv_faults_are_one_line(mlp, tmp_path: Path) -> None:
    ckpt, _ = mlp
    (tmp_path / "huge.csv").write_text("1,2,3,4,5," + "9" * 200_000 + "\n")
    (tmp_path / "nan.csv").write_text("1,2,3,4,5,6\n1,2,nan,4,5,6\n")
    np.save(tmp_path / "big.npy", np.full((2, 6), 1e300))
    for name, message in (("huge.csv", "huge.csv"), ("nan.csv", "NaN"),
                          ("big.npy", "float32")):
        result = CliRunner().invoke(main, ["predict", str(ckpt), str(tmp_path / name)])
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output

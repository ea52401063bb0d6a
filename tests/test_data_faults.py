"""Damaged and awkward data files: one clear DataError naming the file, never a traceback.

Property tests generate broken CSV, .npy and .npz files; a few go through `dlcli train` and
`dlcli eval` to check the CLI's exit code 2 and its one `error:` line.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlcli.cli.main import main
from dlcli.config import load_config_text
from dlcli.config.schema import DataConfig, FileSource
from dlcli.data import load_splits
from dlcli.data.files import load_source, read_csv
from dlcli.errors import DataError
from dlcli.io.checkpoint import load_checkpoint, save_checkpoint
from dlcli.train.evaluate import EvalReport, evaluate_checkpoint
from dlcli.train.trainer import Trainer

# DLCLI_FUZZ_EXAMPLES=2000 searches deeper than the few examples the suite can afford.
FUZZ = settings(max_examples=int(os.environ.get("DLCLI_FUZZ_EXAMPLES", "100")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

TINY = """
name: tiny
seed: 0
data: {{train: {train}, validation_split: 0.2, batch_size: 16}}
model:
  input_shape: [4]
  layers: [{{type: Dense, units: 3, activation: softmax}}]
loss: sparse_categorical_crossentropy
metrics: [accuracy]
training: {{epochs: 1}}
"""


def cfg(**kw: object) -> DataConfig:
    """The data section of a config, as load_splits takes it."""
    return DataConfig(**{"normalize": "standardize", "n_samples": 100, **kw})


def good_npz(path: Path, n: int = 30) -> Path:
    rng = np.random.default_rng(0)
    y = np.arange(n) % 3
    np.savez(path, x=rng.normal(size=(n, 4)) + y[:, None], y=y)
    return path


def csv_rows(n: int = 12, bad: dict[int, str] | None = None) -> str:
    """A 4-feature CSV with a header; bad maps a data row index to a replacement line."""
    rows = [f"{i % 5},{i % 7},{i % 2},{i % 3},{i % 3}" for i in range(n)]
    for i, line in (bad or {}).items():
        rows[i] = line
    return "a,b,c,d,y\n" + "\n".join(rows) + "\n"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint trained for one epoch on a file with numeric labels (no class names)."""
    folder = tmp_path_factory.mktemp("ckpt")
    train = good_npz(folder / "train.npz", 60)
    Trainer(load_config_text(TINY.format(train=train)), run_dir=folder / "run").fit()
    return folder / "run" / "checkpoints" / "best"


def one_line_error(exc: DataError) -> None:
    message = str(exc)
    assert message and "\n" not in message, message


def cli(*args: str) -> tuple[int, str, str]:
    """Run dlcli with numpy warnings raised as errors (so a leaked one fails the test)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        res = CliRunner().invoke(main, list(args))
    return res.exit_code, res.stdout, res.output


def assert_cli_error(code: int, output: str, *fragments: str) -> None:
    assert code == 2, output
    assert "Traceback" not in output
    assert output.count("error:") == 1, output
    for fragment in fragments:
        assert fragment in output, output


# --- specific faults --------------------------------------------------------------------------


def test_oversized_csv_field_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "huge.csv"
    path.write_text(csv_rows(bad={3: "9" * 200_000 + ",1,2,3,0"}))
    with pytest.raises(DataError, match=r"huge.csv line 5: a field is longer than") as e:
        load_source(str(path), "data.train")
    one_line_error(e.value)


@pytest.mark.parametrize("text,fragment", [("", "is empty"), ("\n\n", "is empty"),
                                           ("a,b,c,d,y\n", "has a header but no data rows")])
def test_empty_and_header_only_csv(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "e.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=fragment):
        load_splits(cfg(train=str(path), validation_split=0.2), 0, (4,))


def test_zero_samples_name_the_file(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((0, 4)))
    np.save(tmp_path / "y.npy", np.zeros(0, np.int64))
    np.savez(tmp_path / "z.npz", x=np.zeros((0, 4)), y=np.zeros(0, np.int64))
    src = FileSource(path=str(tmp_path / "x.npy"), labels=str(tmp_path / "y.npy"))
    for source in (src, str(tmp_path / "z.npz")):
        with pytest.raises(DataError, match=r"holds no samples \(shape \[0, 4\]\)") as e:
            load_splits(cfg(train=source, validation_split=0.2), 0, (4,))
        assert "takes" not in str(e.value)
    with pytest.raises(DataError, match=r"data.test: .*z.npz holds no samples"):
        load_splits(cfg(train=str(good_npz(tmp_path / "g.npz")), test=str(tmp_path / "z.npz")),
                    0, (4,))


def test_nan_rows_are_the_files_rows_not_the_splits(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text(csv_rows(40, bad={17: "1,nan,2,3,1", 30: "inf,1,2,3,0"}))
    for split in (0.0, 0.25):
        with pytest.raises(DataError, match=r"the train inputs hold 1 NaN and 1 infinite values "
                                            r"in 2 of 40 samples of .*d.csv \(first at line 19\)"):
            load_splits(cfg(train=str(path), validation_split=split, test_split=split), 3, (4,))
    # A quoted field over two lines: numbers still name the line the row starts on.
    path.write_text('a,b,c,d,y\n1,2,3,4,"x\ny"\n1,2,3,nan,z\n')
    with pytest.raises(DataError, match=r"first at line 4"):
        load_source(str(path), "data.train")

    x = np.ones((50, 4))
    x[37, 2] = np.nan
    np.savez(tmp_path / "a.npz", x=x, y=np.arange(50) % 2)
    with pytest.raises(DataError, match=r"50 samples of .*a.npz \(first at index 37\)"):
        load_splits(cfg(train=str(tmp_path / "a.npz"), validation_split=0.3), 0, (4,))


def test_nan_targets_and_labels_are_found_before_splitting(tmp_path: Path) -> None:
    y = np.linspace(0, 1, 30)
    y[21] = np.inf
    np.savez(tmp_path / "r.npz", x=np.ones((30, 4)), y=y)
    with pytest.raises(DataError, match=r"the train targets hold 0 NaN and 1 infinite .*"
                                        r"r.npz \(first at index 21\)"):
        load_splits(cfg(train=str(tmp_path / "r.npz"), validation_split=0.2), 0, (4,),
                    task="regression")
    (tmp_path / "c.csv").write_text(csv_rows(20, bad={11: "1,2,3,4,nan"}))
    with pytest.raises(DataError, match=r"the train labels hold 1 NaN .* \(first at line 13\)"):
        load_splits(cfg(train=str(tmp_path / "c.csv"), test_split=0.2), 0, (4,),
                    task="classification")


def test_values_beyond_float32_are_refused(tmp_path: Path) -> None:
    (tmp_path / "b.csv").write_text(csv_rows(10, bad={4: "1e300,1,2,3,0"}))
    with pytest.raises(DataError, match=r"beyond float32's range .*first at line 6"):
        load_source(str(tmp_path / "b.csv"), "data.train")
    (tmp_path / "t.csv").write_text(csv_rows(10, bad={7: "1,1,2,3,-1e300"}))
    with pytest.raises(DataError, match=r"the train targets hold values beyond float32's range "
                                        r".*t.csv \(first at line 9\)"):
        load_splits(cfg(train=str(tmp_path / "t.csv"), validation_split=0.2), 0, (4,),
                    task="regression")


def test_normalization_that_overflows_float32_is_refused(tmp_path: Path) -> None:
    (tmp_path / "e.csv").write_text("a,y\n3e38,0\n-3.4e38,1\n1,0\n2,1\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(DataError, match="overflow float32 after normalize: scale"):
            load_splits(cfg(train=str(tmp_path / "e.csv"), normalize="scale"), 0, (1,))
        s = load_splits(cfg(train=str(tmp_path / "e.csv")), 0, (1,))  # standardize
    assert np.isfinite(s.x_train).all()


def test_text_labels_must_be_one_column(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.ones((3, 4)))
    np.save(tmp_path / "y.npy", np.array([["a", "b"]] * 3))
    with pytest.raises(DataError, match=r"the train labels are text of shape \[3, 2\]"):
        load_splits(cfg(train=FileSource(path=str(tmp_path / "x.npy"),
                                         labels=str(tmp_path / "y.npy"))), 0, (4,))


def test_npy_header_claiming_a_huge_shape_is_refused_before_allocating(tmp_path: Path) -> None:
    buf = io.BytesIO()
    header = {"descr": "<f8", "fortran_order": False, "shape": (10**11, 4)}
    np.lib.format.write_array_header_1_0(buf, header)
    (tmp_path / "x.npy").write_bytes(buf.getvalue() + bytes(96))
    np.save(tmp_path / "y.npy", np.zeros(3))
    with pytest.raises(DataError, match=r"cannot read .*x.npy: truncated: the header says shape"):
        load_source(FileSource(path=str(tmp_path / "x.npy"), labels=str(tmp_path / "y.npy")),
                    "data.train")


def test_big_integer_targets_stay_exact(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("a,y\n1,123456789012345678901234\n2,3\n")
    _, y, _ = read_csv(tmp_path / "t.csv")
    assert y.dtype == np.float64 and y[0] == pytest.approx(1.2345678901234568e23)


# --- eval --data ------------------------------------------------------------------------------


def test_eval_names_the_file_not_the_train_split(ckpt: Path, tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    path.write_text(csv_rows(10, bad={2: "1,2,3,4,7"}))
    code, _, out = cli("eval", str(ckpt), "--data", str(path))
    assert_cli_error(code, out, "the labels in", "other.csv", "go from 0 to 7")
    assert "train" not in out
    path.write_text(csv_rows(10, bad={2: "1,2,3,4,0.5"}))
    code, _, out = cli("eval", str(ckpt), "--data", str(path))
    assert_cli_error(code, out, "other.csv", "integer class ids")
    assert "train" not in out


@pytest.mark.parametrize("text,fragment", [
    ("", "is empty"),
    ("a,b,c,d,y\n", "has a header but no data rows"),
    (csv_rows(5, bad={1: "x" * 150_000 + ",1,1,1,1"}), "a field is longer than"),
    (csv_rows(5, bad={3: "1,2,nan,4,0"}), "first at line 5"),
    (csv_rows(5, bad={3: "1,2,3"}), "line 5 has 3 fields, expected 5"),
])
def test_eval_bad_csv(ckpt: Path, tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    code, _, out = cli("eval", str(ckpt), "--data", str(path))
    assert_cli_error(code, out, "bad.csv", fragment)


def test_eval_npy_needs_labels(ckpt: Path, tmp_path: Path) -> None:
    x = np.random.default_rng(1).normal(size=(12, 4))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.arange(12) % 3)
    code, _, out = cli("eval", str(ckpt), "--data", str(tmp_path / "x.npy"))
    assert_cli_error(code, out, "x.npy holds features only", "--labels")
    code, stdout, out = cli("eval", str(ckpt), "--data", str(tmp_path / "x.npy"), "--labels",
                            str(tmp_path / "y.npy"), "--json")
    assert code == 0, out
    assert json.loads(stdout)["samples"] == 12
    np.save(tmp_path / "y5.npy", np.zeros(5, np.int64))
    code, _, out = cli("eval", str(ckpt), "--data", str(tmp_path / "x.npy"), "--labels",
                       str(tmp_path / "y5.npy"))
    assert_cli_error(code, out, "12 samples but 5 labels")
    (tmp_path / "d.csv").write_text(csv_rows(6))
    code, _, out = cli("eval", str(ckpt), "--data", str(tmp_path / "d.csv"), "--labels",
                       str(tmp_path / "y.npy"))
    assert_cli_error(code, out, "--labels", "holds its own labels")
    code, _, out = cli("eval", str(ckpt), "--labels", str(tmp_path / "y.npy"))
    assert_cli_error(code, out, "--labels goes with --data")


def test_eval_text_labels_without_class_names_are_refused(ckpt: Path, tmp_path: Path) -> None:
    assert load_checkpoint(ckpt).meta.get("class_names") is None
    path = tmp_path / "pets.csv"
    path.write_text("a,b,c,d,kind\n" + "".join(f"{i},1,2,3,{['cat', 'dog', 'emu'][i % 3]}\n"
                                                for i in range(9)))
    code, _, out = cli("eval", str(ckpt), "--data", str(path))
    assert_cli_error(code, out, "pets.csv", "are text", "no class names")


def test_eval_text_labels_map_by_the_models_class_names(tmp_path: Path) -> None:
    pets = ["cat", "dog", "emu"]
    train = tmp_path / "train.csv"
    train.write_text("a,b,c,d,kind\n" + "".join(f"{i % 3},{i % 5},1,2,{pets[i % 3]}\n"
                                                 for i in range(30)))
    Trainer(load_config_text(TINY.format(train=train)), run_dir=tmp_path / "run").fit()
    best = tmp_path / "run" / "checkpoints" / "best"
    (tmp_path / "t.csv").write_text("a,b,c,d,kind\n2,1,1,2,emu\n0,0,1,2,cat\n")
    report = evaluate_checkpoint(best, data=str(tmp_path / "t.csv"))
    assert report.class_names == pets and report.confusion.sum(axis=1).tolist() == [1, 0, 1]
    (tmp_path / "t.csv").write_text("a,b,c,d,kind\n2,1,1,2,emu\n0,0,1,2,yak\n")
    code, _, out = cli("eval", str(best), "--data", str(tmp_path / "t.csv"))
    assert_cli_error(code, out, "t.csv include ['yak']")


def test_eval_of_a_diverged_model_warns_once_and_writes_strict_json(
    ckpt: Path, tmp_path: Path
) -> None:
    c = load_checkpoint(ckpt)
    bias = next(k for k in c.weights if k.endswith("/bias"))
    c.weights[bias][:] = np.inf
    diverged = save_checkpoint(tmp_path / "diverged.npz", c)
    path = good_npz(tmp_path / "d.npz", 9)
    code, stdout, out = cli("eval", str(diverged), "--data", str(path), "--json")
    assert code == 0, out
    assert out.count("warning: the model's outputs are not finite") == 1
    assert "RuntimeWarning" not in out
    report = json.loads(stdout, parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    assert report["loss"] is None and report["warnings"]
    code, _, out = cli("eval", str(diverged), "--data", str(path))
    assert code == 0 and out.count("warning:") == 1, out


def test_eval_report_to_json_is_plain() -> None:
    report = EvalReport("c", "d", 2, {"loss": float("nan"), "accuracy": np.float32(0.5)},
                        "classification", ["a", "b"], np.array([[1, 0], [0, 1]]),
                        [{"name": "a", "precision": np.float64("inf"), "support": np.int64(1)}])
    out = report.to_json()
    assert out["loss"] is None and out["per_class"][0]["precision"] is None
    assert type(out["accuracy"]) is float and type(out["per_class"][0]["support"]) is int
    json.dumps(out, allow_nan=False)


def test_evaluate_checkpoint_on_an_idx_pair(ckpt: Path, tmp_path: Path) -> None:
    from dlcli.data.idx import write_idx

    write_idx(tmp_path / "x-idx2", np.ones((6, 4), np.float32))
    write_idx(tmp_path / "y-idx1", (np.arange(6) % 3).astype(np.uint8))
    report = evaluate_checkpoint(ckpt, data=str(tmp_path / "x-idx2"),
                                 labels=str(tmp_path / "y-idx1"))
    assert report.samples == 6 and report.warnings == []


# --- property tests: damaged files ------------------------------------------------------------

CELLS = st.one_of(
    st.sampled_from(["1", "-2.5", "0", "1e3", "nan", "NaN", "inf", "-inf", "1e400", "1e300",
                     "3e38", "-3.4e38", "", " ", "abc", "\ufeff1", '"1,2"', '"', "1\x00",
                     "99999999999999999999999", "x" * 140_000, "\r", "1_0", "0x10"]),
    st.text(max_size=6),
    st.integers(-5, 5).map(str),
)
ROW = st.lists(CELLS, min_size=0, max_size=6)


@st.composite
def csv_files(draw: st.DrawFn) -> bytes:
    rows = draw(st.lists(ROW, min_size=0, max_size=8))
    sep = draw(st.sampled_from(["\n", "\r\n", "\n\n"]))
    text = sep.join(",".join(r) for r in rows)
    if draw(st.booleans()):
        text = "a,b,c,d,y" + sep + text
    data = text.encode("utf-8", errors="surrogatepass")
    if draw(st.booleans()):
        data = b"\xef\xbb\xbf" + data  # a BOM
    if draw(st.booleans()) and data:
        data = data[: draw(st.integers(0, len(data)))]
    return data


def load_both(source: str | FileSource, width: int | None, **kw: object) -> None:
    """load_source and load_splits either succeed or raise a one-line DataError, and numpy
    warns about nothing (a RuntimeWarning is raised here, and fails the test)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        _load_both(source, width, **kw)


def _load_both(source: str | FileSource, width: int | None, **kw: object) -> None:
    try:
        load_source(source, "data.train")
    except DataError as e:
        one_line_error(e)
    shape = (width,) if width else (4,)
    for task in (None, "classification", "regression"):
        try:
            load_splits(cfg(train=source, **kw), 0, shape, task=task)
        except DataError as e:
            one_line_error(e)


@FUZZ
@given(data=csv_files(), split=st.sampled_from([0.0, 0.3]))
def test_damaged_csv_never_raises_anything_but_data_error(data: bytes, split: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.csv"
        try:
            path.write_bytes(data)
        except UnicodeEncodeError:  # pragma: no cover - surrogates were passed through
            return
        load_both(str(path), None, validation_split=split)
        load_both(str(path), 4, validation_split=split, normalize="scale")


DTYPES = st.sampled_from(["f8", "f4", "f2", "i8", "u1", "bool", "c8", "U3", "S2", "M8[s]",
                          "V8", [("a", "f4"), ("b", "i4")]])


VALUES = st.sampled_from([0.0, 1.0, -3.5, np.nan, np.inf, 1e30, 7.0])


@st.composite
def arrays(draw: st.DrawFn, n: int) -> np.ndarray:
    dtype = np.dtype(draw(DTYPES))
    tail = draw(st.sampled_from([(), (4,), (2, 2), (0,), (4, 1)]))
    a = np.zeros((n, *tail), dtype=dtype)
    if dtype.kind in "fc" and a.size:
        flat = a.reshape(-1)
        with np.errstate(over="ignore"):  # 1e30 is inf in float16, which is fine here
                flat[:] = draw(st.lists(VALUES, min_size=flat.size, max_size=flat.size))
    return a


def _damage(data: bytes, draw: st.DrawFn) -> bytes:
    how = draw(st.sampled_from(["none", "truncate", "flip"]))
    if how == "truncate":
        return data[: draw(st.integers(0, max(len(data) - 1, 0)))]
    if how == "flip" and data:
        i = draw(st.integers(0, len(data) - 1))
        return data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1:]
    return data


@st.composite
def npy_pairs(draw: st.DrawFn) -> tuple[bytes, bytes]:
    n = draw(st.integers(0, 6))
    x, y = draw(arrays(n)), draw(arrays(draw(st.sampled_from([n, n, n + 1]))))
    if draw(st.integers(0, 5)) == 0:
        x = np.array([{"a": 1}] * max(n, 1), dtype=object)  # needs pickle
    out = []
    for a in (x, y):
        buf = io.BytesIO()
        np.save(buf, a, allow_pickle=True)
        out.append(_damage(buf.getvalue(), draw))
    return out[0], out[1]


@FUZZ
@given(pair=npy_pairs())
def test_damaged_npy_never_raises_anything_but_data_error(pair: tuple[bytes, bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "x.npy").write_bytes(pair[0])
        (Path(tmp) / "y.npy").write_bytes(pair[1])
        source = FileSource(path=str(Path(tmp) / "x.npy"), labels=str(Path(tmp) / "y.npy"))
        load_both(source, None, validation_split=0.25)


@st.composite
def npz_files(draw: st.DrawFn) -> bytes:
    n = draw(st.integers(0, 6))
    x, y = draw(arrays(n)), draw(arrays(draw(st.sampled_from([n, n, n + 2]))))
    names = draw(st.sampled_from([("x", "y"), ("x", "labels"), ("features", "y")]))
    buf = io.BytesIO()
    arrays_ = {names[0]: x, names[1]: y}
    if draw(st.booleans()):
        np.savez_compressed(buf, **arrays_)
    else:
        np.savez(buf, **arrays_)
    if draw(st.integers(0, 5)) == 0:  # an object array inside the archive
        with zipfile.ZipFile(buf, "a") as z, warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the name is there twice, on purpose
            inner = io.BytesIO()
            np.save(inner, np.array([None] * max(n, 1), dtype=object), allow_pickle=True)
            z.writestr("x.npy", inner.getvalue())
    return _damage(buf.getvalue(), draw)


@FUZZ
@given(data=npz_files())
def test_damaged_npz_never_raises_anything_but_data_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "d.npz").write_bytes(data)
        load_both(str(Path(tmp) / "d.npz"), None, test_split=0.2)


# --- damaged files through the CLI ------------------------------------------------------------

BROKEN = {
    "empty.csv": b"",
    "header.csv": b"a,b,c,d,y\n",
    "huge.csv": b"a,b,c,d,y\n" + b"7" * 200_000 + b",1,2,3,0\n",
    "ragged.csv": b"a,b,c,d,y\n1,2,3,4,0\n1,2\n",
    "bom-text.csv": b"\xef\xbb\xbfa,b,c,d,y\n1,two,3,4,0\n",
    "nan.csv": b"1,2,3,4,0\n1,2,3,4,1\n1,inf,3,4,0\n",
    "latin1.csv": b"a,b,c,d,y\n1,2,3,4,\xe9\n",
    "nul.csv": b"a,b,c,d,y\n1,2\x00,3,4,0\n",
    "empty.npz": None,  # filled in below: empty arrays
    "cut.npz": None,
}


def _broken(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    if name == "empty.npz":
        np.savez(path, x=np.zeros((0, 4)), y=np.zeros(0, np.int64))
    elif name == "cut.npz":
        good_npz(path)
        path.write_bytes(path.read_bytes()[:300])
    else:
        path.write_bytes(BROKEN[name])
    return path


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_files_through_train_and_eval(ckpt: Path, tmp_path: Path, name: str) -> None:
    path = _broken(tmp_path, name)
    config = tmp_path / "c.yaml"
    config.write_text(TINY.format(train=path))
    code, _, out = cli("train", str(config), "--run-dir", str(tmp_path / "run"))
    assert_cli_error(code, out, name)
    assert not (tmp_path / "run").exists()
    code, _, out = cli("eval", str(ckpt), "--data", str(path))
    assert_cli_error(code, out, name)

"""Reading datasets from .npz, .npy pairs, CSV/TSV and IDX pairs."""

import gzip

import numpy as np
import pytest

from dlcli.config.schema import FileSource
from dlcli.data.files import file_kind, load_source, read_csv
from dlcli.data.idx import write_idx
from dlcli.errors import DataError


def src(path, labels=None, **kw):
    """A file source as the config gives it; paths may be Path objects here."""
    return FileSource(path=str(path), labels=None if labels is None else str(labels), **kw)


def test_npz_default_and_custom_keys(tmp_path):
    x, y = np.arange(12.0).reshape(6, 2), np.arange(6)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    gx, gy = load_source(str(tmp_path / "d.npz"), "data.train")
    np.testing.assert_array_equal(gx, x)
    np.testing.assert_array_equal(gy, y)
    np.savez(tmp_path / "e.npz", features=x, target=y)
    gx, gy = load_source(src(tmp_path / "e.npz", x_key="features", y_key="target"), "data.train")
    np.testing.assert_array_equal(gx, x)
    with pytest.raises(DataError, match=r"data.train.x_key: .* has no array 'x'.*features"):
        load_source(src(tmp_path / "e.npz"), "data.train")


def test_npz_keys_name_the_split(tmp_path):
    np.savez(tmp_path / "d.npz", a=np.ones((2, 3)), b=np.zeros(2))
    x, y = load_source(src(tmp_path / "d.npz", x_key="a", y_key="b"), "data.test")
    assert x.shape == (2, 3) and y.shape == (2,)


def test_npy_pair(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((4, 3), dtype=np.float32))
    np.save(tmp_path / "y.npy", np.array([0, 1, 0, 1]))
    x, y = load_source(src(tmp_path / "x.npy", labels=tmp_path / "y.npy"), "data.train")
    assert x.shape == (4, 3) and y.tolist() == [0, 1, 0, 1]
    with pytest.raises(DataError, match=r"data.train.labels: x.npy holds features only"):
        load_source(str(tmp_path / "x.npy"), "data.train")
    with pytest.raises(DataError, match=r"data.train.labels: file not found: .*missing.npy"):
        load_source(src(tmp_path / "x.npy", labels=tmp_path / "missing.npy"), "data.train")


def test_npy_sample_count_mismatch(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((4, 3)))
    np.save(tmp_path / "y.npy", np.zeros(5))
    with pytest.raises(DataError, match="4 samples but 5 labels"):
        load_source(src(tmp_path / "x.npy", labels=tmp_path / "y.npy"), "data.train")


def test_pickled_npy_is_refused(tmp_path):
    np.save(tmp_path / "x.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    np.save(tmp_path / "y.npy", np.zeros(2))
    with pytest.raises(DataError, match="cannot read"):
        load_source(src(tmp_path / "x.npy", labels=tmp_path / "y.npy"), "data.train")


def test_idx_pair(tmp_path):
    images = np.arange(2 * 5 * 5, dtype=np.uint8).reshape(2, 5, 5)
    write_idx(tmp_path / "imgs-idx3-ubyte.gz", images)
    write_idx(tmp_path / "labels-idx1-ubyte", np.array([3, 7], dtype=np.uint8))
    x, y = load_source(
        src(tmp_path / "imgs-idx3-ubyte.gz", labels=tmp_path / "labels-idx1-ubyte"), "data.train"
    )
    np.testing.assert_array_equal(x, images)
    assert y.tolist() == [3, 7]
    assert file_kind(tmp_path / "imgs-idx3-ubyte.gz") == "idx"


def test_labels_on_npz_is_an_error(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.ones((2, 2)), y=np.zeros(2))
    with pytest.raises(DataError, match="data.train.labels: a npz file holds its own labels"):
        load_source(src(tmp_path / "d.npz", labels="y.npy"), "data.train")


def test_missing_and_unknown_files(tmp_path):
    with pytest.raises(DataError, match=r"data.validation: file not found: .*nope.csv"):
        load_source(str(tmp_path / "nope.csv"), "data.validation")
    with pytest.raises(DataError, match=r"data.train.path: file not found"):
        load_source(src(tmp_path / "nope.npz"), "data.train")
    (tmp_path / "notes.txt").write_text("hello\n")
    with pytest.raises(DataError, match="cannot tell the format"):
        load_source(str(tmp_path / "notes.txt"), "data.train")
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match=r"data.train: cannot read .*broken.npz"):
        load_source(str(tmp_path / "broken.npz"), "data.train")


def test_csv_with_header_and_string_labels(tmp_path):
    (tmp_path / "iris.csv").write_text(
        "sepal,petal,species\n1.0,2.0,setosa\n3,4,virginica\n5,6.5,setosa\n"
    )
    x, y, cols = read_csv(tmp_path / "iris.csv")
    assert cols == ["sepal", "petal", "species"]
    np.testing.assert_array_equal(x, [[1, 2], [3, 4], [5, 6.5]])
    assert y.tolist() == ["setosa", "virginica", "setosa"]


def test_csv_without_header(tmp_path):
    (tmp_path / "d.csv").write_text("1,2,0\n3,4,1\n\n5,6,2\n")  # blank lines are skipped
    x, y, cols = read_csv(tmp_path / "d.csv")
    assert cols is None and x.shape == (3, 2)
    assert y.dtype == np.int64 and y.tolist() == [0, 1, 2]


def test_csv_header_detection_with_string_labels(tmp_path):
    # The first row has text in the label column only: data, not a header.
    (tmp_path / "d.csv").write_text("1,2,cat\n3,4,dog\n")
    x, y, cols = read_csv(tmp_path / "d.csv")
    assert cols is None and len(x) == 2 and y.tolist() == ["cat", "dog"]


def test_csv_target_by_name_and_index(tmp_path):
    (tmp_path / "d.csv").write_text("price,rooms,area\n100.5,3,50\n200.25,4,80\n")
    x, y, _ = read_csv(tmp_path / "d.csv", target="price")
    assert y.dtype == np.float64 and y.tolist() == [100.5, 200.25]
    np.testing.assert_array_equal(x, [[3, 50], [4, 80]])
    x, y, _ = read_csv(tmp_path / "d.csv", target=0, header=True)
    assert y.tolist() == [100.5, 200.25]
    with pytest.raises(DataError, match=r"data.train.target: no column 'cost'.*price"):
        read_csv(tmp_path / "d.csv", target="cost")
    with pytest.raises(DataError, match="out of range for 3 columns"):
        read_csv(tmp_path / "d.csv", target=5)
    with pytest.raises(DataError, match="needs a header row"):
        read_csv(tmp_path / "d.csv", target="price", header=False)


def test_csv_explicit_header_flag(tmp_path):
    (tmp_path / "d.csv").write_text("1,2,3\n4,5,6\n")
    x, y, cols = read_csv(tmp_path / "d.csv", header=True)
    assert cols == ["1", "2", "3"] and x.tolist() == [[4, 5]] and y.tolist() == [6]


def test_csv_errors_name_the_line(tmp_path):
    (tmp_path / "d.csv").write_text("a,b,y\n1,2,0\n3,x,1\n")
    with pytest.raises(DataError, match=r"line 3, column 'b': 'x' is not a number"):
        read_csv(tmp_path / "d.csv")
    (tmp_path / "r.csv").write_text("1,2,0\n3,1\n")
    with pytest.raises(DataError, match="line 2 has 2 fields, expected 3"):
        read_csv(tmp_path / "r.csv")
    (tmp_path / "e.csv").write_text("\n\n")
    with pytest.raises(DataError, match="is empty"):
        read_csv(tmp_path / "e.csv")
    (tmp_path / "h.csv").write_text("a,b,y\n")
    with pytest.raises(DataError, match="no data rows"):
        read_csv(tmp_path / "h.csv")


def test_tsv_and_gzipped_csv(tmp_path):
    (tmp_path / "d.tsv").write_text("a\tb\tlabel\n1\t2\tyes\n3\t4\tno\n")
    x, y, _ = read_csv(tmp_path / "d.tsv")
    assert x.tolist() == [[1, 2], [3, 4]] and y.tolist() == ["yes", "no"]
    (tmp_path / "d.csv.gz").write_bytes(gzip.compress(b"a,b,y\n1,2,1\n"))
    x, y = load_source(str(tmp_path / "d.csv.gz"), "data.train")
    assert x.tolist() == [[1, 2]] and y.tolist() == [1]


def test_csv_through_load_source_uses_target(tmp_path):
    (tmp_path / "d.csv").write_text("label,f1,f2\nb,1,2\na,3,4\n")
    x, y = load_source(src(tmp_path / "d.csv", target="label"), "data.train")
    assert x.tolist() == [[1, 2], [3, 4]] and y.tolist() == ["b", "a"]

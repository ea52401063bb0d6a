"""load_splits end to end, splitting, preprocessing, data checks and check_labels."""

import json

import numpy as np
import pytest
from pydantic import ValidationError

from dlcli.config import ConfigError, load_config_text
from dlcli.config.schema import BUILTIN_DATASETS, SYNTHETIC_DATASETS, DataConfig
from dlcli.data import (
    SYNTHETIC,
    Preprocessor,
    Splits,
    builtin,
    check_labels,
    download,
    load_splits,
)
from dlcli.data.builtin import IDX_FILES
from dlcli.data.idx import write_idx
from dlcli.data.preprocess import split_indices
from dlcli.errors import DataError


def cfg(**kw):
    """The data section of a config, as load_splits takes it (validated by the schema)."""
    return DataConfig(**kw)


def save_npz(path, x, y):
    np.savez(path, x=x, y=y)
    return str(path)


def test_synthetic_stratified_split_is_seeded_and_balanced():
    c = cfg(dataset="blobs", n_samples=300, validation_split=0.2)
    a = load_splits(c, seed=1, input_shape=(2,))
    b = load_splits(c, seed=1, input_shape=(2,))
    other = load_splits(c, seed=2, input_shape=(2,))
    assert isinstance(a, Splits) and a.task == "classification" and a.n_classes == 3
    assert len(a.x_train) == 240 and len(a.x_val) == 60 and a.x_test is None
    np.testing.assert_array_equal(a.x_val, b.x_val)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    assert not np.array_equal(a.x_val, other.x_val)
    assert np.bincount(a.y_val).tolist() == [20, 20, 20]
    assert np.bincount(a.y_train).tolist() == [80, 80, 80]
    # Disjoint and complete: every generated sample is in exactly one split.
    everything = {tuple(r) for r in np.concatenate([a.x_train, a.x_val]).tolist()}
    assert len(everything) == 300
    assert a.class_names == ["class_0", "class_1", "class_2"]
    assert a.x_train.dtype == np.float32 and a.y_train.dtype == np.int64


def test_test_and_validation_fractions_of_the_whole():
    s = load_splits(
        cfg(dataset="moons", n_samples=200, validation_split=0.1, test_split=0.25), 0, (2,)
    )
    assert (len(s.x_train), len(s.x_val), len(s.x_test)) == (130, 20, 50)
    assert np.bincount(s.y_test).tolist() == [25, 25]


def test_split_indices_stratification_edge_cases():
    rng = np.random.default_rng(0)
    y = np.array([0] * 9 + [1])
    keep, take = split_indices(y, 0.3, rng, True, "data.validation_split")
    assert 9 in keep  # the only member of class 1 stays for training
    assert len(take) == 3 and set(y[take]) == {0}
    # All classes singletons: stratifying is impossible, so an ordinary split.
    keep, take = split_indices(np.arange(10), 0.2, rng, True, "k")
    assert len(take) == 2 and len(keep) == 8 and not set(keep) & set(take)
    # Unequal classes keep their proportions.
    y = np.repeat([0, 1, 2], [50, 30, 20])
    _, take = split_indices(y, 0.1, rng, True, "k")
    assert np.bincount(y[take]).tolist() == [5, 3, 2]


def test_split_that_leaves_no_training_samples(tmp_path):
    path = save_npz(tmp_path / "one.npz", np.ones((1, 2)), np.array([0]))
    with pytest.raises(DataError, match=r"data.validation_split=0.5 takes 1 of the 1 samples"):
        load_splits(cfg(train=path, validation_split=0.5), 0, (2,))
    # Fractions out of range or summing to 1 and more are the schema's to refuse.
    with pytest.raises(ValidationError, match="data.test_split must be below 1"):
        cfg(train=path, validation_split=0.5, test_split=0.5)
    with pytest.raises(ValidationError, match="validation_split\n.*less than 1"):
        cfg(train=path, validation_split=1.0)


def test_standardize_uses_train_statistics_only(tmp_path):
    rng = np.random.default_rng(0)
    x_train = rng.normal([5.0, -3.0], [2.0, 0.5], size=(400, 2))
    x_val = rng.normal(100.0, 10.0, size=(50, 2))
    s = load_splits(
        cfg(
            train=save_npz(tmp_path / "t.npz", x_train, rng.integers(0, 2, 400)),
            validation=save_npz(tmp_path / "v.npz", x_val, rng.integers(0, 2, 50)),
            normalize="standardize",
        ),
        0,
        (2,),
    )
    np.testing.assert_allclose(s.preprocessor.offset, x_train.mean(axis=0))
    np.testing.assert_allclose(s.preprocessor.scale, x_train.std(axis=0))
    np.testing.assert_allclose(s.x_train.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(s.x_train.std(axis=0), 1, atol=1e-4)
    assert s.x_val.mean() > 10  # scaled with the train numbers, not its own


def test_standardize_with_a_validation_split_fits_on_the_kept_part():
    s = load_splits(
        cfg(
            dataset="regression",
            n_samples=100,
            validation_split=0.3,
            normalize="standardize",
            noise=0.0,
        ),
        3,
        (1,),
    )
    raw_train = s.preprocessor.offset + s.x_train.astype(np.float64) * s.preprocessor.scale
    np.testing.assert_allclose(s.preprocessor.offset, raw_train.mean(axis=0), atol=1e-5)


def test_scale_modes():
    x = np.array([[0, 10], [5, 30], [10, 20]], dtype=np.float64)
    p = Preprocessor("scale").fit(x)
    np.testing.assert_allclose(p.apply(x), [[0, 0], [0.5, 1], [1, 0.5]])
    np.testing.assert_allclose(p.apply(np.array([[20.0, 10.0]])), [[2.0, 0.0]])
    img = np.array([[[0], [255]], [[51], [102]]], dtype=np.uint8)[None]  # (1, 2, 2, 1)
    q = Preprocessor("scale").fit(img)
    assert q.to_dict() == {"mode": "scale", "offset": [0.0], "scale": [255.0]}
    np.testing.assert_allclose(q.apply(img).ravel(), [0, 1, 0.2, 0.4], rtol=1e-6)
    const = Preprocessor("standardize").fit(np.ones((4, 2)))
    np.testing.assert_array_equal(const.scale, [1.0, 1.0])  # std 0 -> 1, no division by 0
    none = Preprocessor("none").fit(img)
    out = none.apply(img)
    assert out.dtype == np.float32 and out.max() == 255


def test_preprocessor_json_round_trip():
    x = np.random.default_rng(0).normal(size=(50, 3)) * [1, 10, 100]
    for mode in ("scale", "standardize", "none"):
        p = Preprocessor(mode).fit(x)
        q = Preprocessor.from_dict(json.loads(json.dumps(p.to_dict())))
        np.testing.assert_array_equal(p.apply(x), q.apply(x))
        assert q.apply(x).dtype == np.float32
    with pytest.raises(DataError, match="data.normalize must be one of"):
        Preprocessor.from_dict({"mode": "zscore"})
    with pytest.raises(DataError, match="unknown keys"):
        Preprocessor.from_dict({"mode": "none", "mean": [1]})
    with pytest.raises(DataError, match="fit on inputs with 3 features"):
        Preprocessor("standardize").fit(x).apply(np.ones((2, 4)))


def test_nan_detection_names_split_and_count(tmp_path):
    x = np.ones((20, 3))
    x[4, 1] = np.nan
    x[7, 0] = np.inf
    x[7, 2] = np.nan
    good = save_npz(tmp_path / "g.npz", np.ones((5, 3)), np.zeros(5, dtype=int))
    bad = save_npz(tmp_path / "b.npz", x, np.zeros(20, dtype=int))
    with pytest.raises(DataError, match=r"the train inputs hold 2 NaN and 1 infinite .* 2 of 20"):
        load_splits(cfg(train=bad), 0, (3,))
    with pytest.raises(DataError, match=r"the validation inputs hold 2 NaN"):
        load_splits(cfg(train=good, validation=bad), 0, (3,))
    y = np.ones(5)
    y[2] = np.nan
    nan_targets = save_npz(tmp_path / "r.npz", np.ones((5, 3)), y)
    with pytest.raises(DataError, match=r"the train targets hold 1 NaN"):
        load_splits(cfg(train=nan_targets), 0, (3,), task="regression")


def test_input_shape_checks(tmp_path):
    with pytest.raises(DataError, match=r"per-sample shape \[2\] but model.input_shape is \[3\]"):
        load_splits(cfg(dataset="moons", n_samples=20), 0, (3,))
    images = save_npz(tmp_path / "i.npz", np.zeros((6, 4, 4), np.uint8), np.arange(6) % 2)
    s = load_splits(cfg(train=images, normalize="scale"), 0, [4, 4, 1])
    assert s.x_train.shape == (6, 4, 4, 1) and s.x_train.dtype == np.float32
    with pytest.raises(DataError, match=r"\[4, 4\] but model.input_shape is \[16\].*Flatten"):
        load_splits(cfg(train=images), 0, (16,))


def test_csv_string_labels_end_to_end(tmp_path):
    (tmp_path / "train.csv").write_text(
        "a,b,kind\n" + "".join(f"{i},{i % 3},{['dog', 'cat', 'emu'][i % 3]}\n" for i in range(30))
    )
    (tmp_path / "test.csv").write_text("a,b,kind\n1,1,emu\n2,2,cat\n")
    s = load_splits(
        cfg(
            train=str(tmp_path / "train.csv"), test=str(tmp_path / "test.csv"), validation_split=0.2
        ),
        0,
        (2,),
        task="classification",
    )
    assert s.class_names == ["cat", "dog", "emu"] and s.n_classes == 3
    assert s.y_test.tolist() == [2, 0]
    assert np.bincount(s.y_val).tolist() == [2, 2, 2]
    (tmp_path / "odd.csv").write_text("a,b,kind\n1,1,yak\n")
    with pytest.raises(DataError, match=r"the test labels include \['yak'\]"):
        load_splits(cfg(train=str(tmp_path / "train.csv"), test=str(tmp_path / "odd.csv")), 0, (2,))
    with pytest.raises(DataError, match="regression loss needs numbers"):
        load_splits(cfg(train=str(tmp_path / "train.csv")), 0, (2,), task="regression")


def test_task_inference_and_conflicts(tmp_path):
    ints = save_npz(tmp_path / "i.npz", np.ones((4, 2)), np.array([0, 1, 2, 1]))
    floats = save_npz(tmp_path / "f.npz", np.ones((4, 2)), np.array([0.5, 1.5, 2.0, 1.0]))
    whole = save_npz(tmp_path / "w.npz", np.ones((4, 2)), np.array([[0.0], [1.0], [2], [1]]))
    s = load_splits(cfg(train=ints), 0, (2,))
    assert s.task == "classification" and s.n_classes == 3 and s.class_names is None
    s = load_splits(cfg(train=floats), 0, (2,))
    assert s.task == "regression" and s.y_train.shape == (4, 1) and s.n_classes is None
    assert s.y_train.dtype == np.float32
    s = load_splits(cfg(train=whole), 0, (2,), task="classification")
    assert s.y_train.dtype == np.int64 and s.y_train.tolist() == [0, 1, 2, 1]
    with pytest.raises(DataError, match="integer class ids"):
        load_splits(cfg(train=floats), 0, (2,), task="classification")
    with pytest.raises(DataError, match="regression dataset but the loss makes this classif"):
        load_splits(cfg(dataset="regression", n_samples=20), 0, (1,), task="classification")
    s = load_splits(cfg(dataset="regression", n_samples=20, n_features=2), 0, (2,))
    assert s.task == "regression" and s.y_train.shape == (20, 1)


def test_config_errors_the_schema_finds(tmp_path):
    path = save_npz(tmp_path / "d.npz", np.ones((4, 2)), np.zeros(4, dtype=int))
    with pytest.raises(ValidationError, match="exactly one of data.dataset"):
        cfg()
    with pytest.raises(ValidationError, match="exactly one of data.dataset"):
        cfg(dataset="moons", train=path)
    with pytest.raises(ValidationError, match="data.validation or data.validation_split, not "):
        cfg(train=path, validation=path, validation_split=0.1)
    with pytest.raises(ValidationError, match="dataset\n.*'spirals'"):
        cfg(dataset="spiral")
    text = "data: {dataset: spiral}\nmodel: {input_shape: [2], layers: [{type: Dense, units: 2}]}\n"
    with pytest.raises(ConfigError, match="did you mean 'spirals'"):
        load_config_text(text)


def test_schema_and_data_know_the_same_datasets():
    assert set(BUILTIN_DATASETS) == set(builtin.BUILTINS)
    assert set(SYNTHETIC_DATASETS) == set(SYNTHETIC)


def test_config_errors(tmp_path):
    path = save_npz(tmp_path / "d.npz", np.ones((4, 2)), np.zeros(4, dtype=int))
    with pytest.raises(DataError, match="data.test .* or data.test_split, not both"):
        load_splits(cfg(train=path, test=path, test_split=0.1), 0, (2,))
    with pytest.raises(DataError, match="data.test: files go with data.train"):
        load_splits(cfg(dataset="moons", test=path), 0, (2,))
    with pytest.raises(DataError, match=r"data.train: file not found: .*missing.npz"):
        load_splits(cfg(train=str(tmp_path / "missing.npz")), 0, (2,))
    with pytest.raises(DataError, match=r"data.n_classes: moons always has 2"):
        load_splits(cfg(dataset="moons", n_classes=4), 0, (2,))


def test_builtin_through_load_splits(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("DLCLI_DATA", raising=False)
    monkeypatch.setattr(builtin, "SYSTEM_DIRS", {})
    monkeypatch.setattr(download, "open_url", lambda url, timeout=0: 1 / 0)
    folder = tmp_path / "dd"
    folder.mkdir()
    n_train, n_test = 40, 10
    for name, a in zip(
        IDX_FILES,
        [
            np.full((n_train, 28, 28), 51, np.uint8),
            (np.arange(n_train) % 10).astype(np.uint8),
            np.zeros((n_test, 28, 28), np.uint8),
            (np.arange(n_test) % 10).astype(np.uint8),
        ],
        strict=True,
    ):
        write_idx(folder / name, a)
    s = load_splits(
        cfg(dataset="fashion_mnist", validation_split=0.25, normalize="scale"),
        7,
        (28, 28, 1),
        data_dir=str(folder),
        task="classification",
    )
    assert s.x_train.shape == (30, 28, 28, 1) and s.x_val.shape == (10, 28, 28, 1)
    assert s.x_test.shape == (10, 28, 28, 1)  # the official test split, untouched
    np.testing.assert_allclose(s.x_train, 0.2, rtol=1e-6)
    assert np.bincount(s.y_val).tolist() == [1] * 10
    assert s.class_names[0] == "T-shirt/top" and s.n_classes == 10
    assert "fashion_mnist" in s.source
    with pytest.raises(DataError, match="official test split"):
        load_splits(cfg(dataset="mnist", test_split=0.1), 0, (28, 28, 1), data_dir=str(folder))
    with pytest.raises(DataError, match="classification dataset but the loss makes this regr"):
        load_splits(cfg(dataset="mnist"), 0, (28, 28, 1), data_dir=str(folder), task="regression")


def test_check_labels():
    ok = np.array([0, 3, 9])
    check_labels(ok, 10, "categorical_crossentropy")
    check_labels(ok, 10, "sparse_categorical_crossentropy")
    with pytest.raises(DataError, match=r"labels go from 0 to 10.*10 units.*0\.\.9.*units to 11"):
        check_labels(np.array([0, 10]), 10, "categorical_crossentropy")
    with pytest.raises(DataError, match="go from -1 to 2"):
        check_labels(np.array([-1, 2]), 3, "categorical_crossentropy")
    with pytest.raises(DataError, match="at least 2"):
        check_labels(np.array([0, 1]), 1, "categorical_crossentropy")
    with pytest.raises(DataError, match="integer class labels"):
        check_labels(np.array([0.5, 1.0]), 3, "categorical_crossentropy")
    with pytest.raises(DataError, match="4 columns but the last layer has 3 units"):
        check_labels(np.eye(4, dtype=np.float32), 3, "categorical_crossentropy")

    check_labels(np.array([0, 1, 1]), 1, "binary_crossentropy")
    check_labels(np.array([[0.0], [1.0]]), 1, "binary_crossentropy")
    check_labels(np.array([0.2, 0.9]), 1, "binary_crossentropy")  # soft targets
    with pytest.raises(DataError, match=r"labels in \{0, 1\}, found \[2\]"):
        check_labels(np.array([0, 1, 2]), 1, "binary_crossentropy")
    with pytest.raises(DataError, match="between 0 and 1"):
        check_labels(np.array([0.5, 1.5]), 1, "binary_crossentropy")
    with pytest.raises(DataError, match="3 units but the train labels have 1 column.*categorical"):
        check_labels(np.array([0, 1, 2]), 3, "binary_crossentropy")
    check_labels(np.array([[0, 1, 1], [1, 0, 0]]), 3, "binary_crossentropy")

    check_labels(np.zeros((5, 2), np.float32), 2, "mse")
    check_labels(np.zeros(5, np.float32), 1, "huber")
    with pytest.raises(DataError, match="2 units but the val targets have 1 column"):
        check_labels(np.zeros((5, 1), np.float32), 2, "mean_squared_error", split="val")

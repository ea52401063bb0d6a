"""Metrics against values computed by hand on tiny arrays."""

from __future__ import annotations

import numpy as np
import pytest

from dlcli.train.metrics import (
    METRICS,
    compute_metrics,
    confusion_matrix,
    per_class_report,
    predicted_labels,
)

# 3 classes, 6 samples. argmax predictions: [0, 2, 1, 2, 0, 1]
Y3 = np.array([0, 1, 1, 2, 2, 0])
P3 = np.array(
    [
        [0.7, 0.2, 0.1],
        [0.1, 0.3, 0.6],  # true 1 is 2nd best
        [0.2, 0.5, 0.3],
        [0.1, 0.1, 0.8],
        [0.5, 0.1, 0.4],  # true 2 is 2nd best
        [0.3, 0.6, 0.1],  # true 0 is 2nd best
    ]
)


def test_multiclass_accuracy_and_top_k():
    out = compute_metrics(
        ["accuracy", {"type": "top_k_accuracy", "k": 1}], Y3, P3, "classification", 3
    )
    assert out == {"accuracy": pytest.approx(3 / 6), "top_k_accuracy": pytest.approx(3 / 6)}
    out = compute_metrics([{"type": "top_k_accuracy", "k": 2}], Y3, P3, "classification", 3)
    assert out["top_k_accuracy"] == pytest.approx(1.0)
    # default k = 5 >= 3 classes -> every sample counts
    assert compute_metrics(["top_k_accuracy"], Y3, P3, "classification", 3) == {
        "top_k_accuracy": 1.0
    }


def test_top_k_ties_count_as_in_top_k():
    # true class 1 ties with class 0 for the top score: in_top_k counts it (as TF/Keras)
    p = np.array([[0.4, 0.4, 0.2]])
    assert compute_metrics([{"type": "top_k_accuracy", "k": 1}], [1], p, "classification") == {
        "top_k_accuracy": 1.0
    }


def test_multiclass_macro_precision_recall_f1():
    # confusion (rows true, cols pred): class0: pred [0, 1]; class1: pred [2, 1]; class2: [2, 0]
    # per class: tp = [1, 1, 1]; predicted counts = [2, 2, 2]; true counts = [2, 2, 2]
    # precision = recall = f1 = 0.5 for each class
    out = compute_metrics(["precision", "recall", "f1"], Y3, P3, "multiclass", 3)
    assert out == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5})


def test_macro_average_is_the_mean_of_per_class_values_with_zero_division_as_zero():
    y = np.array([0, 0, 0, 1])
    p = np.eye(3)[[0, 0, 1, 1]]  # predictions 0, 0, 1, 1; class 2 never appears
    # class0: P=2/2, R=2/3, F1=0.8; class1: P=1/2, R=1/1, F1=2/3; class2: 0, 0, 0
    out = compute_metrics(["precision", "recall", "f1", "accuracy"], y, p, "classification", 3)
    assert out["precision"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert out["recall"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert out["f1"] == pytest.approx((0.8 + 2 / 3 + 0) / 3)
    assert out["accuracy"] == pytest.approx(0.75)


def test_binary_metrics_positive_class_threshold_half():
    y = np.array([[1.0], [0.0], [1.0], [1.0], [0.0]])
    p = np.array([[0.9], [0.6], [0.4], [0.7], [0.5]])  # predicted: 1, 1, 0, 1, 0 (0.5 is not > 0.5)
    # tp = 2, fp = 1, fn = 1, tn = 1
    out = compute_metrics(["accuracy", "precision", "recall", "f1"], y, p, "binary", 2)
    assert out == pytest.approx({"accuracy": 3 / 5, "precision": 2 / 3, "recall": 2 / 3,
                                 "f1": 2 / 3})
    # flat (N,) outputs and labels work the same
    flat = compute_metrics(["accuracy", "f1"], y.ravel(), p.ravel(), "classification")
    assert flat == pytest.approx({"accuracy": 3 / 5, "f1": 2 / 3})


def test_binary_zero_division_gives_zero():
    y = np.array([[0.0], [0.0]])
    p = np.array([[0.1], [0.2]])  # nothing predicted positive, nothing positive
    out = compute_metrics(["precision", "recall", "f1", "accuracy"], y, p, "binary")
    assert out == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "accuracy": 1.0}
    with pytest.raises(ValueError, match="top_k_accuracy"):
        compute_metrics(["top_k_accuracy"], y, p, "binary")


def test_one_hot_targets_are_accepted():
    onehot = np.eye(3)[Y3]
    assert compute_metrics(["accuracy"], onehot, P3, "classification", 3) == {
        "accuracy": pytest.approx(0.5)
    }


def test_regression_metrics():
    y = np.array([[1.0], [2.0], [3.0], [4.0]])
    p = np.array([[1.5], [2.0], [2.0], [4.0]])
    # errors: 0.5, 0, -1, 0 -> mse = 1.25/4 = 0.3125, mae = 1.5/4 = 0.375
    # ss_tot = 2.25 + 0.25 + 0.25 + 2.25 = 5 -> r2 = 1 - 1.25/5 = 0.75
    out = compute_metrics(["mse", "mae", "rmse", "r2"], y, p, "regression")
    assert out == pytest.approx(
        {"mse": 0.3125, "mae": 0.375, "rmse": np.sqrt(0.3125), "r2": 0.75}, rel=1e-12
    )


def test_r2_multi_output_is_averaged_and_constant_targets():
    y = np.array([[1.0, 5.0], [3.0, 5.0]])
    p = np.array([[2.0, 5.0], [3.0, 5.0]])
    # column 0: ss_res 1, ss_tot 2 -> 0.5; column 1 constant and exact -> 1.0
    assert compute_metrics(["r2"], y, p, "regression")["r2"] == pytest.approx(0.75)
    p2 = np.array([[2.0, 4.0], [3.0, 5.0]])  # column 1 constant but missed -> 0.0
    assert compute_metrics(["r2"], y, p2, "regression")["r2"] == pytest.approx(0.25)
    # (N,) predictions against (N, 1) targets
    assert compute_metrics(["mae"], y[:, :1], p[:, 0], "regression") == {"mae": 0.5}


def test_confusion_matrix_and_report():
    cm = confusion_matrix(Y3, predicted_labels(P3), 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 1, 1], [1, 0, 1]])
    assert cm.dtype == np.int64
    y = np.array([0, 0, 0, 1])
    pred = np.array([0, 0, 1, 1])
    report = per_class_report(y, pred, 3, class_names=["cat", "dog", "bird"])
    assert report[0] == {"class": 0, "name": "cat", "precision": 1.0,
                         "recall": pytest.approx(2 / 3), "f1": pytest.approx(0.8), "support": 3}
    assert report[1]["precision"] == 0.5 and report[1]["recall"] == 1.0
    assert report[2] == {"class": 2, "name": "bird", "precision": 0.0, "recall": 0.0, "f1": 0.0,
                         "support": 0}
    assert per_class_report(y, pred, 2)[1]["name"] == "1"
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(ValueError, match="class names"):
        per_class_report(y, pred, 3, class_names=["a"])


def test_predicted_labels():
    np.testing.assert_array_equal(predicted_labels(P3), [0, 2, 1, 2, 0, 1])
    np.testing.assert_array_equal(predicted_labels(np.array([[0.2], [0.51]])), [0, 1])


def test_errors_name_valid_choices():
    with pytest.raises(ValueError, match="unknown metric 'acc'.*accuracy.*r2"):
        compute_metrics(["acc"], Y3, P3, "classification", 3)
    with pytest.raises(ValueError, match="unknown field"):
        compute_metrics([{"type": "accuracy", "k": 3}], Y3, P3, "classification", 3)
    with pytest.raises(ValueError, match="regression"):
        compute_metrics(["mse"], Y3, P3, "classification", 3)
    with pytest.raises(ValueError, match="classification"):
        compute_metrics(["accuracy"], np.zeros((2, 1)), np.zeros((2, 1)), "regression")
    with pytest.raises(ValueError, match="unknown task"):
        compute_metrics(["accuracy"], Y3, P3, "segmentation", 3)
    with pytest.raises(ValueError, match="targets"):
        compute_metrics(["accuracy"], Y3[:2], P3, "classification", 3)


def test_registry_and_empty_inputs():
    assert list(METRICS) == ["accuracy", "top_k_accuracy", "precision", "recall", "f1",
                             "mse", "mae", "rmse", "r2"]
    assert compute_metrics([], Y3, P3, "classification", 3) == {}
    empty = compute_metrics(["accuracy", "f1"], np.zeros(0, int), np.zeros((0, 3)),
                            "classification", 3)
    assert empty == {"accuracy": 0.0, "f1": 0.0}

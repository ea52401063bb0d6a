"""EarlyStopping and Monitor: Keras's patience, min_delta, baseline and start_from_epoch rules."""

from __future__ import annotations

import json
import math

import pytest

from dlcli.errors import DlcliError
from dlcli.train import monitor
from dlcli.train.callbacks import EarlyStopping
from dlcli.train.monitor import Monitor, MonitorError, infer_mode, resolve_mode


def run(es: EarlyStopping, values, key="val_loss"):
    """Feed values until a stop; return (per-epoch stop flags, per-epoch improved flags)."""
    stops, improved = [], []
    for epoch, v in enumerate(values):
        stops.append(es.on_epoch_end(epoch, {key: v, "loss": 0.0}))
        improved.append(es.improved)
        if stops[-1]:
            break
    return stops, improved


def test_monitor_min_and_max_with_min_delta():
    m = Monitor("val_loss", "min", min_delta=0.1)
    assert m.best == math.inf
    assert m.improved(1.0) and m.best == 1.0
    assert not m.improved(0.95)  # 0.95 + 0.1 is not < 1.0
    assert m.improved(0.85) and m.best == 0.85
    assert not m.improved(float("nan"))
    m = Monitor("val_accuracy", "max", min_delta=-0.05)  # sign ignored, as Keras's abs()
    assert m.min_delta == 0.05 and m.best == -math.inf
    assert m.improved(0.5) and not m.improved(0.54) and m.improved(0.56)
    assert m.is_better(0.7, 0.6) and not m.is_better(0.6, 0.6)


def test_monitor_value_and_missing_key():
    m = Monitor("val_loss", "min")
    assert m.value({"val_loss": 0.25}) == 0.25
    with pytest.raises(MonitorError, match="'val_loss'.*available: accuracy, loss") as info:
        m.value({"loss": 1.0, "accuracy": 0.5})
    assert isinstance(info.value, ValueError) and isinstance(info.value, DlcliError)


def test_monitor_state_round_trip_is_json():
    m = Monitor("val_loss", "min")
    assert json.loads(json.dumps(m.state_dict())) == {"best": None, "mode": "min"}
    m.improved(0.3)
    other = Monitor("val_loss", "min")
    other.load_state_dict(json.loads(json.dumps(m.state_dict())))
    assert other.best == 0.3
    with pytest.raises(ValueError, match="mode"):
        Monitor("val_loss", "max").load_state_dict(m.state_dict())


def test_patience_counts_epochs_without_improvement():
    es = EarlyStopping(monitor="val_loss", mode="min", patience=2)
    stops, improved = run(es, [1.0, 0.9, 0.95, 0.97, 0.5])
    assert stops == [False, False, False, True]
    assert improved == [True, True, False, False]
    assert es.best == 0.9 and es.best_epoch == 1 and es.stopped_epoch == 3 and es.wait == 2


def test_patience_zero_stops_at_first_non_improvement_but_never_at_epoch_zero():
    es = EarlyStopping(monitor="val_loss", mode="min", patience=0)
    assert run(es, [float("nan"), 1.0, 0.5, 0.5])[0] == [False, False, False, True]
    assert es.stopped_epoch == 3


def test_min_delta_sign_in_both_modes():
    es = EarlyStopping(monitor="val_loss", mode="min", patience=1, min_delta=0.1)
    # 0.95 is not 0.1 below 1.0 -> no improvement -> wait 1 >= 1 -> stop
    assert run(es, [1.0, 0.95])[0] == [False, True]
    es = EarlyStopping(monitor="val_acc", mode="max", patience=1, min_delta=0.1)
    assert run(es, [0.5, 0.65, 0.7], key="val_acc")[0] == [False, False, True]
    assert es.best == 0.65


def test_start_from_epoch_ignores_warmup_epochs():
    es = EarlyStopping(monitor="val_loss", mode="min", patience=1, start_from_epoch=2)
    stops, improved = run(es, [0.1, 0.2, 5.0, 6.0])
    # epochs 0, 1 are not monitored: the best starts at epoch 2's 5.0
    assert stops == [False, False, False, True]
    assert improved == [False, False, True, False]
    assert es.best == 5.0 and es.best_epoch == 2


def test_baseline_must_be_beaten_for_the_wait_to_restart():
    es = EarlyStopping(monitor="val_loss", mode="min", patience=3, baseline=0.5)
    stops, improved = run(es, [0.9, 0.8, 0.7, 0.6, 0.55])
    # each epoch improves on the best (best/best_epoch move) but not on the baseline, so the
    # wait is never reset; an improving epoch never stops training, though (Keras returns early)
    assert stops == [False, False, False, False, False]
    assert improved == [True] * 5 and es.wait == 5 and es.best_epoch == 4
    assert es.on_epoch_end(5, {"val_loss": 0.56}) is True  # first non-improvement, wait 6 >= 3
    es = EarlyStopping(monitor="val_loss", mode="min", patience=2, baseline=0.5)
    run(es, [0.9, 0.4])
    assert es.wait == 0  # 0.4 beats the baseline too


def test_missing_monitored_key():
    es = EarlyStopping(monitor="val_accuracy", mode="max")
    with pytest.raises(MonitorError, match="val_accuracy.*available: loss, val_loss"):
        es.on_epoch_end(0, {"loss": 1.0, "val_loss": 1.0})


def test_state_dict_resume_stops_at_the_same_epoch():
    values = [1.0, 0.8, 0.85, 0.9, 0.7, 0.75, 0.76, 0.77, 0.78]
    full = EarlyStopping(monitor="val_loss", mode="min", patience=3, restore_best_weights=True)
    ref, _ = run(full, values)
    first = EarlyStopping(monitor="val_loss", mode="min", patience=3, restore_best_weights=True)
    got = [first.on_epoch_end(e, {"val_loss": v}) for e, v in enumerate(values[:5])]
    state = json.loads(json.dumps(first.state_dict()))
    second = EarlyStopping(monitor="val_loss", mode="min", patience=3, restore_best_weights=True)
    second.load_state_dict(state)
    for e, v in enumerate(values[5:], start=5):
        got.append(second.on_epoch_end(e, {"val_loss": v}))
        if got[-1]:
            break
    assert got == ref and ref[-1] is True
    assert (second.best, second.best_epoch, second.stopped_epoch) == (0.7, 4, 7)
    assert (full.best, full.best_epoch, full.stopped_epoch) == (0.7, 4, 7)


def test_constructor_takes_the_config_fields():
    cfg = {"monitor": "loss", "mode": "min", "patience": 4, "min_delta": 0.01,
           "start_from_epoch": 1, "restore_best_weights": True}
    es = EarlyStopping(**cfg)
    assert (es.monitor, es.mode, es.patience, es.min_delta, es.start_from_epoch) == (
        "loss", "min", 4, 0.01, 1
    )
    assert es.restore_best_weights and es.best_epoch is None and es.stopped_epoch == 0
    with pytest.raises(ValueError, match="mode"):
        EarlyStopping(mode="up")


@pytest.mark.parametrize("name,mode", [
    ("loss", "min"), ("val_loss", "min"), ("data_loss", "min"), ("val_mse", "min"),
    ("mae", "min"), ("val_rmse", "min"), ("accuracy", "max"), ("val_accuracy", "max"),
    ("top_k_accuracy", "max"), ("precision", "max"), ("val_recall", "max"), ("f1", "max"),
    ("val_r2", "max"), ("lr", None), ("seconds", None),
])
def test_infer_mode(name: str, mode: str | None) -> None:
    assert infer_mode(name) == mode


def test_auto_mode_uses_infer_mode():
    assert resolve_mode("val_loss", "auto") == "min"
    assert resolve_mode("val_accuracy", "auto") == "max"
    assert EarlyStopping(monitor="val_f1").mode == "max"
    assert resolve_mode("val_loss", "max") == "max"


def test_auto_mode_asks_infer_mode_and_needs_an_answer(monkeypatch):
    # a stand-in for infer_mode, so this wiring is tested whatever the real rule says
    fake = {"val_score": "max", "val_cost": "min"}.get
    monkeypatch.setattr(monitor, "infer_mode", fake)
    assert Monitor("val_score").mode == "max" and Monitor("val_score").best == -math.inf
    assert EarlyStopping(monitor="val_cost").mode == "min"
    with pytest.raises(ValueError, match="'val_widgets'.*mode: min or mode: max"):
        EarlyStopping(monitor="val_widgets")

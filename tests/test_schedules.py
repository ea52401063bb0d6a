"""Learning-rate schedules: exact per-epoch values, plateau logic and resume."""

from __future__ import annotations

import json
import math

import pytest

from dlcli.train.monitor import MonitorError
from dlcli.train.schedules import (
    SCHEDULES,
    CosineDecay,
    ExponentialDecay,
    ReduceOnPlateau,
    Schedule,
    StepDecay,
    make_schedule,
)


def lrs(schedule: Schedule, n: int) -> list[float]:
    return [schedule.lr_at(e) for e in range(n)]


def test_constant_and_none():
    for cfg in (None, {"type": "constant"}, {"type": "Constant"}):
        s = make_schedule(cfg, 0.01, 5)
        assert type(s) is Schedule
        assert lrs(s, 3) == [0.01, 0.01, 0.01]


def test_step():
    s = make_schedule({"type": "step", "step_size": 2, "gamma": 0.5}, 0.1, 10)
    assert isinstance(s, StepDecay)
    assert lrs(s, 6) == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025], rel=1e-15)
    assert make_schedule({"type": "step", "step_size": 3}, 1.0, 9).lr_at(3) == pytest.approx(0.1)


def test_exponential_smooth_and_staircase():
    s = make_schedule({"type": "exponential", "decay_rate": 0.5, "decay_steps": 2}, 1.0, 10)
    assert isinstance(s, ExponentialDecay)
    assert lrs(s, 4) == pytest.approx([1.0, 0.5**0.5, 0.5, 0.5**1.5], rel=1e-15)
    s = make_schedule(
        {"type": "exponential", "decay_rate": 0.5, "decay_steps": 2, "staircase": True}, 1.0, 10
    )
    assert lrs(s, 5) == [1.0, 1.0, 0.5, 0.5, 0.25]
    assert make_schedule({"type": "exponential", "decay_rate": 0.9}, 0.1, 3).lr_at(2) == (
        pytest.approx(0.1 * 0.81)
    )


def test_cosine_without_warmup():
    s = make_schedule({"type": "cosine"}, 1.0, 4)  # decay over the 4 epochs
    assert isinstance(s, CosineDecay)
    # 0.5*(1+cos(pi*e/4)) for e = 0..3, then clamped at alpha*base
    expected = [1.0, 0.5 * (1 + math.sqrt(0.5)), 0.5, 0.5 * (1 - math.sqrt(0.5))]
    assert lrs(s, 4) == pytest.approx(expected, rel=1e-12)
    assert s.lr_at(4) == pytest.approx(0.0, abs=1e-15) and s.lr_at(10) == s.lr_at(4)


def test_cosine_alpha_and_decay_epochs():
    s = make_schedule({"type": "cosine", "decay_epochs": 2, "alpha": 0.1}, 0.2, 10)
    # alpha + (1-alpha)*0.5*(1+cos(pi*e/2)) times 0.2: e=0 -> 0.2, e=1 -> 0.2*0.55, e>=2 -> 0.02
    assert lrs(s, 4) == pytest.approx([0.2, 0.11, 0.02, 0.02], rel=1e-12)


def test_cosine_with_warmup():
    s = make_schedule({"type": "cosine", "warmup_epochs": 3}, 0.4, 7)
    # warmup 0.4*(e+1)/4 -> 0.1, 0.2, 0.3; then cosine over the remaining 4 epochs from 0.4
    expected = [0.1, 0.2, 0.3, 0.4, 0.2 * (1 + math.sqrt(0.5)), 0.2, 0.2 * (1 - math.sqrt(0.5))]
    assert lrs(s, 7) == pytest.approx(expected, rel=1e-12)


def plateau_logs(values):
    return [{"val_loss": v, "loss": 1.0} for v in values]


def test_reduce_on_plateau_patience_and_min_lr():
    s = make_schedule(
        {"type": "reduce_on_plateau", "patience": 2, "factor": 0.5, "min_lr": 0.02, "mode": "min"},
        0.1,
        20,
    )
    assert isinstance(s, ReduceOnPlateau)
    seen = []
    for epoch, logs in enumerate(plateau_logs([1.0, 0.9, 0.9, 0.9, 0.95, 0.8, 1, 1, 1, 1, 1, 1])):
        seen.append(s.lr_at(epoch))
        s.on_epoch_end(epoch, logs)
    # epochs 2,3 do not improve -> reduce after epoch 3 (wait 2); 4 no, 5 improves (0.8);
    # 6,7 no -> reduce after 7 to 0.025; 8,9 no -> max(0.0125, 0.02) = 0.02; then stays at min_lr
    assert seen == pytest.approx(
        [0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.025, 0.025, 0.02, 0.02], rel=1e-15
    )


def test_reduce_on_plateau_min_delta_and_cooldown():
    s = ReduceOnPlateau(1.0, monitor="val_loss", factor=0.1, patience=1, min_delta=0.1,
                        cooldown=2, mode="min")
    lr_seen = []
    # e0: 0.95 improves on inf. e1: 0.9 is not 0.1 better than 0.95 -> wait 1 -> lr 0.1,
    # cooldown 2. e2: cooldown 2 -> 1, held. e3: cooldown 1 -> 0, and as in Keras the same epoch
    # already counts again (wait 1) -> lr 0.01, cooldown 2. e4: 0.89 held by the cooldown.
    # e5: 0.5 improves.
    for epoch, logs in enumerate(plateau_logs([0.95, 0.9, 0.9, 0.9, 0.89, 0.5])):
        lr_seen.append(s.lr_at(epoch))
        s.on_epoch_end(epoch, logs)
    assert lr_seen == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01, 0.01], rel=1e-12)
    assert s.wait == 0 and s.cooldown_counter == 0
    assert s.monitor.best == 0.5


def test_reduce_on_plateau_max_mode():
    s = ReduceOnPlateau(1.0, monitor="val_accuracy", patience=1, factor=0.5, min_delta=0.0,
                        mode="max")
    for epoch, v in enumerate([0.5, 0.6, 0.6]):
        s.on_epoch_end(epoch, {"val_accuracy": v})
    assert s.lr_at(3) == 0.5


def test_reduce_on_plateau_resume_is_exact():
    cfg = {"type": "reduce_on_plateau", "patience": 2, "factor": 0.5, "cooldown": 1, "mode": "min"}
    values = [1.0, 0.99, 0.99, 0.99, 0.99, 0.7, 0.8, 0.8, 0.8, 0.8]
    full = make_schedule(cfg, 0.1, 10)
    ref = []
    for e, logs in enumerate(plateau_logs(values)):
        ref.append(full.lr_at(e))
        full.on_epoch_end(e, logs)
    first = make_schedule(cfg, 0.1, 10)
    got = []
    for e, logs in enumerate(plateau_logs(values[:4])):
        got.append(first.lr_at(e))
        first.on_epoch_end(e, logs)
    state = json.loads(json.dumps(first.state_dict()))  # JSON-able
    resumed = make_schedule(cfg, 0.1, 10)
    resumed.load_state_dict(state)
    for e, logs in enumerate(plateau_logs(values[4:]), start=4):
        got.append(resumed.lr_at(e))
        resumed.on_epoch_end(e, logs)
    assert got == ref
    assert ref[-1] < 0.1


def test_reduce_on_plateau_missing_key():
    s = ReduceOnPlateau(0.1, monitor="val_loss", mode="min")
    with pytest.raises(MonitorError, match="val_loss.*available: accuracy, loss"):
        s.on_epoch_end(0, {"loss": 1.0, "accuracy": 0.5})


def test_reduce_on_plateau_auto_mode():
    assert ReduceOnPlateau(0.1, monitor="val_accuracy").monitor.mode == "max"
    assert ReduceOnPlateau(0.1, monitor="val_loss").monitor.mode == "min"


def test_pure_schedules_have_empty_state():
    s = make_schedule({"type": "step", "step_size": 1}, 0.1, 3)
    assert s.state_dict() == {}
    s.load_state_dict({})
    s.on_epoch_end(0, {})
    assert s.lr_at(1) == pytest.approx(0.01)


def test_make_schedule_errors():
    with pytest.raises(ValueError, match="unknown lr_schedule type 'cosin'"):
        make_schedule({"type": "cosin"}, 0.1, 3)
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['gama'\].*gamma"):
        make_schedule({"type": "step", "step_size": 1, "gama": 0.5}, 0.1, 3)
    with pytest.raises(ValueError, match="needs 'step_size'"):
        make_schedule({"type": "step"}, 0.1, 3)
    with pytest.raises(ValueError, match="needs 'decay_rate'"):
        make_schedule({"type": "exponential"}, 0.1, 3)
    with pytest.raises(ValueError, match="factor"):
        make_schedule({"type": "reduce_on_plateau", "factor": 1.0, "mode": "min"}, 0.1, 3)
    with pytest.raises(ValueError, match="step_size"):
        make_schedule({"type": "step", "step_size": 0}, 0.1, 3)
    assert set(SCHEDULES) == {"constant", "step", "exponential", "cosine", "reduce_on_plateau"}

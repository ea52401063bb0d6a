"""The GPU path's parts a CPU can check: host transfers per epoch, device-side metric sums, the
fused optimizer kernels' arithmetic, the counter-based generator, views, version rules, --device.

tests/gpu runs the same things on cupy where a GPU is present.
"""

from __future__ import annotations

import importlib.util
import math
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dlcli.cli.main import main
from dlcli.config import load_config_text
from dlcli.core import Tensor, backend, ops
from dlcli.core.random import CounterRNG
from dlcli.errors import DlcliError
from dlcli.train import optimizers
from dlcli.train.metrics import RunningMetrics, compute_metrics
from dlcli.train.trainer import Trainer

HAS_CUPY = importlib.util.find_spec("cupy") is not None

CONFIG = """
name: count
seed: 5
data: {{dataset: blobs, n_samples: {n}, validation_split: 0.25, batch_size: 12,
       normalize: standardize}}
model:
  input_shape: [2]
  layers:
    - {{type: Dense, units: 16, activation: relu, kernel_regularizer: {{l2: 0.001}}}}
    - {{type: Dropout, rate: 0.2}}
    - {{type: Dense, units: 3, activation: softmax}}
loss: sparse_categorical_crossentropy
metrics: [accuracy, {{type: top_k_accuracy, k: 2}}, f1]
optimizer: {{type: adam, learning_rate: 0.01}}
training: {{epochs: 2}}
"""


# -- transfers ---------------------------------------------------------------------------------
def transfers_per_epoch(tmp_path: Path, steps: int) -> list[int]:
    cfg = load_config_text(textwrap.dedent(CONFIG.format(n=steps * 16)))
    trainer = Trainer(cfg, run_dir=tmp_path / f"n{steps}")
    assert trainer._n_batches == steps
    trainer.read_every = math.inf  # the progress bar's time gate: no reads between the ends
    counts, train_epoch = [], trainer._train_epoch

    def counted(epoch: int):
        before = backend.transfer_count()
        logs = train_epoch(epoch)
        counts.append(backend.transfer_count() - before)
        return logs

    trainer._train_epoch = counted
    trainer.fit()
    return counts


def test_an_epoch_makes_the_same_few_transfers_whatever_its_length(tmp_path: Path) -> None:
    short, long = transfers_per_epoch(tmp_path, 5), transfers_per_epoch(tmp_path, 20)
    # train: the first batch's loss (progress), the epoch's loss sums, its metric sums;
    # validation: its loss sums and outputs, then compute_metrics's conversions of those host
    # arrays (to_host counts numpy arrays too). None of them grows with the number of steps.
    assert short == long
    assert max(short) <= 12, short


def test_the_progress_gate_reads_the_loss_while_an_epoch_runs(tmp_path: Path) -> None:
    cfg = load_config_text(textwrap.dedent(CONFIG.format(n=10 * 16)), ["training.epochs=1"])
    trainer = Trainer(cfg, run_dir=tmp_path / "r")
    shown: list[float] = []
    trainer.reporter.batch_end = lambda b, logs, seen: shown.append(logs["loss"])
    trainer.read_every = 0.0  # read after every batch, as a slow step would
    result = trainer.fit()
    assert len(shown) == 10 and shown[-1] == pytest.approx(result.history[0]["loss"])
    assert len(set(shown)) > 1  # a fresh value at every read


def test_divergence_names_the_first_bad_batch(tmp_path: Path) -> None:
    cfg = load_config_text(textwrap.dedent(CONFIG.format(n=20 * 16)),
                           ["optimizer={type: sgd, learning_rate: 1.0e+30}"])
    trainer = Trainer(cfg, run_dir=tmp_path / "r")
    trainer.read_every = math.inf  # found at the end of the epoch, named as it happened
    with pytest.raises(DlcliError, match=r"the loss became (nan|inf) at epoch 1, batch \d+: "
                                         r"training diverged"):
        trainer.fit()


# -- metrics from device-side sums -------------------------------------------------------------
@pytest.mark.parametrize("task, units, names", [
    ("classification", 4, ["accuracy", {"type": "top_k_accuracy", "k": 2}, "precision",
                           "recall", "f1"]),
    ("classification", 1, ["accuracy", "precision", "recall", "f1"]),
    ("regression", 3, ["mse", "mae", "rmse", "r2"]),
])  # fmt: skip
def test_running_metrics_equal_the_whole_epoch_metrics(task, units, names) -> None:
    rng = np.random.default_rng(0)
    n = 103
    if task == "regression":
        y, out = rng.standard_normal((n, units)), rng.standard_normal((n, units))
    elif units == 1:
        y, out = rng.integers(0, 2, (n, 1)).astype(np.float64), rng.random((n, 1))
    else:
        y, out = rng.integers(0, units, n), rng.dirichlet(np.ones(units), n)
    out = out.astype(np.float32)
    whole = compute_metrics(names, y, out, task, None)
    running = RunningMetrics(names, task, None, (units,))
    for i in range(0, n, 10):
        running.update(y[i:i + 10], out[i:i + 10])
    got = running.result(y)
    assert got.keys() == whole.keys()
    for k, v in whole.items():
        if k in ("mse", "mae", "rmse"):  # float64 sums added batch by batch
            assert got[k] == pytest.approx(v, rel=1e-14), k
        else:  # counts: exact
            assert got[k] == v, k


def test_running_metrics_continue_from_their_state() -> None:
    rng = np.random.default_rng(1)
    y, out = rng.standard_normal((40, 2)), rng.standard_normal((40, 2)).astype(np.float32)
    names = ["mse", "r2"]
    a = RunningMetrics(names, "regression", None, (2,))
    for i in range(0, 40, 8):
        a.update(y[i:i + 8], out[i:i + 8])
    b = RunningMetrics(names, "regression", None, (2,))
    for i in range(0, 16, 8):
        b.update(y[i:i + 8], out[i:i + 8])
    flat, kept = b.state()
    c = RunningMetrics(names, "regression", None, (2,))
    c.load(flat, kept, 16, np)
    for i in range(16, 40, 8):
        c.update(y[i:i + 8], out[i:i + 8])
    assert c.result(y) == a.result(y)
    with pytest.raises(ValueError, match="metric sums hold 3 numbers, expected 1"):
        c.load(np.zeros(3), kept, 16, np)


def test_label_values_are_left_to_the_data_check() -> None:
    # no per-batch host read in the loss: labels are checked when the data enters
    loss = ops.softmax_cross_entropy(Tensor(np.zeros((2, 3), np.float32)), np.array([0, 7]))
    assert np.isfinite(loss.item())


# -- the fused optimizer kernels: their CUDA bodies, run with numpy ---------------------------
def emulate(fused: optimizers.Fused, g: np.ndarray, var: np.ndarray) -> None:
    """Run a kernel body with numpy, scalars as the parameter's type T (what cupy passes)."""
    t = var.dtype.type
    env = {"g": g, "var": var, "sqrt": np.sqrt, "fabs": np.abs, "_max": np.maximum,
           **{k: t(v) for k, v in fused.scalars.items()}, **fused.slots}
    outs = {"var", *fused.slots}
    for stmt in filter(None, (s.strip() for s in fused.body.split(";"))):
        name, op, expr = re.fullmatch(r"(?:T )?(\w+) (=|\+=|-=) (.+)", stmt).groups()
        value = eval(expr, {"__builtins__": {}}, env)  # noqa: S307 - our own kernel text
        if name not in outs:
            env[name] = value
        elif op == "=":
            env[name][...] = value
        elif op == "+=":
            env[name] += value
        else:
            env[name] -= value


VARIANTS = [
    ("sgd", {}), ("sgd", {"momentum": 0.9}), ("sgd", {"momentum": 0.9, "nesterov": True}),
    ("rmsprop", {}), ("rmsprop", {"centered": True, "momentum": 0.5}),
    ("rmsprop", {"momentum": 0.5}), ("rmsprop", {"centered": True}),
    ("adagrad", {}), ("adadelta", {"learning_rate": 1.0}), ("adam", {}),
    ("adam", {"amsgrad": True}), ("adamw", {}), ("adamax", {}), ("nadam", {}),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name, options", VARIANTS, ids=lambda v: str(v))
def test_fused_kernel_bodies_compute_what_the_numpy_updates_do(name, options, dtype) -> None:
    rng = np.random.default_rng(2)
    shapes = [(5, 3), (7,)]
    start = [rng.standard_normal(s).astype(dtype) for s in shapes]
    ref_params = [Tensor(a.copy(), requires_grad=True) for a in start]
    fus_params = [Tensor(a.copy(), requires_grad=True) for a in start]
    ref = optimizers.build_optimizer({"type": name, **options}, ref_params)
    fus = optimizers.build_optimizer({"type": name, **options}, fus_params)
    ref.weight_decay = None  # the kernels hold the update rule; decay runs before them
    for t in range(1, 4):
        grads = [rng.standard_normal(s).astype(dtype) for s in shapes]
        for p, g in zip(ref_params, grads, strict=True):
            p.grad = g.copy()
        ref.step()
        fus._begin_step(t)
        for i, (p, g) in enumerate(zip(fus_params, grads, strict=True)):
            emulate(fus._fused(i, fus.learning_rate, t), g, p.data)
        fus.iterations = t
    for a, b in zip(ref_params, fus_params, strict=True):
        np.testing.assert_array_equal(a.data, b.data)
    for slot, arrays in ref.slots.items():
        for a, b in zip(arrays, fus.slots[slot], strict=True):
            np.testing.assert_array_equal(a, b, err_msg=slot)


def test_the_emulator_bites() -> None:
    p = Tensor(np.ones(4), requires_grad=True)
    opt = optimizers.build_optimizer({"type": "adam"}, [p])
    fused = opt._fused(0, 0.1, 1)
    wrong = optimizers.Fused(fused.name, fused.body.replace("omb1", "omb2", 1), fused.scalars,
                             fused.slots)
    a, b = np.ones(4), np.ones(4)
    emulate(fused, np.full(4, 0.5), a)
    for s in fused.slots.values():
        s[...] = 0
    emulate(wrong, np.full(4, 0.5), b)
    assert not np.array_equal(a, b)


# -- the counter-based generator ---------------------------------------------------------------
def test_counter_rng_reproduces_from_its_state() -> None:
    rng = CounterRNG(12345)
    first = rng.random((3, 4))
    saved = dict(rng.state)
    nxt = rng.random((2, 5), dtype=np.float64)
    assert saved == {"key": 12345, "counter": 12}
    again = CounterRNG.from_state(saved)
    np.testing.assert_array_equal(again.random((2, 5), dtype=np.float64), nxt)
    assert first.dtype == np.float32 and nxt.dtype == np.float64
    # one long draw is the same numbers as several short ones
    whole = CounterRNG(7).random(100)
    parts = CounterRNG(7)
    np.testing.assert_array_equal(np.concatenate([parts.random(30), parts.random(70)]), whole)


def test_counter_rng_statistics() -> None:
    u = CounterRNG(1).random(200_000, dtype=np.float64)
    assert 0.0 <= u.min() and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.003 and abs(u.var() - 1 / 12) < 0.002
    counts = np.bincount((u * 10).astype(int), minlength=10)
    chi2 = ((counts - 20_000) ** 2 / 20_000).sum()
    assert chi2 < 40  # 9 degrees of freedom: p < 1e-5 above this
    z = CounterRNG(2).standard_normal(200_000, dtype=np.float64)
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    # different keys are different streams
    assert not np.array_equal(CounterRNG(1).random(8), CounterRNG(2).random(8))


@pytest.mark.parametrize("state", [None, {"key": 1}, {"key": -1, "counter": 0},
                                   {"key": 1, "counter": 2**64}, {"key": True, "counter": 0},
                                   {"key": 1.5, "counter": 0}])
def test_counter_rng_refuses_bad_states(state) -> None:
    with pytest.raises(ValueError, match="two integers"):
        CounterRNG.from_state(state)


# -- views, versions, scalars ------------------------------------------------------------------
def test_reshape_view_refuses_a_copy() -> None:
    buf = np.zeros((6, 5))
    view = backend.reshape_view(buf[:, :4], (2, 3, 2, 2))  # rows split, columns split: a view
    view[...] = 1
    assert buf[:, :4].all() and not buf[:, 4].any()
    with pytest.raises(ValueError, match="copies it"):
        backend.reshape_view(buf[:, :4], (24,))  # crossing the skipped column: a copy


def test_cupy_version_rules() -> None:
    backend.check_cupy_version("13.3.0")
    backend.check_cupy_version("14.0.0rc1")
    with pytest.raises(DlcliError, match=r"add\.at.*12\.1 or later"):
        backend.check_cupy_version("12.0.0")
    with pytest.raises(DlcliError, match="13.0 or later"):
        backend.check_cupy_version("12.3.1")


def test_python_numbers_reach_ops_as_scalars() -> None:
    seen = []

    class Spy(ops.elementwise.Mul):
        def forward(self, a, b):
            seen.append(type(b))
            return super().forward(a, b)

    x = Tensor(np.ones(3, np.float32), requires_grad=True)
    y = Spy.apply(x, 2.5)
    y.sum().backward()
    assert seen == [np.float32] and y.dtype == np.float32
    np.testing.assert_array_equal(x.grad, np.full(3, 2.5, np.float32))
    assert (1.0 - x).dtype == np.float32 and (x / 2).dtype == np.float32


def test_device_data_fraction_is_validated() -> None:
    cfg = load_config_text(textwrap.dedent(CONFIG.format(n=64)))
    assert cfg.training.device_data_fraction == 0.5
    with pytest.raises(DlcliError, match="device_data_fraction"):
        load_config_text(textwrap.dedent(CONFIG.format(n=64)),
                         ["training.device_data_fraction=1.5"])


# -- --device ----------------------------------------------------------------------------------
@pytest.mark.skipif(HAS_CUPY, reason="checks the error of a machine without cupy")
@pytest.mark.parametrize("command", [["eval", "x.npz"], ["predict", "x.npz", "in.npy"],
                                     ["export", "x.npz", "-o", "m.onnx"]])
def test_device_gpu_without_cupy_is_one_error(command, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load_config_text(textwrap.dedent(CONFIG.format(n=64)), ["training.epochs=1"])
    Trainer(cfg, run_dir=tmp_path / "r").fit()
    ckpt = str(tmp_path / "r" / "checkpoints" / "last.npz")
    np.save(tmp_path / "in.npy", np.zeros((2, 2), np.float32))
    args = [ckpt if a == "x.npz" else a for a in command]
    res = CliRunner().invoke(main, [*args, "--device", "gpu"])
    assert res.exit_code == 2, res.output
    assert "pip install 'dlcli[gpu]'" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(main, [*args, "--device", "cpu"])
    assert "dlcli[gpu]" not in res.output


# -- checkpoints -------------------------------------------------------------------------------
def _stopped(tmp_path: Path) -> tuple[Trainer, Path]:
    from dlcli.train.trainer import Interrupted, NullReporter

    cfg = load_config_text(textwrap.dedent(CONFIG.format(n=10 * 16)))

    class Stop(NullReporter):
        def batch_end(self, batch, logs, samples):
            if batch == 3:
                trainer.request_stop()

    trainer = Trainer(cfg, run_dir=tmp_path / "a", reporter=Stop())
    with pytest.raises(Interrupted):
        trainer.fit()
    return trainer, tmp_path / "a" / "checkpoints" / "last.npz"


def test_an_older_checkpoint_with_outputs_instead_of_sums_resumes(tmp_path: Path) -> None:
    from dlcli.io.checkpoint import load_checkpoint

    _, last = _stopped(tmp_path)
    ckpt = load_checkpoint(last)
    seen = ckpt.meta["position"]["seen"]
    assert ckpt.state["outputs"].shape == (seen, 0)  # no metric here needs every output
    # what dlcli wrote before the sums: every output of the batches done
    ckpt.state = {"order": ckpt.state["order"],
                  "outputs": np.full((seen, 3), 1 / 3, dtype=np.float32)}
    cfg = load_config_text(textwrap.dedent(CONFIG.format(n=10 * 16)))
    result = Trainer(cfg, run_dir=tmp_path / "b", resume=ckpt).fit()
    assert 0 <= result.history[0]["accuracy"] <= 1


def test_metric_sums_that_do_not_fit_are_a_checkpoint_error(tmp_path: Path) -> None:
    from dlcli.errors import CheckpointError
    from dlcli.io.checkpoint import load_checkpoint

    _, last = _stopped(tmp_path)
    ckpt = load_checkpoint(last)
    ckpt.state["metric_sums"] = np.zeros(2)
    cfg = load_config_text(textwrap.dedent(CONFIG.format(n=10 * 16)))
    with pytest.raises(CheckpointError, match="metric sums do not fit"):
        Trainer(cfg, run_dir=tmp_path / "b", resume=ckpt)


def test_device_generator_states_are_checked() -> None:
    from dlcli.errors import CheckpointError
    from dlcli.nn.layers import Dense, Dropout
    from dlcli.nn.sequential import Sequential
    from dlcli.train.trainer import _device_rng_states, _set_device_rng_states

    model = Sequential([Dense(4), Dropout(0.5, name="drop")], (3,)).build(0)
    assert _device_rng_states(model) == {}  # numpy: no device generators, no key
    model.layers[1].device_rng = CounterRNG(5, 8)
    assert _device_rng_states(model) == {"device": {"drop": {"key": 5, "counter": 8}}}
    _set_device_rng_states(model, {"drop": {"key": 6, "counter": 1}}, np)
    assert model.layers[1].device_rng.state == {"key": 6, "counter": 1}
    with pytest.raises(CheckpointError, match=r"rng.device\['drop'\]"):
        _set_device_rng_states(model, {"drop": {"key": "x", "counter": 1}}, np)

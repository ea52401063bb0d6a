"""The training loop: data -> mini-batches -> loss -> backward -> optimizer, with a run directory.

Nothing here prints: progress goes to a Reporter (the CLI's shows rich bars), and the
run directory gets history.csv, checkpoints, summary.txt, metrics.json and train.log.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from dlcli.config.schema import Config, resolved_yaml
from dlcli.core import Tensor, set_num_threads
from dlcli.core.backend import tune_host_allocator, xp_for
from dlcli.data import Splits, check_labels, load_splits
from dlcli.distributed import Communicator
from dlcli.errors import CheckpointError, DlcliError
from dlcli.io.checkpoint import Checkpoint, save_checkpoint
from dlcli.jsonsafe import strict
from dlcli.nn.from_config import build_model
from dlcli.nn.sequential import Sequential
from dlcli.train.callbacks import EarlyStopping
from dlcli.train.device import Batches, LossSums, device_data_note
from dlcli.train.evaluate import evaluate_model
from dlcli.train.losses import LossSpec
from dlcli.train.metrics import RunningMetrics
from dlcli.train.monitor import Monitor, infer_mode
from dlcli.train.optimizers import build_optimizer
from dlcli.train.schedules import make_schedule


class Reporter(Protocol):
    """Where the trainer sends progress; the CLI implements it with rich."""

    def message(self, text: str) -> None: ...
    def epoch_begin(self, epoch: int, epochs: int, n_batches: int) -> None: ...
    def batch_end(self, batch: int, logs: dict[str, float], samples: int) -> None: ...
    def epoch_end(self, epoch: int, epochs: int, logs: dict[str, float]) -> None: ...


class NullReporter:
    """Reports nothing (--quiet, tests)."""

    def message(self, text: str) -> None:
        pass

    def epoch_begin(self, epoch: int, epochs: int, n_batches: int) -> None:
        pass

    def batch_end(self, batch: int, logs: dict[str, float], samples: int) -> None:
        pass

    def epoch_end(self, epoch: int, epochs: int, logs: dict[str, float]) -> None:
        pass


class Interrupted(DlcliError):
    """Training stopped by a signal after the current batch; the last checkpoint is written.

    The exit code is the shell's for that signal: 130 (SIGINT), 143 (SIGTERM), 129 (SIGHUP).
    """

    exit_code = 130

    def __init__(self, message: str, signum: int = signal.SIGINT) -> None:
        super().__init__(message)
        self.exit_code = 128 + int(signum)


# what schedulers, `timeout`, containers and closed terminals send: all stop like Ctrl-C
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                     if hasattr(signal, name))


@dataclass
class Position:
    """Where an interrupted epoch stopped: enough to continue it exactly."""

    epoch: int
    batch: int  # the next batch to run
    order: np.ndarray  # the epoch's permutation of the train samples
    outputs: np.ndarray  # outputs of the batches done for r2 (else no columns), or old format
    data_total: float
    reg_total: float
    seen: int
    seconds: float
    sums: np.ndarray | None = None  # RunningMetrics.state(); None in checkpoints before it

    def meta(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "batch": self.batch, "data_total": self.data_total,
                "reg_total": self.reg_total, "seen": self.seen, "seconds": self.seconds}

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"order": self.order, "outputs": self.outputs}
        if self.sums is not None:
            out["metric_sums"] = self.sums
        return out

    @classmethod
    def from_checkpoint(cls, meta: dict[str, Any], state: dict[str, np.ndarray]) -> Position:
        return cls(int(meta["epoch"]), int(meta["batch"]), state["order"], state["outputs"],
                   float(meta["data_total"]), float(meta["reg_total"]), int(meta["seen"]),
                   float(meta["seconds"]), state.get("metric_sums"))


@dataclass
class TrainResult:
    run_dir: Path
    history: list[dict[str, float]]
    test_metrics: dict[str, float] | None
    stopped_epoch: int | None = None
    best_epoch: int | None = None
    best_value: float | None = None
    monitor: str = "loss"


def stamped_path(base: Path, stem: str) -> Path:
    """base/<stem>-<timestamp>, with -2, -3, ... added while that name is taken."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = base / f"{stem}-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = base / f"{stem}-{stamp}-{n}"
    return path


def make_run_dir(cfg: Config, run_dir: str | os.PathLike[str] | None, root: str = "runs") -> Path:
    """runs/<name>-<timestamp>/, or the given folder; a non-empty folder is never reused.

    The folder is created and a file written and removed in it, so an unwritable place is a
    one-line error before any data is read.
    """
    if run_dir is not None:
        path = Path(run_dir)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            what = "is a file" if not path.is_dir() else "already exists and is not empty"
            raise DlcliError(
                f"run directory {path} {what}; choose another --run-dir (dlcli never "
                "overwrites a run)"
            )
    else:
        base = Path(root)
        path = stamped_path(base, cfg.name)
        # the schema keeps names to [A-Za-z0-9._-]; this holds even for a config built in code
        if path.resolve().parent != base.resolve():
            raise DlcliError(f"name {cfg.name!r} would put the run outside {base}/; use a plain "
                             "name, or --run-dir to choose the place")
    try:
        (path / "checkpoints").mkdir(parents=True, exist_ok=True)
        probe = path / ".dlcli-write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as e:
        raise DlcliError(f"cannot write the run directory {path}: {e.strerror or e}") from None
    return path


def _remove_if_empty(path: Path) -> None:
    """Undo make_run_dir when nothing but the first run.json was written (an error before
    training began)."""
    try:
        (path / "run.json").unlink(missing_ok=True)
        (path / "checkpoints").rmdir()
        path.rmdir()
    except OSError:
        pass  # something is in it: keep it


class Trainer:
    """Trains the model a Config describes.

    Example:
        result = Trainer(load_config("configs/fashion_mnist_mlp.yaml", [])).fit()
    """

    def __init__(
        self,
        cfg: Config,
        run_dir: str | os.PathLike[str] | None = None,
        reporter: Reporter | None = None,
        data_dir: str | None = None,
        download_progress: Callable[[int, int | None], None] | None = None,
        resume: Checkpoint | None = None,
        resume_best: Checkpoint | None = None,
        init_from: dict[str, Any] | None = None,
        hooks: list[Any] | None = None,
        comm: Communicator | None = None,
    ) -> None:
        """Args beyond the config: init_from = {"checkpoint": PATH, "layers": [...] | None,
        "strict": bool} starts from another run's weights (the config's model.init_from by
        default); ignored when resuming. hooks: objects with any of on_train_begin(trainer),
        on_epoch_end(trainer, epoch, logs), on_train_end(trainer, status) (plots, trackers);
        one that fails is reported once and dropped, never stopping training. comm: the
        processes to train with (dlcli.distributed; default this one alone); under MPI only
        rank 0 reports, calls the hooks and writes the run directory."""
        self.cfg = cfg
        self.comm = comm or Communicator()
        self.hooks = list(hooks or [])
        self.started_at = time.time()
        self.reporter = (reporter or NullReporter()) if self.comm.is_root else NullReporter()
        self.loss = LossSpec.from_config(cfg.loss)
        self.xp = xp_for(cfg.device)
        if cfg.device == "cpu":
            tune_host_allocator()  # steps stop page-faulting their temporaries back in
            # big numpy passes and GEMMs on every core (under MPI, this rank's share of them)
            set_num_threads(self.comm.cpu_threads())
        self._notes: list[str] = []  # said in train.log once it is open
        self._notes += self.comm.use_device(self.xp)  # a GPU: the one of this local rank
        # shapes are checked here, before any data is read; then the run directory is made
        # and probed, so an unwritable place fails before the data is loaded
        self.model: Sequential = build_model(cfg)
        if init_from is None and getattr(cfg.model, "init_from", None) is not None:
            init_from = cfg.model.init_from.model_dump()
        if init_from is not None and resume is None:
            self._init_from(init_from)
        self.model.to(self.xp)
        self.run_dir = self.comm.on_root(lambda: make_run_dir(cfg, run_dir))
        self._stop_requested = False
        self._stop_after: str | None = None  # set by a hook through stop_after_epoch
        self._stop_signal: int = signal.SIGINT
        # a step reads nothing from the device; the loss sums are read at the end of an epoch,
        # at a stop, and for the progress bar and the divergence check at most this often
        self.read_every = 0.5  # seconds
        try:
            # from here a run killed (even while its data loads) shows in `dlcli runs`
            self._write_status("running")
            # under MPI: an error on any rank (data, checkpoint) is raised on all of them
            self.comm.agree(lambda: self._prepare(data_dir, download_progress, resume,
                                                  resume_best))
            self._join_ranks()
        except BaseException:
            if self.comm.is_root:
                _remove_if_empty(self.run_dir)
            raise

    def _prepare(self, data_dir: str | None, download_progress: Any, resume: Checkpoint | None,
                 resume_best: Checkpoint | None) -> None:
        """Data, optimizer, schedule, callbacks, and the state of a resumed run."""
        cfg = self.cfg
        self.splits: Splits = load_splits(
            cfg.data, cfg.seed, tuple(cfg.model.input_shape), data_dir=data_dir,
            progress=download_progress, task=self.loss.task,
        )
        units = int(self.model.output_shape[-1])
        for split, y in (("train", self.splits.y_train), ("validation", self.splits.y_val),
                         ("test", self.splits.y_test)):
            if y is not None:
                check_labels(y, units, self.loss.name, split=split)
        self.n_classes = self.loss.n_classes(units)
        self.metrics = list(cfg.metrics)
        self.optimizer = build_optimizer(cfg.optimizer.model_dump(), self.model.trainable_weights)
        self.base_lr = self.optimizer.learning_rate
        t = cfg.training
        self.epochs = t.epochs
        sched = t.lr_schedule.model_dump() if t.lr_schedule is not None else None
        self.schedule = make_schedule(sched, self.base_lr, self.epochs)
        self.has_val = self.splits.x_val is not None
        self.batches = Batches(self.splits.x_train, self.splits.y_train, self.xp,
                               t.device_data_fraction)
        note = device_data_note(self.batches)
        if note is not None:
            self._notes.append(note)
        self.early = None
        if t.early_stopping is not None:
            self.early = EarlyStopping(**t.early_stopping.model_dump())
            # checkpoints/best follows the quantity early stopping watches
            self.best = Monitor(self.early.monitor, self.early.mode, self.early.min_delta)
        else:
            name = "val_loss" if self.has_val else "loss"
            self.best = Monitor(name, infer_mode(name) or "min")
        self.best_epoch: int | None = None
        self.shuffle_rng = np.random.default_rng([cfg.seed, 1])
        self.history: list[dict[str, float]] = []
        self.start_epoch = 0
        self.best_weights: dict[str, np.ndarray] | None = None
        self.position: Position | None = None  # set by an interrupted epoch or a resume
        if resume is not None:
            self._restore(resume)
            if self.start_epoch >= self.epochs and self.position is None:
                raise DlcliError(
                    f"nothing to resume: the checkpoint has trained {self.start_epoch} of "
                    f"{self.epochs} epochs; pass --epochs N with N > {self.start_epoch} to train on"
                )
        if resume is not None and self.best_epoch is not None:
            # the best epoch came before the resume: carry its weights and checkpoint over,
            # so restore_best_weights and checkpoints/best still refer to it
            if (resume_best is not None
                    and (resume_best.meta.get("best") or {}).get("epoch") == self.best_epoch):
                self.best_weights = resume_best.weights
                if self.comm.is_root:
                    save_checkpoint(self.run_dir / "checkpoints" / "best", resume_best)
            else:  # its weights are gone (missing or unreadable best.npz): track anew
                self._notes.append(
                    f"the best checkpoint of epoch {self.best_epoch + 1} is not available; "
                    "the best epoch is tracked anew from here")
                self.best = Monitor(self.best.monitor, self.best.mode, self.best.min_delta)
                self.best_epoch = None

    def _join_ranks(self) -> None:
        """Under MPI: each rank's share of every batch, rank 0's weights on every rank,
        synchronized BatchNorm wired to the all-reduce, and dropout and augmentation drawing
        differently on each rank (as its data differs). One process: nothing changes."""
        comm, bs = self.comm, self.cfg.data.batch_size
        self.batches.shard = comm.sharder(len(self.splits.x_train), bs)
        comm.broadcast_weights(self.model)
        comm.attach(self.model)
        self._notes += comm.notes(self.model, bs)
        if comm.rank and self.model.rng is not None:
            self.model.set_rng(np.random.default_rng(
                [self.cfg.seed, 2, comm.rank, self.optimizer.iterations]))

    def _init_from(self, spec: dict[str, Any]) -> None:
        from dlcli.io.checkpoint import load_checkpoint
        from dlcli.train.transfer import init_from

        path = spec["checkpoint"]
        report = init_from(self.model, load_checkpoint(path).weights, spec.get("layers"),
                           bool(spec.get("strict")))
        self._notes.append(report.summary(str(path)))
        self._notes.extend(f"init_from: not taken: {p}" for p in report.problems)

    # -- the loop -------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        """Train for the configured epochs (or until early stopping); return the history."""
        self._write_static_files()
        s = self.splits
        self._log(
            f"training {self.cfg.name}: {len(s.x_train):,} train, "
            f"{0 if s.x_val is None else len(s.x_val):,} validation, "
            f"{0 if s.x_test is None else len(s.x_test):,} test samples; "
            f"{self.model.count_params():,} parameters; run directory {self.run_dir}"
        )
        for note in self._notes:
            self._log(note)
        self._write_status("running")
        self._call_hooks("on_train_begin")
        previous = self._install_signals()
        try:
            # a non-finite loss is reported by the loop itself; numpy's warnings are only noise
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                stopped_epoch = self._run_epochs()
        except Interrupted as e:
            self._log(str(e), echo=False)  # the CLI prints it
            self._end("interrupted", str(e))
            raise
        except DlcliError as e:
            self._log(f"error: {e}", echo=False)
            self._end("failed", str(e))
            raise
        except BaseException as e:
            self._log(f"stopped by {type(e).__name__}: {e}", echo=False)
            self._end("interrupted" if isinstance(e, KeyboardInterrupt) else "failed",
                      f"{type(e).__name__}: {e}")
            raise
        finally:
            self._restore_signals(previous)
        self.optimizer.finalize()  # with use_ema the model keeps the averages (Keras)
        if self.early and self.early.restore_best_weights and self.best_weights is not None:
            self.model.set_weights(self.best_weights)
            self._log(
                f"restored the best weights (epoch {self.best_epoch + 1}, "
                f"{self.best.monitor} {self.best.best:.4f})"
            )
        test_metrics = None
        if s.x_test is not None:
            test_metrics = self.comm.on_root(lambda: self.evaluate(s.x_test, s.y_test))
            self._log("test: " + _fmt(test_metrics))
        self._atomic_write("metrics.json", json.dumps(strict(
            {"test": test_metrics, "best_epoch": self._best_epoch_1(),
             "monitor": self.best.monitor,
             "best": self.best.best, "epochs_run": len(self.history),
             "stopped_epoch": stopped_epoch}), indent=2) + "\n")
        self.test_metrics = test_metrics
        self._end("finished" if not stopped_epoch else self._stop_after or "stopped early")
        return TrainResult(
            run_dir=self.run_dir, history=self.history, test_metrics=test_metrics,
            stopped_epoch=stopped_epoch,
            best_epoch=self._best_epoch_1(),
            best_value=self.best.best, monitor=self.best.monitor,
        )

    def _run_epochs(self) -> int | None:
        """The epoch loop: checkpoints, schedule, early stopping. The stopped epoch, or None."""
        for epoch in range(self.start_epoch, self.epochs):
            logs = self._train_epoch(epoch)
            if logs is None:  # stopped inside the epoch: save where, to continue from there
                self._save("last", epoch, interrupted=True)
                p = self.position
                raise Interrupted(
                    f"interrupted by {signal.Signals(self._stop_signal).name} during epoch "
                    f"{epoch + 1} after batch {p.batch} of {self._n_batches}; last checkpoint "
                    f"written to {self.run_dir / 'checkpoints' / 'last.npz'} (--resume "
                    f"continues from that batch)", self._stop_signal,
                )
            self.history.append(logs)
            self._write_history()
            self._log(self._epoch_line(epoch, logs))
            self.reporter.epoch_end(epoch, self.epochs, logs)
            self._write_status("running")
            self._call_hooks("on_epoch_end", epoch, logs)
            self._stop_after = self.comm.bcast(self._stop_after)  # the hooks ran on rank 0
            if self.best.improved(self.best.value(logs)):
                self.best_epoch = epoch
                with self.optimizer.averaged():
                    self.best_weights = self.model.get_weights()
                self._save("best", epoch + 1)
            self.schedule.on_epoch_end(epoch, logs)
            stop = self.early.on_epoch_end(epoch, logs) if self.early else False
            # a signal that reached any rank stops them all here
            signum = self.comm.agree_stop(self._stop_signal if self._stop_requested else 0)
            self._stop_signal = signum or self._stop_signal
            halt = bool(signum) and epoch + 1 < self.epochs and not stop
            self._save("last", epoch + 1, interrupted=halt)
            if halt:
                raise Interrupted(
                    f"interrupted by {signal.Signals(self._stop_signal).name} after epoch "
                    f"{epoch + 1}; last checkpoint written to "
                    f"{self.run_dir / 'checkpoints' / 'last.npz'}", self._stop_signal,
                )
            if self._stop_after is not None and epoch + 1 < self.epochs:
                self._log(f"{self._stop_after} after epoch {epoch + 1}")
                return epoch + 1
            if stop:
                self._log(
                    f"early stopping after epoch {epoch + 1}: {self.early.monitor} did not "
                    f"improve by {self.early.min_delta} for {self.early.patience} epochs"
                )
                return epoch + 1
        return None

    def _best_epoch_1(self) -> int | None:
        return None if self.best_epoch is None else self.best_epoch + 1

    @property
    def _n_batches(self) -> int:
        return math.ceil(len(self.splits.x_train) / self.cfg.data.batch_size)

    def _train_epoch(self, epoch: int) -> dict[str, float] | None:
        """One epoch (continued from self.position when it stopped inside this epoch); its logs,
        or None when a stop request came before its last batch (self.position says where).

        A step reads nothing back from the device: the loss and metric sums stay there and are
        read at the end, at a stop, and at most every `read_every` seconds for the progress
        bar and the divergence check."""
        s, xp = self.splits, self.xp
        lr = self.schedule.lr_at(epoch)
        self.optimizer.learning_rate = lr
        n = len(s.x_train)
        bs = self.cfg.data.batch_size
        n_batches = self._n_batches
        metrics = self._running_metrics()
        p, self.position = self.position, None
        if p is not None and p.epoch == epoch:
            order, first, seen, before = p.order, p.batch, p.seen, p.seconds
            sums = LossSums(xp, n_batches, p.data_total, p.reg_total, checked=first)
            self._continue_metrics(metrics, p)
        else:
            order = self.shuffle_rng.permutation(n) if self.cfg.data.shuffle else np.arange(n)
            first, seen, before = 0, 0, 0.0
            sums = LossSums(xp, n_batches)
        self.batches.epoch(order)
        self.reporter.epoch_begin(epoch, self.epochs, n_batches)
        start = time.perf_counter() - before
        next_read, shown = time.perf_counter(), 0.0  # the first batch is read: a true first value
        begin = (first, seen)
        for b in range(first, n_batches):
            if self.comm.stop_before_batch(self._stop_requested):
                # under MPI the sums of every rank, so rank 0's checkpoint holds them all
                data_total, reg_total, seen = self.comm.reduce_epoch(sums, metrics, epoch, b,
                                                                     seen, begin)
                flat, kept = metrics.state()
                self.position = Position(
                    epoch, b, order, kept if kept is not None else np.zeros((seen, 0)),
                    data_total, reg_total, seen, time.perf_counter() - start, flat)
                return None
            x, y = self.batches.batch(b, bs)  # under MPI, this rank's share of the batch
            k = len(y)
            data_loss, out = self.loss(self.model, Tensor(x), y, training=True)
            reg = self.model.regularization_loss()
            loss = data_loss if reg is None else data_loss + reg
            # under MPI from k / (the batch's size), so the ranks' gradients add up to its mean's
            loss.backward(self.comm.loss_seed(loss.data, k, min(bs, n - b * bs)))
            now = time.perf_counter()
            signum, read = self.comm.reduce_gradients(  # one process: nothing is done
                self.optimizer.params, self._stop_signal if self._stop_requested else 0,
                now >= next_read)
            self._stop_signal = signum or self._stop_signal
            self.optimizer.step()
            self.optimizer.zero_grad()
            sums.add(b, k, data_loss.data, None if reg is None else reg.data)
            metrics.update(y, out)
            seen += k
            if read:  # under MPI every rank reads at this batch, so the check is the same
                data_total, reg_total, n_seen = self.comm.read_loss(sums, epoch, b + 1, seen)
                shown = (data_total + reg_total) / n_seen
                next_read = now + self.read_every
            self.reporter.batch_end(b, {"loss": shown}, seen)
        # every batch is done: a stop request from here on ends the epoch properly first
        data_total, reg_total, seen = self.comm.reduce_epoch(sums, metrics, epoch, n_batches,
                                                             seen, begin)
        total = (data_total + reg_total) / seen if seen else 0.0
        logs: dict[str, float] = {"epoch": epoch + 1, "lr": lr, "loss": total,
                                  "data_loss": data_total / max(seen, 1),
                                  "regularization": reg_total / max(seen, 1)}
        logs.update(metrics.result(s.y_train[order] if metrics.gather else None))
        if self.has_val:  # under MPI rank 0 evaluates it all and tells the others
            logs.update(self.comm.on_root(lambda: {
                f"val_{k}": v for k, v in self.evaluate(s.x_val, s.y_val).items()}))
        logs["seconds"] = time.perf_counter() - start
        return logs

    def _running_metrics(self) -> RunningMetrics:
        return RunningMetrics(self.metrics, self.loss.task, self.n_classes,
                              tuple(self.model.output_shape))

    def _continue_metrics(self, metrics: RunningMetrics, p: Position) -> None:
        """The metric sums of an epoch continued from a checkpoint's position."""
        if p.sums is not None:
            metrics.load(p.sums, p.outputs if metrics.gather else None, p.seen, self.xp)
        elif p.seen:  # a checkpoint of an older dlcli kept every output instead of sums
            y = self.splits.y_train[p.order[:p.seen]]
            metrics.update(self.xp.asarray(y), self.xp.asarray(p.outputs))

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """Loss (data loss plus regularization, as in training) and metrics at inference
        (with the moving averages of the weights when the optimizer keeps them)."""
        with self.optimizer.averaged():
            logs, _ = evaluate_model(self.model, self.loss, x, y, self.cfg.data.batch_size,
                                     self.metrics, self.n_classes)
        return logs

    # -- persistence ----------------------------------------------------------------------
    def checkpoint(self, epoch: int, interrupted: bool = False) -> Checkpoint:
        """Everything needed to evaluate or resume after `epoch` completed epochs (and, after an
        interruption inside the next epoch, the position there)."""
        s = self.splits
        meta = {
            "epoch": epoch,
            "interrupted": interrupted,
            "task": self.loss.task,
            "class_names": s.class_names,
            "preprocessing": s.preprocessor.to_dict(),
            "rng": {"model": _rng_state(self.model.rng), "shuffle": _rng_state(self.shuffle_rng),
                    # layers given their own `seed` draw from their own generators
                    "layers": {layer.name: _rng_state(layer.rng) for layer in self.model.walk()
                               if getattr(layer, "seed", None) is not None
                               and _rng_state(getattr(layer, "rng", None)) is not None},
                    # on a GPU: the counter-based generators of dropout masks and noise
                    **_device_rng_states(self.model)},
            "optimizer": {"type": type(self.optimizer).__name__, "learning_rate":
                          self.optimizer.learning_rate, "iterations": self.optimizer.iterations},
            "schedule": self.schedule.state_dict(),
            "early_stopping": self.early.state_dict() if self.early else None,
            "best": {**self.best.state_dict(), "epoch": self.best_epoch},
            "history": self.history,
        }
        state: dict[str, np.ndarray] = {}
        if interrupted and self.position is not None:
            meta["position"] = self.position.meta()
            state = self.position.arrays()
        optimizer = self.optimizer.state_dict()  # with use_ema: the trained values too
        with self.optimizer.averaged():  # what evaluation and export use
            weights = self.model.get_weights()
        return Checkpoint(
            config=self.cfg.model_dump(mode="json"),
            weights=weights,
            optimizer=optimizer,
            meta=meta,
            state=state,
        )

    def _save(self, which: str, epoch: int, interrupted: bool = False) -> Path:
        path = self.run_dir / "checkpoints" / f"{which}.npz"
        if not self.comm.is_root:  # under MPI rank 0 alone writes the run
            return path
        try:
            return save_checkpoint(path, self.checkpoint(epoch, interrupted=interrupted))
        except OSError as e:  # a full disk (ENOSPC, EFBIG): the previous file is still whole
            raise DlcliError(f"cannot write checkpoint {path}: {e.strerror or e}; the previous "
                             f"{which}.npz (if any) is intact") from None

    def _restore(self, ckpt: Checkpoint) -> None:
        """Continue from a checkpoint: weights, optimizer, schedule, stopping and random states."""
        try:
            self.model.set_weights(ckpt.weights)
            if ckpt.optimizer:
                self.optimizer.load_state_dict(ckpt.optimizer)
        except ValueError as e:
            raise CheckpointError(
                f"cannot resume from this checkpoint with this config: {e}"
            ) from e
        meta = ckpt.meta
        self.start_epoch = ckpt.epoch
        self.history = list(meta.get("history") or [])
        try:  # states written under another config (schedule, monitor mode) do not fit
            if meta.get("schedule"):
                self.schedule.load_state_dict(meta["schedule"])
            if self.early and meta.get("early_stopping"):
                self.early.load_state_dict(meta["early_stopping"])
            if meta.get("best"):
                self.best.load_state_dict(meta["best"])
                self.best_epoch = meta["best"].get("epoch")
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(
                f"cannot resume: the checkpoint's schedule or early-stopping state does not fit "
                f"this config ({type(e).__name__}: {e}); resume with the config it ran"
            ) from e
        rng = meta.get("rng") or {}
        if rng.get("model") and self.model.rng is not None:
            self.model.rng.bit_generator.state = rng["model"]
            self.model.set_rng(self.model.rng)
        if rng.get("shuffle"):
            self.shuffle_rng.bit_generator.state = rng["shuffle"]
        own = {layer.name: layer for layer in self.model.walk()
               if getattr(layer, "seed", None) is not None}
        for name, state in (rng.get("layers") or {}).items():
            if name in own and _rng_state(getattr(own[name], "rng", None)) is not None:
                own[name].rng.bit_generator.state = state
        if self.xp is not np:  # after set_rng above, which forgets them
            _set_device_rng_states(self.model, rng.get("device"), self.xp)
        if meta.get("position"):
            try:
                self.position = Position.from_checkpoint(meta["position"], ckpt.state)
            except (KeyError, TypeError, ValueError) as e:
                raise CheckpointError(f"the checkpoint's epoch position is damaged: {e}") from e
            if (self.position.epoch != self.start_epoch
                    or len(self.position.order) != len(self.splits.x_train)
                    or not 0 <= self.position.batch <= self._n_batches):
                raise CheckpointError(
                    "the checkpoint stopped inside an epoch of other data (its position does "
                    "not fit this config's training split); resume with the config it ran"
                )
            if self.position.sums is not None:
                try:  # the sums of this config's metrics, as the epoch will continue them
                    self._continue_metrics(self._running_metrics(), self.position)
                except (TypeError, ValueError) as e:
                    raise CheckpointError(
                        f"the checkpoint's metric sums do not fit this config's metrics ({e}); "
                        "resume with the config it ran") from e
            if not self.comm.is_root:  # rank 0 carries the epoch's sums; the others add theirs
                self.position = replace(self.position, data_total=0.0, reg_total=0.0, seen=0,
                                        sums=None)

    def _write_static_files(self) -> None:
        from dlcli.nn.summary import summary_text

        self._atomic_write("config.yaml", resolved_yaml(self.cfg))
        self._atomic_write("summary.txt", summary_text(self.model))

    def _write_history(self) -> None:
        keys: list[str] = []
        for row in self.history:
            keys += [k for k in row if k not in keys]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
        w.writeheader()
        for row in self.history:
            w.writerow({k: _cell(row.get(k)) for k in keys})
        self._atomic_write("history.csv", buf.getvalue())

    def _atomic_write(self, name: str, text: str) -> None:
        if not self.comm.is_root:
            return
        path = self.run_dir / name
        tmp = path.with_name(f".{name}.tmp")
        try:
            tmp.write_text(text)
            os.replace(tmp, path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise DlcliError(f"cannot write {path}: {e.strerror or e}") from None

    # -- the run's status and the hooks ---------------------------------------------------
    def _write_status(self, status: str, error: str | None = None) -> None:
        """run.json, rewritten atomically: what `dlcli runs` shows. A run killed without a
        chance to write (SIGKILL) stays "running" here; its pid and host tell the truth."""
        import socket

        best = getattr(self, "best", None)  # None while the data is still loading
        info = {
            "status": status, "name": self.cfg.name, "pid": os.getpid(),
            "host": socket.gethostname(), "started_at": self.started_at,
            "updated_at": time.time(), "epochs": self.cfg.training.epochs,
            "epochs_done": len(getattr(self, "history", [])),
            "best_epoch": self._best_epoch_1() if best is not None else None,
            "monitor": None if best is None else best.monitor,
            "best": None if best is None else best.best,  # strict() below: inf is null
            "params": self.model.count_params(),
            "test": getattr(self, "test_metrics", None), "error": error,
        }
        try:
            self._atomic_write("run.json", json.dumps(strict(info), indent=2) + "\n")
        except DlcliError:
            if status == "running":
                raise
            # the run is ending on an error already: that error is the one to report

    def _end(self, status: str, error: str | None = None) -> None:
        self._write_status(status, error)
        self._call_hooks("on_train_end", status)

    def _call_hooks(self, event: str, *args: Any) -> None:
        if not self.comm.is_root:  # plots and trackers: once, from rank 0
            return
        for hook in list(self.hooks):
            fn = getattr(hook, event, None)
            if fn is None:
                continue
            try:
                fn(self, *args)
            except Exception as e:  # noqa: BLE001 - a plot or a tracker never stops training
                self.hooks.remove(hook)
                name = getattr(hook, "name", type(hook).__name__)
                line = f"warning: {name} failed ({type(e).__name__}: {e}); it is off for this run"
                try:
                    self._log(line)
                except DlcliError:
                    pass

    def _log(self, line: str, echo: bool = True) -> None:
        if not self.comm.is_root:
            return
        try:
            with open(self.run_dir / "train.log", "a") as f:
                f.write(time.strftime("%Y-%m-%d %H:%M:%S ") + line + "\n")
        except OSError as e:
            if echo:  # a log line about an error must not hide that error
                raise DlcliError(f"cannot write {self.run_dir / 'train.log'}: "
                                 f"{e.strerror or e}") from None
        if echo:
            self.reporter.message(line)

    def _epoch_line(self, epoch: int, logs: dict[str, float]) -> str:
        hidden = {"epoch", "seconds"}
        if not logs.get("regularization"):
            hidden |= {"data_loss", "regularization"}  # equal to loss, or zero: noise
        shown = {k: v for k, v in logs.items() if k not in hidden}
        return f"epoch {epoch + 1}/{self.epochs} - {logs['seconds']:.1f}s - " + _fmt(shown)

    # -- Ctrl-C, SIGTERM, SIGHUP: finish the batch, write the last checkpoint, exit 128+n ---
    def _install_signals(self) -> dict[int, Any] | None:
        if threading.current_thread() is not threading.main_thread():
            return None

        def handler(signum: int, frame: Any) -> None:
            if self._stop_requested:  # a second signal stops at once
                raise KeyboardInterrupt
            self.request_stop(signum)
            self.reporter.message(f"{signal.Signals(signum).name}: stopping after this batch "
                                  "(again to abort at once)")

        return {s: signal.signal(s, handler) for s in STOP_SIGNALS}

    def _restore_signals(self, previous: dict[int, Any] | None) -> None:
        for s, h in (previous or {}).items():
            signal.signal(s, h)

    def stop_after_epoch(self, status: str) -> None:
        """End training cleanly after this epoch (called by a hook from on_epoch_end, as
        Keras's `model.stop_training`); run.json then says `status`, e.g. "stopped by
        scheduler" for a sweep's trial that the scheduler stops."""
        self._stop_after = status

    def request_stop(self, signum: int = signal.SIGINT) -> None:
        """Ask the loop to stop after the current batch (what Ctrl-C does)."""
        self._stop_requested = True
        self._stop_signal = signum


def _device_rng_states(model: Sequential) -> dict[str, Any]:
    """{"device": {layer name: CounterRNG state}} for the layers that drew on a device, or {}."""
    states = {layer.name: layer.device_rng.state for layer in model.walk()
              if getattr(layer, "device_rng", None) is not None}
    return {"device": states} if states else {}


def _set_device_rng_states(model: Sequential, states: Any, xp: Any) -> None:
    from dlcli.core.random import CounterRNG

    if not states:
        return
    if not isinstance(states, dict):
        raise CheckpointError(f"the checkpoint's rng.device must be an object, got {states!r:.60}")
    layers = {layer.name: layer for layer in model.walk() if hasattr(layer, "device_rng")}
    for name, state in states.items():
        if name in layers:
            try:
                layers[name].device_rng = CounterRNG.from_state(state, xp)
            except ValueError as e:
                raise CheckpointError(f"the checkpoint's rng.device[{name!r}]: {e}") from e


def _rng_state(rng: Any) -> Any:
    if rng is None or not hasattr(rng, "bit_generator"):
        return None
    return rng.bit_generator.state


def _fmt(logs: dict[str, Any]) -> str:
    return " - ".join(
        f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in logs.items()
    )


def _cell(v: Any) -> Any:
    return repr(v) if isinstance(v, float) else ("" if v is None else v)

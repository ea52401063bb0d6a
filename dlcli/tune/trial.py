"""One trial of a sweep: an ordinary dlcli run whose epochs Ray Tune receives as results.

Imported only in Ray's processes and by the sweep driver, after ray is known to be installed.

Tune's class API rather than a function trainable: the trainer runs in a thread, and a trainer
hook hands each epoch's logs to step() and waits there for Tune's next call. When the scheduler
stops the trial, Tune calls cleanup() (or reset_config() on a reused actor), which lets the
hook return with the request to stop and waits until the run has ended cleanly: its checkpoints,
metrics.json and run.json ("stopped by scheduler") are written before the actor exits. (A
function trainable's thread is ended with its actor, in the middle of those writes.)
"""

from __future__ import annotations

import os
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.result import RESULT_DUPLICATE

from dlcli.errors import DlcliError
from dlcli.tune.space import SearchSpace

STOPPED_BY_SCHEDULER = "stopped by scheduler"


@dataclass(frozen=True)
class TrialSpec:
    """What every trial of a sweep shares (passed with tune.with_parameters)."""

    config_text: str
    config_filename: str | None
    overrides: tuple[str, ...]  # the sweep's --set overrides
    space: SearchSpace
    sweep_dir: str  # absolute
    cwd: str  # the driver's working directory: relative data paths are read from there
    threads: int  # dlcli's compute threads per trial
    data_dir: str | None = None


class _EpochBridge:
    """Trainer hook: hands each epoch's logs to step() and waits for Tune's next request."""

    name = "Ray Tune reporting"

    def __init__(self) -> None:
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.go = threading.Semaphore(0)
        self.stop = False

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, Any]) -> None:
        self.events.put(("epoch", dict(logs)))
        self.go.acquire()  # released by the next step(), or by the end of the trial
        if self.stop:
            trainer.stop_after_epoch(STOPPED_BY_SCHEDULER)


class DlcliTrial(tune.Trainable):
    """A Tune trainable that trains one dlcli run per trial, in <sweep>/<trial name>/."""

    def setup(self, config: dict[str, Any], spec: TrialSpec) -> None:
        self.spec = spec
        self._start(config)

    def _start(self, params: dict[str, Any]) -> None:
        if os.path.isdir(self.spec.cwd):  # Tune moved it to its own trial folder
            os.chdir(self.spec.cwd)
        self.bridge = _EpochBridge()
        self.waiting = False  # whether the trainer waits in the hook for step()
        self.thread = threading.Thread(target=self._train, args=(dict(params),), daemon=True,
                                       name="dlcli-trial")
        self.thread.start()

    def _train(self, params: dict[str, Any]) -> None:
        """The run, from config to end status; its outcome goes to step() as the last event."""
        try:
            from dlcli.core import set_num_threads
            from dlcli.nn.from_config import model_issues
            from dlcli.train.trainer import Trainer
            from dlcli.tune.space import checked_config

            s = self.spec
            cfg = checked_config(s.space, s.config_text, list(s.overrides), params,
                                 s.config_filename, model_issues)
            trainer = Trainer(cfg, run_dir=Path(s.sweep_dir) / self.trial_name,
                              data_dir=s.data_dir, hooks=[self.bridge])
            set_num_threads(s.threads)  # after the trainer, which takes every core
            trainer.fit()
            self.bridge.events.put(("end", None))
        except DlcliError as err:  # a diverged loss, a config the sampled values break
            self.bridge.events.put(("end", err))
        except BaseException as err:  # noqa: BLE001 - a bug: Tune shows the traceback
            self.bridge.events.put(("error", err))

    def step(self) -> dict[str, Any]:
        """The next epoch's logs; at the end, Tune's marker for "done, no new result"."""
        if self.waiting:
            self.waiting = False
            self.bridge.go.release()
        kind, value = self.bridge.events.get()
        if kind == "epoch":
            self.waiting = True
            return value
        if kind == "error":
            raise value
        run_dir = Path(self.spec.sweep_dir) / self.trial_name
        if value is not None and not (run_dir / "run.json").exists():  # else run.json says
            _write_error(run_dir, value)
        return {RESULT_DUPLICATE: True}

    def _finish(self) -> None:
        """End the run (cleanly, after this epoch, if it is still training) and wait for it."""
        self.bridge.stop = True
        # released whether or not the trainer waits in the hook yet: one still in its first
        # epoch (stopped before any step) then passes the hook at once, and stops there
        self.waiting = False
        self.bridge.go.release()
        self.thread.join()

    def cleanup(self) -> None:
        self._finish()

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        """Reuse this actor for the next trial (saves starting a process)."""
        self._finish()
        self._start(new_config)
        return True


ERROR_FILE = "trial_error.txt"


def _write_error(run_dir: Path, err: BaseException) -> None:
    """Why a trial ended before its run began (a config the sampled values break, data that
    cannot be read), for the sweep's table: the trainer leaves no run directory then."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / ERROR_FILE).write_text(" ".join(str(err).split()) + "\n")
    except OSError:
        pass

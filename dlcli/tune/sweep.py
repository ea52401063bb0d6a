"""A hyperparameter sweep on Ray Tune: one dlcli run per trial, in one sweep folder.

    runs/<name>-tune-<timestamp>/
        trial-000/ ...   ordinary run directories (config.yaml, history.csv, run.json, ...)
        trials.csv       one row per trial: its values, status, epochs, best metric
        best.yaml        the best trial's resolved config, ready for `dlcli train`
        .ray/            Tune's own records of the experiment

The space is checked against the config before Ray is imported (dlcli.tune.space), so a bad
space file costs no Ray start-up.

Example:
    result = run_sweep("configs/fashion_mnist_mlp.yaml", "configs/spaces/fashion_mnist_mlp.yaml",
                       SweepOptions(trials=8))
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlcli.config.errors import closest
from dlcli.errors import DlcliError

SCHEDULERS = ("asha", "fifo")


@dataclass
class SweepOptions:
    """How a sweep runs (the `dlcli tune` options)."""

    trials: int | None = None  # samples; None: 1 for a grid-only space, else 10
    scheduler: str = "asha"
    metric: str | None = None  # None: val_loss with validation data, else loss
    mode: str | None = None  # None: inferred from the metric's name
    address: str | None = None  # an existing Ray cluster; None starts Ray here
    max_concurrent: int | None = None  # None: as many trials as there are cores
    data_dir: str | None = None
    runs_root: str = "runs"


@dataclass
class TrialRow:
    """One trial as the sweep's table shows it."""

    name: str
    values: dict[str, Any]
    status: str
    epochs: int
    best: float | None  # the best value of the sweep's metric over the trial's epochs
    run_dir: Path
    error: str | None = None


@dataclass
class SweepResult:
    sweep_dir: Path
    metric: str
    mode: str
    keys: list[str]  # the searched keys, as the space file writes them
    trials: list[TrialRow] = field(default_factory=list)
    best: TrialRow | None = None  # None when no trial reported the metric
    seconds: float = 0.0

    def failure(self) -> str | None:
        """Why there is no best trial (None when there is one)."""
        if self.best is not None:
            return None
        errors = [row.error for row in self.trials if row.error]
        return (f"no trial reported {self.metric}; see {self.sweep_dir}" +
                (f"; the first error: {errors[0]}" if errors else ""))


def prepare(config: str, space_file: str, overrides: tuple[str, ...] | list[str],
            options: SweepOptions) -> tuple[Any, Any, str, str, str]:
    """Check everything that can be checked without Ray: the config, the space, the metric.

    Returns (config, space, config text, metric, mode).

    Raises:
        ConfigError: a bad config or space file; DlcliError: a metric the runs do not log.
    """
    from dlcli.config import load_config
    from dlcli.config.load import MAX_BYTES
    from dlcli.nn.from_config import model_issues
    from dlcli.train.monitor import infer_mode
    from dlcli.tune.space import load_space

    cfg = load_config(config, list(overrides), model_check=model_issues)
    with open(config, encoding="utf-8") as f:
        text = f.read(MAX_BYTES + 1)
    space = load_space(space_file, text, list(overrides), config, model_issues)
    names = cfg.monitor_names()
    metric = options.metric or ("val_loss" if cfg.data.has_validation else "loss")
    if metric not in names:
        hint = closest(metric, names)
        why = (" (val_* names need validation data: set data.validation_split > 0)"
               if metric.startswith("val_") and not cfg.data.has_validation else "")
        raise DlcliError(f"--metric {metric!r} is not logged by these runs{why}; valid: "
                         f"{', '.join(names)}" + (f"; did you mean {hint!r}?" if hint else ""))
    mode = options.mode or infer_mode(metric)
    if mode is None:
        raise DlcliError(f"cannot infer whether {metric!r} should go down or up; give --mode "
                         "min or --mode max")
    return cfg, space, text, metric, mode


def run_sweep(config: str, space_file: str, options: SweepOptions,
              overrides: tuple[str, ...] | list[str] = (),
              on_trial: Callable[[str], None] | None = None) -> SweepResult:
    """Run the sweep; return its trials (in trial order) and the best, written as best.yaml.

    Args:
        config: the base config file.
        space_file: the search space (see dlcli.tune.space).
        options: trials, scheduler, metric, mode, Ray address, concurrency.
        overrides: --set KEY=VALUE for the base config.
        on_trial: called with one line as each trial ends.

    Raises:
        ConfigError / DlcliError: bad inputs (before Ray starts); MissingExtraError: ray[tune]
        is not installed. A sweep whose trials all failed returns best=None (see failure()).
    """
    from dlcli.extras import require

    cfg, space, text, metric, mode = prepare(config, space_file, overrides, options)
    if options.scheduler not in SCHEDULERS:
        raise DlcliError(f"unknown scheduler {options.scheduler!r}; valid: {', '.join(SCHEDULERS)}")
    require("ray.tune", "tune", "dlcli tune")
    import ray

    start = time.perf_counter()
    own_ray = not ray.is_initialized()
    if own_ray:
        _start_ray(ray, options.address)
    try:
        sweep_dir = _make_sweep_dir(cfg.name, options.runs_root)
        results = _fit(cfg, space, text, config, list(overrides), metric, mode, sweep_dir,
                       options, on_trial)
    finally:
        if own_ray:
            ray.shutdown()
    out = SweepResult(sweep_dir, metric, mode, [p.key for p in space.params])
    out.trials = [_row(r, space, metric, mode, sweep_dir) for r in results]
    out.trials.sort(key=lambda row: (len(row.name), row.name))  # trial-999 before trial-1000
    out.seconds = time.perf_counter() - start
    _write_csv(sweep_dir / "trials.csv", out)
    scored = [row for row in out.trials if row.best is not None and math.isfinite(row.best)]
    if scored:
        sign = 1.0 if mode == "min" else -1.0
        out.best = min(scored, key=lambda row: sign * row.best)
        _write_best(out.best, sweep_dir / "best.yaml")
    return out


# -- Ray ---------------------------------------------------------------------------------------
def _start_ray(ray: Any, address: str | None) -> None:
    """Join the cluster at address, or start Ray here on the cores this process may use."""
    quiet = {"include_dashboard": False, "logging_level": logging.ERROR,
             "log_to_driver": False, "configure_logging": True}
    try:
        if address:
            ray.init(address=address, **quiet)
        else:
            ray.init(num_cpus=_cores(), **quiet)
    except (ConnectionError, ValueError, RuntimeError) as err:
        where = f"the Ray cluster at {address}" if address else "Ray"
        raise DlcliError(f"cannot start {where}: {' '.join(str(err).split())}") from None


def _cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _fit(cfg: Any, space: Any, text: str, config: str, overrides: list[str], metric: str,
         mode: str, sweep_dir: Path, options: SweepOptions,
         on_trial: Callable[[str], None] | None) -> list[Any]:
    import ray
    from ray import tune
    from ray.tune.search import BasicVariantGenerator

    from dlcli.tune.trial import DlcliTrial, TrialSpec

    samples = options.trials or (1 if space.only_grid else 10)
    n_trials = samples * space.grid_size
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    node_cpus = max([int(n.get("Resources", {}).get("CPU", 0)) for n in ray.nodes()
                     if n.get("Alive")] or [cpus])
    concurrent = min(options.max_concurrent or cpus, n_trials)
    threads = max(1, min(node_cpus, cpus // concurrent))  # no trial oversubscribes its node
    spec = TrialSpec(config_text=text, config_filename=config, overrides=tuple(overrides),
                     space=space, sweep_dir=str(sweep_dir.resolve()), cwd=os.getcwd(),
                     threads=threads, data_dir=options.data_dir)
    resources = {"cpu": threads, "gpu": 1 if cfg.device == "gpu" else 0}
    trainable = tune.with_resources(tune.with_parameters(DlcliTrial, spec=spec), resources)
    epochs = max([cfg.training.epochs, *(v for p in space.params
                                         if p.path == ("training", "epochs")
                                         for _, v, _ in p.candidates())])
    if options.scheduler == "asha":
        scheduler = tune.schedulers.ASHAScheduler(time_attr="training_iteration", max_t=epochs,
                                                  grace_period=1, reduction_factor=2)
    else:
        scheduler = tune.schedulers.FIFOScheduler()
    callbacks = [_trial_lines(on_trial, metric)]
    if hasattr(tune, "RunConfig"):
        configs: Any = tune
    else:  # Ray before 2.10 has them in ray.train only
        from ray import train as configs
    tuner = tune.Tuner(
        trainable,
        param_space={p.key: p.tune_domain(tune) for p in space.params},
        tune_config=tune.TuneConfig(metric=metric, mode=mode, scheduler=scheduler,
                                    # samples drawn from the config's seed: a sweep repeats
                                    search_alg=BasicVariantGenerator(random_state=cfg.seed),
                                    num_samples=samples, max_concurrent_trials=concurrent,
                                    reuse_actors=True, trial_name_creator=_trial_name,
                                    trial_dirname_creator=_trial_name),
        run_config=configs.RunConfig(
            name=".ray", storage_path=str(sweep_dir.resolve()), verbose=0, callbacks=callbacks,
            failure_config=configs.FailureConfig(max_failures=0),
            # each run keeps its own checkpoints; Tune needs none
            checkpoint_config=configs.CheckpointConfig(checkpoint_at_end=False)),
    )
    # Tune's newer console output prints its header whatever the verbosity; the older
    # engine honours verbose=0, and dlcli prints its own lines and table
    previous = os.environ.get("RAY_AIR_NEW_OUTPUT")
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    try:
        grid = tuner.fit()
    finally:
        if previous is None:
            os.environ.pop("RAY_AIR_NEW_OUTPUT", None)
        else:
            os.environ["RAY_AIR_NEW_OUTPUT"] = previous
    return [grid[i] for i in range(len(grid))]


def _trial_name(trial: Any) -> str:
    """trial-000, trial-001, ... (Tune's trial ids end in the trial's index)."""
    index = trial.trial_id.rsplit("_", 1)[-1]
    return f"trial-{int(index):03d}" if index.isdigit() else f"trial-{trial.trial_id}"


def _trial_lines(report: Callable[[str], None] | None, metric: str) -> Any:
    """Tune's per-trial printer, replaced by one line per ended trial (or by nothing)."""
    from ray.tune.progress_reporter import TrialProgressCallback

    class TrialLines(TrialProgressCallback):
        # being one, it keeps Tune from adding its own, which prints whatever the verbosity
        def on_trial_result(self, *args: Any, **kwargs: Any) -> None:
            pass

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any
                              ) -> None:
            result = trial.last_result or {}
            value, epochs = result.get(metric), result.get("training_iteration", 0)
            if report is None:
                return
            if not isinstance(value, int | float):
                report(f"{_trial_name(trial)} ended without a result")
                return
            report(f"{_trial_name(trial)} ended after {epochs} epoch"
                   f"{'s' if epochs != 1 else ''}: last {metric} {value:.4g}")

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any
                           ) -> None:
            if report is not None:
                report(f"{_trial_name(trial)} failed with an error")

    return TrialLines(metric=metric)


# -- results -----------------------------------------------------------------------------------
def _make_sweep_dir(name: str, root: str) -> Path:
    from dlcli.train.trainer import stamped_path

    path = stamped_path(Path(root), f"{name}-tune")
    try:
        path.mkdir(parents=True)
    except OSError as e:
        raise DlcliError(f"cannot make the sweep folder {path}: {e.strerror or e}") from None
    return path


def _row(result: Any, space: Any, metric: str, mode: str, sweep_dir: Path) -> TrialRow:
    """A trial's row, from its run directory (the truth about the run) and Tune's result."""
    from dlcli.runs.index import load_run
    from dlcli.tune.trial import ERROR_FILE

    run_dir = sweep_dir / Path(result.path).name  # Tune's folder is named as the trial
    values = {p.key: result.config.get(p.key) for p in space.params}
    best = _best_of(result, metric, mode)
    error = None
    if (run_dir / "run.json").exists():
        info = load_run(run_dir)
        status, epochs, error = info.status, info.epochs_done or 0, info.error
    else:
        status, epochs = "failed", 0
        if (run_dir / ERROR_FILE).exists():
            error = (run_dir / ERROR_FILE).read_text().strip()
    if result.error is not None:
        status, error = "error", error or " ".join(str(result.error).split())[:300]
    return TrialRow(run_dir.name, values, status, epochs, best, run_dir, error)


def _best_of(result: Any, metric: str, mode: str) -> float | None:
    frame = result.metrics_dataframe
    if frame is None or metric not in frame:
        return None
    values = [float(v) for v in frame[metric] if isinstance(v, int | float) and math.isfinite(v)]
    if not values:
        return None
    return min(values) if mode == "min" else max(values)


def _write_csv(path: Path, result: SweepResult) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["trial", *result.keys, "status", "epochs", f"best_{result.metric}", "run_dir",
                "error"])
    for row in result.trials:
        w.writerow([row.name, *(_cell(row.values.get(k)) for k in result.keys), row.status,
                    row.epochs, "" if row.best is None else repr(row.best), row.run_dir.name,
                    row.error or ""])
    path.write_text(buf.getvalue())


def _cell(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _write_best(row: TrialRow, path: Path) -> None:
    """The best trial's resolved config as best.yaml, checked to load as a config."""
    from dlcli.config import load_config
    from dlcli.nn.from_config import model_issues

    text = (row.run_dir / "config.yaml").read_text()
    header = f"# the best trial of this sweep: {row.name}\n"
    path.write_text(header + text)
    load_config(path, model_check=model_issues)  # ready for `dlcli train`

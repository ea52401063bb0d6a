"""MLflow tracking (mlflow-skinny is enough for a tracking server): a trainer hook.

One MLflow run per dlcli run, through an explicit MlflowClient (never the fluent API's global
active run): the resolved config as params, metrics per epoch (step = epoch number), test
metrics, the checkpoint and config.yaml as artifacts, and the end status.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dlcli.extras import require
from dlcli.track import TrackerError, as_text, epoch_scalars, is_finite, one_line, run_params

# dlcli's end status -> MLflow's RunStatus
STATUS = {"finished": "FINISHED", "stopped early": "FINISHED", "interrupted": "KILLED",
          "stopped by scheduler": "KILLED", "failed": "FAILED"}
BATCH = 100  # MLflow's limit of params per log_batch call


class MlflowTracker:
    """Logs a run to MLflow: params, metrics per epoch, artifacts, tags and the end status.

    Args:
        tracking_uri: server or store; None uses MLflow's default (MLFLOW_TRACKING_URI, ...).
        experiment: experiment name, created when missing.
        run_name: MLflow run name; None uses the run directory's name.

    Example:
        Trainer(cfg, hooks=[MlflowTracker("http://mlflow:5000", "fashion")]).fit()
    """

    name = "MLflow tracking"

    def __init__(self, tracking_uri: str | None = None, experiment: str = "experiment",
                 run_name: str | None = None) -> None:
        require("mlflow", "mlflow", "logging.mlflow")
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.run_name = run_name
        self.client: Any = None
        self.run_id: str | None = None

    def on_train_begin(self, trainer: Any) -> None:
        """Find or create the experiment, start the run, log params and resumed epochs."""
        import mlflow
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

        import dlcli

        with self._failing("cannot start"):
            _check_store(self.tracking_uri or mlflow.get_tracking_uri())
            self.client = MlflowClient(tracking_uri=self.tracking_uri)
            experiment_id = self._experiment_id()
            run = self.client.create_run(
                experiment_id, run_name=self.run_name or Path(trainer.run_dir).name,
                tags={"dlcli.version": dlcli.__version__, "dlcli.config": trainer.cfg.name,
                      "dlcli.run_dir": str(Path(trainer.run_dir).resolve())},
            )
            self.run_id = run.info.run_id
            params = [Param(k, as_text(v)[:MAX_PARAM_VAL_LENGTH])
                      for k, v in run_params(trainer.cfg).items()]
            for i in range(0, len(params), BATCH):
                self.client.log_batch(self.run_id, params=params[i:i + BATCH], synchronous=True)
            for logs in trainer.history:  # epochs done before a --resume
                self._metrics(*epoch_scalars(logs))

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, Any]) -> None:
        """Every numeric log value as a metric at step = epoch number."""
        with self._failing(f"epoch {epoch + 1}"):
            self._metrics(*epoch_scalars(logs))

    def on_train_end(self, trainer: Any, status: str) -> None:
        """Test metrics, artifacts and tags; then end the run with the matching status."""
        if self.run_id is None:
            return
        with self._failing("cannot finish"):
            try:
                self._final(trainer, status)
            finally:
                run_id, self.run_id = self.run_id, None
                self.client.set_terminated(run_id, STATUS.get(status, "FAILED"))

    # -- internals ------------------------------------------------------------------------------
    def _experiment_id(self) -> str:
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(self.experiment)
        if found is None:
            try:
                return self.client.create_experiment(self.experiment)
            except MlflowException as err:  # another run created it meanwhile
                if err.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                found = self.client.get_experiment_by_name(self.experiment)
        if found.lifecycle_stage == "deleted":
            raise TrackerError(f"experiment {self.experiment!r} is deleted; restore it or set "
                               "logging.mlflow.experiment to another name")
        return found.experiment_id

    def _metrics(self, step: int, values: dict[str, float], prefix: str = "") -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(prefix + k, v, now, step) for k, v in values.items()]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics, synchronous=True)

    def _final(self, trainer: Any, status: str) -> None:
        history = trainer.history
        step = int(history[-1]["epoch"]) if history else 0
        test = {k: float(v) for k, v in (getattr(trainer, "test_metrics", None) or {}).items()
                if is_finite(v)}
        self._metrics(step, test, prefix="test_")
        run_dir = Path(trainer.run_dir)
        for name in ("best.npz", "last.npz"):
            checkpoint = run_dir / "checkpoints" / name
            if checkpoint.is_file():
                self.client.log_artifact(self.run_id, str(checkpoint), "checkpoints")
                break
        if (run_dir / "config.yaml").is_file():
            self.client.log_artifact(self.run_id, str(run_dir / "config.yaml"))
        self.client.set_tag(self.run_id, "dlcli.status", status)
        best = getattr(trainer, "best_epoch", None)
        if best is not None:
            self.client.set_tag(self.run_id, "dlcli.best_epoch", str(best + 1))

    @contextmanager
    def _failing(self, what: str) -> Iterator[None]:
        """Any error becomes one TrackerError line naming the store; a started run is ended
        as FAILED where the store still answers (the trainer drops the hook)."""
        try:
            yield
        except Exception as err:
            run_id, self.run_id = self.run_id, None
            if run_id is not None:
                try:
                    self.client.set_terminated(run_id, "FAILED")
                except Exception:  # noqa: BLE001 - the first error is the one to report
                    pass
            where = self.tracking_uri or "the default tracking URI"
            msg = str(err) if isinstance(err, TrackerError) else one_line(err)
            raise TrackerError(f"{what} ({where}): {msg}") from err


def _check_store(uri: str) -> None:
    """mlflow-skinny has no database stores, and MLflow 3's default is sqlite:///mlflow.db."""
    if uri.split(":", 1)[0] in ("sqlite", "postgresql", "mysql", "mssql"):
        try:
            import sqlalchemy  # noqa: F401
        except ImportError:
            raise TrackerError(
                f"the store {uri} needs the full mlflow package (pip install mlflow), not "
                "mlflow-skinny; or set logging.mlflow.tracking_uri to a tracking server"
            ) from None

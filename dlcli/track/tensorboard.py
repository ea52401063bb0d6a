"""TensorBoard event files through tensorboardX (no TensorFlow): a trainer hook.

Scalars per epoch (loss/train, loss/validation, accuracy/train, ..., lr), the model summary and
the resolved config as text, and at the end the hyperparameters with the final metrics.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dlcli.extras import require
from dlcli.track import TrackerError, epoch_scalars, is_finite, one_line, run_params


class TensorBoardTracker:
    """Writes a run's TensorBoard events to <run_dir>/tensorboard, or <log_dir>/<run name>.

    Example:
        Trainer(cfg, hooks=[TensorBoardTracker()]).fit()   # tensorboard --logdir runs/
    """

    name = "TensorBoard logging"

    def __init__(self, log_dir: str | None = None) -> None:
        self._tbx = require("tensorboardX", "tensorboard", "logging.tensorboard")
        self.log_dir = log_dir
        self.path: Path | None = None
        self._writer: Any = None
        self._train_names: set[str] = set()

    def on_train_begin(self, trainer: Any) -> None:
        """Open the writer; write the summary, the config and epochs a resumed run carries."""
        from dlcli.config.schema import resolved_yaml
        from dlcli.nn.summary import summary_text

        run_dir = Path(trainer.run_dir)
        self.path = run_dir / "tensorboard" if self.log_dir is None else \
            Path(self.log_dir).expanduser() / run_dir.name
        self._train_names = {"loss", *trainer.cfg.metric_names}
        with self._failing("cannot start"):
            self._writer = self._tbx.SummaryWriter(logdir=str(self.path), flush_secs=3600)
            # indented: TensorBoard renders text as markdown, and this keeps the table aligned
            self._writer.add_text("model/summary", _code(summary_text(trainer.model)), 0)
            self._writer.add_text("config", _code(resolved_yaml(trainer.cfg)), 0)
            for logs in trainer.history:  # epochs done before a --resume
                self._scalars(logs)
            self._writer.flush()

    def on_epoch_end(self, trainer: Any, epoch: int, logs: dict[str, Any]) -> None:
        """One scalar per numeric log value at step = epoch number, flushed at once."""
        with self._failing(f"epoch {epoch + 1}"):
            self._scalars(logs)
            self._writer.flush()

    def on_train_end(self, trainer: Any, status: str) -> None:
        """Test metrics, hyperparameters with the final metrics, the status; then close."""
        if self._writer is None:
            return
        with self._failing("cannot finish"):
            try:
                self._final(trainer, status)
            finally:
                writer, self._writer = self._writer, None
                writer.close()

    # -- internals ------------------------------------------------------------------------------
    def _tag(self, key: str) -> str:
        if key.startswith("val_"):
            return f"{key[4:]}/validation"
        return f"{key}/train" if key in self._train_names else key

    def _scalars(self, logs: dict[str, Any]) -> None:
        step, values = epoch_scalars(logs)
        for key, value in values.items():
            self._writer.add_scalar(self._tag(key), value, step)

    def _final(self, trainer: Any, status: str) -> None:
        from tensorboardX.summary import hparams

        history = trainer.history
        step = int(history[-1]["epoch"]) if history else 0
        final: dict[str, float] = {}
        if history:
            last = history[-1]
            names = [*self._train_names, *(f"val_{n}" for n in self._train_names)]
            final.update({k: float(last[k]) for k in names if is_finite(last.get(k))})
        for key, value in (getattr(trainer, "test_metrics", None) or {}).items():
            if is_finite(value):
                self._writer.add_scalar(f"{key}/test", float(value), step)
                final[f"test_{key}"] = float(value)
        # the hparams session goes into this run (add_hparams would open a second one)
        metrics = {f"hparam/{k}": v for k, v in final.items()}
        for tag, value in metrics.items():
            self._writer.add_scalar(tag, value, step)
        params = {k: v if v is None or isinstance(v, bool | int | float | str) else str(v)
                  for k, v in run_params(trainer.cfg).items()}
        for summary in hparams(params, metrics):
            self._writer.file_writer.add_summary(summary, step)
        self._writer.add_text("status", status, step)

    @contextmanager
    def _failing(self, what: str) -> Iterator[None]:
        """Any error becomes one TrackerError line, and the writer is closed (the hook is
        dropped by the trainer)."""
        try:
            yield
        except Exception as err:
            writer, self._writer = self._writer, None
            if writer is not None:
                try:
                    writer.close()
                except Exception:  # noqa: BLE001 - the first error is the one to report
                    pass
            raise TrackerError(f"{what} ({self.path}): {one_line(err)}") from err


def _code(text: str) -> str:
    return "\n".join("    " + line for line in text.rstrip("\n").splitlines())

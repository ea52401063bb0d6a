"""A model rebuilt from a checkpoint: its config built, then its weights set."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dlcli.config import Config, ConfigError, validate_config
from dlcli.errors import CheckpointError, DlcliError
from dlcli.nn.from_config import build_model
from dlcli.nn.sequential import Sequential

if TYPE_CHECKING:  # io stores and loads checkpoints; nn only reads what one holds
    from dlcli.io.checkpoint import Checkpoint


def restore_model(ckpt: Checkpoint) -> tuple[Config, Sequential]:
    """Rebuild (config, model) from a checkpoint, weights and BatchNorm statistics included.

    Args:
        ckpt: what dlcli.io.checkpoint.load_checkpoint read.

    Returns:
        The checkpoint's validated config and its model, built with the checkpoint's weights.

    Raises:
        CheckpointError: a config this dlcli cannot build, weights that do not fit it, or
            preprocessing statistics for another number of input features (one line each).

    Example:
        cfg, model = restore_model(load_checkpoint("runs/mlp/checkpoints/best"))
    """
    try:
        cfg = validate_config(ckpt.config)
        model = build_model(cfg)
    except ConfigError as e:
        issues = "; ".join(line.strip() for line in str(e).splitlines())
        raise _error(f"the checkpoint's config is not valid for this dlcli: {issues}") from e
    except DlcliError as e:  # a layer that refuses its arguments, shapes that do not chain
        raise _error(f"the checkpoint's config does not build a model: {e}") from e
    try:
        model.set_weights(ckpt.weights)
    except (ValueError, TypeError) as e:
        raise _error(f"the checkpoint's weights do not fit its model: {e}") from e
    prep = ckpt.meta.get("preprocessing")
    offset = prep.get("offset") if isinstance(prep, dict) else None
    features = cfg.model.input_shape[-1] if cfg.model.input_shape else 1
    if offset is not None and len(offset) not in (1, features):
        raise _error(f"the checkpoint's preprocessing has statistics for {len(offset)} "
                     f"features but its model takes {features} (the last input axis)")
    return cfg, model


def _error(message: str) -> CheckpointError:
    """A CheckpointError of one line (layer names and config text may hold newlines)."""
    return CheckpointError(" ".join(message.splitlines()))

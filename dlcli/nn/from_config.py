"""Build a Sequential model from a validated Config, turning shape problems into config errors."""

from __future__ import annotations

import re

from dlcli.config.errors import ConfigError
from dlcli.config.schema import Config
from dlcli.nn.layers import LAYERS, Layer, ShapeError
from dlcli.nn.sequential import Sequential

_LAYER_INDEX = re.compile(r"^layer (\d+) \(")


def build_model(cfg: Config) -> Sequential:
    """The config's model, built (weights drawn from cfg.seed) and shape-checked.

    Args:
        cfg: a validated Config (see dlcli.config.load_config).

    Returns:
        A built Sequential named cfg.name.

    Raises:
        ConfigError: a layer that cannot take its input shape (or other arguments a layer
            refuses), pointing at model.layers[i] and its line in the YAML file.

    Example:
        model = build_model(load_config("configs/fashion_mnist_cnn.yaml"))
        model.count_params()
    """
    source = cfg.source
    layers: list[Layer] = []
    for i, spec in enumerate(cfg.model.layers):
        try:
            layers.append(LAYERS[spec.layer_type](**spec.layer_kwargs()))
        except ValueError as err:  # the schema should catch these; the layer has the last word
            raise source.error(("model", "layers", i), f"{spec.layer_type}: {err}") from None
    model = Sequential(layers, input_shape=cfg.model.input_shape, name=cfg.name)
    try:
        model.build(cfg.seed)
    except ShapeError as err:
        message = str(err)
        match = _LAYER_INDEX.match(message)
        loc: tuple[str | int, ...] = ("model", "layers")
        if match is not None:
            loc = (*loc, int(match.group(1)))
        raise source.error(loc, message) from None
    except MemoryError:
        raise ConfigError(
            [source.issue(("model",), f"the model is too large to allocate "
                          f"(input_shape {cfg.model.input_shape})")],
            source.filename,
        ) from None
    return model


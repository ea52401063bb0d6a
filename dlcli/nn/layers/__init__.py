"""The layers, keyed by their canonical type names in LAYERS (the config's `type`)."""

from dlcli.nn.layers.activation import Activation
from dlcli.nn.layers.augment import (
    GaussianNoise,
    RandomBrightness,
    RandomContrast,
    RandomCrop,
    RandomFlip,
    RandomRotation,
    RandomTranslation,
    RandomZoom,
)
from dlcli.nn.layers.base import Layer, ShapeError
from dlcli.nn.layers.batchnorm import BatchNorm
from dlcli.nn.layers.conv import Conv2D
from dlcli.nn.layers.dense import Dense
from dlcli.nn.layers.dropout import Dropout, SpatialDropout2D
from dlcli.nn.layers.pool import AvgPool2D, GlobalAveragePooling2D, MaxPool2D
from dlcli.nn.layers.reshape import Flatten
from dlcli.nn.layers.residual import Residual

LAYERS: dict[str, type[Layer]] = {
    cls.__name__: cls
    for cls in (Dense, Conv2D, MaxPool2D, AvgPool2D, GlobalAveragePooling2D, Dropout,
                SpatialDropout2D, BatchNorm, Flatten, Activation, RandomFlip, RandomTranslation,
                RandomRotation, RandomZoom, RandomCrop, RandomContrast, RandomBrightness,
                GaussianNoise, Residual)
}

__all__ = [
    "LAYERS", "Activation", "AvgPool2D", "BatchNorm", "Conv2D", "Dense", "Dropout", "Flatten",
    "GaussianNoise", "GlobalAveragePooling2D", "Layer", "MaxPool2D", "RandomBrightness",
    "RandomContrast", "RandomCrop", "RandomFlip", "RandomRotation", "RandomTranslation",
    "RandomZoom", "Residual", "ShapeError", "SpatialDropout2D",
]  # fmt: skip

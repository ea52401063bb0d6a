"""dlcli: Keras-style declarative training from one YAML file, on its own autodiff core."""

__version__ = "0.1.0"

"""Data: built-in, synthetic or file datasets, split, checked, shaped and normalized for a model.

`load_splits(config.data, ...)` is the one entry point the trainer uses; `check_labels` checks
labels against the model's last layer once that is known; `prepare_data` reads a data file for
a trained model. Where each part lives:

    splits.py      load_splits, Splits: split, shape and normalize the configured data
    sources.py     the configured source (built-in, synthetic, files) read into a Raw
    raw.py         Raw (arrays as read) and the task names
    labels.py      the task, label encoding, check_labels
    prepare.py     prepare_data (eval --data)
    preprocess.py  Preprocessor, split_indices, finiteness and shape checks
    builtin.py, synthetic.py, files.py, idx.py, download.py: the datasets themselves
"""

from dlcli.data.builtin import BUILTINS
from dlcli.data.labels import check_labels
from dlcli.data.prepare import prepare_data
from dlcli.data.preprocess import Preprocessor
from dlcli.data.raw import CLASSIFICATION, REGRESSION
from dlcli.data.splits import Splits, load_splits
from dlcli.data.synthetic import SYNTHETIC

__all__ = [
    "BUILTINS",
    "CLASSIFICATION",
    "REGRESSION",
    "SYNTHETIC",
    "Preprocessor",
    "Splits",
    "check_labels",
    "load_splits",
    "prepare_data",
]

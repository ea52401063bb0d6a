"""Expected errors: the CLI prints their message and exits 2, without a traceback."""


class DlcliError(Exception):
    """An error the user can fix (bad config, missing file, corrupt checkpoint, bad data)."""

    exit_code = 2


class DataError(DlcliError):
    """Data that cannot be read or does not fit the model."""


class CheckpointError(DlcliError):
    """A checkpoint that is missing, corrupt or of an unknown format."""

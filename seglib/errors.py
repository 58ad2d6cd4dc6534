"""User-facing errors: the CLI prints their message on one line and exits non-zero, without a traceback."""


class SeglibError(Exception):
    """A problem the user can fix (bad input, missing data, a refused overwrite)."""


class DataError(SeglibError):
    """The data set, a split file or an input image is missing, unreadable or inconsistent."""


class ConfigError(SeglibError):
    """An unknown setting, a bad value or an impossible combination of settings."""


class CheckpointError(SeglibError):
    """A checkpoint is missing, unreadable, or refused by the safe loader."""

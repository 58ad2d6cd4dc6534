"""User-facing errors: the CLI prints their message on one line and exits non-zero, without a traceback."""



class SeglibError(Exception):
    """A problem the user can fix (bad input, missing data, a refused overwrite)."""


class DataError(SeglibError):
    """The data set, a split file or an input image is missing, unreadable or inconsistent."""


class ConfigError(SeglibError):
    """An unknown setting, a bad value or an impossible combination of settings."""


class CheckpointError(SeglibError):
    """A checkpoint is missing, unreadable, or refused by the safe loader."""


def first_line(exc: BaseException, limit: int = 160) -> str:
    """The first line of an exception's text (its type when it has none), cut at a word boundary: what a
    one-line error message quotes of a library's own error."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0] + " ..."

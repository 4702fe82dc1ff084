"""Errors a user can fix, and the exit status each one gives.

The CLI (``cnntool.cli.common.ErrorHandlingGroup``, the one place exceptions become exit codes) prints one
``error:`` line on stderr and exits with ``ExitStatus.BAD_OPTION`` (2) for a ``ConfigError`` (an option value
out of range, unknown or inconsistent, as Typer does for malformed options) and ``ExitStatus.FAILURE`` (1) for
every other error: bad data, a missing or broken file, a model that cannot take the input.
"""

import enum


class ExitStatus(enum.IntEnum):
    OK = 0
    FAILURE = 1  # a problem with the data, a file or the model
    BAD_OPTION = 2  # bad usage: an unknown option, or an option value out of range
    INTERRUPTED = 130


class CnnToolError(Exception):
    """Base class: the message names the bad value or file."""


class DataError(CnnToolError):
    """A data set, file or image that cannot be used."""


class ModelError(CnnToolError):
    """A model that cannot be built or cannot take the input."""


class CheckpointError(CnnToolError):
    """A checkpoint or run directory that cannot be read or written."""


class ConfigError(CnnToolError):
    """An option value that is out of range, unknown or inconsistent with another (exit 2)."""


class OutputError(CnnToolError):
    """A file that cannot be written (disk full, no permission); the message names the file."""


class TrainingError(CnnToolError):
    """Training stopped (non-finite loss, ...)."""


def first_line(exc: BaseException, limit: int = 240) -> str:
    """The first line of an exception's message (its type name when it has none), cut to ``limit`` characters:
    what an error line quotes of a library's own, often multi-line, message."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:limit]

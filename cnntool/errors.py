"""Errors a user can fix. The CLI turns each into one line on stderr and exit code 1."""


class CnnToolError(Exception):
    """Base class: the message names the bad value or file."""


class DataError(CnnToolError):
    """A data set, file or image that cannot be used."""


class ModelError(CnnToolError):
    """A model that cannot be built or cannot take the input."""


class CheckpointError(CnnToolError):
    """A checkpoint or run directory that cannot be read or written."""


class ConfigError(CnnToolError):
    """An option value that is out of range or inconsistent with another."""


class TrainingError(CnnToolError):
    """Training stopped (non-finite loss, ...)."""

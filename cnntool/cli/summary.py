"""cnntool summary (placeholder until its issue lands)."""

from cnntool.cli.common import not_implemented


def summary() -> None:
    """Not implemented yet."""
    not_implemented("summary")

"""cnntool compare (placeholder until its issue lands)."""

from cnntool.cli.common import not_implemented


def compare() -> None:
    """Not implemented yet."""
    not_implemented("compare")

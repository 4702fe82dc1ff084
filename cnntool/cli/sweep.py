"""cnntool sweep (placeholder until its issue lands)."""

from cnntool.cli.common import not_implemented


def sweep() -> None:
    """Not implemented yet."""
    not_implemented("sweep")

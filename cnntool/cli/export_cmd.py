"""cnntool export (placeholder until its issue lands)."""

from cnntool.cli.common import not_implemented


def export() -> None:
    """Not implemented yet."""
    not_implemented("export")

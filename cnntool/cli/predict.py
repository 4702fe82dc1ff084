"""cnntool predict (placeholder until its issue lands)."""

from cnntool.cli.common import not_implemented


def predict() -> None:
    """Not implemented yet."""
    not_implemented("predict")

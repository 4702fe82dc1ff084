"""cnntool conv-test (placeholder until its issue lands)."""

from cnntool.cli.common import not_implemented


def conv_test() -> None:
    """Not implemented yet."""
    not_implemented("conv-test")

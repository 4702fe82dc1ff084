"""cnntool eval (placeholder until its issue lands)."""

from cnntool.cli.common import not_implemented


def eval_command() -> None:
    """Not implemented yet."""
    not_implemented("eval")

"""cnntool finetune (placeholder until its issue lands)."""

from cnntool.cli.common import not_implemented


def finetune() -> None:
    """Not implemented yet."""
    not_implemented("finetune")

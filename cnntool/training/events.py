"""Training events. The library reports through a Reporter; the CLI renders it with rich."""

from __future__ import annotations

from typing import Any


class Reporter:
    """Do-nothing base: override what you want to show."""

    def on_data(self, what: str, done: int, total: int) -> None: ...

    def on_start(self, info: dict[str, Any]) -> None: ...

    def on_epoch_start(self, epoch: int, steps: int) -> None: ...

    def on_step(self, epoch: int, step_in_epoch: int, steps: int, loss: float) -> None: ...

    def on_eval(self, row: dict[str, Any], is_best: bool) -> None: ...

    def on_epoch_end(self, epoch: int, row: dict[str, Any]) -> None: ...

    def on_end(self, result: dict[str, Any]) -> None: ...

    def on_abort(self, error: BaseException) -> None:
        """The run stopped with an exception (a pruned sweep trial, an interrupt, a diverging loss)."""


class CompositeReporter(Reporter):
    """Every event goes to each reporter in turn: the CLI view plus observers such as the trackers
    (cnntool.tracking). Exceptions propagate (a sweep's pruning reporter stops a trial by raising);
    observers that must never fail a run guard themselves."""

    def __init__(self, *reporters: Reporter | None):
        self.reporters = [r for r in reporters if r is not None]

    def on_data(self, what: str, done: int, total: int) -> None:
        for r in self.reporters:
            r.on_data(what, done, total)

    def on_start(self, info: dict[str, Any]) -> None:
        for r in self.reporters:
            r.on_start(info)

    def on_epoch_start(self, epoch: int, steps: int) -> None:
        for r in self.reporters:
            r.on_epoch_start(epoch, steps)

    def on_step(self, epoch: int, step_in_epoch: int, steps: int, loss: float) -> None:
        for r in self.reporters:
            r.on_step(epoch, step_in_epoch, steps, loss)

    def on_eval(self, row: dict[str, Any], is_best: bool) -> None:
        for r in self.reporters:
            r.on_eval(row, is_best)

    def on_epoch_end(self, epoch: int, row: dict[str, Any]) -> None:
        for r in self.reporters:
            r.on_epoch_end(epoch, row)

    def on_end(self, result: dict[str, Any]) -> None:
        for r in self.reporters:
            r.on_end(result)

    def on_abort(self, error: BaseException) -> None:
        for r in self.reporters:
            r.on_abort(error)

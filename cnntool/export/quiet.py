"""Silence a library call: exporters and quantizers print progress and warnings, and stdout carries only results."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings


def quiet() -> contextlib.ExitStack:
    """stdout and stderr captured, warnings ignored and logging below ERROR off, for the ``with`` block."""
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    stack.callback(logging.disable, previous)
    return stack

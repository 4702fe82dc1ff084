"""The one number formatter of every table, legend and results.md: short, rounded, never cut.

No imports beyond the standard library: the CLI (tables), the figures (legends) and the recipes'
results.md all use it, and `cnntool --help` must stay fast.
"""

from __future__ import annotations

import math
from typing import Any

SIGNIFICANT = 4  # table cells: 0.9812, 123.5, 3.156e-3
LEGEND_SIGNIFICANT = 2  # legends: lr=3.2e-3


def fmt_num(value: Any, sig: int = SIGNIFICANT, sci_below: float = 1e-3) -> str:
    """``value`` as a short string: integers whole, floats to ``sig`` significant digits, tiny or huge
    floats in compact scientific notation (``3.2e-3``, ``1.5e+6`` → ``1.5e6``); None → ``-``."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if not isinstance(value, float):
        try:
            value = float(value)
        except (TypeError, ValueError):
            return str(value)
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value.is_integer() and abs(value) < 1e6:
        return str(int(value))
    a = abs(value)
    if a < sci_below or a >= 10 ** max(sig, 5):
        mant, exp = f"{value:.{max(sig - 1, 0)}e}".split("e")
        if "." in mant:
            mant = mant.rstrip("0").rstrip(".")
        return f"{mant}e{int(exp)}"
    text = f"{value:.{sig}g}"
    if "e" in text:  # %g switched to exponent for a value like 12345.6 with sig 4
        text = f"{value:.0f}"
    return text


def fmt_option(name: str, value: Any, sig: int = LEGEND_SIGNIFICANT) -> str:
    """``name=value`` for legends and titles: ``lr=3.2e-3``, ``dropout=0.5``, ``bn=True``."""
    if isinstance(value, float):
        text = fmt_num(value, sig if abs(value) < 0.01 else max(sig, 3), sci_below=0.01)
    elif isinstance(value, (list, tuple)):
        text = ",".join(fmt_num(v, sig) if isinstance(v, float) else str(v) for v in value)
    else:
        text = str(value)
    return f"{name}={text}"


def cut_left(text: str, width: int) -> str:
    """Keep the end of a path (the file name) when it must be shortened: ``…/cat/img_0042.png``."""
    text = str(text)
    if width < 2 or len(text) <= width:
        return text
    return "…" + text[-(width - 1):]

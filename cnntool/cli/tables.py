"""Tables that read at 80 columns: numbers formatted by :func:`cnntool.numfmt.fmt_num`, number columns never
cut (their width is at least their longest cell), text columns fold, paths cut from the left.

Imports only rich (no torch): every command's table goes through :func:`build_table`.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from cnntool.numfmt import cut_left, fmt_num

PATH_WIDTH = 32  # a path column keeps its last 32 characters


def cell(value: Any) -> str:
    return fmt_num(value)


def build_table(title: str | None, columns: Sequence[tuple[str, str]], rows: Iterable[Sequence[Any]],
                sections: Sequence[int] = (), **table_kw: Any):
    """A rich Table. ``columns``: (header, kind) with kind ``num`` (right, whole), ``text`` (folds), ``key``
    (left, never wraps: names, classes) or ``path`` (cut from the left). Row cells are values (numbers are
    formatted here) or already formatted strings. ``sections``: row indices before which a rule goes."""
    from rich.table import Table

    rows = [[_text(v, kind) for v, (_, kind) in zip(r, columns)] for r in rows]
    t = Table(title=title, title_justify="left", **table_kw)
    from rich.text import Text

    for i, (name, kind) in enumerate(columns):
        widest = max((Text.from_markup(r[i]).cell_len for r in rows), default=0)
        if kind == "num":
            name = name.replace("_", " ")
            widest = max(widest, *(len(word) for word in name.split()))
        if kind == "num":
            # a header wider than its numbers goes on two lines ("val" over "acc"); the cells never wrap
            header = name.replace(" ", "\n") if len(name) > widest else name
            t.add_column(header, justify="right", no_wrap=True, min_width=widest, overflow="fold")
        elif kind == "key":
            t.add_column(name, min_width=min(widest, 16), overflow="fold")
        elif kind == "path":
            t.add_column(name, overflow="fold", min_width=min(widest, 12))
        else:
            word = max((len(w) for r in rows for w in Text.from_markup(r[i]).plain.split()), default=0)
            t.add_column(name, overflow="fold", min_width=min(word, 12))
    for i, r in enumerate(rows):
        if i in sections:
            t.add_section()
        t.add_row(*r)
    return t


def _text(value: Any, kind: str) -> str:
    if isinstance(value, str):
        return cut_left(value, PATH_WIDTH) if kind == "path" else value
    text = cell(value)
    return cut_left(text, PATH_WIDTH) if kind == "path" else text

"""One writer for every recipe: results.md (markdown tables), results.json (the CLI renders the same tables with rich)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from cnntool.fileio import write_text
from cnntool.numfmt import fmt_num
from cnntool.training.rundir import write_json

ACC_DIGITS = 4


def fmt(value: Any, column: str = "") -> str:
    """How a cell is shown (results.md and the terminal use the same text)."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}" if column in ("params", "macs", "params_counted", "params_closed_form",
                                          "macs_counted", "macs_closed_form") else str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if column in ("lr", "weight_decay") or (value != 0 and abs(value) < 1e-3):
            return fmt_num(value, 3)
        if column in ("best_epoch", "epochs", "dropout"):
            return f"{value:g}"
        if column.endswith("seconds") or column.endswith("_ms") or column == "ratio":
            return f"{value:.2f}"
        return f"{value:.{ACC_DIGITS}f}"
    return str(value)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(result: dict[str, Any]) -> str:
    lines = [f"# {result['title']} (`cnntool recipe run {result['recipe']}`)", "",
             result.get("description", ""), ""]
    how = (f"Data: **{result['data']}**{' · --quick' if result.get('quick') else ''} · "
           f"{result.get('threads', '?')} threads · {result['seconds']:.1f} s")
    lines += [how, ""]
    if result.get("headline"):
        lines += [f"**{result['headline']}**", ""]
    for t in result.get("tables", []):
        lines += [f"## {t['title']}", ""]
        cols = t["columns"]
        lines.append("| " + " | ".join(cols) + " |")
        lines.append("|" + "|".join("---" for _ in cols) + "|")
        for row in t["rows"]:
            lines.append("| " + " | ".join(_md_cell(fmt(row.get(c), c)) for c in cols) + " |")
        lines.append("")
    if result.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in result["notes"]] + [""]
    if result.get("plots"):
        lines += ["## Plots", ""]
        out = Path(result["out"])
        for p in result["plots"]:
            rel = _rel(p, out)
            lines.append(f"![{Path(rel).stem}]({rel})" if str(rel).endswith(".png") else f"- {rel}")
        lines.append("")
    return "\n".join(lines)


def _rel(path: str | Path, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def write_results(result: dict[str, Any], out: Path) -> None:
    """results.md, results.json and report.html (cnntool.report: the tables, plots and runs in one file)."""
    write_text(out / "results.md", markdown(result) + "\n")
    result["report_html"] = str(out / "report.html")
    write_json(out / "results.json", result)
    from cnntool.report import build_report

    try:
        build_report([out], out / "report.html", title=f"cnntool recipe {result.get('recipe', out.name)}: "
                                                        f"{result.get('title', '')}")
    except Exception as e:  # noqa: BLE001 - the report is extra: the recipe's results stand without it
        result.pop("report_html")
        write_json(out / "results.json", result)
        import logging

        logging.getLogger("cnntool.report").warning("no report.html (%s: %s)", type(e).__name__, e)

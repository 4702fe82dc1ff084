"""Sections -> HTML (figures inlined as PNG data URIs) or Markdown + PNG files, through Jinja2 templates.
Both are written atomically: a temporary file (and folder) beside the target, then a rename."""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cnntool import __version__

HTML_TEMPLATE = "report.html.j2"
MD_TEMPLATE = "report.md.j2"


def _env():
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("cnntool.report", "templates"),
                              autoescape=jinja2.select_autoescape(["html", "html.j2"]),
                              trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)


def _context(sections: list[dict[str, Any]], title: str) -> dict[str, Any]:
    return {"title": title, "sections": sections, "version": __version__,
            "created": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def _atomic_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; a report is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def data_uri(path: str | Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def write_html(sections: list[dict[str, Any]], title: str, out: Path) -> list[Path]:
    out = out if out.suffix else out.with_suffix(".html")
    for section in sections:
        for block in section["blocks"]:
            if block["type"] == "figure":
                block["src"] = data_uri(block["path"])
    _atomic_text(out, _env().get_template(HTML_TEMPLATE).render(**_context(sections, title)))
    return [out]


def md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def write_markdown(sections: list[dict[str, Any]], title: str, out: Path) -> list[Path]:
    """``OUT.md`` with the figures as ``OUT_files/figN.png`` (relative links: ready for pandoc)."""
    out = out.with_suffix(".md")
    out.parent.mkdir(parents=True, exist_ok=True)
    files_dir = out.parent / f"{out.stem}_files"
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.stem}_files."))
    try:
        n = 0
        for section in sections:
            for block in section["blocks"]:
                if block["type"] == "figure":
                    n += 1
                    name = f"fig{n:02d}_{Path(block['path']).stem}.png"
                    shutil.copyfile(block["path"], staging / name)
                    block["src"] = f"{files_dir.name}/{name}"
        env = _env()
        env.filters["cell"] = md_cell
        text = env.get_template(MD_TEMPLATE).render(**_context(sections, title))
        if files_dir.exists():
            shutil.rmtree(files_dir)
        os.replace(staging, files_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _atomic_text(out, text)
    return [out, *sorted(files_dir.iterdir())]

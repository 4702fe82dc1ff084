"""The house runs one way: no import cycles (imports inside functions included), and every module imports alone."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "cnntool"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _resolve(name: str) -> str | None:
    """The cnntool module a dotted name lands in (the longest prefix that is a module)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in MODULES:
            return candidate
        parts.pop()
    return None


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for mod, path in MODULES.items():
        is_pkg = path.name == "__init__.py"
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                # `from pkg import sub` imports the submodule when there is one, else the package itself.
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
            else:
                continue
            for t in targets:
                r = _resolve(t) if t.startswith("cnntool") else None
                if r is not None and r != mod:
                    edges.add(r)
        graph[mod] = edges
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_sees_a_cycle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    cycles = find_cycles(import_graph())
    assert cycles == [], "import cycles: " + "; ".join(" ↔ ".join(c) for c in cycles)


def test_library_never_imports_the_cli():
    graph = import_graph()
    bad = sorted(m for m, edges in graph.items()
                 if not m.startswith("cnntool.cli") and m != "cnntool.__main__"  # the entry point runs the CLI
                 and any(e.startswith("cnntool.cli") for e in edges))
    assert bad == []


# Each cnntool module is imported in a child forked from an interpreter that holds the third-party libraries but no
# cnntool module: every module imports alone (no hidden dependence on import order), at fork speed, not torch's.
_ALONE = """
import importlib, os, sys
import numpy, torch, torchvision, PIL.Image, typer, rich  # third-party only: forked children share them
bad = []
for name in sys.argv[1:]:
    pid = os.fork()
    if pid == 0:
        try:
            importlib.import_module(name)
        except BaseException as e:
            sys.stderr.write(f"{name}: {type(e).__name__}: {e}\\n")
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if status:
        bad.append(name)
print(" ".join(bad))
sys.exit(1 if bad else 0)
"""


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_every_module_imports_alone():
    names = [m for m in MODULES if m != "cnntool.__main__"]
    r = subprocess.run([sys.executable, "-c", _ALONE, *names], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_module_that_needs_import_order_is_caught(tmp_path):
    """The fork check fails for a module that works only after another one was imported."""
    pkg = tmp_path / "orderpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("import sys\nsys.modules['orderpkg'].VALUE = 1\n")
    (pkg / "b.py").write_text("import orderpkg\nX = orderpkg.VALUE\n")
    r = subprocess.run([sys.executable, "-c", _ALONE, "orderpkg.b"], capture_output=True, text=True,
                       env={**__import__("os").environ, "PYTHONPATH": str(tmp_path)}, timeout=600)
    assert r.returncode == 1 and "orderpkg.b" in r.stdout

"""No import circles between the parts of src/hftpipe (sub-packages and top-level modules).

Every import counts, function-local ones included: a lazy import hides a circle from Python's import
machinery, not from a reader. The layering (validation/ and features/ read data/; hftpipe.prepare
orchestrates all three; pipeline/ and the CLI sit on top) is what keeps each part testable on its own.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.import_graph import part_graph


def import_graph(src: Path | None = None) -> dict[str, set[str]]:
    """Part (sub-package or top-level module of hftpipe) -> the other parts it imports."""
    return part_graph(src) if src is not None else part_graph()


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every circle a depth-first walk meets (each as a closed path, first node repeated last)."""
    cycles: list[list[str]] = []
    done: set[str] = set()
    stack: list[str] = []

    def visit(node: str) -> None:
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt in stack:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in done:
                visit(nxt)
        stack.pop()
        done.add(node)

    for node in sorted(graph):
        if node not in done:
            visit(node)
    return cycles


def test_no_import_circles_in_hftpipe():
    graph = import_graph()
    assert {"hftpipe.data", "hftpipe.validation", "hftpipe.features", "hftpipe.pipeline"} <= set(graph)
    cycles = find_cycles(graph)
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_data_layers_import_one_way():
    """validation/ may read data/'s schema; neither data/ nor features/ imports validation/."""
    graph = import_graph()
    assert "hftpipe.validation" not in graph.get("hftpipe.data", set())
    assert "hftpipe.validation" not in graph.get("hftpipe.features", set())
    assert "hftpipe.features" not in graph.get("hftpipe.validation", set())


def _write(root: Path, files: dict[str, str]) -> Path:
    """A fake src/ folder holding an hftpipe package made of ``files``."""
    for name, text in files.items():
        path = root / "hftpipe" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.parametrize("files, cycle", [
    # the circle this test was written for: a function-local import closes it
    ({"__init__.py": "", "data/__init__.py": "", "data/lobster.py": "def f():\n    from hftpipe.validation import v\n",
      "validation/__init__.py": "from hftpipe.data.lobster import f\n"},
     ["hftpipe.data", "hftpipe.validation", "hftpipe.data"]),
    # relative imports and `from hftpipe import module`
    ({"__init__.py": "", "a/__init__.py": "from ..b import x\n", "b/__init__.py": "from hftpipe import c\n",
      "c.py": "import hftpipe.a.z\n"},
     ["hftpipe.a", "hftpipe.b", "hftpipe.c", "hftpipe.a"]),
])
def test_the_walk_finds_circles(tmp_path, files, cycle):
    assert find_cycles(import_graph(_write(tmp_path, files))) == [cycle]


def test_imports_inside_one_part_are_no_circle(tmp_path):
    root = _write(tmp_path, {"__init__.py": "", "a/__init__.py": "from hftpipe.a.m import x\nfrom . import m\n",
                             "a/m.py": "from hftpipe.a import y\nimport hftpipe.b\n", "b.py": "import os\n"})
    assert import_graph(root) == {"hftpipe.a": {"hftpipe.b"}}
    assert find_cycles(import_graph(root)) == []

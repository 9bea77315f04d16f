"""The imports between hftpipe's modules, read from the source (every import statement, function-local
ones included): the import-circle test (tests/test_imports.py) and the DVC dependency test
(tests/test_dvc.py) both walk this graph."""

from __future__ import annotations

import ast
from pathlib import Path

import click

SRC = Path(__file__).resolve().parents[1] / "src"
# Data a part reads at run time: a stage that runs the part depends on it too.
PART_DATA = {"hftpipe.validation": ("expectations",)}


def module_file(module: str, src: Path = SRC) -> Path | None:
    """The source file of an hftpipe module (package -> its __init__.py); None when there is none."""
    base = src.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def all_modules(src: Path = SRC) -> list[str]:
    """Every module of the hftpipe package under ``src``."""
    names = []
    for path in sorted((src / "hftpipe").rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def part_of(module: str) -> str | None:
    """The part (sub-package or top-level module) a module belongs to: hftpipe.data.lobster -> hftpipe.data."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) >= 2 and parts[0] == "hftpipe" else None


def imported_modules(module: str, src: Path = SRC) -> set[str]:
    """hftpipe modules one module imports anywhere in its file (function-local imports included)."""
    path = module_file(module, src)
    if path is None:
        return set()
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")
                parts = parts[: len(parts) - node.level + (1 if is_package else 0)]
                base = ".".join(parts + ([node.module] if node.module else []))
            # `from pkg import name` may import the sub-module pkg.name
            names = [base] + [f"{base}.{a.name}" for a in node.names if module_file(f"{base}.{a.name}", src)]
        else:
            continue
        for name in names:
            if name.split(".")[0] != "hftpipe":
                continue
            # Importing a.b.c runs a/__init__ and a/b/__init__ first.
            parts = name.split(".")
            for i in range(2, len(parts) + 1):
                if module_file(".".join(parts[:i]), src):
                    found.add(".".join(parts[:i]))
    found.discard(module)
    return found


def reached_modules(start: str, skip: frozenset[str] = frozenset({"hftpipe.cli"})) -> set[str]:
    """Every hftpipe module ``start`` imports, transitively. ``skip``: the CLI's dispatcher, which
    imports every command module to register them, not because a command runs them."""
    seen, todo = {start}, [start]
    while todo:
        for nxt in imported_modules(todo.pop()) - seen - skip:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def part_graph(src: Path = SRC) -> dict[str, set[str]]:
    """Part -> the other parts its modules import."""
    graph: dict[str, set[str]] = {}
    for module in all_modules(src):
        here = part_of(module)
        if here is None:  # hftpipe/__init__.py: the package itself, not a part
            continue
        there = {part_of(m) for m in imported_modules(module, src)} - {here, None}
        if there:
            graph.setdefault(here, set()).update(there)
    return graph


def part_path(module: str) -> str | None:
    """Repository path of the part a module belongs to: src/hftpipe/data or src/hftpipe/config.py."""
    part = part_of(module)
    if part is None:
        return None  # hftpipe/__init__.py holds only the version
    path = module_file(part)
    assert path is not None, module
    target = path.parent if path.name == "__init__.py" else path
    return str(target.relative_to(SRC.parent))


def command_module(group: click.Group, argv: list[str]) -> str:
    """The module defining the click command that ``argv`` (without the program name) runs."""
    command: click.Command = group
    for word in argv:
        if not isinstance(command, click.Group) or word not in command.commands:
            break
        command = command.commands[word]
    assert command is not group and command.callback is not None, f"no command for {argv}"
    return command.callback.__module__


def needed_deps(group: click.Group, cmd: str) -> set[str]:
    """Repository paths a stage running ``cmd`` must list in deps: the parts it imports and their data."""
    argv = cmd.split()
    assert argv[0] == "hftpipe", cmd
    modules = reached_modules(command_module(group, argv[1:]))
    needed = {p for m in modules if (p := part_path(m)) and not p.startswith("src/hftpipe/cli")}
    for module in modules:
        needed.update(PART_DATA.get(".".join(module.split(".")[:2]), ()))
    return needed


def covered(path: str, deps: list[str]) -> bool:
    """A dep covers a path when it is the path or a folder above it."""
    return any(path == d.rstrip("/") or path.startswith(d.rstrip("/") + "/") for d in deps)


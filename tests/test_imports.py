"""No module imports a private name of another package (walked with ``ast``).

A name (or a module) starting with ``_`` is private to the package that defines it and to
the packages inside that one: ``headmaps._html`` serves every subpackage, while
``headmaps.salient.compute._Context`` serves ``headmaps.salient`` only.
"""

from __future__ import annotations

import ast
from pathlib import Path

import headmaps

ROOT = Path(headmaps.__file__).parent


def _package(path: Path) -> str:
    """The dotted package a source file belongs to."""
    return ".".join(("headmaps", *path.relative_to(ROOT).parent.parts))


def _imports(path: Path):
    """``(module imported from, name)`` of every ``from X import Y`` in ``path``."""
    pkg = _package(path).split(".")
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = pkg[:len(pkg) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                yield module, alias.name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, ""


def _private_owner(module: str, name: str) -> str | None:
    """The package that owns the first private part of ``module.name``, or None."""
    parts = [p for p in (*module.split("."), name) if p]
    for i, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            owner = parts[:i]
            is_pkg = (ROOT.parent.joinpath(*owner)).is_dir()
            return ".".join(owner if is_pkg else owner[:-1])
    return None


def test_no_module_imports_a_private_name_of_another_package():
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        here = _package(path)
        for module, name in _imports(path):
            if not module.startswith("headmaps"):
                continue
            owner = _private_owner(module, name)
            if owner is not None and here != owner and not here.startswith(owner + "."):
                bad.append(f"{path.relative_to(ROOT)}: {module} import {name}")
    assert bad == []


def test_the_check_sees_a_private_import():
    assert _private_owner("headmaps.salient.compute", "_Context") == "headmaps.salient"
    assert _private_owner("headmaps._html", "html_card") == "headmaps"
    assert _private_owner("headmaps.projection", "Projection") is None

"""No module uses a private name of another package (walked with ``ast``).

A name (or a module) starting with ``_`` is private to the package that defines it and to
the packages inside that one: ``headmaps._html`` serves every subpackage, while
``headmaps.salient.compute._Context`` serves ``headmaps.salient`` only. Two checks: no
``from X import _y`` across packages, and no ``obj._y`` (or ``getattr(obj, "_y")``) on an
object the module does not own, where that can be seen without running the code.
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


#: Private attributes read on objects the module does not own, each for a reason. Keyed by
#: ``(file under src/headmaps, attribute)``; keep it short.
ALLOWED_ATTRIBUTES = {
    # other libraries' names, read as those libraries document or set them
    ("experiments/hooks.py", "_attn_implementation"),  # transformers: the attention kernel
    ("experiments/hooks.py", "_hf_hook"),  # accelerate: the hook of a dispatched module
    ("models/tensors.py", "_hf_hook"),  # accelerate: where offloaded weights are kept
    ("models/interop.py", "_W_V"),  # TransformerLens: a grouped-query model's stored value
    ("models/interop.py", "_b_V"),  # weights, one per KV head (W_V, b_V are expanded copies)
    ("models/loader.py", "_name_or_path"),  # transformers: the config's hub id or folder
    ("models/adapters/opt.py", "_remove_final_layer_norm"),  # transformers' OPT config
    ("track/workers.py", "_exit"),  # os._exit: end a worker without cleanup (the crash test)
    # the weights' fingerprint memoised on the model object; this module alone sets and reads it
    ("projection/fingerprint.py", "_headmaps_fingerprint"),
}

_ATTR_FUNCTIONS = {"getattr", "hasattr", "setattr", "delattr"}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _own_names(tree: ast.AST) -> set[str]:
    """Private names the module defines: functions, methods, class attributes, ``self._x``."""
    own = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            own.add(node.name)
        if isinstance(node, ast.ClassDef):
            for stmt in node.body:
                targets = (stmt.targets if isinstance(stmt, ast.Assign) else
                           [stmt.target] if isinstance(stmt, ast.AnnAssign) else [])
                own.update(t.id for t in targets if isinstance(t, ast.Name))
        if (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
                and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
            own.add(node.attr)
    return own


def _package_modules(path: Path, tree: ast.AST) -> set[str]:
    """Local names bound to a headmaps module this file's package may reach into."""
    here = _package(path)
    pkg = here.split(".")
    names = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        base = pkg[:len(pkg) - node.level + 1] if node.level else []
        module = ".".join(base + ([node.module] if node.module else []))
        for alias in node.names:
            parts = f"{module}.{alias.name}".split(".")
            file = ROOT.parent.joinpath(*parts)
            if not (file.is_dir() or file.with_suffix(".py").is_file()):
                continue  # not a module
            owner = ".".join(parts if file.is_dir() else parts[:-1])
            if here == owner or here.startswith(owner + "."):
                names.add(alias.asname or alias.name)
    return names


def _private_uses(tree: ast.AST):
    """``(line, receiver node, attribute)`` of every private attribute used on an object."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            yield node.lineno, node.value, node.attr
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in _ATTR_FUNCTIONS and len(node.args) >= 2
              and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)
              and _is_private(node.args[1].value)):
            yield node.lineno, node.args[0], node.args[1].value


def _foreign_private_attributes(path: Path) -> list[str]:
    """Private attributes ``path`` uses on objects it does not own (see the module docstring)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    own, modules = _own_names(tree), _package_modules(path, tree)
    rel = path.relative_to(ROOT).as_posix()
    bad: list[str] = []
    for line, value, attr in _private_uses(tree):
        if isinstance(value, ast.Name) and value.id in ("self", "cls", *modules):
            continue
        if (isinstance(value, ast.Call) and isinstance(value.func, ast.Name)
                and value.func.id == "super"):
            continue
        if attr in own or (rel, attr) in ALLOWED_ATTRIBUTES:
            continue
        bad.append(f"{rel}:{line}: {ast.unparse(value)}.{attr}")
    return bad


def test_no_module_uses_a_private_attribute_of_an_object_it_does_not_own():
    bad = [b for path in sorted(ROOT.rglob("*.py")) for b in _foreign_private_attributes(path)]
    assert bad == []


def test_the_check_sees_a_private_attribute(tmp_path, monkeypatch):
    pkg = tmp_path / "headmaps" / "explorer"
    pkg.mkdir(parents=True)
    (pkg / "view.py").write_text(
        "from . import build as B\n"
        "class Page:\n"
        "    def _own(self):\n"
        "        return self._x, B._helper, super()._y\n"
        "def page(sal, other):\n"
        "    return sal._s(1), getattr(other, '_z'), other._own(), sal.__dict__\n")
    (pkg / "build.py").write_text("")
    monkeypatch.setitem(globals(), "ROOT", tmp_path / "headmaps")
    assert sorted(_foreign_private_attributes(pkg / "view.py")) == [
        "explorer/view.py:6: other._z", "explorer/view.py:6: sal._s"]

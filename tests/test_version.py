"""The version has one source, and the CLI prints it."""

import ast
from pathlib import Path

import headmaps as hm
from headmaps._version import __version__
from headmaps.cli import main

SRC = Path(hm.__file__).parent


def test_version_single_source(capsys):
    assert hm.__version__ == __version__
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"headmaps {__version__}"


def test_no_module_imports_version_from_package_init():
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level >= 1 and not node.module:
                names = {a.name for a in node.names}
                assert "__version__" not in names, (
                    f"{path} imports __version__ from a package __init__")


def test_analysis_does_not_import_results_at_runtime():
    tree = ast.parse((SRC / "scoring" / "analysis.py").read_text())
    top_level = [n for n in tree.body if isinstance(n, ast.ImportFrom)]
    assert all(n.module != "results" for n in top_level)

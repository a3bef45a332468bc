"""The built distributions: the wheel, installed non-editable in a fresh venv, runs the CLI.

The wheel and sdist are built with ``python -m build --no-isolation`` (no network: the
running interpreter's setuptools builds them). The fresh venv gets the wheel with
``--no-deps``; its dependencies (torch, transformers, the built-in model packages) are
borrowed from the running interpreter's site-packages through a ``.pth`` line, which adds
that folder to ``sys.path`` without processing its own ``.pth`` files, so an editable
install of headmaps there stays inactive.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

import headmaps
from headmaps.scoring import ScanResult

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "headmaps"
TIMEOUT = 300


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, (f"{' '.join(map(str, cmd))} exited {proc.returncode}\n"
                                  f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}")
    return proc.stdout


# what a fresh clone lacks (.gitignore) or must not matter: a stale egg-info's SOURCES.txt
# would put files in the sdist that the package data rules no longer select
_NOT_IN_CLONE = (".git", ".venv*", "build", "dist", "out", ".cache", "*.egg-info", "__pycache__",
                 "*.pyc", ".pytest_cache", ".ruff_cache", ".ipynb_checkpoints")


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> dict[str, Path]:
    """The sdist and the wheel built from it (``python -m build`` builds the wheel from the sdist).

    The build runs on a copy of the checkout without ignored files, as on a fresh clone.
    """
    tmp = tmp_path_factory.mktemp("dist")
    src, out = tmp / "src", tmp / "out"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(*_NOT_IN_CLONE))
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(src)], cwd=tmp)
    wheels, sdists = list(out.glob("headmaps-*.whl")), list(out.glob("headmaps-*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(p.name for p in out.iterdir())
    return {"wheel": wheels[0], "sdist": sdists[0]}


def _package_files() -> set[str]:
    """Every file of the package as the wheel names it (``headmaps/...``), caches excluded."""
    return {p.relative_to(PACKAGE.parent).as_posix() for p in PACKAGE.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


def test_wheel_holds_every_package_file(dist):
    names = set(zipfile.ZipFile(dist["wheel"]).namelist())
    expected = _package_files()
    assert {"headmaps/relations/data/templates.json", "headmaps/relations/data/copying.json",
            "headmaps/explorer/assets/report.html", "headmaps/explorer/assets/report.js",
            "headmaps/explorer/assets/report.css", "headmaps/explorer/assets/diff.html",
            "headmaps/explorer/assets/diff.js", "headmaps/explorer/assets/diff.css"} <= expected
    assert sorted(expected - names) == []
    assert any(n.endswith(".dist-info/entry_points.txt") for n in names)


def test_sdist_holds_tests_docs_and_benchmarks(dist):
    with tarfile.open(dist["sdist"]) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for rel in ("pyproject.toml", "README.md", "MANIFEST.in", "Makefile", "tests/conftest.py",
                "tests/tiny.py", "tests/test_wheel.py", "docs/relations.md",
                "docs/quickstart.ipynb", "benchmarks/bench_scan.py",
                "benchmarks/data/qk_text.txt", "src/headmaps/relations/data/copying.json",
                "src/headmaps/explorer/assets/report.js"):
        assert rel in names, rel
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)


@pytest.fixture(scope="module")
def venv(dist, tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed (non-editable, no deps) and borrowed dependencies."""
    root = tmp_path_factory.mktemp("venv") / "v"
    _run([sys.executable, "-m", "venv", "--without-pip", str(root)], cwd=root.parent)
    python = root / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
          "--no-index", "--no-compile", "-q", str(dist["wheel"])], cwd=root.parent)
    out = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
               cwd=root.parent)
    site = Path(out.strip())
    assert site.is_relative_to(root)
    shared = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (site / "zz_borrowed_deps.pth").write_text("".join(f"{p}\n" for p in shared))
    return root


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def test_installed_wheel_is_the_one_imported(venv, tmp_path):
    code = ("import sys, headmaps; print(headmaps.__file__); "
            "print([type(f).__module__ for f in sys.meta_path])")
    out = _run([str(venv / "bin" / "python"), "-c", code], cwd=tmp_path, env=_env())
    file, finders = out.strip().splitlines()
    assert Path(file).resolve().is_relative_to(venv.resolve()), file
    assert "__editable__" not in finders, finders


def test_installed_wheel_runs_the_cli(venv, tmp_path):
    exe, env = str(venv / "bin" / "headmaps"), _env()
    assert (venv / "bin" / "headmaps").is_file()

    out = _run([exe, "--version"], cwd=tmp_path, env=env)
    assert out.split() == ["headmaps", headmaps.__version__]

    out = _run([exe, "relations", "list"], cwd=tmp_path, env=env)
    assert "country_to_capital" in out and "copying" in out and "english_to_french" in out

    out = _run([exe, "info", "smollm2-135m"], cwd=tmp_path, env=env)
    assert "smollm2" in out.lower() and "load_seconds" in out

    scan_dir = tmp_path / "scan"
    _run([exe, "scan", "smollm2-135m", "--relations", "copying", "--no-plots",
          "--out", str(scan_dir)], cwd=tmp_path, env=env)
    scan = ScanResult.load(scan_dir)
    assert scan.relations == ["copying"]
    assert (scan.n_layers, scan.n_heads) == (30, 9)
    assert scan.scores.max() >= scan.tau  # at least one copying head

    page = tmp_path / "report.html"
    out = _run([exe, "report", "smollm2-135m", "--scan", str(scan_dir), "--no-salient",
                "-o", str(page)], cwd=tmp_path, env=env)
    html = page.read_text(encoding="utf-8")
    assert "smollm2-135m" in html and "copying" in html
    for asset in ("report.css", "report.js"):  # inlined from the installed package
        text = (PACKAGE / "explorer" / "assets" / asset).read_text(encoding="utf-8")
        assert text.strip()[:300] in html, asset
    assert str(venv) not in html

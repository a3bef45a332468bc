"""The code examples of the README and the tutorials run as written.

Every fenced ``python`` and ``bash`` block of README.md and docs/tutorials/*.md is run, in
page order, in one temporary working folder per page: Python blocks share one namespace,
bash blocks may hold only ``headmaps`` commands, each run in-process through
:func:`headmaps.cli.main`, which must return 0. A block the test cannot run starts with
``# not run by the tests: REASON``, visible to readers; the reason must be given.

The examples name the built-in SmolLM2-135M. So that they take seconds, the test replaces
the alias with the folder of a tiny saved Llama with a word-level tokenizer and a head that
maps countries to capitals (``tests/tiny_vocab.py``): the code paths are the same, the
numbers are not (the docs state none from these blocks).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

import headmaps
from headmaps.cli import main
from tiny_vocab import COUNTRY_CAPITAL, mapping_matrix, set_mapping, vocab_model

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs" / "tutorials").glob("*.md"))]
ALIAS = "smollm2-135m"
SKIP = re.compile(r"^#\s*not run by the tests:\s*(.*)$")
FENCE = re.compile(r"^```(\w+)?\s*$")


def blocks(page: Path) -> list[tuple[str, int, str]]:
    """``(language, first line number, code)`` of every fenced block of a page."""
    out, lang, start, body = [], None, 0, []
    for i, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        m = FENCE.match(line.strip()) if line.startswith("```") else None
        if lang is None and m:
            lang, start, body = m.group(1) or "", i + 1, []
        elif lang is not None and line.startswith("```"):
            out.append((lang, start, "\n".join(body)))
            lang = None
        elif lang is not None:
            body.append(line)
    return out


def runnable(page: Path) -> list[tuple[str, int, str]]:
    """The python and bash blocks of a page, without those marked as not run."""
    return [(lang, line, code) for lang, line, code in blocks(page)
            if lang in ("python", "bash") and not SKIP.match(code.strip().splitlines()[0])]


def commands(code: str) -> list[list[str]]:
    """The command lines of a bash block (continuations joined, comments dropped)."""
    out = []
    for line in code.replace("\\\n", " ").splitlines():
        argv = shlex.split(line, comments=True)
        if argv:
            out.append(argv)
    return out


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    """The tiny model the examples run on, saved as a model folder (with its tokenizer)."""
    model, tok = vocab_model(n_layers=2)
    set_mapping(model, 1, 0, mapping_matrix(tok, COUNTRY_CAPITAL), preset=headmaps.DEFAULT_PRESET)
    folder = tmp_path_factory.mktemp("tiny_model")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def test_the_pages_are_found():
    names = {p.name for p in PAGES}
    assert {"README.md", "first-report.md", "notebook.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_example_runs_or_says_why_not(page):
    for lang, line, code in blocks(page):
        if lang not in ("python", "bash"):
            continue
        first = code.strip().splitlines()[0]
        skip = SKIP.match(first)
        if skip:
            assert skip.group(1).strip(), f"{page.name}:{line}: a not-run block needs a reason"
        elif lang == "bash":
            bad = [c for c in commands(code) if c[0] != "headmaps"]
            assert bad == [], f"{page.name}:{line}: only headmaps commands run; mark the block"


def test_the_front_pages_have_examples_that_run():
    for name in ("README.md", "first-report.md"):
        page = next(p for p in PAGES if p.name == name)
        langs = [lang for lang, _, _ in runnable(page)]
        assert "python" in langs and "bash" in langs, name
    readme = next(p for p in PAGES if p.name == "README.md")
    python = [code for lang, _, code in runnable(readme) if lang == "python"]
    assert len([ln for ln in python[0].splitlines() if ln.strip()]) <= 10
    bash = [c for lang, _, code in runnable(readme) if lang == "bash" for c in commands(code)]
    assert len(bash) == 3


@pytest.mark.parametrize("page", [p for p in PAGES if runnable(p)], ids=lambda p: p.name)
def test_examples_run(page, model_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HEADMAPS_CACHE", str(tmp_path / "cache"))
    namespace: dict = {"__name__": "__docs_example__"}
    ran = 0
    for lang, line, code in runnable(page):
        where = f"{page.relative_to(ROOT)}:{line}"
        if lang == "python":
            source = code.replace(f'"{ALIAS}"', repr(model_dir)).replace(f"'{ALIAS}'",
                                                                          repr(model_dir))
            assert source != code or ALIAS not in code, where
            exec(compile(source, where, "exec"), namespace)  # noqa: S102 - the docs' own code
            ran += 1
        else:
            for argv in commands(code):
                args = [model_dir if a == ALIAS else a for a in argv[1:]]
                assert main(args) == 0, f"{where}: {shlex.join(argv)}"
                ran += 1
    assert ran == sum(1 if lang == "python" else len(commands(code))
                      for lang, _, code in runnable(page))
    if page.name == "README.md":
        assert (tmp_path / "report.html").is_file()
        assert (tmp_path / "out" / "smol" / "report.html").is_file()

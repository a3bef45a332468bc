"""The documentation site: it builds with ``mkdocs build --strict`` and its reference is complete.

* the site builds offline with ``--strict`` (a broken link, anchor or API reference fails);
* every name of ``headmaps.__all__`` has its entry in the generated Python API page;
* every command of ``headmaps`` (subcommands and their actions) has its section in the
  generated CLI page, with every option it takes, walked from the parser independently of
  the generator (``docs/hooks.py``);
* the README is a front page (short, set-up first, examples, links that exist, no dated
  timings), the results pages say when and where they were measured, and the stale
  statements the site replaced do not come back.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import headmaps
from headmaps.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"


def _hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _commands(parser: argparse.ArgumentParser, prefix: str = "headmaps"):
    """``(full name, parser)`` of every command, walked here (not by docs/hooks.py)."""
    out = [(prefix, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += _commands(sub, f"{prefix} {name}")
    return out


def _options(parser: argparse.ArgumentParser) -> list[str]:
    """Every option string and positional of a parser, help and sub-commands left out."""
    out = []
    for a in parser._actions:
        if isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        out += list(a.option_strings) or [a.metavar or a.dest]
    return out


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site built from this checkout, with --strict, into a temporary folder."""
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH"))
                                        if p)
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                          str(out)], cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-6000:]
    return out


def _page(site: Path, name: str) -> str:
    return (site / name / "index.html").read_text(encoding="utf-8")


# ---- the build and the reference --------------------------------------------------------

def test_the_site_builds_strict_and_offline(site):
    index = (site / "index.html").read_text(encoding="utf-8")
    assert "What does every attention head" in index
    # no web fonts: the site reads offline
    assert "fonts.googleapis.com" not in index and "fonts.gstatic.com" not in index
    for page in ("tutorials/first-report", "reference/python-api", "reference/cli",
                 "explanation/method", "results/smollm2-135m"):
        assert (site / page / "index.html").is_file(), page


def test_every_public_name_is_in_the_api_reference(site):
    html = _page(site, "reference/python-api")
    missing = [n for n in headmaps.__all__ if f'id="headmaps.{n}"' not in html]
    assert missing == []
    # and the reference holds the docstrings, not only the headings
    assert "Load a model as a" in html


def test_every_command_and_option_is_in_the_cli_reference(site):
    html = _page(site, "reference/cli")
    commands = _commands(build_parser())
    assert len(commands) > 14  # headmaps, its 13 commands, and the actions of two of them
    for name, _ in commands[1:]:
        assert f'id="{name.replace(" ", "-")}"' in html, name
    # every option, in its own command's section of the generated page
    sections = re.split(r"^## ", _hooks().render(), flags=re.M)
    by_name = {s.split("\n", 1)[0].strip(): s for s in sections[1:]}
    for name, parser in commands:
        assert name in by_name, name
        for opt in _options(parser):
            assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", by_name[name]), (name, opt)
    # the generated text reaches the page: an option of a nested command, and its help
    assert "--all" in html and "remove everything" in html


def test_the_cli_page_keeps_its_marker_once():
    hooks = _hooks()
    assert (DOCS / hooks.PAGE).read_text(encoding="utf-8").count(hooks.MARKER) == 1


def test_docstring_roles_become_links(site):
    for page in ("reference/python-api", "reference/results-api", "reference/errors"):
        html = _page(site, page)
        assert not re.search(r":(class|func|meth|mod|data|attr|exc|obj):", html), page
    # headmaps.load's docstring names :class:`HeadModel`: a link to its entry
    assert 'href="#headmaps.HeadModel"' in _page(site, "reference/python-api")
    roles = _hooks().sphinx_roles
    assert roles(":func:<code>~a.b.c()</code>") == (
        '<autoref identifier="a.b.c" optional><code>c()</code></autoref>')
    assert roles(":mod:<code>.io</code>") == "<code>.io</code>"


def test_the_generator_escapes_markdown_outside_code():
    hooks = _hooks()
    assert hooks.text("a <|eos|> *.gguf `x_<y>`") == r"a \<|eos|\> \*.gguf `x_<y>`"


def test_every_page_is_in_the_nav():
    import yaml

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))

    def pages(node):
        if isinstance(node, str):
            yield node
        elif isinstance(node, list):
            for n in node:
                yield from pages(n)
        elif isinstance(node, dict):
            for n in node.values():
                yield from pages(n)

    nav = set(pages(config["nav"]))
    assert sorted(p for p in nav if not (DOCS / p).is_file()) == []
    # every page written for the site (results sub-folders hold run summaries, linked
    # from their pages) is reachable from the navigation
    written = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")
               if not p.relative_to(DOCS).as_posix().startswith("results/")
               or p.parent == DOCS / "results"}
    assert written - nav == set()
    assert config["theme"]["font"] is False  # no Google Fonts (offline)


def test_the_docs_extra_is_pinned_and_make_installs_it():
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    block = re.search(r"^docs = \[(.*?)\]", text, re.S | re.M).group(1)
    pins = re.findall(r'"([^"]+)"', block)
    assert {p.split("==")[0] for p in pins} >= {"mkdocs", "mkdocs-material",
                                               "mkdocstrings-python"}
    assert all(re.fullmatch(r"[\w.-]+==[\w.]+", p) for p in pins), pins
    make = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert '.[test,docs]' in make and "build --strict" in make
    assert re.search(r"^docs:", make, re.M)
    assert "/site/" in (ROOT / ".gitignore").read_text(encoding="utf-8").split()


# ---- the README -----------------------------------------------------------------------

def test_the_readme_is_a_front_page():
    text = README.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert len(lines) <= 150
    head = "\n".join(lines[:30])
    assert "make demo" in head and "make test" in head
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert images and all((ROOT / i).is_file() and i.startswith("docs/img/") for i in images)
    links = [u.split("#")[0] for u in re.findall(r"\]\(([^)]+)\)", text)
             if not u.startswith(("http", "#"))]
    assert len(links) >= 12 and [u for u in links if not (ROOT / u).exists()] == []
    assert "@inproceedings" in text  # how to cite
    limits = text.split("## Limits", 1)[1]
    assert 3 <= len([line for line in limits.splitlines() if line.startswith("* ")]) <= 5


def test_the_readme_has_no_dated_timings():
    text = README.read_text(encoding="utf-8")
    assert not re.search(r"\b20\d\d-\d\d-\d\d\b", text)
    assert not re.search(r"\b\d+(?:\.\d+)?\s?(?:s|ms|min)\b(?![-\w])", text), \
        re.search(r"\b\d+(?:\.\d+)?\s?(?:s|ms|min)\b(?![-\w])", text)
    for phrase in ("load average", "shared machine", "the default then", "measured here"):
        assert phrase not in text


def test_stale_statements_do_not_come_back():
    names = headmaps.relations.names()
    assert len(names) == 21
    readme = README.read_text(encoding="utf-8")
    assert f"{len(names)} built-in relations" in readme
    pages = [README, *DOCS.rglob("*.md")]
    stale = [re.compile(p) for p in (r"\(the default then\)", r"\b20 built-in relation",
                                     r"default preset is `norms`", r"the default `norms`")]
    found = [f"{p.relative_to(ROOT)}: {s.pattern}" for p in pages
             for s in stale if s.search(p.read_text(encoding="utf-8"))]
    assert found == []
    assert headmaps.DEFAULT_PRESET in (DOCS / "explanation" / "method.md").read_text()


# ---- the results pages say when and where -----------------------------------------------

def _linked_dates(page: Path) -> set[str]:
    spec = importlib.util.spec_from_file_location("trd", ROOT / "tests" / "test_results_docs.py")
    trd = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(trd)
    dates = set()
    for kind, _, data in trd.parse(page.read_text(encoding="utf-8")):
        if kind == "header":
            for rel in data:
                date = json.loads((page.parent / rel).read_text(encoding="utf-8")).get("date")
                if date:
                    dates.add(date[:10])
    return dates


@pytest.mark.parametrize("page", sorted((DOCS / "results").glob("*.md")), ids=lambda p: p.name)
def test_every_results_page_names_its_dates_and_machine(page):
    head = "\n".join(page.read_text(encoding="utf-8").splitlines()[:15])
    assert 'Runs on this page' in head
    date_line = re.search(r"\*\*Date:\*\*(.*)", head).group(1)
    stated = re.findall(r"20\d\d-\d\d-\d\d", date_line)
    linked = _linked_dates(page)
    assert linked and stated, page.name
    assert (min(stated), max(stated)) == (min(linked), max(linked))
    assert "**Machine:**" in head and "GPU" in head

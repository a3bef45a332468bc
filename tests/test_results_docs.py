"""docs/results/*.md: every table has the command that made it and a JSON run header.

A page is read as a sequence of fenced code blocks, markdown tables and ``header:`` links
(``header: [file](path.json)``; several links may follow one ``headers:``). A *command
block* is a fenced block whose first line runs ``headmaps`` or ``python`` (after
environment assignments and ``time``). Rules:

* every markdown table has a command block before it, and a header link between that
  block and the table;
* every command block is followed by a header link before the next command block;
* every linked header exists, is JSON, has :data:`headmaps.io.RUN_HEADER_KEYS` (versions
  of headmaps, torch, transformers and numpy), and its ``command`` holds every command
  of the block it belongs to.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from headmaps.io import RUN_HEADER_KEYS

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"
PAGES = sorted(RESULTS.glob("*.md"))

_HEADER_LINE = re.compile(r"\bheaders?:\s*((?:\[[^\]]*\]\([^)\s]+\.json\)[\s,;and]*)+)")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+\.json)\)")
_SEPARATOR = re.compile(r"^\|(\s*:?-{3,}:?\s*\|)+\s*$")
_ENV = re.compile(r"^(?:[A-Z_][A-Z0-9_]*=\S*\s+|time\s+)+")


def _commands(block: list[str]) -> list[str]:
    """The commands of a fenced block (continuation lines joined, whitespace collapsed)."""
    out, cur = [], ""
    for line in block:
        cur += " " + line.strip()
        if cur.endswith("\\"):
            cur = cur[:-1]
            continue
        if cur.strip():
            out.append(" ".join(cur.split()))
        cur = ""
    if cur.strip():
        out.append(" ".join(cur.split()))
    return out


def _is_command(block: list[str]) -> bool:
    first = next((line.strip() for line in block if line.strip()), "")
    return _ENV.sub("", first).startswith(("headmaps ", "python "))


def parse(text: str) -> list[tuple[str, int, object]]:
    """``(kind, line number, data)`` items: ``command`` (its commands), ``table``,
    ``header`` (linked paths), in page order; other fenced blocks are skipped."""
    lines = text.splitlines()
    items: list[tuple[str, int, object]] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.strip().startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith("```"):
                j += 1
            block = lines[i + 1:j]
            if _is_command(block):
                items.append(("command", i + 1, _commands(block)))
            i = j + 1
            continue
        if (line.lstrip().startswith("|") and i + 1 < len(lines)
                and _SEPARATOR.match(lines[i + 1].strip())):
            items.append(("table", i + 1, None))
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                i += 1
            continue
        m = _HEADER_LINE.search(line)
        if m:
            items.append(("header", i + 1, _LINK.findall(m.group(1))))
        i += 1
    return items


def header_problems(path: Path, commands: list[str]) -> list[str]:
    """What is wrong with one linked header (empty when it is complete)."""
    if not path.is_file():
        return [f"{path} does not exist"]
    try:
        h = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        return [f"{path} is not JSON: {err}"]
    out = [f"{path} lacks {k!r}" for k in RUN_HEADER_KEYS if k not in h]
    v = h.get("versions") or {}
    out += [f"{path}: versions lack {k!r}" for k in ("headmaps", "torch", "transformers", "numpy")
            if k not in v]
    recorded = h.get("command", [])
    recorded = [recorded] if isinstance(recorded, str) else list(recorded)
    recorded = [" ".join(c.split()) for c in recorded]
    out += [f"{path}: command {c!r} is not in its 'command'" for c in commands
            if c not in recorded]
    return out


def page_problems(page: Path) -> list[str]:
    """Every rule the page breaks, one line each with its line number."""
    problems: list[str] = []
    command: tuple[int, list[str]] | None = None
    headed = False
    for kind, line, data in parse(page.read_text(encoding="utf-8")):
        where = f"{page.name}:{line}"
        if kind == "command":
            if command is not None and not headed:
                problems.append(f"{page.name}:{command[0]}: command block without a header link")
            command, headed = (line, data), False  # type: ignore[assignment]
        elif kind == "header":
            if command is None:
                problems.append(f"{where}: header link before any command block")
                continue
            headed = True
            for rel in data:  # type: ignore[union-attr]
                problems += [f"{where}: {p}" for p in
                             header_problems((page.parent / rel).resolve(), command[1])]
        elif kind == "table":
            if command is None:
                problems.append(f"{where}: table without a command block before it")
            elif not headed:
                problems.append(f"{where}: table without a header link after its command "
                                f"(line {command[0]})")
    if command is not None and not headed:
        problems.append(f"{page.name}:{command[0]}: command block without a header link")
    return problems


def test_the_result_pages_are_found():
    names = {p.name for p in PAGES}
    assert {"smollm2-135m.md", "gemma3-270m.md", "attention.md", "head-types.md",
            "scan-speed.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_table_has_its_command_and_header(page):
    assert parse(page.read_text(encoding="utf-8")), f"{page.name} has no command or table"
    assert page_problems(page) == []


# ---- the checker itself, on synthetic pages ------------------------------------------------

_GOOD_HEADER = {"command": "headmaps validate m --experiment correlation", "model_id": "m",
                "seed": 0, "sample": {"relations": 2}, "date": "2026-01-01",
                "versions": {"headmaps": "0", "torch": "0", "transformers": "0", "numpy": "0"}}
_TABLE = "| a | b |\n|---|---|\n| 1 | 2 |\n"


def _page(tmp_path: Path, body: str, header: dict | None = _GOOD_HEADER) -> Path:
    if header is not None:
        (tmp_path / "h.json").write_text(json.dumps(header))
    page = tmp_path / "page.md"
    page.write_text(body)
    return page


def test_a_complete_page_passes(tmp_path):
    body = ("# T\n\n```\nheadmaps validate m \\\n    --experiment correlation\n```\n"
            "header: [h.json](h.json)\n\nText.\n\n" + _TABLE)
    assert page_problems(_page(tmp_path, body)) == []


def test_a_table_without_a_command_fails(tmp_path):
    assert "table without a command block" in " ".join(page_problems(_page(tmp_path, _TABLE)))


def test_a_table_without_a_header_link_fails(tmp_path):
    body = "```\nheadmaps validate m --experiment correlation\n```\n\n" + _TABLE
    problems = page_problems(_page(tmp_path, body))
    assert any("table without a header link" in p for p in problems)
    assert any("command block without a header link" in p for p in problems)


def test_a_header_missing_a_key_or_a_file_fails(tmp_path):
    body = ("```\nPYTHONPATH=src python bench.py --x 1\n```\nheader: [h](h.json)\n\n" + _TABLE
            + "\n```\nheadmaps scan m\n```\nheaders: [a](missing.json)\n\n" + _TABLE)
    bad = {k: v for k, v in _GOOD_HEADER.items() if k != "seed"} | {"command": "python other.py"}
    problems = " ".join(page_problems(_page(tmp_path, body, bad)))
    assert "lacks 'seed'" in problems
    assert "'PYTHONPATH=src python bench.py --x 1' is not in its 'command'" in problems
    assert "missing.json does not exist" in problems


def test_tables_inside_code_blocks_are_output_not_tables(tmp_path):
    body = "```\nheadmaps scan m\n```\nheader: [h](h.json)\n\n```\n" + _TABLE + "```\n"
    items = parse(body)
    assert [k for k, _, _ in items] == ["command", "header"]


#: Local folders that must not appear in committed docs, results headers or examples.
_LOCAL = re.compile(r"(?<![\w.])/(?:root|home|tmp|work|Users)/[^\s\"'`)]+")


def test_committed_docs_and_headers_hold_no_local_paths():
    root = Path(__file__).resolve().parents[1]
    found = []
    for folder in ("docs", "benchmarks"):
        for path in (root / folder).rglob("*"):
            if path.suffix in (".md", ".json", ".txt", ".py", ".csv", ".ipynb") and path.is_file():
                text = path.read_text(encoding="utf-8", errors="ignore")
                found += [f"{path.relative_to(root)}: {m}" for m in _LOCAL.findall(text)]
    found += [f"README.md: {m}" for m in _LOCAL.findall((root / "README.md").read_text())]
    assert not found, found[:10]

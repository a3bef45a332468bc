"""mkdocs hook: the command-line reference, generated from ``headmaps.cli``'s parser.

``docs/reference/cli.md`` holds the line :data:`MARKER`; when the site is built, that
line is replaced by :func:`render`: a table of every command, then one section per
command (and per action of ``relations`` and ``cache``) with its usage line, description
and every argument with its help, choices and default, walked from
:func:`headmaps.cli.build_parser`. The page therefore cannot drift from ``--help``;
``tests/test_docs.py`` checks that every command and every option reaches the built page.

This file is excluded from the site (``exclude_docs`` in ``mkdocs.yml``).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

#: The line of ``docs/reference/cli.md`` replaced by the generated reference.
MARKER = "<!-- headmaps:cli-reference -->"

#: Page (relative to ``docs/``) that holds the marker.
PAGE = "reference/cli.md"

_SRC = Path(__file__).resolve().parents[1] / "src"
if _SRC.is_dir() and str(_SRC) not in sys.path:  # document this checkout, as mkdocstrings does
    sys.path.insert(0, str(_SRC))

#: Width of the usage lines (fixed, so the page does not depend on the terminal).
WIDTH = 88


def build_parser() -> argparse.ArgumentParser:
    """The ``headmaps`` parser, as the command line builds it."""
    from headmaps.cli import build_parser as build

    return build()


def commands(parser: argparse.ArgumentParser | None = None,
             ) -> list[tuple[str, argparse.ArgumentParser, str]]:
    """Every command as ``(name, parser, one-line help)``, ``headmaps`` itself first.

    Names are the full invocation (``"headmaps relations list"``); nested actions follow
    their command.
    """
    parser = parser or build_parser()
    out = [("headmaps", parser, parser.description or "")]

    def walk(p: argparse.ArgumentParser, prefix: str) -> None:
        for action in p._actions:
            if not isinstance(action, argparse._SubParsersAction):
                continue
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                full = f"{prefix} {name}"
                out.append((full, sub, helps.get(name, "")))
                walk(sub, full)

    walk(parser, "headmaps")
    return out


def anchor(name: str) -> str:
    """The heading id of a command's section, as the site's table of contents makes it.

    ``"headmaps relations list"`` -> ``"headmaps-relations-list"``.
    """
    return name.replace(" ", "-")


_CODE = re.compile(r"(`[^`]*`)")
_SPECIAL = re.compile(r"([\\*_\[\]<>])")


def text(s: str) -> str:
    """``s`` as Markdown text: code spans kept, everything else escaped.

    So ``<|eos|>``, ``*.gguf`` and ``a_b`` print as they are.
    """
    parts = _CODE.split(s)
    return "".join(p if p.startswith("`") and p.endswith("`") and len(p) > 1
                   else _SPECIAL.sub(r"\\\1", p) for p in parts)


def _formatter(parser: argparse.ArgumentParser) -> argparse.HelpFormatter:
    return parser.formatter_class(prog=parser.prog, width=WIDTH)


def usage(parser: argparse.ArgumentParser) -> str:
    """The usage line(s) of ``parser`` at :data:`WIDTH` columns."""
    f = _formatter(parser)
    f.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return f.format_help().strip()


def _shown(value: object) -> bool:
    return value is not None and value is not False and value != argparse.SUPPRESS \
        and value != []


def argument(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """One bullet: the argument as typed, its help, its choices and default."""
    f = _formatter(parser)
    invocation = f._format_action_invocation(action)
    line = f"- `{invocation}`"
    help_text = f._expand_help(action) if action.help else ""
    if help_text:
        line += ": " + text(help_text)
    extras = []
    # choices not already shown by the invocation (``{a,b}``) nor named by the help
    if (action.choices and action.metavar is not None
            and not isinstance(action, argparse._SubParsersAction)):
        listed = ", ".join(f"`{c}`" for c in action.choices)
        if not all(str(c) in help_text for c in action.choices):
            extras.append(f"one of {listed}")
    if (_shown(action.default) and action.option_strings
            and "default" not in help_text.lower()):
        extras.append(f"default `{action.default}`")
    if action.required and action.option_strings:
        extras.append("required")
    if extras:
        line += ("" if help_text else ":") + " (" + "; ".join(extras) + ")"
    return line


def section(name: str, parser: argparse.ArgumentParser, summary: str) -> str:
    """The Markdown section of one command."""
    lines = [f"## {name}", ""]
    if summary and name != "headmaps":
        lines += [f"*{text(summary)}*", ""]
    if parser.description:
        lines += [text(parser.description), ""]
    lines += ["```text", usage(parser), "```", ""]
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if a.help != argparse.SUPPRESS
                   and not isinstance(a, argparse._HelpAction)]
        subs = [a for a in actions if isinstance(a, argparse._SubParsersAction)]
        actions = [a for a in actions if a not in subs]
        if subs:
            lines += ["**Commands**", ""]
            for sub in subs:
                for choice in sub._choices_actions:
                    full = f"{name} {choice.dest}"
                    lines.append(f"- [`{full}`](#{anchor(full)}): {text(choice.help or '')}")
            lines.append("")
        if actions:
            lines += [f"**{text(group.title or 'arguments')}**", ""]
            if group.description:
                lines += [text(group.description), ""]
            lines += [argument(parser, a) for a in actions]
            lines.append("")
    if parser.epilog:
        lines += [text(parser.epilog), ""]
    return "\n".join(lines)


def render(parser: argparse.ArgumentParser | None = None) -> str:
    """The whole generated reference: a table of the commands, then every section."""
    cmds = commands(parser)
    lines = ["| command | what it does |", "| --- | --- |"]
    for name, _, summary in cmds[1:]:
        lines.append(f"| [`{name}`](#{anchor(name)}) | {text(summary).replace('|', '&#124;')} |")
    lines.append("")
    lines += [section(name, p, summary) for name, p, summary in cmds]
    return "\n".join(lines)


#: A Sphinx role left in a rendered docstring: ``:func:<code>headmaps.load</code>``.
_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj|const):"
                   r"<code>(~?)(\.?[A-Za-z_][\w.]*)(\(\))?</code>")


def sphinx_roles(html: str) -> str:
    """Sphinx roles of the docstrings as cross-references of the site.

    The docstrings use Sphinx roles (``:class:`HeadModel```), which mkdocstrings shows as
    they are. Each becomes an optional autorefs reference: a link where the object has an
    entry in the reference (a bare name is tried as ``headmaps.<name>``), plain code where
    it has none. ``~a.b.c`` shows ``c``, as in Sphinx; a relative name (``.io``) stays code.
    """

    def link(m: re.Match[str]) -> str:
        tilde, ident, call = m.groups()
        title = (ident.rsplit(".", 1)[-1] if tilde else ident) + (call or "")
        if ident.startswith("."):
            return f"<code>{title}</code>"
        target = ident if "." in ident else f"headmaps.{ident}"
        return f'<autoref identifier="{target}" optional><code>{title}</code></autoref>'

    return _ROLE.sub(link, html)


def on_page_content(html: str, *, page, config, files) -> str:
    """Turn the docstrings' Sphinx roles into links (the mkdocs ``page_content`` event)."""
    return sphinx_roles(html)


def on_page_markdown(markdown: str, *, page, config, files) -> str:
    """Fill the marker of the CLI reference page (the mkdocs ``page_markdown`` event)."""
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise ValueError(f"{PAGE} lost its marker {MARKER!r}")
    return markdown.replace(MARKER, render())

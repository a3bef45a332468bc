"""Keep local paths out of a report meant to be shared.

A report is a file people send to colleagues; the user's home folder, cache folder or
site-packages path has no place in it. Every string the page shows about the model
(its id, source, title, skip reasons) goes through :func:`shareable`, which keeps the
file or folder name of each absolute path and drops the folders above it. Aliases and
hub ids (``smollm2-135m``, ``org/name``) are not absolute paths and stay as they are.
"""

from __future__ import annotations

import re
from typing import Any

#: An absolute POSIX path (``/a/b``, at least two parts), a home path (``~/a``) or a
#: Windows path (``C:\a``), up to whitespace, a quote, a comma or a bracket.
_ABS_PATH = re.compile(r"""(?<![\w.~/])(?:~|[A-Za-z]:)?[/\\]"""
                       r"""(?:[^\s'"`,;()\[\]{}<>/\\]+[/\\])+[^\s'"`,;()\[\]{}<>/\\]*""")


def _name(match: re.Match[str]) -> str:
    parts = [p for p in re.split(r"[/\\]", match.group(0)) if p]
    return parts[-1] if parts else match.group(0)


def shareable(value: Any) -> Any:
    """``value`` with every absolute local path replaced by its last part.

    Strings are rewritten, dicts, lists and tuples are walked; anything else is
    returned as it is.

    >>> shareable("/home/me/.cache/headmaps/smollm2.gguf")
    'smollm2.gguf'
    >>> shareable("HuggingFaceTB/SmolLM2-135M")
    'HuggingFaceTB/SmolLM2-135M'
    """
    if isinstance(value, str):
        return _ABS_PATH.sub(_name, value)
    if isinstance(value, dict):
        return {k: shareable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(shareable(v) for v in value)
    return value

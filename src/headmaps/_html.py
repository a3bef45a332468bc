"""Compact HTML for Jupyter's ``_repr_html_`` of the result types (escaped, no styles)."""

from __future__ import annotations

import html
from collections.abc import Sequence

import pandas as pd


def html_card(title: str, frame: pd.DataFrame | None = None, notes: Sequence[str] = (),
              float_format: str = "{:.3f}") -> str:
    """A bold title, optional lines of notes and a table, all escaped.

    Args:
        title: first line, in bold.
        frame: the table (cells are escaped by pandas); None for none.
        notes: lines shown between the title and the table.
        float_format: how float cells are written.

    Returns:
        An HTML fragment (``<div>...</div>``).
    """
    parts = [f"<b>{html.escape(title)}</b>"]
    parts += [f"<br>{html.escape(line)}" for line in notes]
    if frame is not None:
        parts.append(frame.to_html(index=False, escape=True, float_format=float_format.format))
    return f"<div>{''.join(parts)}</div>"

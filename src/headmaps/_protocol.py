"""The one protocol every headmaps result follows.

A result (a scan, salient operations, the QK half, head types, an experiment, a
calibration, a head report, description scores, a head diff) is a dataclass that can::

    res.save(path)             # write itself (tables + a JSON header; atomic)
    type(res).load(path)       # read it back
    res.to_frame()             # a tidy pandas DataFrame
    res._repr_html_()          # a compact HTML card (Jupyter shows it)
    res.figure()               # a matplotlib Figure (never a file: io.write_figure writes)
    res.summary_markdown()     # a Markdown summary
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure


@runtime_checkable
class Result(Protocol):
    """What every result offers (see the module docstring)."""

    def save(self, path: str | os.PathLike) -> Path: ...  # noqa: D102

    @classmethod
    def load(cls, path: str | os.PathLike) -> Any: ...  # noqa: D102

    def to_frame(self) -> pd.DataFrame: ...  # noqa: D102

    def _repr_html_(self) -> str: ...

    def figure(self) -> Figure: ...  # noqa: D102

    def summary_markdown(self) -> str: ...  # noqa: D102


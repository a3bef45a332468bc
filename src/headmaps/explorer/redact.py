"""Keep local paths out of a report meant to be shared.

A report is a file people send to colleagues; the user's home folder, cache folder or
site-packages path has no place in it. Every string the page shows about the model
(its id, source, title, skip reasons) goes through :func:`shareable`, which keeps the
file or folder name of each absolute path and drops the folders above it. Aliases and
hub ids (``smollm2-135m``, ``org/name``) are not absolute paths and stay as they are.
The function lives in :mod:`headmaps.io`, which applies it to every results header too.
"""

from __future__ import annotations

from ..io import shareable

__all__ = ["shareable"]

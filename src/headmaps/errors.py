"""Exceptions with messages a user can act on. The CLI prints them without a traceback."""

from __future__ import annotations


class HeadmapsError(Exception):
    """Base class of every error headmaps raises on bad input."""


class ModelNotFoundError(HeadmapsError, FileNotFoundError):
    """An alias, hub id or path that does not lead to a model."""


class CorruptFileError(HeadmapsError, ValueError):
    """A model or data file exists but cannot be read."""


class UnsupportedArchitectureError(HeadmapsError, ValueError):
    """The model's ``model_type`` has no adapter."""


class MissingComponentError(HeadmapsError, ValueError):
    """The model was loaded without a part a feature needs (tokenizer, transformers model)."""


class OutOfRangeError(HeadmapsError, IndexError):
    """A layer, head or other index outside the valid range (the message gives it)."""


class MissingFileError(HeadmapsError, FileNotFoundError):
    """A result or input file that is not there."""

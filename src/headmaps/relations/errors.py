"""Errors raised by the relation library; all are :class:`~headmaps.errors.HeadmapsError`."""

from __future__ import annotations

from ..errors import HeadmapsError


class RelationError(HeadmapsError):
    """Base class of every relation-library error."""


class RelationDataError(RelationError, ValueError):
    """A relation file (built-in or user) is malformed.

    The message names the file, the line or item, and the problem.
    """


class UnknownRelationError(RelationError, KeyError):
    """A name that is neither a built-in relation nor an existing relation file."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class InvalidRelationError(RelationError, ValueError):
    """Too few pairs survive tokenisation for a relation to be scored on a model."""


class TokenizerError(RelationError, ValueError):
    """The model has no usable tokenizer."""

"""The describer interface: salient operations in, a description in words out."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..salient import SalientOperations

#: ``Description.category`` of an answer without a clear pattern.
UNCLEAR = "unclear"
#: ``Description.category`` when the describer failed (invalid LLM answer...).
ERROR = "error"


@dataclass
class Description:
    """What a describer says about one head.

    Attributes:
        layer, head: the head.
        text: a short description in words ("Unclear" when there is none).
        category: the kind of pattern: ``copying``, ``relation``, ``inverse_relation``,
            ``first_letter``, ``last_letter``, ``affix``, ``numeric``, ``target_category``,
            ``input_category``, ``llm`` (a clear LLM answer), ``unclear`` or ``error``.
        relation: the relation or category name the pattern refers to, if any
            (``country_to_capital``, ``countries``, ``-ed``...).
        family: the relation family (``algorithmic``, ``knowledge``, ``linguistic``,
            ``translation``), if known.
        evidence: the mappings that support the description, dicts with ``source``,
            ``target`` and ``why``.
        confidence: 0..1, roughly the fraction of salient tokens the pattern explains.
        unclear: True when no clear pattern was found (or the describer failed).
        describer: which describer produced it (``pattern`` or ``llm:<model>``).
        input_strings: what the inputs share, in words, or ``""``.
        error: why the describer failed, or None.
        raw: the describer's raw answer (the LLM's parsed JSON), or None.
        rule: the machine-readable rule the description names, ``"<kind>:<key>"``, when the
            describer used one (the pattern describer: ``rule:copy``,
            ``rule:first_letter``, ``relation:country_to_capital``,
            ``inverse_relation:...``, ``target_category:capital cities``), else None. A
            description with a rule can be scored offline (:mod:`headmaps.describe.scoring`).
    """

    layer: int
    head: int
    text: str
    category: str
    relation: str | None = None
    family: str | None = None
    evidence: list[dict[str, Any]] = field(default_factory=list)
    confidence: float = 0.0
    unclear: bool = False
    describer: str = ""
    input_strings: str = ""
    error: str | None = None
    raw: dict[str, Any] | None = None
    rule: str | None = None

    @property
    def name(self) -> str:
        """``"L.H"``."""
        return f"{self.layer}.{self.head}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (one line of ``descriptions.jsonl``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Description:
        """Inverse of :meth:`to_dict`."""
        return cls(**d)

    def __str__(self) -> str:
        conf = f" (confidence {self.confidence:.2f})" if not self.unclear else ""
        return f"{self.name}: {self.text}{conf}"


@runtime_checkable
class Describer(Protocol):
    """Anything that turns :class:`SalientOperations` into a :class:`Description`."""

    name: str

    def describe(self, ops: SalientOperations) -> Description:
        """Describe one head from its salient operations."""
        ...


def unclear(ops: SalientOperations, describer: str, *, error: str | None = None,
            input_strings: str = "", raw: dict[str, Any] | None = None) -> Description:
    """An "Unclear" description (category ``error`` when ``error`` is given)."""
    return Description(ops.layer, ops.head, "Unclear", ERROR if error else UNCLEAR, unclear=True,
                       describer=describer, input_strings=input_strings, error=error, raw=raw)

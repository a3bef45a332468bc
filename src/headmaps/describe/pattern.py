"""`PatternDescriber`: describe a head offline by checking its mappings against rules.

For every salient source token and each of its top targets the describer asks which
patterns explain the pair: copying (case/space variants included), a relation of the
built-in library (or its inverse), first/last letter, a regular prefix/suffix change,
numeric successor/predecessor, or a target belonging to a category of the library
(all countries, all capitals...). A pattern's support is the number of salient sources
with at least one target it explains. The best-supported pattern wins when it explains
at least ``min_fraction`` of the sources (and ``min_hits`` of them); otherwise the
describer says what the inputs share when most of them belong to one category (all
years, all country names, all verbs...), or "Unclear".
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..salient import SalientOperations
from . import rules
from .base import Description, unclear
from .library import LibraryRelation, category_sets, from_mapping, key, labels_for, load_library

logger = logging.getLogger(__name__)

#: Rank weights: a specific rule beats a category when both explain as many sources.
_WEIGHT = {"relation": 1.0, "rule": 0.995, "inverse_relation": 0.97, "target_category": 0.9}

_YEAR = re.compile(r"^(1[0-9]|20|21)[0-9]{2}$")


@dataclass
class _Candidate:
    kind: str  # rule | relation | inverse_relation | target_category
    key: str  # rule key, relation name or category label
    hits: dict[int, tuple[str, str, str]] = field(default_factory=dict)  # source idx -> evidence

    def add(self, i: int, s: str, t: str, why: str) -> None:
        self.hits.setdefault(i, (s, t, why))


class PatternDescriber:
    """Offline describer (the default). See the module docstring for the method.

    Args:
        relations: relations to recognise: None for the built-in library, or a mapping
            name -> pairs (or name -> ``(family, pairs)``).
        min_fraction: fraction of salient sources a pattern must explain.
        min_hits: and at least this many sources.
        min_input_fraction: fraction of inputs in one category for "inputs are X".
        max_examples: mappings quoted in the text.
        min_relative_score: a target takes part only when its score is within this
            fraction of the source's best score (``score >= best - f * |best|``), so that
            near-zero tail targets of a sharp head do not count.
        min_distinct_targets: a target category must be reached through this many
            different targets (a head that sends every input to one frequent token,
            such as " I" or " or", is not "mapping inputs to letters/French words").
    """

    name = "pattern"

    def __init__(self, relations: Mapping[str, Any] | None = None, *, min_fraction: float = 0.3,
                 min_hits: int = 3, min_input_fraction: float = 0.5, max_examples: int = 3,
                 min_relative_score: float = 0.5, min_distinct_targets: int = 3):
        self._user_relations = relations
        self._relations: list[LibraryRelation] | None = None
        self._categories: dict[str, tuple[set[str], set[str], set[str]]] | None = None
        self.min_fraction = min_fraction
        self.min_hits = min_hits
        self.min_input_fraction = min_input_fraction
        self.max_examples = max_examples
        self.min_relative_score = min_relative_score
        self.min_distinct_targets = min_distinct_targets

    # ---- library -------------------------------------------------------------------
    def _prepare(self) -> None:
        if self._relations is not None:
            return
        user = self._user_relations
        rels = load_library() if user is None else from_mapping(user)
        self._categories = category_sets(rels)
        # relations that a string rule already explains (copying, letters, years) are
        # left to the rule, which is more general than the list
        kept = []
        for rel in rels:
            pairs = [(s, t) for s, ts in rel.forward.items() for t in ts]
            rule_kinds = ("copy", "first_letter", "last_letter", "successor", "predecessor")
            explained = sum(1 for s, t in pairs if rules.explain(s, t) in rule_kinds)
            if pairs and explained / len(pairs) >= 0.8:
                continue
            kept.append(rel)
        self._relations = kept

    @property
    def relations(self) -> list[LibraryRelation]:
        """The relations matched against mappings (rule-like ones excluded)."""
        self._prepare()
        return list(self._relations or [])

    # ---- describing ----------------------------------------------------------------
    def describe(self, ops: SalientOperations) -> Description:
        """Describe one head; never raises on odd tokens."""
        return self.candidates(ops, 1)[0]

    def candidates(self, ops: SalientOperations, n_cands: int = 3) -> list[Description]:
        """Up to ``n_cands`` candidate descriptions of one head, the best-supported first.

        The first is :meth:`describe`'s answer; the others name the next patterns that
        explain enough sources (``min_fraction``, ``min_hits``). A head without any gives
        one description ("Unclear" or what the inputs share).
        """
        self._prepare()
        cats = self._categories or {}
        sources = [s.strip() for s in ops.tokens]
        idx = [i for i, s in enumerate(sources) if s]
        n = len(idx)
        inputs, input_label, input_frac = self._inputs(sources, idx)
        if n == 0:
            return [unclear(ops, self.name)]
        cands: dict[tuple[str, str], _Candidate] = {}

        def cand(kind: str, k: str) -> _Candidate:
            return cands.setdefault((kind, k), _Candidate(kind, k))

        for i in idx:
            s = sources[i]
            ks = key(s)
            row = [float(x) for x in ops.scores[i]] if len(ops.scores) else []
            floor = max(row) - self.min_relative_score * abs(max(row)) if row else float("-inf")
            for j, t_raw in enumerate(ops.targets[i]):
                t = t_raw.strip()
                if not t or (row and row[j] < floor):
                    continue
                kt = key(t)
                rk = rules.explain(s, t)
                if rk:
                    cand("rule", rk).add(i, s, t, rk)
                for rel in self._relations or []:
                    if kt in rel.forward.get(ks, ()):
                        cand("relation", rel.name).add(i, s, t, rel.name)
                    if kt in rel.inverse.get(ks, ()):
                        cand("inverse_relation", rel.name).add(i, s, t, f"inverse of {rel.name}")
                if kt != ks:
                    for label, (members, _names, _fams) in cats.items():
                        if kt in members:
                            cand("target_category",
                                 label).add(i, s, t, f"target is one of the {label}")
        ranked = sorted(cands.values(),
                        key=lambda c: (-len(c.hits) * _WEIGHT.get(c.kind, 1.0), c.kind, c.key))
        need = max(self.min_hits, self.min_fraction * n)
        good = [c for c in ranked if len(c.hits) >= need and (
            c.kind != "target_category"
            or len({key(t) for _, t, _ in c.hits.values()}) >= self.min_distinct_targets)]
        if not good:
            return [self._input_only(ops, n, inputs, input_label, input_frac)]
        return [self._describe_as(ops, n, inputs, best, [c for c in good if c is not best])
                for best in good[:max(1, n_cands)]]

    def _describe_as(self, ops: SalientOperations, n: int, inputs: str, best: _Candidate,
                     good: list[_Candidate]) -> Description:
        """The description naming ``best`` (``good``: the other patterns, for "also ...")."""
        good = [best, *good]
        text, category, relation, family = self._words(best)
        examples = list(best.hits.values())[: self.max_examples]
        text += " — e.g. " + ", ".join(f"{s} → {t}" for s, t, _ in examples)
        if inputs:
            text += f"; inputs: {inputs}"
        others = [c for c in good[1:] if c.kind != best.kind or c.key != best.key]
        seconds = [c for c in others if not self._same_family(best, c)][:1]
        for c in seconds:
            text += f"; also {self._short(c)} ({len(c.hits)}/{n})"
        evidence = [{"source": s, "target": t, "why": why} for s, t, why in best.hits.values()]
        for c in seconds:
            evidence += [{"source": s, "target": t, "why": why} for s, t, why in c.hits.values()]
        conf = min(1.0, len(best.hits) / n * _WEIGHT.get(best.kind, 1.0))
        return Description(ops.layer, ops.head, text, category, relation, family, evidence,
                           round(conf, 3),
                           False, self.name, inputs, rule=f"{best.kind}:{best.key}")

    # ---- the rule of a description, as a predictor (offline scoring) ---------------
    def rule_applies(self, rule: str, source: str) -> bool:
        """Whether ``rule`` (a :attr:`Description.rule`) predicts anything for ``source``.

        Raises:
            KeyError: a rule this describer does not know (another relation library).
        """
        self._prepare()
        kind, k = rule.split(":", 1)
        s = source.strip()
        if kind == "rule":
            return rules.applies(k, s)
        if kind == "relation":
            return key(s) in self._relation(k).forward
        if kind == "inverse_relation":
            return key(s) in self._relation(k).inverse
        if kind == "target_category":
            (self._categories or {})[k]  # noqa: B018 - KeyError for an unknown category
            return bool(key(s))
        raise KeyError(rule)

    def rule_hit(self, rule: str, source: str, target: str) -> bool:
        """Whether ``source -> target`` is what ``rule`` predicts (texts are stripped)."""
        self._prepare()
        kind, k = rule.split(":", 1)
        s, t = source.strip(), target.strip()
        if not s or not t:
            return False
        if kind == "rule":
            return rules.check(k, s, t)
        ks, kt = key(s), key(t)
        if kind == "relation":
            return kt in self._relation(k).forward.get(ks, ())
        if kind == "inverse_relation":
            return kt in self._relation(k).inverse.get(ks, ())
        if kind == "target_category":
            return kt != ks and kt in (self._categories or {})[k][0]
        raise KeyError(rule)

    def _relation(self, name: str) -> LibraryRelation:
        for rel in self._relations or []:
            if rel.name == name:
                return rel
        raise KeyError(f"relation:{name}")

    def _same_family(self, a: _Candidate, b: _Candidate) -> bool:
        """Whether ``b`` only restates ``a`` (same sources explained by a related pattern)."""
        return set(b.hits) <= set(a.hits) and b.kind != "rule" and a.kind != "rule"

    def _short(self, c: _Candidate) -> str:
        """A few words naming a candidate (for "also ..." remarks)."""
        if c.kind == "rule":
            return "copying" if c.key == "copy" else rules.describe_key(c.key).lower()
        if c.kind == "relation":
            return f"relation {c.key}"
        if c.kind == "inverse_relation":
            return f"inverse of {c.key}"
        return f"maps to {c.key}"

    def _words(self, c: _Candidate) -> tuple[str, str, str | None, str | None]:
        """(text, category, relation, family) of a candidate."""
        if c.kind == "rule":
            return rules.describe_key(c.key), rules.category_of_key(c.key), c.key, "algorithmic"
        if c.kind in ("relation", "inverse_relation"):
            rel = next(r for r in self._relations or [] if r.name == c.key)
            src, tgt = labels_for(rel.name)
            arrow = f"{src} → {tgt}" if src and tgt else rel.description.rstrip(".") or rel.name
            fam = f", {rel.family}" if rel.family else ""
            if c.kind == "relation":
                text = f"Relation {rel.name} ({arrow}{fam})"
                return text, "relation", rel.name, rel.family or None
            inv = f"{tgt} → {src}" if src and tgt else f"inverse of: {arrow}"
            text = f"Inverse of relation {rel.name} ({inv}{fam})"
            return text, "inverse_relation", rel.name, rel.family or None
        members, names, fams = (self._categories or {})[c.key]
        fam = "/".join(sorted(fams)) or None
        src_of = ", ".join(sorted(names))
        text = f"Maps inputs to {c.key} (relation family: {fam or 'unknown'}, as in {src_of})"
        return text, "target_category", c.key, fam

    def _inputs(self, sources: list[str], idx: list[int]) -> tuple[str, str | None, float]:
        """What most inputs share: (words, label, fraction), or ("", None, 0)."""
        if not idx:
            return "", None, 0.0
        keys = [key(sources[i]) for i in idx]
        checks: dict[str, Any] = {
            "years": lambda k: bool(_YEAR.match(k)),
            "numbers": lambda k: k.isdigit(),
            "single letters": lambda k: len(k) == 1 and k.isalpha(),
        }
        for label, (members, _n, _f) in (self._categories or {}).items():
            checks.setdefault(label, lambda k, m=members: k in m)
        best_label, best = None, 0
        for label, check in checks.items():
            c = sum(1 for k in keys if check(k))
            if c > best:
                best_label, best = label, c
        frac = best / len(keys)
        if best_label is None or frac < self.min_input_fraction or best < self.min_hits:
            caps = sum(1 for i in idx if sources[i][:1].isupper())
            if caps / len(idx) >= 0.8:
                return f"mostly capitalised words ({caps}/{len(idx)})", None, 0.0
            return "", None, 0.0
        return f"mostly {best_label} ({best}/{len(keys)})", best_label, frac

    def _input_only(self, ops: SalientOperations, n: int, inputs: str, label: str | None,
                    frac: float) -> Description:
        if label is None:
            return unclear(ops, self.name, input_strings=inputs)
        fam = None
        if label in (self._categories or {}):
            fams = self._categories[label][2]
            fam = "/".join(sorted(fams)) or None
        text = f"Inputs are {inputs}; no clear mapping pattern"
        return Description(ops.layer, ops.head, text, "input_category", label, fam, [],
                           round(0.5 * frac, 3),
                           False, self.name, inputs)

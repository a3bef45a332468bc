"""String rules that explain one mapping ``source -> target`` without any data.

Each rule takes the stripped source and target texts and returns a pattern key (the
pattern the pair shows) or None. Keys name the pattern precisely enough to be grouped:
``copy``, ``first_letter``, ``last_letter``, ``successor``, ``predecessor``,
``add:-ed``, ``remove:-s``, ``add:un-``.
"""

from __future__ import annotations

#: suffix group label -> suffixes that realise it (after optional spelling changes).
SUFFIXES: dict[str, tuple[str, ...]] = {
    "-ed": ("ed", "d"),
    "-s": ("s", "es"),
    "-er": ("er", "r"),
    "-est": ("est", "st"),
    "-ing": ("ing",),
    "-ly": ("ly",),
}

#: human label of each suffix group.
SUFFIX_MEANING: dict[str, str] = {
    "-ed": "past tense",
    "-s": "plural / third person",
    "-er": "comparative",
    "-est": "superlative",
    "-ing": "progressive",
    "-ly": "adverb",
}

PREFIXES = ("un", "re", "dis", "in", "im", "non", "pre", "mis")


def copy(s: str, t: str) -> str | None:
    """``copy`` when ``t`` is ``s`` up to case and surrounding spaces."""
    return "copy" if s and s.casefold() == t.casefold() else None


def first_letter(s: str, t: str) -> str | None:
    """``first_letter`` when ``t`` is the first letter of the word ``s``."""
    if len(s) > 1 and len(t) == 1 and t.isalpha() and s[0].casefold() == t.casefold():
        return "first_letter"
    return None


def last_letter(s: str, t: str) -> str | None:
    """``last_letter`` when ``t`` is the last letter of the word ``s``."""
    if len(s) > 1 and len(t) == 1 and t.isalpha() and s[-1].casefold() == t.casefold():
        return "last_letter"
    return None


def numeric(s: str, t: str) -> str | None:
    """``successor``/``predecessor`` for integers ``t = s + 1`` / ``t = s - 1``."""
    if not (s.isdigit() and t.isdigit()) or len(s) > 12 or len(t) > 12:
        return None
    d = int(t) - int(s)
    return {1: "successor", -1: "predecessor"}.get(d)


def _inflect(stem: str, suffix: str) -> set[str]:
    """Spellings of ``stem + suffix``: plain, e-drop, y -> i, doubled final consonant."""
    out = {stem + suffix}
    if stem.endswith("e") and suffix[0] in "aeiou":
        out.add(stem[:-1] + suffix)
    if stem.endswith("y") and len(stem) > 2 and stem[-2] not in "aeiou" and suffix[0] in "e":
        out.add(stem[:-1] + "i" + suffix)
    if (len(stem) >= 3 and stem[-1] not in "aeiouwxy" and stem[-2] in "aeiou"
            and stem[-3] not in "aeiou" and suffix[0] in "aeiou"):
        out.add(stem + stem[-1] + suffix)
    return out


def affix(s: str, t: str) -> str | None:
    """``add:-ed`` / ``remove:-ed`` / ``add:un-`` ... for regular affix changes."""
    a, b = s.casefold(), t.casefold()
    if len(a) < 2 or len(b) < 2 or a == b or not a.isalpha() or not b.isalpha():
        return None
    for label, sufs in SUFFIXES.items():
        for suf in sufs:
            if b in _inflect(a, suf):
                return f"add:{label}"
            if a in _inflect(b, suf):
                return f"remove:{label}"
    for pre in PREFIXES:
        if b == pre + a:
            return f"add:{pre}-"
        if a == pre + b:
            return f"remove:{pre}-"
    return None


#: The rules, in the order they are tried (first match wins for one pair).
RULES = (copy, first_letter, last_letter, numeric, affix)


def explain(s: str, t: str) -> str | None:
    """The first rule that explains ``s -> t`` (stripped texts), or None."""
    for rule in RULES:
        k = rule(s, t)
        if k:
            return k
    return None


def check(k: str, s: str, t: str) -> bool:
    """Whether ``s -> t`` (stripped texts) shows the pattern of rule key ``k``."""
    if k in ("copy", "first_letter", "last_letter"):
        rule = {"copy": copy, "first_letter": first_letter, "last_letter": last_letter}[k]
        return rule(s, t) == k
    if k in ("successor", "predecessor"):
        return numeric(s, t) == k
    if k.startswith(("add:", "remove:")):
        return affix(s, t) == k
    raise KeyError(f"rule:{k}")


def applies(k: str, s: str) -> bool:
    """Whether rule key ``k`` predicts a target for the (stripped) source ``s``.

    A word-to-letter rule needs a word starting/ending with a letter, a numeric rule a
    number, a suffix rule a word (``remove:`` a word ending in that suffix), a prefix rule
    a word (``remove:`` one starting with that prefix).
    """
    if not s:
        return False
    if k == "copy":
        return True
    if k == "first_letter":
        return len(s) > 1 and s[0].isalpha()
    if k == "last_letter":
        return len(s) > 1 and s[-1].isalpha()
    if k in ("successor", "predecessor"):
        return s.isdigit() and len(s) <= 12 and (k == "successor" or int(s) > 0)
    if k.startswith(("add:", "remove:")):
        op, aff = k.split(":", 1)
        a = s.casefold()
        if len(a) < 2 or not a.isalpha():
            return False
        if op == "add":
            return True
        if aff.endswith("-"):
            pre = aff[:-1]
            return a.startswith(pre) and len(a) >= len(pre) + 2
        return any(a.endswith(suf) and len(a) >= len(suf) + 2 for suf in SUFFIXES[aff])
    raise KeyError(f"rule:{k}")


def describe_key(k: str) -> str:
    """Words for a rule key."""
    if k == "copy":
        return "Copying: maps tokens to themselves (incl. case and space variants)"
    if k == "first_letter":
        return "Word to its first letter"
    if k == "last_letter":
        return "Word to its last letter"
    if k == "successor":
        return "Number to its successor (n -> n+1)"
    if k == "predecessor":
        return "Number to its predecessor (n -> n-1)"
    op, aff = k.split(":", 1)
    verb = "Adds" if op == "add" else "Removes"
    if aff.endswith("-"):
        return f"{verb} the prefix {aff}"
    return f"{verb} the suffix {aff} ({SUFFIX_MEANING.get(aff, 'inflection')})"


def category_of_key(k: str) -> str:
    """The ``Description.category`` of a rule key."""
    if k == "copy":
        return "copying"
    if k in ("first_letter", "last_letter"):
        return k
    if k in ("successor", "predecessor"):
        return "numeric"
    return "affix"

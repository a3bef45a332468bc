"""A realistic synthetic scan (and extras) for tests, demos and the scale check.

The numbers imitate what real scans show: most heads score near zero, each relation
has a handful of strong heads concentrated in a band of layers (algorithmic relations
early to middle, knowledge and translation later), heads of one KV group often agree,
suppression heads sit late, some heads implement several relations, and descriptions
cover middle and upper layers better than the first ones. Nothing here is a real model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..scoring.results import DEFAULT_TAU, ScanResult
from .schema import HeadExtras

#: The paper's 20 relations (built-in names; the built-in successor is not drawn), with a
#: typical depth (fraction of the layers) where their heads sit.
RELATIONS: dict[str, float] = {
    "copying": 0.35, "name_copying": 0.45, "word_first_letter": 0.5, "word_last_letter": 0.55,
    "year_to_following": 0.5, "country_to_capital": 0.65, "country_to_language": 0.65,
    "object_to_superclass": 0.6, "product_to_company": 0.7, "work_to_location": 0.7,
    "antonym": 0.6, "adj_to_comparative": 0.55, "adj_to_superlative": 0.55,
    "noun_to_pronoun": 0.5, "verb_to_past_tense": 0.55, "word_to_homophone": 0.6,
    "word_to_synonym": 0.6, "word_to_compound": 0.6, "english_to_french": 0.75,
    "english_to_spanish": 0.75,
}

#: A few example pairs so that synthetic heads show plausible mappings.
_EXAMPLES: dict[str, list[tuple[str, str]]] = {
    "country_to_capital": [(" France", " Paris"), (" Italy", " Rome"), (" Japan", " Tokyo"),
                           (" Egypt", " Cairo"),
                           (" Peru", " Lima"), (" Spain", " Madrid"), (" Kenya", " Nairobi")],
    "country_to_language": [(" France", " French"), (" Italy", " Italian"), (" Japan", " Japanese"),
                            (" Brazil", " Portuguese"), (" Germany", " German")],
    "verb_to_past_tense": [(" walk", " walked"), (" run", " ran"), (" eat", " ate"),
                           (" go", " went"), (" see", " saw")],
    "antonym": [(" hot", " cold"), (" up", " down"), (" big", " small"), (" early", " late"),
                 (" open", " closed")],
    "english_to_french": [(" dog", " chien"), (" house", " maison"), (" water", " eau"),
                          (" red", " rouge")],
    "english_to_spanish": [(" dog", " perro"), (" house", " casa"), (" water", " agua"),
                           (" red", " rojo")],
    "year_to_following": [("1990", "1991"), ("2003", "2004"), ("1871", "1872"), ("2019", "2020")],
    "word_first_letter": [(" apple", " A"), (" banana", " B"), (" cherry", " C"),
                             (" dog", " D")],
}

_DESCRIPTIONS: dict[str, str] = {
    "copying": "copies the input token", "name_copying": "copies first names and surnames",
    "country_to_capital": "maps countries to their capital cities",
    "country_to_language": "maps countries to their official languages",
    "verb_to_past_tense": "maps verbs to their past tense",
    "antonym": "maps words to their opposites",
    "english_to_french": "translates English words to French",
    "english_to_spanish": "translates English words to Spanish",
    "year_to_following": "maps a year to the next year",
    "word_first_letter": "maps words to their first letter",
}

_SYLL = ["ka", "lo", "mi", "ster", "on", "re", "tu", "vin", "ash", "el", "dor", "pi", "quen", "sa",
         "bri", "ul"]


def _kv_heads(n_heads: int) -> int:
    for g in (8, 4, 3, 2):
        if n_heads % g == 0 and n_heads > g:
            return n_heads // g
    return n_heads


def synthetic_scan(n_layers: int = 24, n_heads: int = 16, n_relations: int = 20, seed: int = 0,
                   *, with_extras: bool = True,
                   described: float = 0.7) -> tuple[ScanResult, HeadExtras | None]:
    """Build a synthetic :class:`ScanResult` and matching extras.

    Args:
        n_layers: layers.
        n_heads: query heads per layer (KV heads: ``n_heads / 8`` or the nearest grouping).
        n_relations: how many relations (the library's names first, then ``relation_N``).
        seed: random seed; the result is deterministic.
        with_extras: also build salient operations (15 tokens x 5 targets) for every head.
        described: fraction of heads (of middle and upper layers) that get a description.

    Returns:
        ``(scan, extras)``; ``extras`` is None when ``with_extras`` is False.
    """
    rng = np.random.default_rng(seed)
    names = (list(RELATIONS)[:n_relations]
             + [f"relation_{i}" for i in range(len(RELATIONS), n_relations)])
    n_kv = _kv_heads(n_heads)
    group = n_heads // n_kv
    n_pairs = {r: int(rng.integers(40, 400)) for r in names}
    R, L, H = len(names), n_layers, n_heads
    scores = rng.beta(0.6, 30.0, size=(R, L, H))
    supp = rng.beta(0.5, 40.0, size=(R, L, H))
    depth = np.arange(L) / max(1, L - 1)
    for r, rel in enumerate(names):
        centre = RELATIONS.get(rel, rng.uniform(0.3, 0.8))
        w = np.exp(-0.5 * ((depth - centre) / 0.15) ** 2)
        n_strong = max(1, int(round(L * H * rng.uniform(0.004, 0.015))))
        layers = rng.choice(L, size=n_strong, p=w / w.sum())
        heads = rng.integers(0, H, size=n_strong)
        for layer, head in zip(layers, heads):
            v = rng.uniform(0.15, 0.95)
            scores[r, layer, head] = max(scores[r, layer, head], v)
            if group > 1 and rng.random() < 0.5:  # KV-group siblings often agree
                g0 = head // group * group
                sib = g0 + rng.integers(0, group)
                scores[r, layer, sib] = max(scores[r, layer, sib], v * rng.uniform(0.6, 1.0))
        n_supp = max(1, n_strong // 3)
        late = np.exp(-0.5 * ((depth - 0.9) / 0.12) ** 2)
        for layer, head in zip(rng.choice(L, size=n_supp, p=late / late.sum()),
                               rng.integers(0, H, size=n_supp)):
            supp[r, layer, head] = max(supp[r, layer, head], rng.uniform(0.15, 0.7))
    if R >= 2:  # copying and name copying share heads, as in real models
        both = scores[0] >= DEFAULT_TAU
        scores[1][both] = np.maximum(scores[1][both], scores[0][both] * 0.8)
    # Scores are fractions of the surviving pairs.
    counts = np.array([n_pairs[r] for r in names], dtype=np.float64)[:, None, None]
    scores = (np.rint(np.clip(scores, 0, 1) * counts) / counts).astype(np.float32)
    supp = (np.rint(np.clip(supp, 0, 1) * counts) / counts).astype(np.float32)
    info = {"model": f"synthetic-{L}x{H}", "architecture": "LlamaForCausalLM", "family": "llama",
            "n_layers": L, "n_heads": H, "n_kv_heads": n_kv, "d_model": H * 128, "d_head": 128,
            "vocab_size": 128256, "tied_embeddings": False,
            "origin": "synthetic (headmaps.explorer.synthetic)"}
    scan = ScanResult(
        model_id=info["model"], model_info=info, relations=names, scores=scores, suppression=supp,
        n_pairs=n_pairs, k={r: (3 if "copying" in r else 25) for r in names},
        skipped={"english_to_german": "only 12 single-token pairs (needs 30)"},
        preset="paper", options={"source": "mlp0", "fold_norms": False, "biases": False},
        tau=DEFAULT_TAU, versions={"headmaps": "synthetic"})
    return scan, (_extras(scan, rng, described) if with_extras else None)


def _word(rng: np.random.Generator) -> str:
    return " " + "".join(rng.choice(_SYLL, size=int(rng.integers(1, 4))))


def _extras(scan: ScanResult, rng: np.random.Generator, described: float) -> HeadExtras:
    R, L, H = scan.scores.shape
    vocab = sorted({_word(rng) for _ in range(3000)})
    n_tok, n_tgt = 15, 5
    # Draw everything at once: (L, H, 15) sources, (L, H, 15, 5) targets and logits.
    src_i = rng.integers(0, len(vocab), (L, H, n_tok))
    tgt_i = rng.integers(0, len(vocab), (L, H, n_tok, n_tgt))
    logits = np.round(-np.sort(-rng.uniform(2.0, 12.0, (L, H, n_tok, n_tgt)), axis=-1), 2).tolist()
    sal = np.round(rng.uniform(3.0, 6.0, (L, H, 1)) * 0.93 ** np.arange(n_tok), 3).tolist()
    rolls = rng.random((L, H))
    conf = np.round(rng.uniform(0.3, 0.98, (L, H)), 2)
    other = ["promotes subword continuations", "maps tokens to similar spellings",
             "boosts number tokens",
             "maps words to related topics", "copies capitalised words"]
    other_i = rng.integers(0, len(other), (L, H))
    best = scan.scores.argmax(axis=0) if R else np.zeros((L, H), int)
    out: HeadExtras = {}
    for layer in range(L):
        p_desc = described * (0.4 if layer < L // 6 else 1.0)
        for head in range(H):
            r = int(best[layer, head])
            rel = scan.relations[r] if R else ""
            strong = R > 0 and bool(scan.scores[r, layer, head] >= scan.tau)
            pairs = _EXAMPLES.get(rel, []) if strong else []
            salient = []
            for j in range(n_tok):
                targets = [vocab[x] for x in tgt_i[layer, head, j]]
                if j < len(pairs):
                    src, targets[0] = pairs[j]
                else:
                    src = vocab[src_i[layer, head, j]]
                    if rel == "copying" and strong:
                        targets[0] = src
                salient.append({"token": src, "saliency": sal[layer][head][j],
                                "targets": [list(t) for t in zip(targets, logits[layer][head][j])]})
            e: dict[str, Any] = {"salient": salient}
            roll = rolls[layer, head]
            if roll < p_desc:
                if strong:
                    e["description"] = _DESCRIPTIONS.get(
                        rel, f"maps words along {rel.replace('_', ' ')}")
                    e["evidence"] = ([f"{s.strip()} -> {t.strip()}" for s, t in pairs[:3]]
                                     or ["salient targets match the relation"])
                    e["confidence"] = float(max(conf[layer, head], 0.6))
                else:
                    e["description"] = other[other_i[layer, head]]
                    e["confidence"] = float(min(conf[layer, head], 0.7))
            elif roll < p_desc + 0.15:
                e["unclear"] = True
            out[f"{layer}.{head}"] = e
    return out

"""A built diff for the diff-view tests: head 1.0 of B is a copy head, exactly.

As in tests/diff/test_diff.py: two tiny Llamas with a word-level vocabulary, the second
with head 1.0's OV replaced by a copy head (``M = I`` under the paper preset). Two
relations: ``copying`` (which 1.0 gains) and ``verb_past`` (which it does not).
"""

from __future__ import annotations

import torch

import headmaps as hm
from tiny_vocab import VERB_PAST, set_mapping, vocab_model

COPY_HEAD = (1, 0)


def copy_head_diff(salient: bool = True, qk: bool = True, types: bool = False):
    """``hm.diff(a, b)`` of the tiny pair above (3 layers x 2 heads)."""
    model, tok = vocab_model(n_layers=3)
    a = hm.load(model, tokenizer=tok)
    model_b, _ = vocab_model(n_layers=3)
    vocab = tok.get_vocab()
    P = torch.zeros(len(tok), len(tok), dtype=torch.float64)
    for w, i in vocab.items():
        if not w.startswith("["):
            P[i, i] = 1.0
    set_mapping(model_b, *COPY_HEAD, P, preset="paper")
    b = hm.load(model_b, tokenizer=tok)
    copying = [(w, w) for w in vocab if not w.startswith("[")]
    return hm.diff(a, b, {"copying": copying, "verb_past": list(VERB_PAST)}, projection="paper",
                   min_pairs=5, salient=salient, qk=qk, types=types)

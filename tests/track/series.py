"""A saved series of tiny checkpoints in which one head becomes a copying head.

Every checkpoint is the same tiny Llama (word-level vocabulary, ``tests/tiny_vocab.py``)
except head 1.0, whose mapping matrix under the ``paper`` preset is ``a * I + N``: a fixed
random matrix ``N`` (standard normal, seeded) plus ``a`` times the identity. Raising ``a``
only raises every row's diagonal entry, so each copying pair's rank can only improve:
the copying score of 1.0 is non-decreasing in ``a``. The schedule :data:`SCHEDULE` keeps
``a`` near 0 for three checkpoints (the diagonal ranks like any other entry: the score is
near k/V) and then jumps to 6 and beyond (the diagonal is the row's top entry for nearly
every word), so 1.0 first crosses tau at checkpoint 3, step :data:`CROSSING_STEP`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from tiny_vocab import set_mapping, vocab_model

#: The head that becomes a copying head.
HEAD = (1, 0)
#: ``a`` at each checkpoint, and the checkpoints' steps.
SCHEDULE = (0.0, 0.1, 0.2, 6.0, 8.0, 10.0)
STEPS = tuple(100 * i for i in range(len(SCHEDULE)))
CROSSING_STEP = 300


def copying_pairs(tok) -> list[tuple[str, str]]:
    """Every ordinary word mapped to itself."""
    return [(w, w) for w in tok.get_vocab() if not w.startswith("[")]


def write_series(folder: Path, schedule=SCHEDULE) -> tuple[list[str], list[tuple[str, str]]]:
    """Save one checkpoint per ``a`` of ``schedule`` as ``folder/step-<step>``.

    Returns:
        ``(paths, copying pairs)``.
    """
    model, tok = vocab_model(n_layers=2)
    V = len(tok)
    noise = torch.randn(V, V, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    paths = []
    for i, a in enumerate(schedule):
        set_mapping(model, *HEAD, a * torch.eye(V, dtype=torch.float64) + noise, preset="paper")
        path = folder / f"step-{100 * i}"
        model.save_pretrained(path)
        tok.save_pretrained(path)
        paths.append(str(path))
    return paths, copying_pairs(tok)

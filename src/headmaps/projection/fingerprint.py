"""The weights' fingerprint, whatever the model is called.

It says which weights a calibration, a cached stream or a resolved projection belongs to.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch


def fingerprint(model: Any) -> str:
    """A cheap hash of the model's weights: sizes plus a few slices, rounded to bfloat16.

    Reads 64 rows of ``E``, 64 columns of ``U``, ``W_V`` of layer 0 and ``W_O`` of the last
    layer (a few hundred KB at most), so it costs milliseconds and identifies the weights,
    not the name. Rounding to bfloat16 first gives one fingerprint whether the checkpoint
    was loaded in float32 or bfloat16. Memoised on the model object.
    """
    cached = memoised_fingerprint(model)
    if cached:
        return cached
    h = hashlib.sha256()
    s = model.spec
    h.update(json.dumps([s.architecture, s.n_layers, s.n_heads, s.n_kv_heads, s.d_model,
                         s.d_head, s.vocab_size]).encode())
    V = model.vocab_size
    idx = torch.arange(0, V, max(1, V // 64))[:64]
    parts = [model.E[idx.to(model.E.device)], model.U[:, idx.to(model.U.device)],
             model.attention(0).W_V, model.attention(model.n_layers - 1).W_O]
    for t in parts:
        a = t.detach().to("cpu", torch.bfloat16).float().contiguous()
        h.update(a.numpy().tobytes())
    fp = h.hexdigest()[:16]
    try:
        model._headmaps_fingerprint = fp
    except AttributeError:  # a read-only object: recomputed next time
        return fp
    return fp


def memoised_fingerprint(model: Any) -> str:
    """The fingerprint :func:`fingerprint` memoised on ``model``; "" when not computed yet.

    Reads no weights.
    """
    return getattr(model, "_headmaps_fingerprint", "") or ""

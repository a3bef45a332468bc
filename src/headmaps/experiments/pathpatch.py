"""Path patching of induction heads: which earlier head's output do their keys need?

The behavioural check of :mod:`headmaps.composition`. On repeated random tokens
(:func:`~headmaps.experiments.behaviour.repeated_random`: ``n`` distinct tokens, then the
same ``n`` again) an induction head ``h`` at layer ``l_h`` attends from the second copy
of a token to the token after its first copy; its induction score is
``mean_j A[n + j, j + 1]`` (:func:`~headmaps.experiments.behaviour.induction_scores`).

One forward pass records the residual stream entering every block and every head's
output ``z`` (the output projection's input). Then, for every earlier head ``g``, ``h``'s
attention is recomputed from its own weights with ``g``'s write removed *only on one
path into h*:

* ``K``: keys from ``resid - w_g + mean(w_g)``, queries from the real residual;
* ``Q``: queries from ``resid - w_g + mean(w_g)``, keys from the real residual;
* ``V``: values from ``resid - w_g + mean(w_g)``, the attention from the real residual.
  The attention does not move, so the behaviour measured on this path is what ``h``
  writes: its *direct logit attribution* to the induction target, the token after the
  first occurrence (``mean_j s[n + j] w_h[n + j] . (gain * (u_t - mean_v u_v))`` with
  ``t`` that token, ``gain`` the final norm's gain, ``s`` its per-position scale in the
  recorded run (``1 / rms`` of the final residual; a LayerNorm also centres ``w_h``)
  and ``u`` the unembedding's columns): the logit the head adds directly, the final
  norm's scale held at the real run's.

``w_g`` is what ``g`` added to the residual stream at each position (``z_g W_O^g``;
with Gemma's post-attention norm, ``post(o) - post(o - z_g W_O^g)`` with ``o`` the whole
layer's output), and ``mean(w_g)`` its mean over every position of every sequence:
**mean-ablation** (zero-ablation would also move the input norm's scale of every
position by the size of ``g``'s mean write). Everything else in the residual (other
heads, MLPs, and ``g``'s effect on them) is left as it was: only the direct path from
``g`` into ``h``'s keys (queries) is cut. The effect is the drop of ``h``'s induction
score (``V``: of its logit attribution), ``base - ablated``; ``base`` is the recomputed
score without ablation, which (for ``K`` and ``Q``) matches the model's own attention
(``eager``, kept beside it for the check).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..composition.compute import INDUCTION, canonical_kind
from ..errors import HeadmapsError
from ..models import HeadModel
from ..models import qk as Q
from .behaviour import repeated_random
from .hooks import Hook, hf_model_of, hooked, input_device, layer_modules

#: Path kinds path patching can cut.
PATCH_KINDS = ("K", "Q", "V")


@dataclass
class Recorded:
    """One forward pass over the prompts.

    Attributes:
        resid: ``(L, B, T, d)`` the residual stream entering each block.
        z: ``(L, B, T, H, dh)`` every head's output before ``W_O``.
        ids: ``(B, T)`` the prompts.
        final: ``(B, T, d)`` the residual stream after the last block (the final norm's
            input).
    """

    resid: torch.Tensor
    z: torch.Tensor
    ids: torch.Tensor
    final: torch.Tensor


def record(model: HeadModel, ids: torch.Tensor) -> Recorded:
    """Run the model once on ``ids`` ``(B, T)``, keeping what path patching needs."""
    hf = hf_model_of(model)
    mods = layer_modules(model)
    H, dh = model.n_heads, model.d_head
    zs: list[torch.Tensor | None] = [None] * len(mods)

    def grab(i: int):
        def fn(_m, args, _kwargs):
            z = args[0].detach().float().cpu()
            zs[i] = z.reshape(*z.shape[:2], H, dh)
        return fn

    last: list[torch.Tensor] = []

    def grab_final(_m, _args, output):
        last.append((output[0] if isinstance(output, tuple) else output).detach().float().cpu())

    hooks: list[Hook] = [(m.out_proj, "pre", grab(i)) for i, m in enumerate(mods)]
    hooks.append((mods[-1].block, "forward", grab_final))
    with torch.no_grad(), hooked(hooks):
        out = hf.base_model(input_ids=ids.to(input_device(hf)),
                            attention_mask=torch.ones_like(ids).to(input_device(hf)),
                            use_cache=False, output_hidden_states=True)
    resid = torch.stack([h.detach().float().cpu() for h in out.hidden_states[:model.n_layers]])
    return Recorded(resid, torch.stack(zs), ids, last[-1])  # type: ignore[arg-type]


def layer_output(model: HeadModel, rec: Recorded,
                 layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One layer's recorded output before any post-attention norm.

    Returns:
        ``(per, o)``: each head's ``z W_O`` ``(H, B, T, d)`` and their sum with ``b_O``
        ``(B, T, d)``.
    """
    a = model.attention(layer)
    per = torch.einsum("bthe,hed->hbtd", rec.z[layer], a.W_O.float().cpu())
    o = per.sum(0)
    if a.b_O is not None:
        o = o + a.b_O.float().cpu()
    return per, o


def head_writes(model: HeadModel, rec: Recorded, layer: int) -> torch.Tensor:
    """``(H, B, T, d)``: what each head of ``layer`` added to the residual stream."""
    per, o = layer_output(model, rec, layer)
    post = model.attention(layer).post_norm
    if post is None:
        return per
    full = post(o).float()
    return torch.stack([full - post(o - per[h]).float() for h in range(len(per))])


def head_attention(model: HeadModel, layer: int, head: int, x_query: torch.Tensor,
                   x_key: torch.Tensor) -> torch.Tensor:
    """Attention probabilities ``(B, T, T)`` of one head, recomputed from its weights.

    Args:
        model: the model.
        layer: the head's layer.
        head: the head.
        x_query: ``(B, T, d)`` residual stream its queries read (before the input norm).
        x_key: ``(B, T, d)`` residual stream its keys read.
    """
    qk = model.qk(layer)
    B, T, d = x_query.shape
    kv = model.spec.kv_index()[head:head + 1]
    pos = torch.arange(T)

    def side(x: torch.Tensor, keys: bool) -> torch.Tensor:
        x = qk.input_norm(x.reshape(B * T, d).to(model.device)).float()
        v = Q.keys(qk, x, kv.to(x.device)) if keys else \
            Q.queries(qk, x, torch.tensor([head], device=x.device))
        return Q.rotate(v[0].reshape(B, T, -1), qk.positions, pos).cpu()

    s = Q.logits(qk, side(x_query, False), side(x_key, True)).float()  # (B, T, T)
    dist = pos[:, None] - pos[None, :]
    masked = dist < 0
    if qk.positions.sliding_window is not None:
        masked = masked | (dist >= qk.positions.sliding_window)
    return s.masked_fill(masked, float("-inf")).softmax(-1)


def _values(model: HeadModel, layer: int, head: int, x: torch.Tensor) -> torch.Tensor:
    """``(B, T, d_head)`` one head's values of the residual stream ``x`` ``(B, T, d)``."""
    a = model.attention(layer)
    kv = int(model.spec.kv_index()[head])
    B, T, d = x.shape
    h = a.input_norm(x.reshape(B * T, d).to(model.device)).float()
    v = h @ a.W_V[kv].float()
    if a.b_V is not None:
        v = v + a.b_V[kv].float()
    return v.reshape(B, T, -1).cpu()


def target_write(model: HeadModel, rec: Recorded, layer: int, head: int, z: torch.Tensor,
                 output: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """``(B, T, d)``: what one head adds to the residual stream when its output is ``z``.

    ``z`` ``(B, T, d_head)``; with a post-attention norm (Gemma) the head's share of the
    normed layer output, the rest of the layer as recorded (as :func:`head_writes`).
    ``output``: the layer's :func:`layer_output`, for a caller that writes many ``z``.
    """
    a = model.attention(layer)
    own = z @ a.W_O[head].float().cpu()
    if a.post_norm is None:
        return own
    per, o = output if output is not None else layer_output(model, rec, layer)
    rest = o - per[head]
    return a.post_norm(rest + own).float() - a.post_norm(rest).float()


@dataclass
class Readout:
    """How a write reaches the induction target's logit at each position of the second copy.

    Attributes:
        cols: ``(d, B (n - 1))`` ``gain * (u_t - mean_v u_v)`` of each position's target.
        scale: ``(B (n - 1),)`` the final norm's scale there in the recorded run.
        centre: the final norm is a LayerNorm (a write is centred first).
        n: the length of one copy.
    """

    cols: torch.Tensor
    scale: torch.Tensor
    centre: bool
    n: int

    def __call__(self, write: torch.Tensor) -> float:
        """The mean logit attribution of ``write`` ``(B, 2n, d)`` to the targets."""
        w = write[:, self.n + torch.arange(self.n - 1)].reshape(-1, write.shape[-1])
        if self.centre:
            w = w - w.mean(-1, keepdim=True)
        return float(((w * self.cols.T).sum(-1) * self.scale).mean())


def readout(model: HeadModel, rec: Recorded, n: int) -> Readout:
    """The :class:`Readout` of the recorded run's induction targets.

    At each position ``n + j`` of the second copy (``j < n - 1``) the target is the token
    after the first occurrence, ``rec.ids[:, j + 1]``; a write's attribution there is
    ``s * write . (gain * (u_t - mean_v u_v))``, with the final norm's scale ``s`` of the
    recorded run (a LayerNorm's centring applied to the write too).
    """
    j = torch.arange(n - 1)
    norm = model.final_norm
    U = model.U.float().cpu()  # (d, V)
    t = rec.ids[:, j + 1]  # (B, n - 1)
    cols = U[:, t.reshape(-1)] - U.mean(1, keepdim=True)  # (d, B (n - 1))
    if norm.weight is not None:
        cols = cols * norm.weight.float().cpu()[:, None]
    x = rec.final[:, n + j].reshape(-1, rec.final.shape[-1])  # (B (n - 1), d)
    centre = norm.kind == "layernorm"
    if centre:
        x = x - x.mean(-1, keepdim=True)
    return Readout(cols, torch.rsqrt(x.pow(2).mean(-1) + norm.eps), centre, n)


def logit_attribution(model: HeadModel, rec: Recorded, write: torch.Tensor, n: int) -> float:
    """Mean direct logit attribution of ``write`` ``(B, 2n, d)`` to the induction target.

    :func:`readout` of the run, applied once.
    """
    return readout(model, rec, n)(write)


def _attribution(model: HeadModel, rec: Recorded, read: Readout, target: tuple[int, int],
                 attn: torch.Tensor, output: tuple[torch.Tensor, torch.Tensor],
                 x_value: torch.Tensor) -> float:
    """The target's logit attribution with its values read from ``x_value``, ``attn`` fixed."""
    layer, head = target
    z = attn @ _values(model, layer, head, x_value)
    return read(target_write(model, rec, layer, head, z, output))


def induction_score(A: torch.Tensor, n: int) -> float:
    """``mean_{b, j < n - 1} A[b, n + j, j + 1]`` for probabilities ``(B, 2n, 2n)``."""
    j = torch.arange(n - 1)
    return float(A[:, n + j, j + 1].mean())


@dataclass
class PathPatching:
    """Drops of induction scores when an earlier head's write is cut from one path.

    Attributes:
        model_id: the model.
        n_layers, n_heads: sizes.
        targets: the induction heads ``(layer, head)``.
        base: ``(n_targets,)`` recomputed induction score without ablation.
        eager: ``(n_targets,)`` the model's own induction score on the same prompts.
        effect: kind -> ``(n_targets, L, H)``: ``base - ablated``; NaN for heads not in
            an earlier layer. ``V``'s is a drop of the logit attribution (``base_v``).
        base_v: ``(n_targets,)`` the targets' logit attribution without ablation (NaN
            where ``V`` was not cut).
        params: ``n_tokens``, ``n_seqs``, ``seed``, ``ablation``.
    """

    model_id: str
    n_layers: int
    n_heads: int
    targets: list[tuple[int, int]]
    base: np.ndarray
    eager: np.ndarray
    effect: dict[str, np.ndarray]
    params: dict[str, Any] = field(default_factory=dict)
    base_v: np.ndarray | None = None

    def baseline(self, kind: str) -> np.ndarray:
        """``(n_targets,)`` what ``kind``'s effects drop from: ``base_v`` for V, else ``base``."""
        return self.base_v if kind == "V" and self.base_v is not None else self.base

    def relative(self, kind: str, target: int) -> np.ndarray:
        """``(L, H)`` effects on one target as shares of its baseline's size.

        Signed so that a positive share moves the baseline toward zero: a logit
        attribution can be negative (a head that writes against the target).
        """
        b = float(self.baseline(kind)[target])
        return self.effect[kind][target] * np.sign(b) / max(abs(b), 1e-12)

    def to_frame(self) -> pd.DataFrame:
        """One row per (target, earlier head).

        Columns ``layer``, ``head``, ``src_layer``, ``src_head``, ``base`` and
        ``effect_<kind>``.
        """
        rows = []
        for t, (lh, h) in enumerate(self.targets):
            for lg in range(lh):
                for g in range(self.n_heads):
                    row = {"layer": lh, "head": h, "src_layer": lg, "src_head": g,
                           "base": float(self.base[t])}
                    for k, e in self.effect.items():
                        row[f"effect_{k}"] = float(e[t, lg, g])
                    rows.append(row)
        return pd.DataFrame(rows)


def path_patching(model: HeadModel, targets: Sequence[tuple[int, int]], *,
                  kinds: Sequence[str] = PATCH_KINDS, n_tokens: int = 50, n_seqs: int = 8,
                  seed: int = 0) -> PathPatching:
    """Mean-ablate every earlier head on the key (query) path of each target head.

    Args:
        model: a model with its transformers model.
        targets: the heads ``(layer, head)`` whose induction score is measured.
        kinds: paths to cut, some of ``"K"``, ``"Q"``, ``"V"``.
        n_tokens: length of each random sequence (repeated once).
        n_seqs: number of sequences.
        seed: seed of the tokens.

    Returns:
        :class:`PathPatching`.
    """
    from .behaviour import attention_patterns

    kinds = tuple(str(k).upper() for k in kinds)
    if not set(kinds) <= set(PATCH_KINDS) or not kinds:
        raise HeadmapsError(f"path patching cuts K, Q or V paths, not "
                            f"{', '.join(kinds) or 'none'}")
    for lh, h in targets:
        model.check_head(lh, h)
    ids = repeated_random(model, n_tokens, n_seqs, seed)
    rec = record(model, ids)
    A = attention_patterns(model, ids)
    L, H = model.n_layers, model.n_heads
    effect = {k: np.full((len(targets), L, H), np.nan, dtype=np.float32) for k in kinds}
    base = np.zeros(len(targets), dtype=np.float32)
    base_v = np.full(len(targets), np.nan, dtype=np.float32)
    eager = np.zeros(len(targets), dtype=np.float32)
    writes: dict[int, torch.Tensor] = {}
    read = readout(model, rec, n_tokens) if "V" in kinds else None
    with torch.no_grad():
        for t, (lh, h) in enumerate(targets):
            x = rec.resid[lh]
            attn = head_attention(model, lh, h, x, x)
            base[t] = induction_score(attn, n_tokens)
            eager[t] = induction_score(A[lh, :, h], n_tokens)
            if read is not None:
                output = layer_output(model, rec, lh)  # the same for every cut of h
                base_v[t] = _attribution(model, rec, read, (lh, h), attn, output, x)
            for lg in range(lh):
                if lg not in writes:
                    writes[lg] = head_writes(model, rec, lg)
                for g in range(H):
                    w = writes[lg][g]
                    cut = x - w + w.mean((0, 1))
                    for k in kinds:
                        if k == "V":
                            effect[k][t, lg, g] = base_v[t] - _attribution(
                                model, rec, read, (lh, h), attn, output, cut)
                            continue
                        xq, xk = (x, cut) if k == "K" else (cut, x)
                        s = induction_score(head_attention(model, lh, h, xq, xk), n_tokens)
                        effect[k][t, lg, g] = base[t] - s
    return PathPatching(model.model_id, L, H, [(int(a), int(b)) for a, b in targets], base,
                        eager, effect, {"n_tokens": n_tokens, "n_seqs": n_seqs, "seed": seed,
                                        "ablation": "mean"},
                        base_v if "V" in kinds else None)


#: A cut path has a *large effect* when it drops the target's induction score by at least
#: this fraction of the target's score (fixed before any run on a real model).
LARGE = 0.10


def path_of(kind: str) -> str:
    """The path whose cut a composition kind predicts: its own, the K path for ``induction``."""
    kind = canonical_kind(kind)
    return "K" if kind == INDUCTION else kind


def _pairs(pp: PathPatching, comp: Any, kind: str, method: str) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, relative effects)`` over every (target, earlier head) pair."""
    s, e = [], []
    grid = comp.grid(kind, method)
    for t, (lh, h) in enumerate(pp.targets):
        s.append(grid[lh, h, :lh].ravel())
        e.append(pp.relative(path_of(kind), t)[:lh].ravel())
    return np.concatenate(s), np.concatenate(e)


def agreement(pp: PathPatching, comp: Any, kind: str = "K", large: float = LARGE,
              top: float = 0.05) -> pd.DataFrame:
    """How well each method's composition ranks the paths that matter, one row per method.

    Columns: ``pairs``; ``large`` (pairs whose relative effect is at least ``large``) and
    ``auroc`` of the composition score against them; ``auroc_top`` against the top
    ``top`` fraction of effects instead; ``spearman`` between score and effect.

    Args:
        pp: the path-patching result.
        comp: a :class:`~headmaps.composition.CompositionResult` of the same model.
        kind: the composition kind: ``"K"``, ``"Q"``, ``"V"`` (its own path) or
            ``"induction"`` (read against the K path).
        large: the relative-effect threshold (:data:`LARGE`).
        top: the quota of the second definition.
    """
    from scipy.stats import spearmanr

    from ..headtypes.validate import auroc, positives

    rows = []
    for method in ("projection", "raw"):
        s, e = _pairs(pp, comp, kind, method)
        pos = e >= large
        rows.append({"kind": kind, "method": method, "pairs": len(s), "large": int(pos.sum()),
                     "auroc": auroc(s, pos), "auroc_top": auroc(s, positives(e, top)),
                     "spearman": float(spearmanr(s, e).statistic)})
    return pd.DataFrame(rows)


def partner_check(pp: PathPatching, comp: Any, kind: str = "K", n: int = 3) -> pd.DataFrame:
    """Per target: the earlier head whose cut matters most, and each method's rank of it.

    Columns ``rank_<method>`` (1 = the method's best partner), ``hit_<method>`` (rank
    at most ``n``) and ``top<n>_<method>`` (the method's ``n`` best partners).
    """
    path = path_of(kind)
    rows = []
    for t, (lh, h) in enumerate(pp.targets):
        rel = pp.relative(path, t)[:lh]
        lg, g = (int(x) for x in np.unravel_index(np.nanargmax(rel), rel.shape))
        row = {"head": f"{lh}.{h}", "eager": float(pp.eager[t]),
               "base": float(pp.baseline(path)[t]), "top_cut": f"{lg}.{g}",
               "drop": float(pp.effect[path][t, lg, g]), "drop_rel": float(rel[lg, g])}
        for method in ("projection", "raw"):
            s = np.nan_to_num(comp.grid(kind, method)[lh, h, :lh], nan=-np.inf)
            rank = int((s > s[lg, g]).sum()) + 1
            row[f"rank_{method}"] = rank
            row[f"hit_{method}"] = rank <= n
            row[f"top{n}_{method}"] = ", ".join(f"{a}.{b}" for a, b, _ in
                                                comp.partners(lh, h, kind, n, method))
        rows.append(row)
    return pd.DataFrame(rows)


def partner_drops(pp: PathPatching, comp: Any, kind: str = "K",
                  ns: tuple[int, ...] = (1, 3)) -> pd.DataFrame:
    """How much cutting each method's best partners costs, against a random earlier head.

    For every target and every ``n`` in ``ns``: the mean relative effect of cutting each
    of the method's ``n`` best ``kind``-partners, one at a time; ``random`` is the mean
    over all earlier heads, the expected effect of ``n`` partners drawn at random. One row
    per (method or ``random``, ``n``) with the mean over targets (``mean_drop``) and the
    number of targets where the method's partners cost more than random ones
    (``above_random``, of ``targets``).

    Args:
        pp: the path-patching result.
        comp: a :class:`~headmaps.composition.CompositionResult` of the same model.
        kind: the composition kind: ``"K"``, ``"Q"``, ``"V"`` (its own path) or
            ``"induction"`` (read against the K path).
        ns: the partner counts to read.
    """
    path = path_of(kind)
    chance = np.array([np.nanmean(pp.relative(path, t)[:lh]) for t, (lh, _) in
                       enumerate(pp.targets)])
    rows = [{"kind": kind, "method": "random", "n": n, "mean_drop": float(chance.mean()),
             "above_random": 0, "targets": len(pp.targets)} for n in ns]
    for method in ("projection", "raw"):
        for n in ns:
            drops = np.array([np.nanmean([pp.relative(path, t)[a, b] for a, b, _ in
                                          comp.partners(lh, h, kind, n, method)])
                              for t, (lh, h) in enumerate(pp.targets)])
            rows.append({"kind": kind, "method": method, "n": n,
                         "mean_drop": float(drops.mean()),
                         "above_random": int((drops > chance).sum()),
                         "targets": len(pp.targets)})
    return pd.DataFrame(rows)

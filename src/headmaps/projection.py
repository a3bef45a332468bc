"""How a head is projected into vocabulary space: source representations and presets.

For head ``h`` of layer ``l`` the mapping matrix is ``M = X · W_V^h W_O^h · U`` where the
rows of ``X`` represent source tokens. The choices below (which ``X``, which norms and
biases) are bundled as :class:`ProjectionOptions`; named presets fix them:

* ``paper``: the reference implementation of MAPS. ``X`` is ``MLP_0(LN_2^0(e))`` for
  layers > 0 and the raw embedding at layer 0; no norm gains, no biases.
* ``norms``: norm-aware. ``X`` is the residual after block 0's MLP,
  ``e + post(MLP_0(pre(e)))`` with the model's embedding scale, passed through the
  head's layer input norm; the post-attention norm gain (Gemma 2/3) and the final norm
  gain are folded into ``U``; value biases included.
* ``alone``: ``X`` is, for a head of layer ``l``, the residual stream entering block
  ``l`` when the source token is run through the model alone (a one-token sequence,
  where every head can only attend to the token itself), with norms folded as in
  ``norms``. It follows the residual through every earlier block (attention, MLP and,
  on Gemma 2/3, the sandwich norms) instead of stopping after block 0, at the cost of
  one block's arithmetic per source token and layer.

Every function here is pure: tensors in, tensors out.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

import torch
from tqdm.auto import tqdm

from .errors import HeadmapsError
from .models import AttentionWeights, HeadModel
from .models.weights import MLPBlock, Norm, QKWeights, activation

SourceKind = Literal["embedding", "mlp0", "mlp0_residual", "token_alone"]

#: Every source representation (see :class:`ProjectionOptions`).
SOURCE_KINDS: tuple[str, ...] = ("embedding", "mlp0", "mlp0_residual", "token_alone")


@dataclass(frozen=True)
class ProjectionOptions:
    """Choices that define ``X``, ``W_VO`` and ``U`` of the mapping matrix.

    Attributes:
        source: representation of source tokens for layers > 0: ``"embedding"`` (raw
            ``e``), ``"mlp0"`` (``MLP_0(LN(e))``, the paper's first-MLP trick),
            ``"mlp0_residual"`` (``e + MLP_0(LN(e))``, the residual after block 0) or
            ``"token_alone"`` (the residual entering the head's block when the token
            is run alone, through every earlier block; see :func:`token_alone`).
        mlp0_at_layer0: also use ``source`` at layer 0 (the reference code does this for
            salient operations, by accident); otherwise layer 0 reads ``e``.
        scale_embeddings: multiply ``e`` by the model's embedding scale (Gemma).
        fold_norms: apply the head's layer input norm to ``X``, and fold the
            post-attention norm gain (Gemma 2/3) and the final norm (gain, and centring
            for LayerNorm) into ``U``.
        value_bias: add the value bias ``b_V`` to ``X W_V``.
        output_bias: add the layer's output bias ``b_O`` to every head's output.
        prefix: ``token_alone`` only: a token placed before every source token, as the
            tokenizer spells it (``"<|endoftext|>"``, ``"<bos>"``); the source is then the
            second token of a two-token sequence and attends to the prefix and itself with
            the model's own attention. ``""``: the source token alone.
    """

    source: SourceKind = "mlp0"
    mlp0_at_layer0: bool = False
    scale_embeddings: bool = False
    fold_norms: bool = False
    value_bias: bool = False
    output_bias: bool = False
    prefix: str = ""

    def __post_init__(self) -> None:
        if self.source not in SOURCE_KINDS:
            raise HeadmapsError(
                f"unknown source representation {self.source!r}; use one of "
                f"{', '.join(SOURCE_KINDS)}"
            )
        if self.prefix and self.source != "token_alone":
            raise HeadmapsError(f"a prefix token needs source='token_alone', not {self.source!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for result headers)."""
        return asdict(self)


#: ``prefix`` value meaning "the token that starts documents" (:func:`document_prefix`).
AUTO_PREFIX = "auto"

PRESETS: dict[str, ProjectionOptions] = {
    "paper": ProjectionOptions(),
    "norms": ProjectionOptions(source="mlp0_residual", scale_embeddings=True, fold_norms=True,
                               value_bias=True),
    "embedding": ProjectionOptions(source="embedding"),
    "alone": ProjectionOptions(source="token_alone", scale_embeddings=True, fold_norms=True,
                               value_bias=True),
    "through": ProjectionOptions(source="token_alone", scale_embeddings=True, fold_norms=True,
                                 value_bias=True, output_bias=True, prefix="auto"),
}

#: The preset used when none is given and no calibration is stored. Chosen by the
#: correlation experiment (docs/results): ``norms`` ties for best among the block-0
#: sources on SmolLM2-135M and finds relation heads on Gemma 3 270M, where ``paper``
#: finds none. ``through`` agrees with inference far better on both (median r 0.91 and
#: 0.98 without context) but costs a forward pass over the vocabulary for whole-vocabulary
#: work; docs/results/projection-speed.md has the times that keep it from the default.
DEFAULT_PRESET = "norms"


def explicit(preset: str | ProjectionOptions | None = None, overrides: dict[str, Any] | None = None,
             *, salient: bool = False) -> tuple[ProjectionOptions, str]:
    """The options and recorded name of an explicit projection (no model, no calibration).

    Args:
        preset: a preset name or options; None means :data:`DEFAULT_PRESET`.
        overrides: :class:`ProjectionOptions` fields to change (None values ignored).
        salient: for salient operations: the ``paper`` preset then keeps the reference
            code's first-MLP trick at layer 0 (``mlp0_at_layer0=True``).

    Raises:
        HeadmapsError: unknown preset or option name.
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    name = None if isinstance(preset, ProjectionOptions) else (preset or DEFAULT_PRESET)
    if salient and name == "paper":
        reference = resolve_options("paper", mlp0_at_layer0=True)
        opts = resolve_options(reference, **overrides)
        return opts, "paper" if opts == reference else "custom"
    opts = resolve_options(preset, **overrides)
    return opts, preset_name(preset, opts)


def resolve(model: HeadModel, preset: str | ProjectionOptions | None = None,
            overrides: dict[str, Any] | None = None, calibration: bool | None = None, *,
            salient: bool = False) -> tuple[ProjectionOptions, str, dict[str, Any]]:
    """The projection of a run: explicit option > stored calibration > :data:`DEFAULT_PRESET`.

    The one place every entry point decides its projection (scan, salient operations,
    the QK half, head types, the experiments, :func:`headmaps.analyse`); see
    :func:`headmaps.calibration.resolve`, which this is.

    Returns:
        ``(options, preset name, calibration info)``; ``prefix="auto"`` is replaced by the
        model's :func:`document_prefix` token.
    """
    from .calibration import resolve as _resolve  # calibration builds on this module

    return _resolve(model, preset, overrides, calibration, salient=salient)


def label(preset: str, options: dict[str, Any] | ProjectionOptions,
          info: dict[str, Any] | None = None) -> str:
    """How a result's projection is printed (see :func:`headmaps.calibration.label`)."""
    from .calibration import label as _label  # calibration builds on this module

    opts = options.to_dict() if isinstance(options, ProjectionOptions) else dict(options)
    return _label(preset, opts, info)


def resolve_options(preset: str | ProjectionOptions | None = None,
                    **overrides: Any) -> ProjectionOptions:
    """A preset name (or options object) with keyword overrides applied.

    Raises:
        HeadmapsError: unknown preset or option name.
    """
    if isinstance(preset, ProjectionOptions):
        base = preset
    else:
        name = preset or DEFAULT_PRESET
        if name not in PRESETS:
            raise HeadmapsError(f"unknown preset {name!r}; available: {', '.join(PRESETS)}")
        base = PRESETS[name]
    valid = {f.name for f in fields(ProjectionOptions)}
    unknown = set(overrides) - valid
    if unknown:
        raise HeadmapsError(
            f"unknown projection option(s) {', '.join(sorted(unknown))}; valid: "
            f"{', '.join(sorted(valid))}"
        )
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})


def preset_name(preset: str | ProjectionOptions | None, options: ProjectionOptions) -> str:
    """The name to record in results: the preset's, or ``custom`` after overrides."""
    if isinstance(preset, str) and PRESETS.get(preset) == options:
        return preset
    for name, opts in PRESETS.items():
        if opts == options:
            return name
    return "custom"


def describe_projection(preset: str, options: dict[str, Any] | ProjectionOptions) -> str:
    """How a result's projection is printed: ``"norms"``, or the options of a custom one.

    Args:
        preset: the preset name a result recorded (``custom`` after overrides).
        options: the projection options it recorded.
    """
    opts = options.to_dict() if isinstance(options, ProjectionOptions) else dict(options)
    if preset in PRESETS:
        auto = PRESETS[preset].prefix == AUTO_PREFIX and opts.get("prefix", AUTO_PREFIX)
        return f"{preset} (after {auto})" if auto and auto != AUTO_PREFIX else preset
    return f"{preset or 'custom'} (" + ", ".join(f"{k}={v}" for k, v in opts.items()) + ")"


def embed(model: HeadModel, token_ids: torch.Tensor, opts: ProjectionOptions) -> torch.Tensor:
    """Embeddings of ``token_ids`` ``(n,)`` -> ``(n, d_model)`` float32, scaled if asked."""
    e = model.E[token_ids.to(model.E.device)].float()
    if opts.scale_embeddings and model.embedding_scale != 1.0:
        e = e * model.embedding_scale
    return e


def _reads_embedding(opts: ProjectionOptions, layer: int) -> bool:
    """Whether a block-0 source kind gives ``layer`` the (scaled) embedding itself."""
    return opts.source == "embedding" or (layer == 0 and not opts.mlp0_at_layer0)


def base_sources(model: HeadModel, token_ids: torch.Tensor, opts: ProjectionOptions,
                 layer: int = 1) -> torch.Tensor:
    """Source representations for heads of ``layer``, before its input norm; ``(n, d_model)``.

    Float32. For many layers in a row use :class:`Sources`, which computes each kind
    once (and advances ``token_alone`` block by block instead of from the start).

    Args:
        model: the model.
        token_ids: ``(n,)`` source token ids.
        opts: projection options.
        layer: the head's layer. Layer 0 reads the raw embedding unless
            ``opts.mlp0_at_layer0``; ``token_alone`` depends on the layer, the other
            kinds are the same for every layer > 0.
    """
    if opts.source == "token_alone":
        first, x = _alone_start(model, token_ids, opts)
        return token_alone(model, x, range(layer), first=first)
    e = embed(model, token_ids, opts)
    if _reads_embedding(opts, layer):
        return e
    with torch.no_grad():
        mlp_out = model.first_mlp()(e).float()
    return e + mlp_out if opts.source == "mlp0_residual" else mlp_out


#: ``token_alone`` shows a progress bar over blocks from this many rows on (a whole
#: vocabulary costs minutes on a CPU: one block's arithmetic per token and block).
PROGRESS_ROWS = 50_000


def prefix_id(model: HeadModel, prefix: str) -> int:
    """The id of the token spelled ``prefix`` in the model's tokenizer.

    Raises:
        HeadmapsError: no tokenizer, or ``prefix`` is not one token of it.
    """
    tok = model.tokenizer
    if tok is None:
        raise HeadmapsError(f"prefix {prefix!r} needs a tokenizer; load the model with one")
    vocab = tok.get_vocab()
    if prefix not in vocab:
        specials = ", ".join(repr(t) for t in tok.all_special_tokens[:8])
        raise HeadmapsError(f"prefix {prefix!r} is not a token of this tokenizer (special "
                            f"tokens: {specials})")
    return int(vocab[prefix])


def _special_tokens(tok: Any) -> dict[str, int]:
    """The tokenizer's special tokens ``{text: id}``: its named ones and added special ones."""
    vocab = tok.get_vocab()
    out = {t: vocab[t] for t in getattr(tok, "all_special_tokens", []) if t in vocab}
    for i, added in (getattr(tok, "added_tokens_decoder", None) or {}).items():
        if getattr(added, "special", False):
            out.setdefault(str(added), int(i))
    return out


def document_prefix(tokenizer: Any) -> tuple[str, str]:
    """The token a model saw before the first token of each pretraining document, and why.

    The rule needs no prompts; it reads how the tokenizer frames text:

    1. If encoding plain text prepends a token (a ``bos`` the tokenizer adds by default:
       Llama, Gemma, Mistral, OPT), that token: pretraining documents started with it.
    2. Otherwise documents were concatenated with a separator appended to each (GPT-2's
       ``<|endoftext|>`` convention: GPT-2, GPT-NeoX/Pythia, Qwen, SmolLM), so the token
       before a document's first token is that separator. It is the tokenizer's special
       token that is not a chat-turn marker: markers that its chat template writes
       (``<|im_start|>``, ``<|im_end|>``) were added for fine-tuning, and a chat GGUF
       often names them bos/eos (SmolLM2's bos is ``<|im_start|>``). Of the rest, the
       ``eos`` token if it is one of them, else the one with the lowest id (the first
       special token a vocabulary defines is its end-of-text: SmolLM2's id 0, Qwen's
       151643).
    3. No special token left: ``""`` (the source token alone).

    Args:
        tokenizer: a Hugging Face tokenizer, or None.

    Returns:
        ``(token, reason)``; ``token`` is ``""`` for a lone token.
    """
    if tokenizer is None:
        return "", "no tokenizer: the source token alone"
    vocab = tokenizer.get_vocab()
    try:
        plain = tokenizer("a", add_special_tokens=False)["input_ids"]
        framed = tokenizer("a")["input_ids"]
    except Exception as err:  # noqa: BLE001 - any tokenizer failure means: no framing known
        framed, plain = [], []
        del err
    if len(framed) > len(plain) and framed[-len(plain):] == plain and plain:
        tid = int(framed[0])
        tok = tokenizer.convert_ids_to_tokens(tid)
        if isinstance(tok, str) and vocab.get(tok) == tid:
            return tok, "the tokenizer prepends it to every text (bos)"
    specials = _special_tokens(tokenizer)
    template = getattr(tokenizer, "chat_template", None)
    template = template if isinstance(template, str) else ""
    rest = {t: i for t, i in specials.items() if t not in template}
    if not rest:
        return "", "no special token outside the chat template: the source token alone"
    eos = getattr(tokenizer, "eos_token", None)
    if isinstance(eos, str) and eos in rest:
        return eos, "the end-of-text token that separates documents (eos)"
    tok = min(rest, key=rest.get)
    return tok, ("the first special token that is not a chat-turn marker (the document "
                 "separator)")


def concrete(model: HeadModel, opts: ProjectionOptions) -> ProjectionOptions:
    """``opts`` with ``prefix="auto"`` replaced by the model's :func:`document_prefix` token."""
    if opts.prefix != AUTO_PREFIX:
        return opts
    return replace(opts, prefix=document_prefix(model.tokenizer)[0])


def carried_position(model: HeadModel, opts: ProjectionOptions) -> torch.Tensor | float:
    """The learned position embedding ``(d_model,)`` a source row already carries, or 0.

    ``token_alone`` after a prefix runs each source at position 1, so on models with
    learned absolute positions (GPT-2, OPT) its rows hold position 1's embedding; the QK
    side, which places a token at its own position, adds that position's embedding minus
    this one (:func:`headmaps.attention.compute.positioned`), exactly at layer 0. Other
    sources carry no position.
    """
    opts = concrete(model, opts)
    pos = model.qk(0).positions
    if opts.source != "token_alone" or not opts.prefix or pos.kind != "learned" or \
            pos.embedding is None:
        return 0.0
    return pos.embedding[pos.offset + 1].float()


def _alone_start(model: HeadModel, token_ids: torch.Tensor,
                 opts: ProjectionOptions) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Layer-0 streams of ``token_alone``: the prefix's ``(d_model,)`` (or None) and the sources'.

    With a prefix, learned position embeddings are added as the model adds them (prefix
    at position 0, source at 1); a lone token gets none.
    """
    opts = concrete(model, opts)
    x = embed(model, token_ids, opts).float()
    if not opts.prefix:
        return None, x
    first = embed(model, torch.tensor([prefix_id(model, opts.prefix)]), opts).float()[0]
    pos = model.qk(0).positions
    if pos.kind == "learned" and pos.embedding is not None:
        rows = pos.embedding[pos.offset:pos.offset + 2].float().to(x.device)
        first, x = first + rows[0], x + rows[1]
    return first.to(x.device), x


def _attend_after(qk: QKWeights, kv: torch.Tensor, k_first: torch.Tensor, x: torch.Tensor,
                  v_first: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Per-head outputs ``z`` ``(n_heads, n, d_head)`` of tokens at position 1 after a prefix.

    Args:
        qk: the layer's QK weights.
        kv: ``(n_heads,)`` key/value head of each query head.
        k_first: the prefix's rotated keys (position 0) ``(n_heads, 1, d_head)``.
        x: ``(n, d_model)`` residual streams of the tokens.
        v_first: the prefix's values ``(n_heads, 1, d_head)``.
        v: the tokens' values ``(n_heads, n, d_head)``.

    The weights come from the layer's queries and keys with its norms, rotary angles,
    scale, soft cap and window.
    """
    from .attention import qk as Q  # attention.qk builds on this module

    h = qk.input_norm(x).float()
    q = Q.rotate(Q.queries(qk, h, torch.arange(len(kv), device=x.device)), qk.positions, 1.0)
    k = Q.rotate(Q.keys(qk, h, kv), qk.positions, 1.0)
    s = torch.stack([(q * k_first).sum(-1), (q * k).sum(-1)], -1) * qk.scale  # (H, n, 2)
    if qk.softcap:
        s = qk.softcap * torch.tanh(s / qk.softcap)
    if Q.masked(qk, 1):
        s[..., 0] = float("-inf")
    w = torch.softmax(s, dim=-1)
    return w[..., :1] * v_first + w[..., 1:] * v


def _prefix_keys(qk: QKWeights, kv: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
    """Rotated keys ``(n_heads, 1, d_head)`` of the prefix residual ``first`` at position 0."""
    from .attention import qk as Q  # attention.qk builds on this module

    return Q.rotate(Q.keys(qk, qk.input_norm(first[None]).float(), kv), qk.positions, 0.0)


def token_alone_reference(model: HeadModel, x: torch.Tensor, blocks: range,
                          chunk_rows: int = 16384, first: torch.Tensor | None = None,
                          with_first: bool = False) -> Any:
    """:func:`token_alone` head by head in float32, as it was first written (a baseline).

    Kept for the tests and ``benchmarks/bench_projection.py``: it forms every query head's
    value separately (``index_select`` over the value heads), rotates queries and keys, and
    converts each chunk's operands on the fly. Same arguments, meaning and result as
    :func:`token_alone` in float32.
    """
    x = x.float()
    kv = model.spec.kv_index().to(x.device)
    step = max(1, int(chunk_rows))

    def values(a: AttentionWeights, W_V: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        v = torch.einsum("nd,kde->kne", a.input_norm(rows).float(), W_V)
        if a.b_V is not None:
            v = v + a.b_V.float()[:, None, :]
        return v.index_select(0, kv)  # (H, n, dh)

    def block(a: AttentionWeights, W_O: torch.Tensor, mlp: MLPBlock, rows: torch.Tensor,
              z: torch.Tensor) -> torch.Tensor:
        attn = torch.einsum("hne,hed->nd", z, W_O)
        if a.b_O is not None:
            attn = attn + a.b_O.float()
        if a.post_norm is not None:
            attn = a.post_norm(attn).float()
        if model.parallel_attn_mlp:
            return rows + attn + mlp(rows).float()
        mid = rows + attn
        return mid + mlp(mid).float()

    with torch.no_grad():
        bar = tqdm(blocks, desc="token_alone sources", unit="block", leave=False,
                   disable=x.shape[0] < PROGRESS_ROWS or len(blocks) < 2)
        for layer in bar:
            a, mlp = model.attention(layer), model.mlp(layer)
            W_V, W_O = a.W_V.float(), a.W_O.float()
            if first is not None:  # the prefix's keys and values, once per block
                qk = model.qk(layer)
                k_first = _prefix_keys(qk, kv, first)
                v_first = values(a, W_V, first[None])
            out = torch.empty_like(x)
            for c in range(0, x.shape[0], step):
                xc = x[c:c + step]
                z = values(a, W_V, xc)
                if first is not None:
                    z = _attend_after(qk, kv, k_first, xc, v_first, z)
                out[c:c + step] = block(a, W_O, mlp, xc, z)
            if first is not None:
                first = block(a, W_O, mlp, first[None], v_first)[0]
            x = out
    return (first, x) if with_first else x


#: ``$HEADMAPS_STREAM_DTYPE``: the compute dtype of the ``token_alone`` stream's matrix
#: products when none is given (``float32`` or ``bfloat16``); see :func:`stream_dtype`.
STREAM_DTYPE_ENV = "HEADMAPS_STREAM_DTYPE"
STREAM_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16}
#: The stream's compute dtype by default (docs/results/projection-speed.md measures both).
DEFAULT_STREAM_DTYPE = "float32"


def stream_dtype(dtype: str | torch.dtype | None = None) -> torch.dtype:
    """The stream's compute dtype: ``dtype``, else ``$HEADMAPS_STREAM_DTYPE``, else the default.

    Raises:
        HeadmapsError: an unsupported dtype.
    """
    if isinstance(dtype, torch.dtype):
        if dtype not in STREAM_DTYPES.values():
            raise HeadmapsError(f"stream dtype {dtype} is not supported; use one of "
                                f"{', '.join(STREAM_DTYPES)}")
        return dtype
    name = dtype or os.environ.get(STREAM_DTYPE_ENV) or DEFAULT_STREAM_DTYPE
    if name not in STREAM_DTYPES:
        raise HeadmapsError(f"unknown stream dtype {name!r}; use one of {', '.join(STREAM_DTYPES)}")
    return STREAM_DTYPES[name]


def _same_norm(a: Norm, b: Norm) -> bool:
    """Whether two norms compute the same function (a layer's OV and QK input norms)."""
    def same(x: torch.Tensor | None, y: torch.Tensor | None) -> bool:
        if x is None or y is None:
            return x is None and y is None
        return x.shape == y.shape and torch.equal(x, y)

    return a.kind == b.kind and a.eps == b.eps and same(a.weight, b.weight) and \
        same(a.bias, b.bias)


class _Block:
    """One block's weights laid out for the stream: fused and converted once, in ``dtype``.

    All value heads are one product ``x W`` with the value weights side by side,
    ``(d, n_kv d_head)``; after a prefix the query and key weights sit beside them,
    ``(d, (n_heads + 2 n_kv) d_head)``. A lone token's heads each output their own value,
    so the heads that read one value head share it and their ``W_O`` sum to one
    ``(n_kv d_head, d)`` matrix; after a prefix each head weights its value by its own
    attention, and the output is one ``(n, n_heads d_head) x (n_heads d_head, d)``
    product plus the prefix's part, a constant per head. The MLP's up and gate matrices
    sit side by side too. Products take their operands in ``dtype`` and return float32.
    """

    def __init__(self, model: HeadModel, layer: int, dtype: torch.dtype, prefix: bool):
        a, mlp, s = model.attention(layer), model.mlp(layer), model.spec
        self.a, self.mlp, self.dtype = a, mlp, dtype
        self.parallel = model.parallel_attn_mlp
        self.H, self.kv, self.dh = s.n_heads, s.n_kv_heads, s.d_head
        self.g = self.H // self.kv  # query heads per value head (ArchSpec.kv_head)
        W_V, W_O = a.W_V.float(), a.W_O.float()  # (kv, d, dh), (H, dh, d)
        d = W_V.shape[1]
        wv = W_V.permute(1, 0, 2).reshape(d, self.kv * self.dh)
        self.b_V = a.b_V.float().reshape(-1) if a.b_V is not None else None
        self.b_O = a.b_O.float() if a.b_O is not None else None
        self.W_O_heads = W_O
        self.qk = model.qk(layer) if prefix else None
        self.shared_norm = True
        if self.qk is None:
            self.W_in = wv.to(dtype).contiguous()
            self.W_O = W_O.view(self.kv, self.g, self.dh, d).sum(1).reshape(-1, d).to(dtype)
        else:
            qk = self.qk
            wq = qk.W_Q.float().permute(1, 0, 2).reshape(d, self.H * self.dh)
            wk = qk.W_K.float().permute(1, 0, 2).reshape(d, self.kv * self.dh)
            self.shared_norm = _same_norm(a.input_norm, qk.input_norm)
            if self.shared_norm:
                self.W_in = torch.cat([wq, wk, wv], 1).to(dtype).contiguous()
            else:
                self.W_in = wv.to(dtype).contiguous()
                self.W_qk = torch.cat([wq, wk], 1).to(dtype).contiguous()
            self.b_Q = qk.b_Q.float().reshape(-1) if qk.b_Q is not None else None
            self.b_K = qk.b_K.float().reshape(-1) if qk.b_K is not None else None
            self.W_O = W_O.reshape(self.H * self.dh, d).to(dtype)
        m = mlp.mlp
        self.gated = m.W_gate is not None
        up = [m.W_in.float()] + ([m.W_gate.float()] if self.gated else [])
        self.W_up = torch.cat(up, 1).to(dtype).contiguous()
        self.b_up = m.b_in.float() if m.b_in is not None else None
        self.W_down = m.W_out.float().to(dtype).contiguous()
        self.b_down = m.b_out.float() if m.b_out is not None else None
        self.act = activation(m.act)
        self.d_mlp = m.W_in.shape[1]

    def _mm(self, x: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
        """``x W`` with the operands in the block's dtype; in that dtype (add it to float32)."""
        return x.to(self.dtype) @ W

    def ffn(self, x: torch.Tensor) -> torch.Tensor:
        """What the MLP adds to the residual ``x`` ``(n, d)``: ``post(MLP(pre(x)))``.

        The hidden layer stays in the block's dtype (it only feeds the down product).
        """
        h = self._mm(self.mlp.pre_norm(x), self.W_up)
        b = self.b_up.to(h.dtype) if self.b_up is not None else None
        if self.gated:
            up, gate = h[:, :self.d_mlp], h[:, self.d_mlp:]
            h = self.act(gate) * (up + b if b is not None else up)
        else:
            h = self.act(h + b if b is not None else h)
        y = self._mm(h, self.W_down).float()
        if self.b_down is not None:
            y = y + self.b_down
        post = self.mlp.post_norm
        return post(y).float() if post is not None else y

    def finish(self, x: torch.Tensor, attn: torch.Tensor, ffn: Any = None) -> torch.Tensor:
        """The residual after the block, from its input ``x`` and the heads' summed output."""
        ffn = ffn or self.ffn
        if self.b_O is not None:
            attn = attn + self.b_O
        if self.a.post_norm is not None:
            attn = self.a.post_norm(attn).float()
        if self.parallel:
            return x + attn + ffn(x)
        mid = x + attn
        return mid + ffn(mid)

    def values(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, n_kv, d_head)`` float32 values of residuals ``x`` ``(n, d)``, exactly (float32)."""
        v = torch.einsum("nd,kde->nke", self.a.input_norm(x).float(), self.a.W_V.float())
        return v + self.a.b_V.float() if self.a.b_V is not None else v

    def alone(self, x: torch.Tensor) -> torch.Tensor:
        """The residual after the block of lone tokens ``x`` ``(n, d)`` float32."""
        v = self._mm(self.a.input_norm(x), self.W_in)  # (n, kv dh)
        if self.b_V is not None:
            v = v + self.b_V.to(v.dtype)
        return self.finish(x, self._mm(v, self.W_O).float())

    def prefix_terms(self, first: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The prefix's key and output terms in this block, from its residual ``(d,)``.

        Returns:
            ``kf`` ``(n_kv, d_head)``: its key rotated to position 0 and back by one, so a
            query at position 1 scores it without being rotated itself; and ``C``
            ``(n_heads, d)``: each head's output when it attends to the prefix only.
        """
        from .attention import qk as Q  # attention.qk builds on this module

        qk, kvi = self.qk, torch.arange(self.kv, device=first.device)
        k = Q.keys(qk, qk.input_norm(first[None]).float(), kvi)  # (kv, 1, dh)
        kf = Q.rotate(Q.rotate(k, qk.positions, 0.0), qk.positions, -1.0)[:, 0]
        v = self.values(first[None])[0].repeat_interleave(self.g, 0)  # (H, dh)
        return kf, torch.einsum("he,hed->hd", v, self.W_O_heads)

    def prefix_alone(self, first: torch.Tensor) -> torch.Tensor:
        """The prefix's residual ``(d,)`` after the block: a lone token at position 0.

        Float32 with the weights as stored, whatever the block's dtype (one row).
        """
        v = self.values(first[None])[0].repeat_interleave(self.g, 0)  # (H, dh)
        attn = torch.einsum("he,hed->d", v, self.W_O_heads)[None]
        return self.finish(first[None], attn, lambda r: self.mlp(r).float())[0]

    def after(self, x: torch.Tensor, kf: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
        """The residual after the block of tokens ``x`` ``(n, d)`` at position 1 after a prefix."""
        from .attention import qk as Q  # attention.qk builds on this module

        qk, n, H, kv, dh, g = self.qk, x.shape[0], self.H, self.kv, self.dh, self.g
        h = self.a.input_norm(x)
        if self.shared_norm:
            out = self._mm(h, self.W_in)
            qko, v = out[:, :(H + kv) * dh].float(), out[:, (H + kv) * dh:].float()
        else:
            qko, v = self._mm(qk.input_norm(x), self.W_qk).float(), self._mm(h, self.W_in).float()
        q, k = qko[:, :H * dh], qko[:, H * dh:]
        if self.b_Q is not None:
            q = q + self.b_Q
        if self.b_K is not None:
            k = k + self.b_K
        if self.b_V is not None:
            v = v + self.b_V
        q, k = q.reshape(n, kv, g, dh), k.reshape(n, kv, 1, dh)
        if qk.q_norm is not None:
            q = qk.q_norm(q).float()
        if qk.k_norm is not None:
            k = qk.k_norm(k).float()
        pos = qk.positions  # query and key at one position: the rotation cancels, its scaling not
        if pos.kind == "rotary" and pos.inv_freq is not None and pos.attention_scaling != 1.0:
            sc = torch.ones(dh, device=x.device)
            sc[:pos.rotary_dim] = pos.attention_scaling ** 2
            k = k * sc
        s = torch.stack([(q * kf[None, :, None, :]).sum(-1), (q * k).sum(-1)], -1) * qk.scale
        if qk.softcap:
            s = qk.softcap * torch.tanh(s / qk.softcap)
        if Q.masked(qk, 1):
            s[..., 0] = float("-inf")
        w = torch.softmax(s, dim=-1)  # (n, kv, g, 2)
        z = (w[..., 1:] * v.reshape(n, kv, 1, dh)).reshape(n, H * dh)
        return self.finish(x, self._mm(z, self.W_O).float() + w[..., 0].reshape(n, H) @ C)


def _advance(model: HeadModel, x: torch.Tensor, blocks: range, chunk_rows: int,
             first: torch.Tensor | None, dtype: torch.dtype
             ) -> tuple[torch.Tensor | None, torch.Tensor]:
    """:func:`token_alone`'s work: ``(prefix residual or None, rows)`` after ``blocks``."""
    x = x.float()
    step = max(1, int(chunk_rows))
    with torch.no_grad():
        bar = tqdm(blocks, desc="token_alone sources", unit="block", leave=False,
                   disable=x.shape[0] < PROGRESS_ROWS or len(blocks) < 2)
        for layer in bar:
            b = _Block(model, layer, dtype, first is not None)
            out = torch.empty_like(x)
            if first is None:
                for c in range(0, x.shape[0], step):
                    out[c:c + step] = b.alone(x[c:c + step])
            else:
                kf, C = b.prefix_terms(first)
                for c in range(0, x.shape[0], step):
                    out[c:c + step] = b.after(x[c:c + step], kf, C)
                first = b.prefix_alone(first)
            x = out
    return first, x


def token_alone(model: HeadModel, x: torch.Tensor, blocks: range, chunk_rows: int = 4096,
                first: torch.Tensor | None = None, with_first: bool = False,
                dtype: str | torch.dtype | None = None) -> Any:
    """Advance residual streams ``x`` ``(n, d_model)`` through ``blocks`` of a lone token.

    Each row is the residual of a one-token sequence, so every attention head attends to
    that token with probability 1 and its output is its value: block ``l`` adds
    ``post_attn(sum_h (LN_1(x) W_V^h + b_V^h) W_O^h + b_O)`` and its MLP (after the
    attention, or beside it for parallel blocks), all biases and norms as in the model.
    Learned position embeddings are not added (the token has no position here, as in
    the other source representations).

    With ``first`` (the residual ``(d_model,)`` of a prefix token at position 0), each
    row is instead the second token of the sequence ``[prefix, token]``: its heads mix
    the prefix's value and its own with the model's attention weights, and the prefix
    advances as a lone token.

    The work is a few large matrix products per block and chunk (see :class:`_Block`).
    With ``dtype=bfloat16`` their operands are rounded to bfloat16 (products accumulate
    in float32); the residual stream, norms, attention weights and the prefix's own row
    stay float32.

    Args:
        model: the model (each block's weights are read once).
        x: ``(n, d_model)`` residual streams entering block ``blocks.start``.
        blocks: the blocks to pass, in order.
        chunk_rows: rows computed at a time (bounds the MLP's ``(rows, d_mlp)`` hidden
            layer when ``x`` is the whole vocabulary).
        first: the prefix's residual entering ``blocks.start``, or None.
        with_first: also return the prefix's residual (:func:`advance` always does).
        dtype: compute dtype of the products (see :func:`stream_dtype`).

    Returns:
        ``(n, d_model)`` float32: the residual entering block ``blocks.stop``; with
        ``with_first``, the pair ``(prefix residual or None, that)``.
    """
    f, out = _advance(model, x, blocks, chunk_rows, first, stream_dtype(dtype))
    return (f, out) if with_first else out


def advance(model: HeadModel, x: torch.Tensor, blocks: range,
            first: torch.Tensor | None = None, *, chunk_rows: int = 4096,
            dtype: str | torch.dtype | None = None) -> tuple[torch.Tensor | None, torch.Tensor]:
    """:func:`token_alone` with a fixed return type: ``(prefix residual or None, rows)``."""
    return _advance(model, x, blocks, chunk_rows, first, stream_dtype(dtype))


#: A :class:`Sources` of at least this many tokens caches its stream on disk by default.
CACHE_MIN_ROWS = 16384
#: Rows the stream advances at a time (bounds its ``(rows, d_mlp)`` hidden layer).
STREAM_CHUNK_ROWS = 4096
#: A :class:`Sources` keeps the ``token_alone`` rows of every layer it passes when all
#: its layers fit in this many bytes, so that a consumer that goes through the layers
#: several times (head types: eigen-copying, the positional sample, self-preference)
#: advances the stream once. A bigger set (a whole vocabulary) keeps nothing and
#: restarts when a layer is read out of order.
KEEP_BYTES = 1 << 30


class Sources:
    """Source representations of a fixed token set for every layer, each computed once.

    ``at(layer)`` gives what :func:`base_sources` gives. For ``token_alone`` the stream
    advances block by block: layers read in increasing order cost one block each, and
    the rows of each layer read are kept while they fit in ``keep_bytes``, so reading the
    layers again (another consumer, another pass) costs nothing. :meth:`subset` gives a
    view on some of the tokens that takes its rows from this stream as it passes (the
    union of the token sets of a call advances once).

    Args:
        model: the model.
        token_ids: ``(n,)`` source token ids.
        opts: projection options (``prefix="auto"`` is resolved here).
        chunk_rows: rows computed at a time (bounds the MLP's ``(rows, d_mlp)`` hidden
            layer when the set is the whole vocabulary).
        dtype: the stream's compute dtype (see :func:`stream_dtype`).
        keep_bytes: bytes of rows kept across layers (see :data:`KEEP_BYTES`).
        cache: store and read the ``token_alone`` rows of each layer on disk
            (:mod:`headmaps.streamcache`); None: for sets of at least
            :data:`CACHE_MIN_ROWS` tokens (a vocabulary), where recomputing costs minutes.
    """

    def __init__(self, model: HeadModel, token_ids: torch.Tensor, opts: ProjectionOptions,
                 chunk_rows: int = 16384, *, dtype: str | torch.dtype | None = None,
                 keep_bytes: int | None = None, cache: bool | None = None):
        self.model, self.ids, self.opts = model, token_ids, concrete(model, opts)
        self.chunk_rows = max(1, int(chunk_rows))
        self.dtype = stream_dtype(dtype)
        self.keep_bytes = KEEP_BYTES if keep_bytes is None else int(keep_bytes)
        self._fixed: dict[bool, torch.Tensor] = {}
        self._alone: tuple[int, torch.Tensor | None, torch.Tensor] | None = None
        self._kept: dict[int, tuple[torch.Tensor | None, torch.Tensor]] = {}
        self._views: list[SourcesView] = []
        #: blocks this object advanced the stream through (a full pass: n_layers - 1)
        self.blocks_advanced = 0
        use = len(token_ids) >= CACHE_MIN_ROWS if cache is None else bool(cache)
        self._cache_key: str | None = None
        if use and self.opts.source == "token_alone":
            from . import streamcache

            if streamcache.budget() > 0:
                self._cache_key = streamcache.key(model, self.opts.to_dict(), self.dtype,
                                                  token_ids)

    def __len__(self) -> int:
        return len(self.ids)

    def _keep(self, layer: int, first: torch.Tensor | None, x: torch.Tensor) -> None:
        if self.model.n_layers * x.numel() * x.element_size() <= self.keep_bytes:
            self._kept[layer] = (first, x)

    def at(self, layer: int) -> torch.Tensor:
        """``(n, d_model)`` float32 representations before ``layer``'s input norm."""
        if self.opts.source == "token_alone":
            if layer in self._kept:
                return self._kept[layer][1]
            if self._alone is not None and self._alone[0] == layer:
                return self._alone[2]
            hit = self._cached(layer)
            if hit is not None:
                self._alone = (layer, *hit)
                self._passed(layer, *hit)
                return hit[1]
            if self._alone is None or layer < self._alone[0]:
                self._alone = self._restart(layer)
            done, first, x = self._alone
            step = min(self.chunk_rows, STREAM_CHUNK_ROWS)
            for nxt in range(done + 1, layer + 1):
                first, x = _advance(self.model, x, range(nxt - 1, nxt), step, first, self.dtype)
                self.blocks_advanced += 1
                self._alone = (nxt, first, x)
                self._passed(nxt, first, x)
                if self._cache_key is not None:
                    from . import streamcache

                    streamcache.store(self._cache_key, nxt, first, x)
            return x
        key = _reads_embedding(self.opts, layer)
        if key not in self._fixed:
            ids, step = self.ids, self.chunk_rows
            with torch.no_grad():
                self._fixed[key] = torch.cat([
                    base_sources(self.model, ids[i:i + step], self.opts, 0 if key else 1)
                    for i in range(0, max(len(ids), 1), step)])
        return self._fixed[key]

    def _cached(self, layer: int) -> tuple[torch.Tensor | None, torch.Tensor] | None:
        """``layer``'s rows from the on-disk cache, or None."""
        if self._cache_key is None:
            return None
        from . import streamcache

        return streamcache.load(self._cache_key, layer, self.ids.device)

    def _restart(self, layer: int) -> tuple[int, torch.Tensor | None, torch.Tensor]:
        """The nearest state at or below ``layer`` to advance from: kept, cached, or layer 0."""
        below = [k for k in self._kept if k < layer]
        start = max(below) if below else 0
        for k in range(layer - 1, start, -1):
            hit = self._cached(k)
            if hit is not None:
                return (k, *hit)
        if below:
            return (start, *self._kept[start])
        first, x = _alone_start(self.model, self.ids, self.opts)
        self._passed(0, first, x)
        return (0, first, x)

    def _passed(self, layer: int, first: torch.Tensor | None, x: torch.Tensor) -> None:
        """The stream reached ``layer``: keep its rows if they fit, and feed the views."""
        self._keep(layer, first, x)
        for v in self._views:
            v._take(layer, x)

    def subset(self, token_ids: torch.Tensor) -> SourcesView:
        """A view on ``token_ids`` (each in this set) taking its rows as the stream passes.

        Create views before the stream's pass: each keeps its own rows of every layer
        the stream goes through (a small set: bounded by its size), and reads this
        stream for any other layer.

        Raises:
            HeadmapsError: a token id not in this set.
        """
        return SourcesView(self, token_ids)


class SourcesView:
    """Rows of some tokens of a :class:`Sources`, with the same ``at(layer)``.

    See :meth:`Sources.subset`.
    """

    def __init__(self, parent: Sources, token_ids: torch.Tensor):
        self.parent, self.model, self.opts = parent, parent.model, parent.opts
        self.ids = token_ids.to(parent.ids.device)
        order = torch.argsort(parent.ids)
        sorted_ids = parent.ids[order]
        pos = torch.searchsorted(sorted_ids, self.ids).clamp_max(max(len(sorted_ids) - 1, 0))
        if len(self.ids) and (len(sorted_ids) == 0 or
                              not bool((sorted_ids[pos] == self.ids).all())):
            raise HeadmapsError("a subset's token ids must all be in the source set")
        self.rows = order[pos]
        self._own: dict[int, torch.Tensor] = {}
        if parent.opts.source == "token_alone":
            parent._views.append(self)

    def __len__(self) -> int:
        return len(self.ids)

    def _take(self, layer: int, x: torch.Tensor) -> None:
        if layer not in self._own:
            self._own[layer] = x.index_select(0, self.rows)

    def at(self, layer: int) -> torch.Tensor:
        """``(n, d_model)`` float32 rows of the view's tokens before ``layer``'s input norm."""
        if layer in self._own:
            return self._own[layer]
        return self.parent.at(layer).index_select(0, self.rows)


def layer_sources(base: torch.Tensor, attn: AttentionWeights,
                  opts: ProjectionOptions) -> torch.Tensor:
    """``base`` with the layer's input norm applied when ``opts.fold_norms``; ``(n, d_model)``."""
    if not opts.fold_norms:
        return base
    return attn.input_norm(base).float()


def output_basis(
    model: HeadModel,
    opts: ProjectionOptions,
    attn: AttentionWeights | None = None,
    columns: slice | torch.Tensor | None = None,
) -> torch.Tensor:
    """``U`` as seen by a head's output, ``(d_model, n_columns)`` float32.

    With ``fold_norms`` the final norm gain is folded in (and, for LayerNorm, the
    centring, which is linear); with ``attn`` given, that layer's post-attention norm
    gain (Gemma 2/3) too.

    Args:
        model: the model.
        opts: projection options.
        attn: the head's layer (for its post-attention norm).
        columns: a slice or index tensor of vocabulary columns (default all); only these
            are converted to float32, so a big ``U`` kept in bf16 is never copied whole.
    """
    U = (model.U if columns is None else model.U[:, columns]).float()
    if not opts.fold_norms:
        return U
    scale = torch.ones(model.d_model, device=U.device)
    fn = model.final_norm
    if fn.weight is not None:
        scale = scale * fn.weight.float()
    if attn is not None:
        post = attn.post_norm
        if post is not None and post.weight is not None:
            scale = scale * post.weight.float()
    U = scale[:, None] * U
    if fn.kind == "layernorm":
        U = U - U.mean(0, keepdim=True)
    return U


def layer_biases(a: AttentionWeights,
                 opts: ProjectionOptions) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``(b_V (n_kv_heads, d_head) or None, b_O (d_model,) or None)`` as the options ask."""
    b_v = a.b_V.float() if opts.value_bias and a.b_V is not None else None
    b_o = a.b_O.float() if opts.output_bias and a.b_O is not None else None
    return b_v, b_o

"""Projection options and named presets: which ``X``, ``W_VO`` and ``U`` a head is read through."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

from ..errors import HeadmapsError
from .precision import check_choice

SourceKind = Literal["embedding", "mlp0", "mlp0_residual", "token_alone"]

#: Fields that say how the stream is computed, not which projection it is (never part of
#: a preset's identity or a custom projection's printed options).
STREAM_FIELDS: tuple[str, ...] = ("stream_dtype", "stream_reason")

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
        stream_dtype: ``token_alone`` over the whole vocabulary: the compute dtype of the
            stream, ``"auto"`` (bfloat16 where the device computes it natively, else
            float32; :mod:`headmaps.projection.precision`), ``"float32"`` or
            ``"bfloat16"``. A bfloat16 stream is a screen: answers are decided on float32
            rows of the candidates. It changes how ``X`` is computed, not which ``X`` is
            meant, so it takes no part in comparing options or naming presets.
        stream_reason: why ``stream_dtype`` was chosen (``"auto: no native bfloat16 on
            this CPU ..."``, ``"asked"``); filled in by
            :func:`~headmaps.projection.concrete`, which also resolves ``"auto"``.
    """

    source: SourceKind = "mlp0"
    mlp0_at_layer0: bool = False
    scale_embeddings: bool = False
    fold_norms: bool = False
    value_bias: bool = False
    output_bias: bool = False
    prefix: str = ""
    stream_dtype: str = field(default="auto", compare=False)
    stream_reason: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.source not in SOURCE_KINDS:
            raise HeadmapsError(
                f"unknown source representation {self.source!r}; use one of "
                f"{', '.join(SOURCE_KINDS)}"
            )
        if self.prefix and self.source != "token_alone":
            raise HeadmapsError(f"a prefix token needs source='token_alone', not {self.source!r}")
        check_choice(self.stream_dtype)

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

#: The preset used when none is given and no calibration is stored: ``through``, the
#: token run through every earlier block after the token that starts pretraining
#: documents. It agrees with inference far better than any block-0 source (median r
#: without context 0.91 on SmolLM2-135M and 0.98 on Gemma 3 270M, against 0.78 and 0.11
#: for ``norms``; docs/results/projection.md), for the cost of one pass of the
#: vocabulary through the blocks for whole-vocabulary work, shared by every part of a
#: report and cached on disk.
DEFAULT_PRESET = "through"


def _options(preset: str | ProjectionOptions | None = None,
             overrides: dict[str, Any] | None = None) -> ProjectionOptions:
    """A preset name (or options object) with overrides applied (None values ignored).

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
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    valid = {f.name for f in fields(ProjectionOptions)}
    unknown = set(overrides) - valid
    if unknown:
        raise HeadmapsError(
            f"unknown projection option(s) {', '.join(sorted(unknown))}; valid: "
            f"{', '.join(sorted(valid))}"
        )
    return replace(base, **overrides)


def _preset_name(options: ProjectionOptions) -> str:
    """The name a projection records: the preset whose options these are, else ``custom``."""
    return next((name for name, opts in PRESETS.items() if opts == options), "custom")


def _printed(name: str, options: dict[str, Any]) -> str:
    """``"norms"``, ``"through (after <bos>)"``, or a custom projection's options."""
    if name in PRESETS:
        auto = PRESETS[name].prefix == AUTO_PREFIX and options.get("prefix", AUTO_PREFIX)
        return f"{name} (after {auto})" if auto and auto != AUTO_PREFIX else name
    shown = {k: v for k, v in options.items() if k not in STREAM_FIELDS}
    return f"{name or 'custom'} (" + ", ".join(f"{k}={v}" for k, v in shown.items()) + ")"

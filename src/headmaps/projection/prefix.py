"""The prefix token of the ``through`` source: the token that starts pretraining documents."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..errors import HeadmapsError
from ..models import HeadModel
from .options import AUTO_PREFIX, ProjectionOptions
from .precision import choose


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
       Llama, Gemma, Mistral, OPT), that token: pretraining documents started with it;
       unless the chat template writes it (a chat-turn marker that a wrapper made the
       tokenizer prepend, as TransformerLens does with SmolLM2-Instruct's ``<|im_start|>``).
    2. Otherwise documents were concatenated with a separator appended to each (GPT-2's
       ``<|endoftext|>`` convention: GPT-2, GPT-NeoX/Pythia, Qwen, SmolLM), so the token
       before a document's first token is that separator. It is the tokenizer's special
       token that is not a chat-turn marker: markers that its chat template writes
       (``<|im_start|>``, ``<|im_end|>``) were added for fine-tuning, and a chat GGUF
       often names them bos/eos (SmolLM2's bos is ``<|im_start|>``). Nor is it the
       padding or mask token (unless it is also the eos or the unk, the roles a
       byte-level vocabulary gives its end-of-text token: GPT-2's and SmolLM2's unk is
       ``<|endoftext|>``): text never holds those between documents. Of the rest, the
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
    template = getattr(tokenizer, "chat_template", None)
    template = template if isinstance(template, str) else ""
    if len(framed) > len(plain) and framed[-len(plain):] == plain and plain:
        tid = int(framed[0])
        tok = tokenizer.convert_ids_to_tokens(tid)
        # a chat-turn marker prepended by a wrapper (TransformerLens prepends the bos of
        # SmolLM2-Instruct's GGUF, <|im_start|>) did not start pretraining documents
        if isinstance(tok, str) and vocab.get(tok) == tid and tok not in template:
            return tok, "the tokenizer prepends it to every text (bos)"
    specials = _special_tokens(tokenizer)
    eos = getattr(tokenizer, "eos_token", None)
    unk = getattr(tokenizer, "unk_token", None)
    never = {getattr(tokenizer, f"{role}_token", None) for role in ("pad", "mask")}
    rest = {t: i for t, i in specials.items()
            if t not in template and (t not in never or t in (eos, unk))}
    if not rest:
        return "", ("no special token outside the chat template and the pad/mask "
                    "tokens: the source token alone")
    if isinstance(eos, str) and eos in rest:
        return eos, "the end-of-text token that separates documents (eos)"
    tok = min(rest, key=rest.get)
    return tok, ("the first special token that is not a chat-turn marker (the document "
                 "separator)")


def concrete(model: HeadModel, opts: ProjectionOptions) -> ProjectionOptions:
    """``opts`` as run on ``model``: every ``"auto"`` decided.

    ``prefix="auto"`` becomes the model's :func:`document_prefix` token; the stream's
    dtype is chosen for the model's device by :func:`~headmaps.projection.precision.choose`
    (``stream_dtype`` and ``stream_reason`` filled in). A dtype chosen automatically
    elsewhere (options read from a result made on another machine) is chosen again here.
    """
    asked = "auto" if opts.stream_reason.startswith("auto") else opts.stream_dtype
    dtype, reason = choose(asked, model.E.device)
    changes: dict[str, str] = {}
    if (dtype, reason) != (opts.stream_dtype, opts.stream_reason):
        changes.update(stream_dtype=dtype, stream_reason=reason)
    if opts.prefix == AUTO_PREFIX:
        changes["prefix"] = document_prefix(model.tokenizer)[0]
    return replace(opts, **changes) if changes else opts



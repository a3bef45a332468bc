"""A tiny Llama with a real word-level tokenizer, and heads whose OV circuit is set by hand.

``vocab_model()`` returns ``(hf_model, tokenizer)``: a word-level tokenizer over a small
vocabulary of real words (countries, capitals, years, verbs and their past tenses,
letters, punctuation) and a float64 Llama with ``hidden_size >= vocab size`` and one
head per layer as wide as the residual stream, so that any mapping matrix ``M`` can be
written into a head: ``set_mapping(model, layer, head, P)`` makes ``M = P`` exactly for
the given projection preset (``W_VO = X^+ P U^+``).
"""

from __future__ import annotations

from dataclasses import replace

import torch

COUNTRY_CAPITAL = [("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"),
                   ("Spain", "Madrid"),
                   ("Japan", "Tokyo"), ("Egypt", "Cairo"), ("Russia", "Moscow"),
                   ("Greece", "Athens"),
                   ("Poland", "Warsaw"), ("Austria", "Vienna"), ("Norway", "Oslo"),
                   ("Sweden", "Stockholm"),
                   ("Kenya", "Nairobi"), ("Peru", "Lima"), ("Cuba", "Havana"),
                   ("Portugal", "Lisbon")]
VERB_PAST = [("walk", "walked"), ("jump", "jumped"), ("play", "played"), ("talk", "talked"),
             ("open", "opened"), ("call", "called"), ("help", "helped"), ("look", "looked"),
             ("want", "wanted"), ("cook", "cooked"), ("clean", "cleaned"), ("paint", "painted"),
             ("visit", "visited"), ("start", "started"), ("finish", "finished"),
             ("watch", "watched")]
YEARS = [str(y) for y in range(1980, 2001)]
LETTERS = [chr(c) for c in range(ord("a"), ord("z") + 1)]
OTHER = ["apple", "river", "house", "green", "music", "garden", "window", "table"]
PUNCT = [",", ".", "!", "?", ";", "\ufffd"]


def vocabulary() -> list[str]:
    """All tokens, special tokens first."""
    words = ["[UNK]", "[PAD]"]
    for pairs in (COUNTRY_CAPITAL, VERB_PAST):
        for s, t in pairs:
            words += [s, t]
    words += YEARS + LETTERS + OTHER + PUNCT
    seen: list[str] = []
    for w in words:
        if w not in seen:
            seen.append(w)
    return seen


def tokenizer():
    """A ``PreTrainedTokenizerFast`` over :func:`vocabulary` (whitespace-split word level)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(vocabulary())}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.decoder = decoders.WordPiece()  # joins with spaces; single tokens decode to themselves
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]")


def vocab_model(n_layers: int = 2, seed: int = 0):
    """``(hf_model, tokenizer)``: a float64 Llama sized for the tiny vocabulary."""
    import transformers

    tok = tokenizer()
    V = len(tok)
    d = 160
    assert d >= V, (d, V)
    config = transformers.LlamaConfig(hidden_size=d, intermediate_size=192,
                                      num_hidden_layers=n_layers,
                                      num_attention_heads=2, num_key_value_heads=2, head_dim=d,
                                      vocab_size=V, max_position_embeddings=32,
                                      tie_word_embeddings=False)
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config).to(torch.float64).eval()
    with torch.no_grad():
        model.lm_head.weight.copy_(torch.randn(V, d, dtype=torch.float64))
    return model, tok


def ids(tok, words: list[str]) -> list[int]:
    """Token ids of single-token words."""
    vocab = tok.get_vocab()
    return [vocab[w] for w in words]


def mapping_matrix(tok, pairs: list[tuple[str, str]]) -> torch.Tensor:
    """``(V, V)`` float64 with ``P[s, t] = 1`` for each pair."""
    V = len(tok)
    P = torch.zeros(V, V, dtype=torch.float64)
    vocab = tok.get_vocab()
    for s, t in pairs:
        P[vocab[s], vocab[t]] = 1.0
    return P


def set_mapping(model, layer: int, head: int, P: torch.Tensor, preset: str = "paper") -> None:
    """Write a head whose mapping matrix is ``P`` under ``preset`` (for salient operations).

    Uses headmaps' own source representation for the preset; ``W_V = I``, ``W_O = X^+ P U^+``.
    """
    import headmaps as hm
    from headmaps import projection as proj

    hm_model = hm.load(model)
    opts = proj.PRESETS[preset] if isinstance(preset, str) else preset
    if preset == "paper":  # salient operations read the reference code's layer 0
        opts = replace(opts, mlp0_at_layer0=True)

    V = P.shape[0]
    all_ids = torch.arange(V)
    a = hm_model.attention(layer)
    X = proj.layer_sources(proj.base_sources(hm_model, all_ids, opts, layer), a,
                           opts).double()
    U = proj.output_basis(hm_model, opts, a).double()
    W_VO = torch.linalg.pinv(X) @ P @ torch.linalg.pinv(U)
    attn = model.model.layers[layer].self_attn
    d = W_VO.shape[0]
    dh = attn.head_dim
    with torch.no_grad():
        attn.v_proj.weight[head * dh:(head + 1) * dh, :] = torch.eye(d, dtype=torch.float64)[:dh]
        attn.o_proj.weight[:, head * dh:(head + 1) * dh] = W_VO.T

"""Source representations: the ``token_alone`` residual against the real model, and the
per-layer cache every scan reads through."""

from __future__ import annotations

import pytest
import torch

import headmaps as hm
from headmaps import projection as P
from headmaps.experiments.calibrate import candidates
from tiny import TINY_CONFIGS, TINY_VARIANTS, prefixed_tiny, tiny_model

ARCHS = sorted(TINY_CONFIGS) + sorted(TINY_VARIANTS)
RTOL = 1e-6


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """``||a - b|| / ||b||``."""
    return (a - b).norm().item() / b.norm().item()


@pytest.mark.parametrize("arch", ARCHS)
def test_token_alone_is_the_residual_of_a_one_token_sequence(arch):
    """Block by block, ``token_alone`` reproduces the hidden states transformers computes
    for a batch of one-token sequences (its input is the model's own layer-0 state, so
    learned position 0 and OPT's input projection are included as the model adds them)."""
    model = tiny_model(arch)
    m = hm.load(model)
    ids = torch.arange(3, 40).reshape(-1, 1)  # 37 sequences of one token
    with torch.no_grad():
        hidden = model(input_ids=ids, output_hidden_states=True).hidden_states
    x0 = hidden[0][:, 0]
    for layer in range(1, m.n_layers):  # the last entry has the final norm on some models
        got = P.token_alone(m, x0, range(layer))
        assert rel_err(got, hidden[layer][:, 0]) <= RTOL, f"{arch} layer {layer}"
    # chunking the rows changes nothing beyond float32 rounding
    assert rel_err(P.token_alone(m, x0, range(2), chunk_rows=5),
                   P.token_alone(m, x0, range(2))) <= RTOL


@pytest.mark.parametrize("arch", ARCHS)
def test_token_after_prefix_is_the_second_token_of_a_two_token_sequence(arch):
    """With a prefix, each source is the second token of ``[prefix, token]``: its heads mix
    the prefix's value and its own with the model's attention weights (queries, keys,
    rotary angles, q/k norms, soft cap), and transformers agrees at every layer."""
    model = tiny_model(arch)
    m = hm.load(model)
    ids = torch.arange(3, 40)
    seqs = torch.stack([torch.full_like(ids, 7), ids], 1)  # (37, 2): token 7, then each id
    with torch.no_grad():
        hidden = model(input_ids=seqs, output_hidden_states=True).hidden_states
    first, x0 = hidden[0][0, 0], hidden[0][:, 1]
    for layer in range(1, m.n_layers):
        f, got = P.advance(m, x0, range(layer), first)
        assert rel_err(got, hidden[layer][:, 1]) <= RTOL, f"{arch} layer {layer}"
        assert rel_err(f, hidden[layer][0, 0]) <= RTOL, f"{arch} prefix, layer {layer}"


def test_prefix_option_reads_the_token_from_the_tokenizer():
    from tiny_vocab import vocab_model

    model, tok = vocab_model(n_layers=2, seed=0)
    m = hm.load(model, tokenizer=tok)
    word = next(w for w in tok.get_vocab() if w.isalpha())
    opts = hm.ProjectionOptions(source="token_alone", fold_norms=True, prefix=word)
    ids = torch.arange(5, 25)
    seqs = torch.stack([torch.full_like(ids, tok.get_vocab()[word]), ids], 1)
    with torch.no_grad():
        hidden = model(input_ids=seqs, output_hidden_states=True).hidden_states
    src = P.Sources(m, ids, opts)
    for layer in (1, 0, 1):
        assert rel_err(src.at(layer), hidden[layer][:, 1].float()) <= RTOL
    with pytest.raises(hm.HeadmapsError, match="not a token"):
        P.base_sources(m, ids, hm.ProjectionOptions(source="token_alone", prefix="<nope>"), 1)
    with pytest.raises(hm.HeadmapsError, match="token_alone"):
        hm.ProjectionOptions(source="mlp0", prefix=word)


@pytest.mark.parametrize("arch", ["gpt2", "opt"])
def test_prefix_source_adds_learned_positions_as_the_model_does(arch):
    from tiny_tokenizer import tiny_tokenizer

    model = tiny_model(arch)
    tok = tiny_tokenizer([f"w{i}" for i in range(150)])
    m = hm.load(model, tokenizer=tok)
    opts = hm.ProjectionOptions(source="token_alone", fold_norms=True, prefix="w3")
    ids = torch.arange(10, 30)
    seqs = torch.stack([torch.full_like(ids, tok.get_vocab()["w3"]), ids], 1)
    with torch.no_grad():
        hidden = model(input_ids=seqs, output_hidden_states=True).hidden_states
    for layer in range(m.n_layers):
        assert rel_err(P.base_sources(m, ids, opts, layer), hidden[layer][:, 1]) <= RTOL


def test_token_alone_source_matches_hidden_states_on_rotary_model():
    """Without learned positions the source is exactly the lone token's residual: the
    embedding (scaled as the model scales it) advanced through the earlier blocks."""
    model = tiny_model("gemma3_text")
    m = hm.load(model)
    ids = torch.arange(5, 30)
    with torch.no_grad():
        hidden = model(input_ids=ids[:, None], output_hidden_states=True).hidden_states
    opts = P.PRESETS["alone"]
    for layer in range(m.n_layers):
        assert rel_err(P.base_sources(m, ids, opts, layer), hidden[layer][:, 0]) <= RTOL


@pytest.mark.parametrize("preset", ["paper", "norms", "embedding", "alone"])
def test_sources_in_any_order_equal_base_sources(tiny_llama_hm, preset):
    m, opts = tiny_llama_hm, P.PRESETS[preset]
    ids = torch.arange(2, 60)
    src = P.Sources(m, ids, opts, chunk_rows=7)
    for layer in [0, 2, 1, 2, 0, 1]:  # forwards, backwards and repeated
        assert rel_err(src.at(layer), P.base_sources(m, ids, opts, layer)) <= RTOL


def test_mlp_of_each_layer_is_read_from_that_layer(tiny_llama_hm):
    m = tiny_llama_hm
    x = torch.randn(4, m.d_model, dtype=torch.float64)
    outs = [m.mlp(layer)(x) for layer in range(m.n_layers)]
    assert torch.equal(outs[0], m.first_mlp()(x))
    assert not torch.allclose(outs[0], outs[1])
    with pytest.raises(hm.HeadmapsError, match="layer"):
        m.mlp(m.n_layers)


def test_unknown_source_is_a_clear_error():
    with pytest.raises(hm.HeadmapsError, match="token_alone"):
        hm.ProjectionOptions(source="residual")


def test_calibration_tries_token_alone(tiny_llama_hm):
    names = [name for name, _ in candidates(tiny_llama_hm)]
    assert "alone" in names  # the preset, with the switches this model ignores dropped


@pytest.mark.parametrize("arch", ["llama", "gemma3_text", "gpt_neox", "phi-qk_layernorm"])
def test_fused_stream_equals_the_head_by_head_reference(arch):
    """The fused products give the reference's rows (float32), alone and after a prefix;
    a bfloat16 stream stays within bfloat16 rounding of them."""
    m = hm.load(tiny_model(arch))
    x0 = P.embed(m, torch.arange(3, 60), P.PRESETS["alone"])
    first = x0[0]
    for f in (None, first):
        ref = P.token_alone_reference(m, x0, range(m.n_layers), first=f)
        got = P.advance(m, x0, range(m.n_layers), f, chunk_rows=11)
        assert rel_err(got[1], ref[1]) <= RTOL
        assert (got[0] is None) == (f is None)
        if f is not None:
            assert rel_err(got[0], ref[0]) <= RTOL
        low = P.advance(m, x0, range(m.n_layers), f, dtype="bfloat16")[1]
        assert 0 < rel_err(low, ref[1]) <= 3e-2
    with pytest.raises(hm.HeadmapsError, match="stream dtype"):
        P.stream_dtype("float16")


def test_sources_keep_a_small_set_and_views_take_rows_as_the_stream_passes(tiny_llama_hm):
    m, opts = tiny_llama_hm, P.PRESETS["alone"]
    ids = torch.arange(2, 60)
    src = P.Sources(m, ids, opts, chunk_rows=7)
    sub = torch.tensor([40, 3, 17])
    view = src.subset(sub)
    for layer in range(m.n_layers):
        assert torch.equal(view.at(layer), src.at(layer)[sub - 2])
    passes = src.blocks_advanced
    assert passes == m.n_layers - 1
    for layer in [2, 0, 1]:  # kept: reading again advances nothing
        assert rel_err(src.at(layer), P.base_sources(m, ids, opts, layer)) <= RTOL
    assert src.blocks_advanced == passes
    # too big to keep: a layer read out of order restarts the stream; the view kept its rows
    big = P.Sources(m, ids, opts, keep_bytes=0)
    bview = big.subset(sub)
    big.at(m.n_layers - 1)
    # ``big`` advances all rows at once where ``src`` went 7 at a time: other matmul shapes
    assert rel_err(bview.at(1), src.at(1)[sub - 2]) <= RTOL
    assert big.blocks_advanced == m.n_layers - 1
    big.at(1)
    assert big.blocks_advanced == m.n_layers
    with pytest.raises(hm.HeadmapsError, match="subset"):
        src.subset(torch.tensor([1]))


@pytest.mark.parametrize("arch", ["llama", "gemma3_text", "qwen3", "qwen2", "gpt_neox",
                                  "phi-qk_layernorm"])
def test_stream_hands_out_the_queries_and_keys_of_the_block_it_passes(arch):
    """``Sources.queries_keys``: what the stream computed in a layer's block is the QK
    half's own queries and keys of the rows (rotary and partial rotary, q/k biases and
    norms, parallel blocks) up to float32 rounding (one fused product instead of two);
    taking them leaves the stream as it was."""
    from headmaps.models import qk as Q

    m, opts = prefixed_tiny(arch)
    ids = torch.arange(3, 60)
    src = P.Sources(m, ids, opts, chunk_rows=7, keep_bytes=0)
    plain = P.Sources(m, ids, opts, chunk_rows=7, keep_bytes=0)
    heads = torch.arange(m.n_heads)
    for layer in range(m.n_layers - 1):
        qk = m.qk(layer)
        x = Q.layer_input(qk, src.at(layer), opts)
        q, k = src.queries_keys(layer)
        assert rel_err(q, Q.queries(qk, x, heads)) <= RTOL, f"{arch} queries, layer {layer}"
        assert rel_err(k, Q.keys(qk, x)) <= RTOL, f"{arch} keys, layer {layer}"
        # the tap only copies what the block computed: the rows go on as the plain
        # stream's, within the float32 rounding this file allows any two computations of
        # one stream (bitwise would rest on the kernels being deterministic; a tap that
        # wrote into the stream's own buffers would move them far beyond this)
        assert rel_err(src.at(layer + 1), plain.at(layer + 1)) <= RTOL
    assert src.blocks_advanced == plain.blocks_advanced == m.n_layers - 1
    # where the stream does not compute them, nothing is handed out and nothing advances
    assert src.queries_keys(m.n_layers - 1) is None  # the last block is never passed
    assert P.Sources(m, ids, P.PRESETS["alone"]).queries_keys(0) is None  # no prefix
    kept = P.Sources(m, ids, opts)
    kept.at(2)
    assert kept.queries_keys(1) is None and kept.blocks_advanced == 2  # layer 2 is held


#: A screened stream's queries and keys against float32 products of its own rows: its
#: product rounds both operands and the output to bfloat16, 2^-9 relative each, so three
#: roundings bound the norm-wise error by 3 * 2^-9 (6e-3) where the product does not
#: cancel; q/k norms rescale it by a bounded factor. 2^-6 (1.6e-2) leaves room for that,
#: and float32's RTOL is 15,000x below it, so a float32 product would not be told apart
#: by this bound alone (checked: the screen's error is above RTOL).
SCREEN_QK_RTOL = 2.0 ** -6


@pytest.mark.parametrize("arch", ["llama", "gemma3_text", "qwen3"])
def test_a_screened_stream_hands_out_its_bfloat16_queries_and_keys(arch):
    """The QK half of a screened report reads the screen's own queries and keys: the
    products of its rows in bfloat16, within bfloat16 rounding of float32 products."""
    from headmaps.models import qk as Q

    m, opts = prefixed_tiny(arch)
    ids = torch.arange(3, 60)
    src = P.Sources(m, ids, opts, dtype="bfloat16", keep_bytes=0)
    assert src.screened
    heads = torch.arange(m.n_heads)
    for layer in range(m.n_layers - 1):
        qk = m.qk(layer)
        x = Q.layer_input(qk, src.at(layer), opts)
        q, k = src.queries_keys(layer)
        assert q.dtype == k.dtype == torch.float32
        for got, want in ((q, Q.queries(qk, x, heads)), (k, Q.keys(qk, x))):
            assert RTOL < rel_err(got, want) <= SCREEN_QK_RTOL, f"{arch}, layer {layer}"
    assert src.blocks_advanced == m.n_layers - 1


def test_sources_stream_dtype(tiny_llama_hm):
    m, opts = tiny_llama_hm, P.PRESETS["alone"]
    ids = torch.arange(2, 60)
    exact = P.Sources(m, ids, opts).at(2)
    low = P.Sources(m, ids, opts, dtype="bfloat16").at(2)
    assert 0 < rel_err(low, exact) <= 2e-2


@pytest.mark.parametrize("arch", ["gpt2", "opt"])
def test_qk_side_places_a_prefixed_source_at_its_own_position_once(arch):
    """``token_alone`` after a prefix runs each source at position 1, so its rows already hold
    position 1's learned embedding; the QK side moves it to the token's own position
    instead of adding a second one (exact at layer 0: embedding + that position's row)."""
    from headmaps.attention.compute import residual

    m, opts = prefixed_tiny(arch)
    ids, qk = torch.arange(10, 20), m.qk(0)
    pos = qk.positions
    for p in (0, 1, 5):
        got = residual(m, qk, 0, ids, torch.full_like(ids, p), opts)
        want = P.embed(m, ids, opts) + pos.embedding[pos.offset + p].float()
        assert rel_err(got, want) <= RTOL, p
    plain = hm.ProjectionOptions(source="embedding")
    got = residual(m, qk, 0, ids, torch.full_like(ids, 5), plain)
    assert rel_err(got, P.embed(m, ids, plain) + pos.embedding[pos.offset + 5].float()) <= RTOL


def _framed_tokenizer(specials, bos=None, eos=None, template="", prepend=None, unk=None,
                      pad=None):
    """A word-level tokenizer with the given special tokens, bos/eos names, chat template
    and (optionally) a post-processor that prepends one token to every text."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(specials + ["a", "b", "[UNK]"])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if prepend is not None:
        tk.post_processor = processors.TemplateProcessing(
            single=f"{prepend} $A", special_tokens=[(prepend, vocab[prepend])])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token=bos, eos_token=eos,
                                  unk_token=unk, pad_token=pad,
                                  additional_special_tokens=specials)
    tok.chat_template = template or None
    return tok


def test_document_prefix_rule():
    """The token before a pretraining document's first token: a prepended bos, else the
    special token outside the chat template (eos first, then the lowest id)."""
    chat = "{% for m in messages %}<|im_start|>{{ m.content }}<|im_end|>{% endfor %}"
    smol = _framed_tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<repo>"],
                             bos="<|im_start|>", eos="<|im_end|>", template=chat)
    assert P.document_prefix(smol)[0] == "<|endoftext|>"  # SmolLM2's GGUF: chat markers named
    gpt2 = _framed_tokenizer(["<pad>", "<|endoftext|>"], eos="<|endoftext|>")
    assert P.document_prefix(gpt2)[0] == "<|endoftext|>"  # eos before the lower-id pad
    gemma = _framed_tokenizer(["<pad>", "<eos>", "<bos>"], bos="<bos>", eos="<eos>",
                              prepend="<bos>")
    token, why = P.document_prefix(gemma)
    assert token == "<bos>" and "prepends" in why
    only_chat = _framed_tokenizer(["<|im_start|>", "<|im_end|>"], template=chat)
    assert P.document_prefix(only_chat)[0] == ""
    assert P.document_prefix(None)[0] == ""
    # padding and mask tokens never separate documents (unless also the eos or unk)
    padded = _framed_tokenizer(["<pad>"], pad="<pad>")
    assert P.document_prefix(padded)[0] == ""
    sep = _framed_tokenizer(["<pad>", "<|sep|>"], pad="<pad>")
    assert P.document_prefix(sep)[0] == "<|sep|>"
    pad_is_eos = _framed_tokenizer(["<pad>", "</s>"], eos="</s>", pad="</s>")
    assert P.document_prefix(pad_is_eos)[0] == "</s>"
    # a byte-level vocabulary's end-of-text is often its unk too (GPT-2, SmolLM2)
    eot_unk = _framed_tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                unk="<|endoftext|>", bos="<|im_start|>", eos="<|im_end|>",
                                template=chat)
    assert P.document_prefix(eot_unk)[0] == "<|endoftext|>"
    # a chat-turn marker a wrapper prepends (TransformerLens's bos) is no document start
    wrapped = _framed_tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                bos="<|im_start|>", eos="<|im_end|>", template=chat,
                                prepend="<|im_start|>")
    assert P.document_prefix(wrapped)[0] == "<|endoftext|>"

"""A tiny word-level Hugging Face tokenizer for tests that need real strings."""

from __future__ import annotations


def tiny_tokenizer(words: list[str]):
    """A ``PreTrainedTokenizerFast`` whose vocabulary is ``[UNK]``, ``[PAD]`` and ``words``.

    Text is split on whitespace, so ``" France"`` is one token when ``France`` is a word
    and ``" New York"`` is two.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "[PAD]": 1}
    for w in words:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]")


def sentencepiece_tokenizer(words: list[str]):
    """A tiny tokenizer that behaves like Llama 2's (SentencePiece, ``add_dummy_prefix``).

    Text gets a ``"▁"`` prepended and its spaces become ``"▁"``, so ``"France"`` is the one
    token ``"▁France"`` while ``" France"`` is two (``"▁"``, ``"▁France"``); punctuation is
    split off (``"France."`` -> ``"▁France"``, ``"."``). Vocabulary: ``<unk>``, ``<s>``,
    ``</s>``, ``"▁"``, ``"."``, then ``"▁" + word`` for each word.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "\u2581": 3, ".": 4}
    for w in words:
        vocab.setdefault("\u2581" + w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"),
                                           normalizers.Replace(" ", "\u2581")])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="never", split=True),
        pre_tokenizers.Punctuation(),
    ])
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>", pad_token="</s>")

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

"""Stand-ins for a tokenizer and a HeadModel, for fast tests of prepare()."""

from __future__ import annotations


class FakeTokenizer:
    """A word-level tokenizer: strings in ``vocab`` are one token, others one per character.

    ``dummy_prefix=True`` mimics SentencePiece tokenizers that prepend "▁" themselves.
    """

    def __init__(self, words: list[str], *, dummy_prefix: bool = False):
        self.dummy_prefix = dummy_prefix
        self.vocab: dict[str, int] = {}
        for w in words:
            self.vocab.setdefault(w, len(self.vocab) + 1000)
        self.inverse = {i: w for w, i in self.vocab.items()}

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        if self.dummy_prefix and not text.startswith(" "):
            text = " " + text
        bos = [1] if add_special_tokens else []
        if text in self.vocab:
            return bos + [self.vocab[text]]
        return bos + [ord(c) for c in text]

    def convert_ids_to_tokens(self, ids: list[int]) -> list[str]:
        return [self.inverse.get(i,
                                 chr(i) if i < 1000 else "?").replace(" ", "\u2581") for i in ids]


class FakeModel:
    """Just what prepare() needs from a HeadModel."""

    def __init__(self, tokenizer, vocab_size: int | None = None, model_id: str = "fake"):
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size
        self.model_id = model_id

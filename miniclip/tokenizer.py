"""A byte-level BPE tokenizer trained on the captions themselves, with Hugging Face `tokenizers`.

Every caption becomes [<start>, tokens..., <end>, <pad>, <pad>, ...] of a fixed context length. The text
tower reads its feature at the <end> token, so truncation always keeps it. Byte-level BPE never meets an
unknown character: emoji and any script encode (as bytes) without error. The whole tokenizer is one JSON
string (to_json); miniclip.save writes it beside the model, Tokenizer.load reads it back.

    tok = Tokenizer.train(captions, vocab_size=512, context_length=32)
    tokens = tok.encode(["a red circle", "two blue stars"])   # LongTensor [2, 32]
    tok.decode(tokens)                                       # ['a red circle', 'two blue stars']
    tok.bpe_ids("a red circle")                              # the BPE ids alone: no <start>, <end>, padding
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers

PAD, UNK, START, END = "<|pad|>", "<|unk|>", "<|startoftext|>", "<|endoftext|>"
# ids 0, 1, 2, 3: the end id is not 2, which transformers' CLIP text model takes as "pool at the highest id"
SPECIAL_TOKENS = [PAD, UNK, START, END]


class Tokenizer:
    """Text <-> token ids, a thin wrapper around a `tokenizers.Tokenizer` that keeps everything in one JSON."""

    def __init__(self, hf_tokenizer: HFTokenizer):
        self.hf = hf_tokenizer
        if self.hf.truncation is None or self.hf.padding is None:
            raise ValueError("Tokenizer: the JSON must set truncation and padding (train one with Tokenizer.train)")
        self.context_length = self.hf.truncation["max_length"]
        self.pad_id, self.start_id, self.end_id = (self.hf.token_to_id(t) for t in (PAD, START, END))
        self._unpadded: HFTokenizer | None = None  # made by the first bpe_ids call

    @classmethod
    def train(cls, captions, vocab_size: int = 512, context_length: int = 32) -> "Tokenizer":
        """Learn a BPE vocabulary of `vocab_size` ids (including 256 bytes and 4 special tokens) from captions."""
        if vocab_size < 256 + len(SPECIAL_TOKENS):
            raise ValueError(f"vocab_size must be at least {256 + len(SPECIAL_TOKENS)} (the bytes and special tokens)")
        hf = HFTokenizer(models.BPE(unk_token=UNK))
        hf.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
        hf.train_from_iterator(list(captions), trainer=trainer)
        hf.post_processor = processors.TemplateProcessing(
            single=f"{START} $A {END}", special_tokens=[(START, hf.token_to_id(START)), (END, hf.token_to_id(END))]
        )
        # Truncation counts the special tokens, so <end> always survives; every row is padded to the context.
        hf.enable_truncation(max_length=context_length)
        hf.enable_padding(pad_id=hf.token_to_id(PAD), pad_token=PAD, length=context_length)
        return cls(hf)

    @property
    def vocab_size(self) -> int:
        """The number of token ids: 256 bytes, 4 special tokens, and the learned merges."""
        return self.hf.get_vocab_size()

    def encode(self, texts: list[str] | str) -> torch.Tensor:
        """list of B strings -> LongTensor [B, context_length] (a single string gives [1, context_length])."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        distinct: dict[str, int] = {}
        rows = [distinct.setdefault(t, len(distinct)) for t in texts]  # captions repeat: encode each one once
        ids = np.array([e.ids for e in self.hf.encode_batch(list(distinct))], dtype=np.int64)
        return torch.from_numpy(ids.reshape(-1, self.context_length)[rows])  # [B, context_length]

    def decode(self, tokens) -> list[str]:
        """LongTensor [B, T] (or a list of id lists) -> B strings, special tokens removed."""
        rows = tokens.tolist() if isinstance(tokens, torch.Tensor) else tokens
        return [s.strip() for s in self.hf.decode_batch(rows, skip_special_tokens=True)]

    def tokenize(self, text: str) -> list[str]:
        """The BPE pieces of one string, for looking at what the tokenizer does ('Ġ' marks a leading space)."""
        return self.hf.encode(text).tokens

    def unpadded(self) -> HFTokenizer:
        """A copy of the underlying `tokenizers.Tokenizer` without padding or truncation (the caller's stays as is)."""
        raw = HFTokenizer.from_str(self.hf.to_str())
        raw.no_padding()
        raw.no_truncation()
        return raw

    def bpe_ids(self, text: str) -> list[int]:
        """The BPE ids of one text as the model splits it: no <start>/<end>, no truncation, no padding."""
        if self._unpadded is None:
            self._unpadded = self.unpadded()
        return self._unpadded.encode(text, add_special_tokens=False).ids

    def to_json(self) -> str:
        """The whole tokenizer (vocabulary, merges, context length) as one JSON string; miniclip.save writes it."""
        return self.hf.to_str(pretty=True)

    @classmethod
    def load(cls, path) -> "Tokenizer":
        """Read a tokenizer JSON (the tokenizer.json that miniclip.save writes beside a model)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no tokenizer at {path}; train and save one: Tokenizer.train, miniclip.save")
        return cls(HFTokenizer.from_file(str(path)))

    def __repr__(self):
        return f"Tokenizer(vocab_size={self.vocab_size}, context_length={self.context_length})"

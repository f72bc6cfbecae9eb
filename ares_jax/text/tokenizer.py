"""One small tokenizer interface over HF `tokenizers` / `transformers` tokenizers.

Loads from a local folder only (a model's `tokenizer.json`, or a SentencePiece `spiece.model`),
never from the network. The RL code needs to know which characters of a *generated* rationale
each sampled token produced, so `decode_with_offsets` maps token ids to character spans of the
decoded text for any tokenizer (BPE, SentencePiece, word-level, byte-level), by decoding
prefixes rather than by hard-coding token ids.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Sequence

import numpy as np

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"


@dataclasses.dataclass(frozen=True)
class Encoding:
    ids: list[int]
    offsets: list[tuple[int, int]]  # character span of each id in the encoded text; (0, 0) for specials


class Tokenizer:
    """Wraps a `transformers` tokenizer (fast or slow) with the few calls ares_jax uses."""

    def __init__(self, hf_tokenizer):
        self.hf = hf_tokenizer
        if self.hf.pad_token_id is None or self.hf.eos_token_id is None:
            raise ValueError("the tokenizer needs a pad and an eos token (T5 convention: <pad>=0, </s>=1)")

    # -- loading / saving ---------------------------------------------------------------------
    @classmethod
    def from_folder(cls, folder: str | os.PathLike) -> "Tokenizer":
        """Loads `tokenizer.json` (+ its config) or a SentencePiece model from a local folder."""
        from transformers import AutoTokenizer

        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such tokenizer folder")
        try:
            return cls(AutoTokenizer.from_pretrained(str(folder), local_files_only=True))
        except (ValueError, OSError, TypeError) as err:
            spiece = sorted(folder.glob("*.model"))
            if not spiece:
                raise ValueError(f"{folder}: no tokenizer.json or SentencePiece *.model readable ({err})") from err
        # A bare SentencePiece model (no tokenizer config): read it as T5's tokenizer does.
        from transformers import T5Tokenizer

        if spiece[0].name != "spiece.model":
            raise ValueError(f"{folder}: found {spiece[0].name}; T5 folders name the SentencePiece model spiece.model")
        return cls(T5Tokenizer.from_pretrained(str(folder), local_files_only=True))

    def save(self, folder: str | os.PathLike) -> None:
        self.hf.save_pretrained(str(folder))

    # -- ids ----------------------------------------------------------------------------------
    @property
    def pad_id(self) -> int:
        return int(self.hf.pad_token_id)

    @property
    def eos_id(self) -> int:
        return int(self.hf.eos_token_id)

    @property
    def vocab_size(self) -> int:
        return len(self.hf)

    def encode(self, text: str, add_eos: bool = True) -> list[int]:
        return list(self.hf(text, add_special_tokens=add_eos)["input_ids"])

    def encode_with_offsets(self, text: str, add_eos: bool = True) -> Encoding:
        """Ids and, for each, its character span in `text` (needs a fast tokenizer)."""
        if not getattr(self.hf, "is_fast", False):
            raise NotImplementedError(
                f"{type(self.hf).__name__} is a slow tokenizer without offsets; use decode_with_offsets"
            )
        out = self.hf(text, add_special_tokens=add_eos, return_offsets_mapping=True)
        return Encoding(list(out["input_ids"]), [tuple(span) for span in out["offset_mapping"]])

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids`, special tokens (pad, eos, ...) left out."""
        return self.hf.decode(list(map(int, ids)), skip_special_tokens=True)

    def decode_with_offsets(self, ids: Sequence[int]) -> tuple[str, list[tuple[int, int]]]:
        """Decodes `ids` -> (text, per-id character span in that text).

        Token i spans `[end(i-1), end(i))`, where end(i) is the length of the part of the text
        that the prefix `ids[:i+1]` already determines (its longest common prefix with the full
        text: a prefix can end inside a multi-byte character or before a space the next token
        brings). Special tokens get empty spans. Works for any tokenizer with a `decode`.
        """
        ids = [int(i) for i in ids]
        text = self.decode(ids)
        prefixes = self.hf.batch_decode([ids[: i + 1] for i in range(len(ids))], skip_special_tokens=True)
        offsets, start = [], 0
        for prefix in prefixes:
            end = max(start, _common_prefix_length(prefix, text))
            offsets.append((start, end))
            start = end
        return text, offsets

    def batch_encode(self, texts: Sequence[str], max_length: int, add_eos: bool = True):
        """Right-padded `ids [B, max_length]` int32 and `mask [B, max_length]` int32; longer texts
        are cut to `max_length` tokens (their last kept token stays the eos if `add_eos`)."""
        ids = np.full((len(texts), max_length), self.pad_id, np.int32)
        mask = np.zeros((len(texts), max_length), np.int32)
        for row, text in enumerate(texts):
            encoded = self.encode(text, add_eos)
            if len(encoded) > max_length:
                encoded = encoded[: max_length - 1] + [self.eos_id] if add_eos else encoded[:max_length]
            ids[row, : len(encoded)] = encoded
            mask[row, : len(encoded)] = 1
        return ids, mask


def _common_prefix_length(a: str, b: str) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # binary search on the first differing character
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def train_bpe_tokenizer(texts: Sequence[str], vocab_size: int) -> Tokenizer:
    """A byte-level BPE tokenizer trained offline on `texts` (exact text round trip), with T5's
    special ids: <pad>=0, </s>=1 (appended by `encode`), <unk>=2."""
    from tokenizers import Tokenizer as RawTokenizer
    from tokenizers import decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    raw = RawTokenizer(models.BPE(unk_token=UNK))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, EOS, UNK],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(texts, trainer=trainer)
    raw.post_processor = processors.TemplateProcessing(single=f"$A {EOS}", special_tokens=[(EOS, raw.token_to_id(EOS))])
    return Tokenizer(PreTrainedTokenizerFast(tokenizer_object=raw, pad_token=PAD, eos_token=EOS, unk_token=UNK))

"""Fluency defects that RL is known to cause in rationales: repeated sentences, repeated word
n-grams, and a last sentence cut off before its end mark."""

from __future__ import annotations

import re
from typing import Sequence

from ares_jax.text.sentences import CLOSERS, split_sentences

_END_MARK = re.compile(r"[.!?]+[" + re.escape(CLOSERS) + r"]*$")
_WORD = re.compile(r"[a-z0-9]+")


def sentence_key(sentence: str) -> str:
    """Lowercased, whitespace collapsed, end marks removed: two sentences with the same key are
    the same sentence written twice."""
    text = re.sub(r"\s+", " ", sentence.strip()).lower()
    return _END_MARK.sub("", text).strip()


def repeated_sentences(sentences: Sequence[str]) -> list[bool]:
    """For each sentence: does an earlier sentence have the same `sentence_key`?"""
    seen, out = set(), []
    for sentence in sentences:
        key = sentence_key(sentence)
        out.append(key in seen)
        seen.add(key)
    return out


def is_finished(sentence: str) -> bool:
    """Ends with `.`, `!` or `?` (closing quotes or brackets after it allowed)."""
    return sentence.rstrip().rstrip(CLOSERS)[-1:] in (".", "!", "?")


def ends_unfinished(text: str) -> bool:
    sentences = split_sentences(text)
    return bool(sentences) and not is_finished(sentences[-1])


def repeated_ngram_rate(text: str, n: int = 3) -> float:
    """Share of the word n-grams of `text` that already occurred earlier in it (0 with none)."""
    words = _WORD.findall(text.lower())
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    seen, repeats = set(), 0
    for gram in grams:
        repeats += gram in seen
        seen.add(gram)
    return repeats / len(grams) if grams else 0.0


def drop_repeated_sentences(text: str) -> str:
    """`text` without the sentences that repeat an earlier one (ARES does this before asking the
    Teacher for a correction)."""
    sentences = split_sentences(text)
    return " ".join(s.strip() for s, repeat in zip(sentences, repeated_sentences(sentences)) if not repeat)

"""Sentence splitting of rationales and the map from response tokens to sentences.

Rules (ARES scores sentences, so these decide what a "sentence" is):
- A sentence ends at `.`, `!` or `?`, optionally followed by closing quotes/brackets, then
  whitespace or the end of the text.
- Not an end: decimals (`1.5`: no whitespace after the point), titles (`Mr.`, `Mrs.`, `Ms.`,
  `Dr.`, `St.`, `Prof.`), `e.g.`, `i.e.`, `vs.`, initialisms (`U.S.`, `D.C.`: single letters
  with points), and `etc.` or an ellipsis followed by a lowercase word (mid-sentence).
- MM-CoT writes line breaks as the two characters backslash-n: they count as whitespace.
- A trailing fragment without an end mark is its own (unfinished) sentence.
- A leading `Solution:` tag is kept, as part of the first sentence (its tokens must belong to a
  sentence; the Teacher sees it where the model wrote it).
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

_LITERAL_NEWLINE = "\\n"
CLOSERS = "\"')]}\u201d\u2019"
_NEVER_END = {"mr", "mrs", "ms", "dr", "st", "prof", "e.g", "i.e", "vs"}
_END_CANDIDATE = re.compile(r"[.!?]+[" + re.escape(CLOSERS) + r"]*(?=\s|$)")
# Two or more single letters with points ("U.S.", "D.C.", "a.m."); "(B)." or "is B." still end.
_INITIALISM = re.compile(r"(?:^|[\s(\"'])(?:[A-Za-z]\.){2,}$")


def _whitespace_view(text: str) -> str:
    """`text` with each literal backslash-n replaced by two spaces (same length, same offsets)."""
    return text.replace(_LITERAL_NEWLINE, "  ")


def _is_end(view: str, mark_start: int, mark_end: int) -> bool:
    marks = view[mark_start:mark_end].rstrip(CLOSERS)
    before = view[:mark_start]
    word = re.search(r"[\w.]*$", before).group(0).lower()
    following = view[mark_end:].lstrip()
    next_is_lower = bool(following) and following[0].islower()
    if marks == ".":
        if word in _NEVER_END:
            return False
        if _INITIALISM.search(before + "."):  # U.S. / D.C. / a.m.
            return not following  # only the end of the text ends it
        if word == "etc" and next_is_lower:
            return False
    if marks.startswith("..") and next_is_lower:  # an ellipsis inside a sentence
        return False
    return True


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Character spans `[start, end)` of the sentences of `text`, whitespace trimmed, in order."""
    view = _whitespace_view(text)
    spans, start = [], 0
    for match in _END_CANDIDATE.finditer(view):
        if _is_end(view, match.start(), match.end()):
            spans.append((start, match.end()))
            start = match.end()
    spans.append((start, len(view)))
    trimmed = []
    for s, e in spans:
        piece = view[s:e]
        left = len(piece) - len(piece.lstrip())
        right = len(piece.rstrip())
        if right > left:
            trimmed.append((s + left, s + right))
    return trimmed


def split_sentences(text: str) -> list[str]:
    """The sentences of `text` (see the module docstring for the rules)."""
    return [text[s:e] for s, e in sentence_spans(text)]


def segment_ids(token_offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]) -> np.ndarray:
    """Sentence index of each token `[T]` int32, from the tokens' character spans.

    A token belongs to the sentence holding the last character it produced. Tokens that produce
    only whitespace, or nothing (EOS and other specials), belong to the sentence of the token
    before them (the first sentence if none), so every response token has a sentence and the
    reward of the last sentence may land on the EOS token. With no sentence at all (an empty
    response) every token gets -1.
    """
    ids = np.full(len(token_offsets), -1, np.int32)
    if not spans:
        return ids
    text_end = spans[-1][1]
    current = 0
    for i, (start, end) in enumerate(token_offsets):
        if end > start:
            last_char = end - 1
            inside = [k for k, (s, e) in enumerate(spans) if s <= last_char < e]
            if inside:
                current = inside[0]
            elif last_char >= text_end:
                current = len(spans) - 1
        ids[i] = current
    return ids


def batch_segment_ids(
    token_offsets: Sequence[Sequence[tuple[int, int]]],
    spans: Sequence[Sequence[tuple[int, int]]],
    length: int,
) -> np.ndarray:
    """`segment_ids` for a batch, padded with -1 to `[B, length]`."""
    out = np.full((len(token_offsets), length), -1, np.int32)
    for row, (offsets, row_spans) in enumerate(zip(token_offsets, spans)):
        ids = segment_ids(offsets, row_spans)[:length]
        out[row, : len(ids)] = ids
    return out


def response_segments(tokenizer, tokens, lengths):
    """Decodes sampled responses and maps their tokens to sentences, for any tokenizer.

    `tokens [B, T]`, `lengths [B]` (response tokens, EOS included) ->
    (texts, sentences per response, `segment_ids [B, T]` int32 with -1 on padding).
    """
    tokens, lengths = np.asarray(tokens), np.asarray(lengths)
    texts, sentences, offsets, spans = [], [], [], []
    for row, length in zip(tokens, lengths):
        text, row_offsets = tokenizer.decode_with_offsets(row[: int(length)])
        row_spans = sentence_spans(text)
        texts.append(text)
        sentences.append([text[s:e] for s, e in row_spans])
        offsets.append(row_offsets)
        spans.append(row_spans)
    return texts, sentences, batch_segment_ids(offsets, spans, tokens.shape[1])

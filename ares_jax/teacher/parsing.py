"""Strict, forgiving parsing of Teacher replies.

Forgiving about what real models wrap around the answer (code fences, prose, numbered or
slightly reworded keys, numbers written as strings); strict about what the answer must be: one
score per sentence, each a number in [0, 1]. Anything else raises `TeacherFormatError`, which
the service answers with a repair request and, in the end, an unscored sample.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from typing import Any, Sequence

from ares_jax.text.fluency import sentence_key


class TeacherFormatError(ValueError):
    """A Teacher reply that does not hold a usable answer; the message says what is wrong."""


_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_NUMBERING = re.compile(r"^\s*(?:sentence\s*\d+\s*[.:)\-]?|\(?\d+\)?\s*[.:)\-])\s*", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"^\s*(?:<[^>]*>|\{[^}]*\}|\[[^\]]*\]|\.\.\.|…|x|score|n/?a|tbd|\?+)\s*$", re.IGNORECASE)


def _json_candidates(text: str) -> list[str]:
    """Fenced blocks first, then every balanced {...} / [...] span, the earliest (outermost) first."""
    spans = []
    for opener, closer in (("{", "}"), ("[", "]")):
        start = text.find(opener)
        while start != -1:
            depth, in_string, escaped = 0, False, False
            for i in range(start, len(text)):
                ch = text[i]
                if in_string:
                    escaped = ch == "\\" and not escaped
                    if ch == '"' and not escaped:
                        in_string = False
                    elif ch != "\\":
                        escaped = False
                    continue
                if ch == '"':
                    in_string = True
                elif ch == opener:
                    depth += 1
                elif ch == closer:
                    depth -= 1
                    if depth == 0:
                        spans.append((start, text[start : i + 1]))
                        break
            start = text.find(opener, start + 1) if depth else text.find(opener, i + 1)
    return [m.group(1) for m in _FENCE.finditer(text)] + [span for _, span in sorted(spans)]


def _load(text: str) -> Any:
    """The first candidate that parses as JSON; objects become lists of (key, value) pairs so
    that identical keys (a sentence written twice) are all kept."""
    for candidate in _json_candidates(text):
        try:
            return json.loads(candidate, object_pairs_hook=lambda pairs: ("object", pairs))
        except json.JSONDecodeError:
            continue
    raise TeacherFormatError("no JSON object or array in the reply")


def _score(value: Any, where: str) -> float:
    if isinstance(value, bool):
        raise TeacherFormatError(f"{where}: {value!r} is not a score")
    if isinstance(value, str):
        if _PLACEHOLDER.match(value):
            raise TeacherFormatError(f"{where}: placeholder {value!r} left unfilled")
        try:
            value = float(value.strip())
        except ValueError:
            raise TeacherFormatError(f"{where}: {value!r} is not a number") from None
    if not isinstance(value, (int, float)):
        raise TeacherFormatError(f"{where}: {value!r} is not a number")
    value = float(value)
    if math.isnan(value):
        raise TeacherFormatError(f"{where}: NaN")
    if not 0.0 <= value <= 1.0:
        raise TeacherFormatError(f"{where}: {value} is outside [0, 1]")
    return value


def _is_object(node) -> bool:
    return isinstance(node, tuple) and len(node) == 2 and node[0] == "object"


def _entries(node) -> list[tuple[str | None, Any]]:
    """(key or None, raw score) pairs from the shapes replies take:
    {"sentence": score, ...}; [score, ...]; [{"sentence": s, "score": v}, ...]; [[s, v], ...];
    any of these under a single wrapping key ({"scores": ...})."""
    if _is_object(node):
        pairs = node[1]
        if len(pairs) == 1 and (_is_object(pairs[0][1]) or isinstance(pairs[0][1], list)):
            return _entries(pairs[0][1])
        return [(key, value) for key, value in pairs]
    if isinstance(node, list):
        out = []
        for item in node:
            if _is_object(item):
                fields = dict(item[1])
                score_key = next((k for k in fields if k.lower() in ("score", "rating", "value")), None)
                if score_key is None:
                    raise TeacherFormatError(f"list item {fields} has no score field")
                text_key = next((k for k in fields if k.lower() in ("sentence", "text", "step")), None)
                out.append((fields.get(text_key), fields[score_key]))
            elif isinstance(item, list) and len(item) == 2:
                out.append((str(item[0]), item[1]))
            else:
                out.append((None, item))
        return out
    raise TeacherFormatError("the JSON is neither an object nor a list of scores")


def _normalised_key(key: str) -> str:
    return sentence_key(_NUMBERING.sub("", key, count=1))


def parse_sentence_scores(text: str, sentences: Sequence[str]) -> list[float]:
    """One score per sentence of `sentences`, in order, from a Teacher reply `text`.

    Keys are matched to sentences by their text when every key names a sentence (numbering and
    end marks ignored, a repeated sentence matched occurrence by occurrence); otherwise by
    position, which needs as many scores as sentences.
    """
    if not text or not text.strip():
        raise TeacherFormatError("empty reply")
    entries = _entries(_load(text))
    if len(entries) != len(sentences):
        raise TeacherFormatError(f"{len(entries)} scores for {len(sentences)} sentences")
    scores = [_score(value, f"score {i + 1}") for i, (_, value) in enumerate(entries)]
    keys = [_normalised_key(k) if isinstance(k, str) else None for k, _ in entries]
    wanted = [sentence_key(s) for s in sentences]
    if None not in keys and Counter(keys) == Counter(wanted) and keys != wanted:
        by_key: dict[str, list[float]] = {}
        for key, score in zip(keys, scores):
            by_key.setdefault(key, []).append(score)
        return [by_key[key].pop(0) for key in wanted]
    return scores


_BRACES = re.compile(r"\{(.*)\}", re.DOTALL)


def parse_correction(text: str, original: str) -> str:
    """The corrected rationale inside the outermost braces; the original when the Teacher says
    UNCHANGED (or returns it as it was)."""
    if not text or not text.strip():
        raise TeacherFormatError("empty reply")
    match = _BRACES.search(text)
    if not match:
        raise TeacherFormatError("no {corrected reasoning} in braces")
    corrected = match.group(1).strip().strip('"').strip()
    if not corrected:
        raise TeacherFormatError("empty braces")
    if corrected.upper().strip(".") == "UNCHANGED" or sentence_key(corrected) == sentence_key(original):
        return original
    return corrected


def parse_verdict(text: str) -> str:
    """ "a", "b" or "tie" from a judge reply {"better": "A" | "B" | "tie"}."""
    if not text or not text.strip():
        raise TeacherFormatError("empty reply")
    node = _load(text)
    if not _is_object(node):
        raise TeacherFormatError("the judge reply is not a JSON object")
    fields = {k.lower(): v for k, v in node[1]}
    verdict = str(fields.get("better", fields.get("winner", ""))).strip().lower()
    if verdict in ("a", "b", "tie"):
        return verdict
    raise TeacherFormatError(f"'better' must be A, B or tie, got {verdict!r}")

"""What the API Teachers are asked, in our own words, versioned.

`PROMPT_VERSION` is part of every cache key: change any wording here and bump it, so a cache
never answers a question it was not asked.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Sequence

import numpy as np

from ares_jax.data.problem import Problem
from ares_jax.data.prompts import options_text

PROMPT_VERSION = "ares-jax-teacher-v1"


@dataclasses.dataclass(frozen=True)
class Request:
    """One Teacher request: a system prompt, a user text and an optional PNG image."""

    kind: str  # "score" | "correct" | "judge"
    system: str
    text: str
    image_png: bytes | None = None
    max_tokens: int = 1024

    def cache_key(self, backend: str, model: str) -> str:
        """sha256 over backend, model, prompt version and the request content (image by hash)."""
        image_hash = hashlib.sha256(self.image_png).hexdigest() if self.image_png else ""
        payload = json.dumps([backend, model, PROMPT_VERSION, self.kind, self.system, self.text, image_hash])
        return hashlib.sha256(payload.encode()).hexdigest()


def problem_image_png(problem: Problem) -> bytes | None:
    """The problem's picture as PNG bytes when it has one (uint8 pixels, a path to an image file
    or encoded image bytes in any format PIL reads); None for text-only problems."""
    from ares_jax.data.images import read_pixels
    from ares_jax.data.shapes.scene import png_bytes

    image = problem.image
    if isinstance(image, (str, bytes)):
        image = read_pixels(image, file=image if isinstance(image, str) else "image bytes", record=problem.id)
    if isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[-1] in (3, 4) and image.dtype == np.uint8:
        return png_bytes(image[..., :3])
    return None


def _problem_block(problem: Problem) -> str:
    lines = [f"Question: {problem.question}"]
    if problem.context.strip():
        lines.append(f"Hint: {problem.context.strip()}")
    lines.append(f"Options: {options_text(problem.choices)}")
    lines.append(f"Correct answer: ({problem.answer_letter}) {problem.choices[problem.answer]}")
    return "\n".join(lines)


SCORE_SYSTEM = (
    "You grade the reasoning of a student, one sentence at a time. For each sentence give a score "
    "from 0.0 to 1.0 in steps of 0.1. Near 1.0: a correct step that is relevant and moves toward the "
    "correct answer. 0.5: neutral, such as a starting thought, or a true statement that guides toward "
    "the answer without stating it. Near 0.0: wrong reasoning, a false statement, or a statement that "
    "contradicts the correct answer. A sentence that repeats an earlier sentence gets 0.0. Use the "
    "question, the hint, the options, the correct answer and the picture when there is one."
)


def score_request(problem: Problem, sentences: Sequence[str]) -> Request:
    numbered = {f"{i + 1}": sentence for i, sentence in enumerate(sentences)}
    text = (
        f"{_problem_block(problem)}\n\n"
        "The student's reasoning, one numbered sentence per key (the same sentence may appear twice; "
        f"grade each occurrence):\n{json.dumps(numbered, indent=1, ensure_ascii=False)}\n\n"
        f'Reply with JSON only: an object with the same {len(sentences)} keys "1" to '
        f'"{len(sentences)}", each mapped to its score as a number.'
    )
    return Request("score", SCORE_SYSTEM, text, problem_image_png(problem), max_tokens=64 + 16 * len(sentences))


CORRECT_SYSTEM = (
    "You correct a student's reasoning for a multiple-choice question. Rules: keep correct sentences "
    "exactly as they are; keep sentences that are a starting point of thought; fix grammar and finish "
    "incomplete sentences using only the given information; correct wrong sentences instead of deleting "
    "them; take the options, the hint and the correct answer into account. Return only the corrected "
    "reasoning inside one pair of braces, like {corrected reasoning}, or {UNCHANGED} if nothing needs "
    "fixing."
)


def correct_request(problem: Problem, rationale: str) -> Request:
    text = f"{_problem_block(problem)}\n\nThe student's reasoning:\n{rationale}"
    return Request("correct", CORRECT_SYSTEM, text, problem_image_png(problem), max_tokens=512)


JUDGE_SYSTEM = (
    "You compare two explanations of the same multiple-choice question. The better one reasons "
    "correctly toward the correct answer, states no false facts, is relevant, and reads fluently "
    "(no repeated sentences, no unfinished sentences). Reply with JSON only: "
    '{"better": "A"} or {"better": "B"} or {"better": "tie"}.'
)


def judge_request(problem: Problem, rationale_a: str, rationale_b: str) -> Request:
    text = f"{_problem_block(problem)}\n\nExplanation A:\n{rationale_a}\n\nExplanation B:\n{rationale_b}"
    return Request("judge", JUDGE_SYSTEM, text, problem_image_png(problem), max_tokens=32)


def repair_message(error: Exception, kind: str) -> str:
    shape = {
        "score": "one JSON object mapping every sentence number to a score between 0.0 and 1.0",
        "correct": "the corrected reasoning inside one pair of braces, or {UNCHANGED}",
        "judge": 'one JSON object: {"better": "A"}, {"better": "B"} or {"better": "tie"}',
    }[kind]
    return f"Your reply could not be used ({error}). Reply again with {shape} and nothing else."

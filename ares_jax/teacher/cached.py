"""A locally computed Teacher (the rule Teacher) whose answers are kept in the run's Teacher cache.

The API Teacher caches its raw replies itself; this wrapper gives any other Teacher the same
guarantee, so a resumed run asks nothing twice and `stats.cache_hits` means the same for every
backend. Answers are stored as JSON under a key of the Teacher's name, the request kind and the
request's content (the problem by its fields and image bytes, not only its id).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Awaitable, Callable, Sequence

import numpy as np

from ares_jax.data.problem import Problem
from ares_jax.teacher.base import Teacher, Verdict
from ares_jax.teacher.cache import TeacherCache


def _problem_fingerprint(problem: Problem) -> str:
    image = problem.image
    if isinstance(image, np.ndarray):
        image_part = hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()
    elif isinstance(image, bytes):
        image_part = hashlib.sha256(image).hexdigest()
    else:
        image_part = str(image)
    return json.dumps(
        [
            problem.id,
            problem.question,
            list(problem.choices),
            problem.answer,
            problem.context,
            problem.solution,
            image_part,
        ]
    )


class CachedTeacher(Teacher):
    def __init__(self, inner: Teacher, cache: TeacherCache):
        super().__init__()
        self.inner, self.cache, self.name = inner, cache, inner.name
        self.stats = inner.stats  # one set of counters: the inner Teacher counts what it computes

    async def _cached(self, kind: str, problem: Problem, content: Any, compute: Callable[[], Awaitable[Any]]):
        payload = json.dumps([self.name, kind, _problem_fingerprint(problem), content])
        key = hashlib.sha256(payload.encode()).hexdigest()
        stored = self.cache.get(key)
        if stored is not None:
            self.stats.cache_hits += 1
            return json.loads(stored)
        answer = await compute()
        self.cache.put(key, kind, json.dumps(answer), 0, 0)
        return answer

    async def score_sentences(self, problem: Problem, sentences: Sequence[str]) -> list[float] | None:
        return await self._cached(
            "score", problem, list(sentences), lambda: self.inner.score_sentences(problem, sentences)
        )

    async def correct(self, problem: Problem, rationale: str) -> str:
        return await self._cached("correct", problem, rationale, lambda: self.inner.correct(problem, rationale))

    async def judge(self, problem: Problem, rationale_a: str, rationale_b: str) -> Verdict:
        return await self._cached(
            "judge", problem, [rationale_a, rationale_b], lambda: self.inner.judge(problem, rationale_a, rationale_b)
        )

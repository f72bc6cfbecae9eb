"""The API Teacher: prompts -> cache -> rate limits -> backend with retries -> strict parsing.

Never pays twice: every finished reply (usable or not) is cached before it is used, so a rerun
or a resumed run asks only what it has not asked. A reply that fails parsing is answered with a
short repair message, up to `max_repairs` times; then the sample is unscored (counted in
`stats`, left out of the PPO batch by the caller). When retries run out, or a budget cap would
be passed, `TeacherUnavailable` / `TeacherBudgetExhausted` stop the round cleanly.
"""

from __future__ import annotations

import asyncio
import collections
import random
import time
from typing import Callable, Sequence, TypeVar

from ares_jax.config import TeacherConfig
from ares_jax.data.problem import Problem
from ares_jax.teacher.backends import Reply, TeacherRequestError
from ares_jax.teacher.base import Teacher, Verdict
from ares_jax.teacher.cache import TeacherCache
from ares_jax.teacher.parsing import TeacherFormatError, parse_correction, parse_sentence_scores, parse_verdict
from ares_jax.teacher.prompts import Request, correct_request, judge_request, repair_message, score_request

T = TypeVar("T")


class TeacherUnavailable(RuntimeError):
    """Requests keep failing (retries exhausted, or an error no retry can fix)."""


class TeacherBudgetExhausted(RuntimeError):
    """The next request would pass `teacher.max_requests` or `teacher.max_cost_usd`."""


class _RateLimiter:
    """Sliding one-minute windows over requests and tokens."""

    def __init__(self, requests_per_minute: float, tokens_per_minute: float, clock=time.monotonic):
        self.rpm, self.tpm, self.clock = requests_per_minute, tokens_per_minute, clock
        self.events: collections.deque[tuple[float, int]] = collections.deque()

    def wait_time(self, tokens: int) -> float:
        now = self.clock()
        while self.events and now - self.events[0][0] >= 60.0:
            self.events.popleft()
        waits = [0.0]
        if self.rpm and len(self.events) >= self.rpm:
            waits.append(60.0 - (now - self.events[-int(self.rpm)][0]))
        if self.tpm:
            used, total = 0, sum(n for _, n in self.events)
            for stamp, n in self.events:  # wait until enough old tokens leave the window
                if total - used + tokens <= self.tpm:
                    break
                used += n
                waits.append(60.0 - (now - stamp))
        return max(waits)

    async def acquire(self, tokens: int) -> None:
        while (wait := self.wait_time(tokens)) > 0:
            await asyncio.sleep(wait)
        self.events.append((self.clock(), tokens))


class APITeacher(Teacher):
    """A Teacher served by an API backend (`backends.py`), cached in `cache`."""

    def __init__(
        self,
        backend,
        cache: TeacherCache,
        limits: TeacherConfig | None = None,
        sleep: Callable[[float], object] = asyncio.sleep,
    ):
        """`limits`: the retry, repair, rate and budget settings of the `teacher` config section."""
        self.backend, self.cache, self.limits = backend, cache, limits or TeacherConfig()
        super().__init__()
        self.name = f"{backend.name}:{backend.model}"
        self._limiter = _RateLimiter(self.limits.requests_per_minute, self.limits.tokens_per_minute)
        self._sleep = sleep
        self._cost_in_flight = 0.0

    # ---- one paid request, with retries -----------------------------------------------------

    def _cost(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.limits.price_input_per_mtok + tokens_out * self.limits.price_output_per_mtok) / 1e6

    def _reserve(self, request: Request) -> float:
        """Count the request against the caps before it is sent, or stop: its cost is estimated
        from its length (4 characters a token, ~1,000 tokens for an image) and its full
        `max_tokens`, and held (with every request in flight) until its reply is counted."""
        lim, st = self.limits, self.stats
        if lim.max_requests and st.requests >= lim.max_requests:
            raise TeacherBudgetExhausted(f"teacher.max_requests ({lim.max_requests}) reached")
        estimate = self._cost(
            (len(request.system) + len(request.text)) // 4 + (1000 if request.image_png else 0), request.max_tokens
        )
        if lim.max_cost_usd and st.cost_usd + self._cost_in_flight + estimate > lim.max_cost_usd:
            raise TeacherBudgetExhausted(
                f"teacher.max_cost_usd ({lim.max_cost_usd}) would be passed (spent ${st.cost_usd:.4f}, "
                f"in flight up to ${self._cost_in_flight:.4f}, next request up to ${estimate:.4f})"
            )
        st.requests += 1
        self._cost_in_flight += estimate
        return estimate

    async def _call(self, request: Request, history) -> Reply:
        for attempt in range(self.limits.max_retries + 1):
            estimate = self._reserve(request)
            try:
                await self._limiter.acquire(len(request.text) // 4 + request.max_tokens)
                reply = await self.backend.complete(request, history)
            except TeacherRequestError as error:
                if not error.retryable:
                    raise TeacherUnavailable(f"{self.name}: {error}") from None
                if attempt == self.limits.max_retries:
                    raise TeacherUnavailable(
                        f"{self.name}: still failing after {self.limits.max_retries} retries: {error}"
                    ) from None
                self.stats.retries += 1
                backoff = min(self.limits.max_backoff_s, self.limits.backoff_s * 2**attempt)
                wait = error.retry_after if error.retry_after is not None else backoff * (0.5 + random.random())
                await self._sleep(wait)
                continue
            finally:
                self._cost_in_flight -= estimate
            self.stats.tokens_in += reply.tokens_in
            self.stats.tokens_out += reply.tokens_out
            self.stats.cost_usd += self._cost(reply.tokens_in, reply.tokens_out)
            return reply
        raise AssertionError("unreachable")

    async def _ask(self, request: Request, parse: Callable[[str], T]) -> T:
        """The parsed reply: from the cache, or asked (and repaired) and then cached.

        Every reply is cached the moment it arrives, each repair attempt under its own key, so
        a run killed in the middle of a repair conversation resumes it without paying again;
        the final reply is also cached under the request's key, so a rerun needs one lookup."""
        key = request.cache_key(self.backend.name, self.backend.model)
        cached = self.cache.get(key)
        if cached is not None:
            self.stats.cache_hits += 1
            return parse(cached)  # a cached unusable reply stays unusable: it is not paid again
        history: list[tuple[str, str]] = []
        for repair in range(self.limits.max_repairs + 1):
            attempt_key = f"{key}:attempt{repair}"
            text = self.cache.get(attempt_key)
            if text is None:
                reply = await self._call(request, history)
                text = reply.text
                self.cache.put(attempt_key, request.kind, text, reply.tokens_in, reply.tokens_out)
            else:
                self.stats.cache_hits += 1
            try:
                result = parse(text)
            except TeacherFormatError as error:
                self.stats.format_errors += 1
                if repair == self.limits.max_repairs:
                    self.cache.put(key, request.kind, text, 0, 0)
                    raise
                history += [("assistant", text), ("user", repair_message(error, request.kind))]
                continue
            self.cache.put(key, request.kind, text, 0, 0)
            return result
        raise AssertionError("unreachable")

    # ---- the Teacher interface --------------------------------------------------------------

    async def score_sentences(self, problem: Problem, sentences: Sequence[str]) -> list[float] | None:
        if not sentences:
            return []
        try:
            return await self._ask(score_request(problem, sentences), lambda t: parse_sentence_scores(t, sentences))
        except TeacherFormatError:
            self.stats.unscored += 1
            return None

    async def correct(self, problem: Problem, rationale: str) -> str:
        try:
            return await self._ask(correct_request(problem, rationale), lambda t: parse_correction(t, rationale))
        except TeacherFormatError:
            return rationale  # no usable correction: the rationale stays as it was

    async def judge(self, problem: Problem, rationale_a: str, rationale_b: str) -> Verdict:
        try:
            return await self._ask(judge_request(problem, rationale_a, rationale_b), parse_verdict)
        except TeacherFormatError:
            return "tie"

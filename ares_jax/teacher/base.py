"""The Teacher interface: the three kinds of AI feedback ARES uses.

- `score_sentences`: one score in [0, 1] (steps of 0.1) per sentence of a rationale. 1.0 a
  correct claim that moves toward the answer; 0.5 neutral (a starting thought, a true but
  indecisive statement); 0.0 a false claim, one that contradicts the answer, a repeat of an
  earlier sentence, or text that is not a claim. None when the Teacher could not give a usable
  answer (the sample is then left out of the PPO batch and counted, never dropped silently).
- `correct`: the rationale with correct sentences kept, false ones fixed, fragments finished or
  dropped, repeats dropped, order kept.
- `judge`: which of two rationales for the same problem is better: "a", "b" or "tie".

Methods are async so API backends can run many requests at once; the synchronous host loop
calls them through `run_batch`, which in a multi-host run asks on process 0 alone and shares
the answers with the other processes (their Teacher is an `AskedByProcessZero`).
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
from typing import Awaitable, Callable, Literal, Sequence, TypeVar

from ares_jax.data.problem import Problem
from ares_jax.parallel.multihost import on_primary

Verdict = Literal["a", "b", "tie"]
T = TypeVar("T")

# The rubric's neutral score: a starting thought, a true but indecisive statement (module docstring).
NEUTRAL_SCORE = 0.5


@dataclasses.dataclass
class TeacherStats:
    """What a Teacher was asked and what it cost; `requests` counts paid (or computed) answers."""

    requests: int = 0
    cache_hits: int = 0
    retries: int = 0
    format_errors: int = 0
    unscored: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def since(self, earlier: "TeacherStats") -> "TeacherStats":
        """What was asked and spent after the snapshot `earlier` (a phase's share)."""
        return TeacherStats(
            **{f.name: getattr(self, f.name) - getattr(earlier, f.name) for f in dataclasses.fields(self)}
        )

    def plus(self, other: "TeacherStats") -> "TeacherStats":
        """Both together (e.g. what earlier processes of a resumed run asked, and this one)."""
        return TeacherStats(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in dataclasses.fields(self)}
        )


class Teacher(abc.ABC):
    name: str = "teacher"

    def __init__(self):
        self.stats = TeacherStats()

    @abc.abstractmethod
    async def score_sentences(self, problem: Problem, sentences: Sequence[str]) -> list[float] | None:
        """Scores `[len(sentences)]`, or None when unscored."""

    @abc.abstractmethod
    async def correct(self, problem: Problem, rationale: str) -> str:
        """The corrected rationale (the original when nothing needs fixing)."""

    @abc.abstractmethod
    async def judge(self, problem: Problem, rationale_a: str, rationale_b: str) -> Verdict:
        """ "a" when `rationale_a` is better, "b" when `rationale_b` is, else "tie"."""


def run_batch(
    call: Callable[..., Awaitable[T]],
    argument_tuples: Sequence[tuple],
    concurrency: int = 16,
    progress: str | None = None,
    stats: TeacherStats | None = None,
) -> list[T]:
    """Run `call(*args)` for every tuple, at most `concurrency` at a time; results in input order.
    When a call fails, no further call starts, the calls in flight are waited for (a reply
    already paid for reaches the cache) and the first error is raised.

    The bridge from the synchronous host loop to the async Teacher. With `progress`, a progress
    bar of that name shows the requests, cache hits and running cost from `stats`. With several
    processes, process 0 makes the calls and every process gets the results (JSON values).
    """
    if concurrency < 1:
        raise ValueError(f"teacher concurrency must be at least 1, got {concurrency}")
    return on_primary(lambda: _run_here(call, argument_tuples, concurrency, progress, stats))


def _run_here(call, argument_tuples, concurrency, progress, stats) -> list:
    bar = None
    if progress is not None:
        from tqdm import tqdm

        bar = tqdm(total=len(argument_tuples), desc=progress, unit="req", leave=False)

    async def gather():
        limit = asyncio.Semaphore(concurrency)
        failures = []  # after the first, no new call starts; the calls in flight finish (and are cached)

        async def one(args):
            async with limit:
                if failures:
                    return None
                try:
                    result = await call(*args)
                except Exception as error:
                    failures.append(error)
                    raise
            if bar is not None:
                bar.update(1)
                if stats is not None:
                    bar.set_postfix(
                        paid=stats.requests, cached=stats.cache_hits, usd=f"{stats.cost_usd:.4f}", refresh=False
                    )
            return result

        results = await asyncio.gather(*(one(args) for args in argument_tuples), return_exceptions=True)
        if failures:
            raise failures[0]
        return results

    try:
        return asyncio.run(gather())
    finally:
        if bar is not None:
            bar.close()


class AskedByProcessZero(Teacher):
    """The Teacher of a process other than 0 in a multi-host run: `run_batch` gets its answers
    from process 0, so it holds no key and never asks anything itself."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name

    async def _refuse(self, *args):
        raise RuntimeError("only process 0 asks the Teacher (through run_batch)")

    score_sentences = correct = judge = _refuse

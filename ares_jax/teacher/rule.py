"""The offline rule Teacher of the built-in shapes task: exact feedback from the scene.

Each sentence is parsed into a claim of the task's language (`data/shapes/claims.py`) and
checked against the problem's scene, options and answer. Scores:

  0.0  a repeat of an earlier sentence (same words, or the same claim reworded), text that is
       not a claim, a false claim, or a wrong final answer;
  0.2  an unfinished last sentence, even when its words so far are true;
  0.5  a neutral opening thought, or a true claim on a topic the solution does not need;
  1.0  a true claim on a topic of the gold solution, or the correct final answer.

With `listing_credit="overlap"` a false listing of cells on a step of the solution scores the
share of it that is right instead of 0.0 (the Jaccard index of the cells named and the right
cells, rounded down to the spec's steps of 0.1): a graded score, which the spec's 0.0-1.0 scale
allows, where exact credit gives a listing naming two of three right cells nothing.
"""

from __future__ import annotations

import zlib
from collections import Counter
from typing import Sequence

import numpy as np

from ares_jax.config import RULE_LISTING_CREDITS
from ares_jax.data.problem import Problem
from ares_jax.data.prompts import strip_solution_tag
from ares_jax.data.shapes import claims as C
from ares_jax.teacher.base import NEUTRAL_SCORE, Teacher, Verdict
from ares_jax.text.fluency import is_finished, repeated_sentences, sentence_key
from ares_jax.text.sentences import split_sentences

UNFINISHED_SCORE = 0.2
DEFECT_PENALTY = 0.25


class RuleTeacher(Teacher):
    def __init__(self, listing_credit: str = "exact"):
        if listing_credit not in RULE_LISTING_CREDITS:
            raise ValueError(f"listing_credit must be one of {RULE_LISTING_CREDITS}, got {listing_credit!r}")
        # the name keys the Teacher cache: the two scorings never share cached scores
        super().__init__()
        self.name = "rule" if listing_credit == "exact" else f"rule-{listing_credit}"
        self.listing_credit = listing_credit

    # ---- synchronous cores (the async interface wraps them) -------------------------------

    @staticmethod
    def _scene_of(problem: Problem):
        scene = problem.extras.get("scene") if problem.extras else None
        if scene is None:
            raise ValueError(
                f"problem {problem.id!r} has no scene: the rule Teacher judges only the built-in shapes "
                "task; use an API Teacher (teacher.backend=openai|anthropic) for other data"
            )
        return scene

    def _facts(self, problem: Problem):
        """(the problem's scene, a truth check of a claim against this problem)."""
        scene = self._scene_of(problem)

        def check(claim):
            return C.is_true(claim, scene, problem.choices, problem.answer)

        return scene, check

    def sentence_scores(self, problem: Problem, sentences: Sequence[str]) -> list[float]:
        scene, check = self._facts(problem)
        relevant = {C.topic(claim) for claim in problem.extras.get("gold_claims", ())}
        repeated = repeated_sentences([strip_solution_tag(s) for s in sentences])
        seen_claims, seen_topics, scores = set(), set(), []
        for sentence, is_repeat in zip(sentences, repeated):
            claim = C.parse(sentence)
            if is_repeat or claim is None or (claim in seen_claims and not isinstance(claim, C.Starter)):
                score = 0.0
            elif not check(claim):
                score = self._partial_credit(claim, scene, relevant - seen_topics)
                score = min(score, UNFINISHED_SCORE) if not is_finished(sentence) else score
            elif not is_finished(sentence):
                score = UNFINISHED_SCORE
            elif isinstance(claim, C.Answer) or (not isinstance(claim, C.Starter) and C.topic(claim) in relevant):
                score = 1.0
            else:
                score = NEUTRAL_SCORE
            if claim is not None:
                seen_claims.add(claim)
                seen_topics.add(C.topic(claim))
            scores.append(score)
        return scores

    def _partial_credit(self, claim, scene, open_steps) -> float:
        """The score of a false claim: 0.0, or with overlap credit the right share of a listing
        on a step of the solution not yet claimed (`open_steps`; a second try at one earns
        nothing), rounded down to a tenth."""
        if self.listing_credit == "overlap" and isinstance(claim, C.Listing) and C.topic(claim) in open_steps:
            return float(np.floor(C.listing_overlap(claim, scene) * 10 + 1e-9) / 10)
        return 0.0

    def corrected(self, problem: Problem, rationale: str) -> str:
        """The rationale with its errors corrected, as the spec's correction prompt asks, so that
        the corrected reasoning supports its conclusion:
        - starters and correct sentences are kept as written and in order;
        - a wrong sentence about a step of the gold solution is made true (a count, a listing);
        - a sentence off the solution's path (a wrong cell for "left of", a comparison of the
          wrong numbers, an option that is not the answer), false or true, becomes the first gold
          step of its kind the rationale has not made; a false one with no such step is made true;
        - text that is no claim is dropped, and so is a sentence on a gold step already made as
          often as the gold solution makes it (two corrected sentences may land on one step:
          "cell B1 has a green circle", then "cell B1 has a small green circle");
        - gold steps still missing are inserted where the gold solution has them;
        - rewritten and inserted sentences take one of the task's wordings at random (seeded by the
          problem and the rationale: the same request gets the same correction)."""
        scene, check = self._facts(problem)
        # the task's own wordings, drawn as the gold solutions draw them (one wording for every
        # rewritten sentence would narrow the corrected model's phrasing), fixed per problem and text
        wording = np.random.default_rng([zlib.crc32(problem.id.encode()), zlib.crc32(rationale.encode())])
        steps = [claim for claim in problem.extras.get("gold_claims", ()) if not isinstance(claim, C.Starter)]
        step_index = {C.topic(claim): i for i, claim in enumerate(steps)}
        claims = [(sentence, C.parse(sentence)) for sentence in split_sentences(strip_solution_tag(rationale))]
        made = {C.topic(claim) for _, claim in claims if claim is not None and check(claim)}
        steps_on = Counter(C.topic(step) for step in steps)  # gold steps per topic
        kept, seen_keys, seen_claims, seen_topics = [], set(), set(), Counter()  # kept: (text, claim)
        for sentence, claim in claims:
            if claim is None:
                continue  # not a claim, or a fragment that cannot be finished: dropped
            fixed = C.made_true(claim, scene, problem.choices, problem.answer)
            if fixed is None or C.topic(fixed) not in step_index:  # not a step of the solution
                meant = next((step for step in steps if type(step) is type(claim) and C.topic(step) not in made), None)
                fixed = meant or fixed
            if fixed is None:
                continue
            if fixed != claim:
                text = C.render(fixed, wording)
                made.add(C.topic(fixed))
            else:  # a correct sentence stays as written; a correct fragment gets its end mark
                text = sentence.strip() if is_finished(sentence) else sentence.strip() + "."
            # a gold step made already, as often as the gold solution makes it (lookups state a cell twice)
            restated = seen_topics[C.topic(fixed)] >= steps_on.get(C.topic(fixed), len(claims))
            if (
                sentence_key(text) in seen_keys
                or (fixed in seen_claims and not isinstance(fixed, C.Starter))
                or restated
            ):
                continue
            seen_keys.add(sentence_key(text))
            seen_claims.add(fixed)
            seen_topics[C.topic(fixed)] += 1
            kept.append((text, fixed))
        covered = {C.topic(claim) for _, claim in kept}
        for index, step in enumerate(steps):
            if C.topic(step) in covered:
                continue
            # after the last kept sentence of an earlier gold step (or the opening starters)
            at = max(
                (
                    i + 1
                    for i, (_, claim) in enumerate(kept)
                    if isinstance(claim, C.Starter) or step_index.get(C.topic(claim), len(steps)) < index
                ),
                default=0,
            )
            kept.insert(at, (C.render(step, wording), step))
            covered.add(C.topic(step))
        if C.Answer(problem.answer) not in {claim for _, claim in kept}:
            kept.append((C.render(C.Answer(problem.answer), wording), C.Answer(problem.answer)))
        return " ".join(text for text, _ in kept)

    def quality(self, problem: Problem, rationale: str) -> float:
        """Correct conclusion (1) + mean sentence score - 0.25 per fluency defect (repeated
        sentence, unfinished ending): the judge's ordering."""
        sentences = split_sentences(strip_solution_tag(rationale))
        if not sentences:
            return 0.0
        scores = self.sentence_scores(problem, sentences)
        defects = sum(repeated_sentences(sentences)) + (not is_finished(sentences[-1]))
        return float(self._concludes(problem, sentences)) + sum(scores) / len(scores) - DEFECT_PENALTY * defects

    def concludes(self, problem: Problem, rationale: str) -> bool:
        """Whether the rationale states the correct final answer (the first term of `quality`)."""
        return self._concludes(problem, split_sentences(strip_solution_tag(rationale)))

    def _concludes(self, problem: Problem, sentences: Sequence[str]) -> bool:
        _, check = self._facts(problem)
        return any(isinstance(claim, C.Answer) and check(claim) for claim in map(C.parse, sentences))

    def verdict(self, problem: Problem, rationale_a: str, rationale_b: str) -> Verdict:
        difference = self.quality(problem, rationale_a) - self.quality(problem, rationale_b)
        return "a" if difference > 1e-9 else "b" if difference < -1e-9 else "tie"

    # ---- the Teacher interface --------------------------------------------------------------

    async def score_sentences(self, problem: Problem, sentences: Sequence[str]) -> list[float]:
        self.stats.requests += 1
        return self.sentence_scores(problem, sentences)

    async def correct(self, problem: Problem, rationale: str) -> str:
        self.stats.requests += 1
        return self.corrected(problem, rationale)

    async def judge(self, problem: Problem, rationale_a: str, rationale_b: str) -> Verdict:
        self.stats.requests += 1
        return self.verdict(problem, rationale_a, rationale_b)

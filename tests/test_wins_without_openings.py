"""experiments/wins_without_openings.py: the rule judge's win rate with the neutral openings taken out."""

import sys
from pathlib import Path

from ares_jax.data.prompts import strip_solution_tag
from ares_jax.data.shapes import ShapesTaskConfig, make_split
from ares_jax.data.shapes import claims as C
from ares_jax.teacher import RuleTeacher
from ares_jax.text import split_sentences

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

from wins_without_openings import paired_win_rate, without_openings  # noqa: E402


def test_an_opening_loses_a_judgement_as_written_and_ties_without_it():
    """A gold rationale (every sentence true, scores above 0.5) with a neutral opening put first
    scores a lower mean, so it loses to the same rationale without it; with the openings taken
    out of both, the two are the same text and tie."""
    teacher = RuleTeacher()
    problems = [p for p in make_split(ShapesTaskConfig(), "train", 40) if p.solution][:6]
    plain = {p.id: " ".join(split_sentences(strip_solution_tag(p.solution))) for p in problems}
    plain = {i: without_openings(text) for i, text in plain.items()}  # gold rationales may open with one
    opened = {i: f"{C.STARTERS[0]} {text}" for i, text in plain.items()}
    by_id = {p.id: p for p in problems}
    assert all(
        not any(isinstance(C.parse(s), C.Starter) for s in split_sentences(without_openings(t)))
        for t in opened.values()
    )
    judgements = 2 * len(problems)  # each pair judged in both orders

    def outcome(rows_a, rows_b):
        judged = paired_win_rate(teacher, by_id, rows_a, rows_b)
        assert judged["judgements"] == judgements
        return judged["win_rate"], judged["wins"], judged["ties"], judged["losses"]

    assert outcome(opened, plain) == (0.0, 0, 0, judgements)
    assert outcome(plain, opened) == (1.0, judgements, 0, 0)
    stripped = {i: without_openings(text) for i, text in opened.items()}
    assert stripped == plain
    assert outcome(stripped, plain) == (0.5, 0, judgements, 0)

"""experiments/form_and_content.py: the sentence score with and without the neutral openings,
paired changes over problems, and where the openings were dropped."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from ares_jax.data.prompts import strip_solution_tag
from ares_jax.data.shapes import ShapesTaskConfig, make_split
from ares_jax.data.shapes import claims as C
from ares_jax.teacher import RuleTeacher
from ares_jax.text import split_sentences

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

from form_and_content import paired_change, per_rationale, selective_drop, val_points  # noqa: E402
from wins_without_openings import without_openings  # noqa: E402


@pytest.fixture(scope="module")
def gold():
    """Six training problems with gold rationales, their openings taken out: {id: problem}, {id: text}."""
    problems = [p for p in make_split(ShapesTaskConfig(), "train", 40) if p.solution][:6]
    texts = {p.id: without_openings(" ".join(split_sentences(strip_solution_tag(p.solution)))) for p in problems}
    return {p.id: p for p in problems}, texts


def test_an_opening_counts_in_the_score_and_not_in_the_content(gold):
    """A rationale with an opening put first: its score is the mean over every sentence, the 0.5
    opening included (worked out from the plain rationale's own scores); its content score is the
    plain rationale's mean; it has one opening, the plain one none."""
    problems, texts = gold
    teacher = RuleTeacher()
    plain = per_rationale([{"id": i, "rationale": t} for i, t in texts.items()], problems, teacher)
    opened = per_rationale(
        [{"id": i, "rationale": f"{C.STARTERS[0]} {t}"} for i, t in texts.items()], problems, teacher
    )
    for pid, text in texts.items():
        scores = teacher.sentence_scores(problems[pid], split_sentences(text))
        assert scores and min(scores) > 0.5  # gold sentences score above the neutral 0.5
        assert plain[pid]["all"] == pytest.approx(np.mean(scores))
        assert plain[pid]["content"] == pytest.approx(np.mean(scores))
        assert opened[pid]["all"] == pytest.approx((0.5 + sum(scores)) / (1 + len(scores)))
        assert opened[pid]["content"] == pytest.approx(np.mean(scores))
        assert (plain[pid]["openings"], opened[pid]["openings"]) == (0, 1)
        assert opened[pid]["kind"] == problems[pid].extras["question_kind"]
    only_opening = per_rationale([{"id": pid, "rationale": C.STARTERS[0]}], problems, teacher)[pid]
    assert only_opening["all"] == 0.5 and "content" not in only_opening


def test_paired_change_averages_runs_per_problem_and_skips_missing_content():
    """Two runs, three problems; problem c lacks a content score in one run and is left out."""
    run_a = ({"a": {"content": 0.5}, "b": {"content": 0.6}, "c": {"content": 0.4}},
             {"a": {"content": 0.7}, "b": {"content": 0.6}, "c": {}})  # fmt: skip
    run_b = ({"a": {"content": 0.5}, "b": {"content": 0.5}, "c": {"content": 0.5}},
             {"a": {"content": 0.5}, "b": {"content": 0.9}, "c": {"content": 0.9}})  # fmt: skip
    mean, low, high = paired_change([run_a, run_b], "content")
    per_problem = [(0.2 + 0.0) / 2, (0.0 + 0.4) / 2]  # a, b
    assert mean == pytest.approx(np.mean(per_problem))
    half = 1.96 * np.std(per_problem, ddof=1) / np.sqrt(2)
    assert (low, high) == pytest.approx((mean - half, mean + half))


def test_selective_drop_splits_by_whether_the_opening_is_left():
    start = {i: {"openings": 1.0, "content": 0.6} for i in "abcd"} | {"e": {"openings": 0.0, "content": 0.9}}
    end = {
        "a": {"openings": 0.0, "content": 0.9},  # dropped, the rest good
        "b": {"openings": 0.0, "content": 0.7},  # dropped
        "c": {"openings": 1.0, "content": 0.3},  # kept, the rest poor
        "d": {"openings": 0.0},  # nothing but the opening was left out: no content score
        "e": {"openings": 0.0, "content": 0.2},  # had no opening to drop
    }
    dropped, kept = selective_drop([(start, end)])
    assert dropped == pytest.approx(np.mean([0.4, 0.2]))
    assert kept == pytest.approx(-0.2)


def test_val_points_count_batches_over_rounds_and_keep_a_repeated_point_once(tmp_path, gold):
    """Two RL rounds of 2 batches, evaluated at 0 and 2 each: points at batches 0, 2, 4, where 2
    is round 1's last evaluation (round 2's first is the same policy)."""
    problems, texts = gold
    (tmp_path / "eval").mkdir()
    curves = {f"rl_{r}/val_accuracy": [[0, 0.5], [2, 0.5]] for r in (1, 2)}
    (tmp_path / "report.json").write_text(json.dumps({"curves": curves}))
    ids = list(texts)
    variants = {  # how many openings each file's rationales carry
        "rl_1_val_0": 2,
        "rl_1_val_2": 1,
        "rl_2_val_0": 3,  # would differ from rl_1_val_2 only if it were wrongly kept
        "rl_2_val_2": 0,
    }
    for stem, openings in variants.items():
        rows = [{"id": i, "rationale": " ".join([*C.STARTERS[:openings], texts[i]])} for i in ids]
        (tmp_path / "eval" / f"{stem}.json").write_text(json.dumps(rows))
    points = val_points(tmp_path, problems, RuleTeacher())
    assert list(points) == [0, 2, 4]
    assert [points[b][ids[0]]["openings"] for b in points] == [2, 1, 0]

"""ScienceQA's category table and A-OKVQA's two accuracies against figures worked out by hand on
the fixture records (the datasets' own evaluation scripts' rules: eval/benchmarks.py)."""

from pathlib import Path

import pytest

from ares_jax.data.aokvqa import load_aokvqa
from ares_jax.data.problem import Problem
from ares_jax.data.scienceqa import load_problems_json
from ares_jax.eval.benchmarks import aokvqa_scores, scienceqa_table

FIXTURES = Path(__file__).parent / "fixtures"


def test_scienceqa_table_on_the_fixture_records():
    problems = {
        p.id: p
        for split in ("train", "val", "test")
        for p in load_problems_json(FIXTURES / "scienceqa", split, captions=FIXTURES / "scienceqa" / "captions.json")
    }
    # id: subject, grade, hint?, image? -> predicted (right?)
    # 1 social 2, -, image  -> 0 (right)      2 language 3, -, -   -> 1 (wrong)
    # 4 natural 4, hint, image -> 1 (right)   5 natural 5, hint, - -> 0 (wrong)
    # 6 natural 1, -, -    -> 0 (right)
    predicted = {"1": 0, "2": 1, "4": 1, "5": 0, "6": 0}
    ordered = [problems[qid] for qid in predicted]
    table = scienceqa_table(ordered, list(predicted.values()))
    assert table == {
        "NAT": pytest.approx(2 / 3),  # 4, 5, 6
        "SOC": 1.0,  # 1
        "LAN": 0.0,  # 2
        "TXT": 0.5,  # 4, 5 have a hint
        "IMG": 1.0,  # 1, 4 have an image
        "NO": 0.5,  # 2, 6 have neither
        "G1-6": pytest.approx(3 / 5),
        "G7-12": None,  # no question of grades 7-12
        "Avg": pytest.approx(3 / 5),
    }


def test_no_scienceqa_table_for_other_problems():
    assert scienceqa_table([Problem("x", "?", ("a", "b"), 0)], [0]) is None


def test_aokvqa_accuracies_on_the_fixture_records():
    problems = load_aokvqa(FIXTURES / "aokvqa" / "allenai", "train")
    # 22Mex...: choices skateboarder/train/delivery/cab, right 3, direct answers ['cab']
    # fixture...1: winter/summer/spring/fall, right 0, direct answers ['winter']
    scores = aokvqa_scores(problems, [3, 1])
    assert scores["multiple_choice"] == 0.5
    assert scores["direct_answer"] == pytest.approx((1 / 3 + 0.0) / 2)  # 'cab' given by 1 annotator of 1


def test_aokvqa_soft_score_and_the_difficult_questions():
    def problem(qid, answer, direct, difficult):
        extras = {"direct_answers": direct, "difficult_direct_answer": difficult}
        return Problem(qid, "?", ("cab", "bus", "car"), answer, extras=extras)

    problems = [
        problem("a", 0, ["cab"] * 4 + ["taxi"] * 6, False),  # picks cab: 4 of 10 -> 1.0
        problem("b", 1, ["bus"] * 2 + ["coach"] * 8, False),  # picks bus: 2 of 10 -> 2/3
        problem("c", 2, ["car"] * 10, True),  # picks cab (wrong): DA 0; left out of MC (difficult)
    ]
    scores = aokvqa_scores(problems, [0, 1, 0])
    assert scores["multiple_choice"] == 1.0  # a and b only
    assert scores["direct_answer"] == pytest.approx((1.0 + 2 / 3 + 0.0) / 3)

"""experiments/paired_arms.py: two arms' answers paired by problem."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

from paired_arms import paired_defect_difference, paired_difference  # noqa: E402


def test_paired_difference_pairs_by_problem_id_not_by_position():
    answers = {"p1": 0, "p2": 1, "p3": 2, "p4": 0}
    rows_a = [
        {"id": "p1", "answer": 0},
        {"id": "p2", "answer": 1},
        {"id": "p3", "answer": 0},
        {"id": "p4", "answer": 0},
    ]
    # B lists the problems in another order: right on p3 and p4, wrong on p1 and p2
    rows_b = [
        {"id": "p4", "answer": 0},
        {"id": "p3", "answer": 2},
        {"id": "p2", "answer": 2},
        {"id": "p1", "answer": 1},
    ]
    np.testing.assert_array_equal(paired_difference(rows_a, rows_b, answers), [1, 1, -1, 0])


def test_paired_difference_refuses_different_problems():
    rows = [{"id": "p1", "answer": 0}]
    with pytest.raises(SystemExit, match="different problems"):
        paired_difference(rows, [{"id": "p2", "answer": 0}], {"p1": 0, "p2": 0})


def test_paired_defect_difference_by_hand():
    """Repeated sentences and unfinished endings per rationale, A minus B, paired by problem id."""
    rows_a = [
        {"id": "p1", "rationale": "Cell A1 is red. Cell A1 is red. Thus, the answer is (A)."},  # a repeat
        {"id": "p2", "rationale": "Cell B2 is blue. Thus, the answer is (B)."},
        {"id": "p3", "rationale": "Cell C3 is"},  # unfinished
    ]
    rows_b = [
        {"id": "p3", "rationale": "Cell C3 is green. Cell C3 is green."},
        {"id": "p2", "rationale": "Cell B2 is blue. Thus, the answer is (B)."},
        {"id": "p1", "rationale": "Cell A1 is red. Thus, the answer is (A)."},
    ]
    np.testing.assert_array_equal(paired_defect_difference(rows_a, rows_b, "repeated_sentence"), [1, 0, -1])
    np.testing.assert_array_equal(paired_defect_difference(rows_a, rows_b, "unfinished"), [0, 0, 1])
    with pytest.raises(SystemExit, match="different problems"):
        paired_defect_difference(rows_a, rows_b[:2], "unfinished")

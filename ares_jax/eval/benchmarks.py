"""The accuracy tables papers report for ScienceQA and A-OKVQA, computed as each dataset's own
evaluation script computes them.

ScienceQA (`tools/evaluate_acc.py` of lupantech/ScienceQA): accuracy by subject (NAT, SOC, LAN),
by context (TXT: the record has a hint; IMG: it has an image; NO: neither; a question with both
counts in TXT and IMG), by grade (G1-6, G7-12), and over all questions (Avg).
A-OKVQA (`evaluation/eval_predictions.py` of allenai/aokvqa): multiple-choice accuracy over the
questions not marked `difficult_direct_answer`, and direct-answer accuracy over all questions,
the VQA soft score min(1, annotators who gave the predicted answer / 3) against the ten
`direct_answers`; a multiple-choice model's direct answer is the text of the choice it picked.
"""

from __future__ import annotations

from typing import Sequence

from ares_jax.data.problem import Problem

SCIENCEQA_COLUMNS = ("NAT", "SOC", "LAN", "TXT", "IMG", "NO", "G1-6", "G7-12", "Avg")
_SUBJECTS = {"NAT": "natural science", "SOC": "social science", "LAN": "language science"}
_GRADES = {"G1-6": range(1, 7), "G7-12": range(7, 13)}


def _grade(problem: Problem) -> int | None:
    grade = str(problem.extras.get("grade", ""))
    return int(grade[5:]) if grade.startswith("grade") and grade[5:].isdigit() else None


def _in_column(problem: Problem, column: str) -> bool:
    extras = problem.extras
    if column in _SUBJECTS:
        return extras.get("subject") == _SUBJECTS[column]
    if column in _GRADES:
        return _grade(problem) in _GRADES[column]
    if column == "TXT":
        return bool(extras.get("has_text"))
    if column == "IMG":
        return bool(extras.get("has_image"))
    if column == "NO":
        return not extras.get("has_text") and not extras.get("has_image")
    return True  # Avg


def scienceqa_table(problems: Sequence[Problem], answers: Sequence[int]) -> dict[str, float | None] | None:
    """Accuracy (0..1) per column of `SCIENCEQA_COLUMNS` (None for a column without questions),
    or None when the problems are not ScienceQA's (no subject and grade)."""
    if not problems or not all("subject" in p.extras and "grade" in p.extras for p in problems):
        return None
    table = {}
    for column in SCIENCEQA_COLUMNS:
        right = [a == p.answer for p, a in zip(problems, answers, strict=True) if _in_column(p, column)]
        table[column] = sum(right) / len(right) if right else None
    return table


def aokvqa_scores(problems: Sequence[Problem], answers: Sequence[int]) -> dict[str, float | None] | None:
    """{"multiple_choice": accuracy, "direct_answer": soft accuracy or None without direct
    answers} (0..1), or None when the problems are not A-OKVQA's."""
    if not problems or not all("difficult_direct_answer" in p.extras for p in problems):
        return None
    pairs = list(zip(problems, answers, strict=True))
    chosen = [(p, a) for p, a in pairs if p.extras["difficult_direct_answer"] is False]
    multiple_choice = sum(a == p.answer for p, a in chosen) / len(chosen) if chosen else None
    direct = None
    if all(p.extras.get("direct_answers") for p in problems):
        soft = [
            min(1.0, sum(p.choices[a] == given for given in p.extras["direct_answers"]) / 3.0) if 0 <= a else 0.0
            for p, a in pairs
        ]
        direct = sum(soft) / len(soft)
    return {"multiple_choice": multiple_choice, "direct_answer": direct}

"""experiments/judgements.py: what decides the rule judge's judgements, and the Teacher's
corrections as their mark."""

import json
import sys
from pathlib import Path

import pytest

from ares_jax.data.prompts import strip_solution_tag
from ares_jax.data.shapes import ShapesTaskConfig, make_split
from ares_jax.data.shapes import claims as C
from ares_jax.teacher import RuleTeacher
from ares_jax.text import split_sentences

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

from judgements import (
    accuracy_change,
    corrections_win_rate,
    files_of,
    first_and_last,
    needed_for,
    outcome,
    outcomes,
    rows_on,
    shares_of,
    win_points,
)  # noqa: E402
from wins_without_openings import paired_win_rate, without_openings  # noqa: E402


@pytest.fixture(scope="module")
def cases():
    """Six training problems with gold rationales and, per problem, the gold rationale (openings
    out), the same with a wrong final answer, and both with a neutral opening put first."""
    problems = [p for p in make_split(ShapesTaskConfig(), "train", 40) if p.solution][:6]
    texts = {}
    for problem in problems:
        sentences = split_sentences(without_openings(" ".join(split_sentences(strip_solution_tag(problem.solution)))))
        assert isinstance(C.parse(sentences[-1]), C.Answer)
        wrong_answer = C.render(C.Answer((problem.answer + 1) % len(problem.choices)))
        right = " ".join(sentences)
        wrong = " ".join(sentences[:-1] + [wrong_answer])
        texts[problem.id] = {
            "right": right,
            "wrong": wrong,
            "right, opened": f"{C.STARTERS[0]} {right}",
            "right, opened otherwise": f"{C.STARTERS[1]} {right}",
            "wrong, opened": f"{C.STARTERS[0]} {wrong}",
            "wrong, opened otherwise": f"{C.STARTERS[1]} {wrong}",
        }
    return {p.id: p for p in problems}, texts


def test_each_outcome_on_hand_made_pairs(cases):
    """Same text; two openings worded differently before the same right (wrong) rationale: the
    same score, right (wrong); the right answer against a wrong one: decided by the conclusion,
    either way round; both right, one without the 0.5 opening: a higher mean score."""
    problems, texts = cases
    teacher = RuleTeacher()
    expected = [
        ("right", "right", "same text"),
        ("right, opened", "right, opened otherwise", "same score, right"),
        ("wrong, opened", "wrong, opened otherwise", "same score, wrong"),
        ("right", "wrong", "A concludes"),
        ("wrong, opened", "right", "B concludes"),
        ("right", "right, opened", "A scores more"),
        ("right, opened", "right", "B scores more"),
    ]
    for pid, problem in problems.items():
        for a, b, result in expected:
            assert outcome(teacher, problem, texts[pid][a], texts[pid][b]) == result, (a, b)


def test_shares_and_win_rate_are_the_reports(cases):
    """Over a mix of pairs the shares add to one and the win rate equals `ares_jax.eval.win_rate`'s
    (each pair judged in both orders, a tie half a win)."""
    problems, texts = cases
    teacher = RuleTeacher()
    ids = sorted(problems)
    pairs = [("right", "wrong"), ("right, opened", "right, opened otherwise"), ("wrong", "right")]
    pairs += [("right", "right, opened"), ("right", "right"), ("wrong, opened", "wrong, opened otherwise")]
    rows_a = {pid: texts[pid][pairs[n][0]] for n, pid in enumerate(ids)}
    rows_b = {pid: texts[pid][pairs[n][1]] for n, pid in enumerate(ids)}
    judged = outcomes(teacher, problems, rows_a, rows_b)
    assert judged == ["A concludes", "same score, right", "B concludes", "A scores more", "same text",
                      "same score, wrong"]  # fmt: skip
    shares = shares_of(judged)
    assert shares["win rate"] == pytest.approx(paired_win_rate(teacher, problems, rows_a, rows_b)["win_rate"])
    assert shares["win rate"] == pytest.approx((2 + 0.5 * 3) / 6)
    assert win_points(judged) == [1.0, 0.5, 0.0, 1.0, 0.5, 0.5]
    assert sum(value for name, value in shares.items() if name != "win rate") == pytest.approx(1.0)


def test_the_corrections_win_over_wrong_rationales_and_tie_with_right_ones(cases):
    problems, texts = cases
    teacher = RuleTeacher()
    wrong = {pid: texts[pid]["wrong, opened"] for pid in problems}
    assert all(teacher.concludes(problems[pid], teacher.corrected(problems[pid], text)) for pid, text in wrong.items())
    assert corrections_win_rate(teacher, problems, wrong) == 1.0
    right = {pid: texts[pid]["right, opened"] for pid in problems}
    assert corrections_win_rate(teacher, problems, right) == 0.5


def test_needed_for_by_hand():
    """40% ties give 20 of the 65 points; the other 45 must come from the 60% decided: 75% of them."""
    shares = {"same text": 0.1, "same score, right": 0.2, "same score, wrong": 0.1}
    assert needed_for(0.65, shares) == pytest.approx(0.75)


def test_first_and_last_files(tmp_path):
    """Test: the baseline's file and the last phase's; validation: the first phase's first point
    and the last phase's last, steps ordered as numbers (50 before 400)."""
    (tmp_path / "eval").mkdir()
    (tmp_path / "report.json").write_text(json.dumps({"phases": {"baseline": {}, "rl_1": {}, "sft_1": {}}}))
    for name in ("baseline", "rl_1", "sft_1", "rl_1_val_0", "rl_1_val_4", "sft_1_val_50", "sft_1_val_400"):
        (tmp_path / "eval" / f"{name}.json").write_text("[]")
    assert first_and_last(tmp_path, "test") == (tmp_path / "eval/baseline.json", tmp_path / "eval/sft_1.json")
    assert first_and_last(tmp_path, "val") == (tmp_path / "eval/rl_1_val_0.json", tmp_path / "eval/sft_1_val_400.json")


def test_files_of_a_run_or_a_pair(tmp_path):
    """A run's item gives its first and last files; `A:B` gives (B, A); a missing file is named."""
    (tmp_path / "eval").mkdir()
    (tmp_path / "report.json").write_text(json.dumps({"phases": {"baseline": {}, "sft_1": {}}}))
    for name in ("baseline", "sft_1", "a", "b"):
        (tmp_path / "eval" / f"{name}.json").write_text("[]")
    assert files_of(str(tmp_path), "test") == (tmp_path / "eval/baseline.json", tmp_path / "eval/sft_1.json")
    a, b = tmp_path / "eval/a.json", tmp_path / "eval/b.json"
    assert files_of(f"{a}:{b}", "val") == (b, a)
    with pytest.raises(SystemExit, match=r"no file .*missing\.jsonl"):
        files_of(f"{a}:{tmp_path / 'missing.jsonl'}", "val")


def test_accuracy_change_by_hand(cases):
    """Four shared problems: A right on 3, B right on 1 -> +50 points; a problem only A holds is
    left out."""
    by_id, _ = cases
    ids = list(by_id)
    wrong = {i: (by_id[i].answer + 1) % len(by_id[i].choices) for i in ids}
    rows_a = [{"id": i, "answer": by_id[i].answer if n < 3 else wrong[i]} for n, i in enumerate(ids[:4])]
    rows_a.append({"id": ids[4], "answer": by_id[ids[4]].answer})
    rows_b = [{"id": i, "answer": by_id[i].answer if n == 3 else wrong[i]} for n, i in enumerate(ids[:4])]
    rows_a, rows_b = ({row["id"]: row for row in rows} for rows in (rows_a, rows_b))
    assert accuracy_change(by_id, rows_a, rows_b) == pytest.approx(0.5)
    assert accuracy_change(by_id, rows_b, rows_a) == pytest.approx(-0.5)


def test_a_file_of_another_split_is_named(tmp_path, cases):
    """Rationales of problems the split lacks (a test file judged with --split val) stop with the
    file's name and the first stranger, not a KeyError."""
    by_id, _ = cases
    path = tmp_path / "test.jsonl"
    rows = [{"id": next(iter(by_id)), "rationale": "x"}, {"id": "shapes-test-7", "rationale": "y"}]
    path.write_text("\n".join(json.dumps(row) for row in rows))
    with pytest.raises(SystemExit, match=r"test\.jsonl: holds problems not of split val \(1, e\.g\. shapes-test-7\)"):
        rows_on(path, by_id, "val")
    assert rows_on(path, by_id | {"shapes-test-7": None}, "val") == {row["id"]: row for row in rows}


def test_groups_of_the_training_problems(tmp_path):
    """Eight problems, the first six with gold rationales (gold_share 0.75); of the two answer-only
    ones, g corrected in round 2 (and 1), h in round 1 only; with a ninth answer-only problem i
    never corrected when the split holds nine."""
    from judgements_seen import groups_of

    data = {"source": "shapes", "gold_rationales": 0, "shapes": {"gold_share": 0.75}}
    (tmp_path / "report.json").write_text(json.dumps({"config": {"data": data}}))
    (tmp_path / "corrections").mkdir()
    for r, ids in ((1, "agh"), (2, "bg")):
        rows = [{"id": i, "rl_rationale": "", "corrected": ""} for i in ids]
        (tmp_path / "corrections" / f"round_{r}.json").write_text(json.dumps(rows))
    problems = {i: None for i in "abcdefgh"}
    assert groups_of(tmp_path, problems) == {
        "gold": set("abcdef"),
        "corrected last round": {"g"},
        "corrected earlier": {"h"},
        "never corrected": set(),
    }
    data["gold_rationales"] = 5
    (tmp_path / "report.json").write_text(json.dumps({"config": {"data": data}}))
    groups = groups_of(tmp_path, {i: None for i in "abcdefghi"})
    assert groups["gold"] == set("abcde") and groups["never corrected"] == {"f", "i"}
    # a report from before the gold share: every training problem had its gold rationale
    (tmp_path / "report.json").write_text(json.dumps({"config": {"data": {"source": "shapes", "shapes": {}}}}))
    assert groups_of(tmp_path, problems)["gold"] == set(problems)


def test_judgements_seen_takes_whole_training_files_only(tmp_path, cases):
    """A file of another split, or one lacking training problems, stops with its name (it was a
    KeyError on the first missing id)."""
    from judgements_seen import training_rationales

    by_id, texts = cases
    path = tmp_path / "model_train.jsonl"
    rows = [{"id": i, "rationale": texts[i]["right"]} for i in by_id]
    path.write_text("\n".join(json.dumps(row) for row in rows))
    assert training_rationales(path, by_id) == {i: texts[i]["right"] for i in by_id}
    with pytest.raises(
        SystemExit, match=rf"model_train\.jsonl: lacks 1 of the {len(by_id) + 1} training problems \(e\.g\. zz\)"
    ):
        training_rationales(path, by_id | {"zz": None})
    path.write_text("\n".join(json.dumps(row) for row in rows + [{"id": "shapes-val-3", "rationale": "x"}]))
    with pytest.raises(
        SystemExit, match=r"holds problems not of split train \(1, e\.g\. shapes-val-3\); predict with split=train"
    ):
        training_rationales(path, by_id)

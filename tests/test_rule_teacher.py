"""The offline rule Teacher: sentence scores, corrections and the pairwise judge."""

import dataclasses

import numpy as np
import pytest

from ares_jax.data import Problem
from ares_jax.data.shapes import ShapesTaskConfig, make_split
from ares_jax.data.shapes import claims as C
from ares_jax.teacher import RuleTeacher, run_batch
from ares_jax.text import split_sentences

TEACHER = RuleTeacher()


@pytest.fixture(scope="module")
def problems():
    return make_split(ShapesTaskConfig(), "train", 400)


def scores(problem, text):
    return TEACHER.sentence_scores(problem, split_sentences(text))


def falsified(claim, problem):
    """A false version of a claim of `problem` (the same kind of claim, one fact changed)."""
    if isinstance(claim, C.Count):
        return dataclasses.replace(claim, n=claim.n + 1)
    if isinstance(claim, C.Cell):
        if claim.empty:
            return C.Cell(claim.row, claim.col, "large", "red", "circle")
        if claim.colour is not None:
            return dataclasses.replace(claim, colour="green" if claim.colour != "green" else "blue")
        if claim.kind is not None:
            return dataclasses.replace(claim, kind="square" if claim.kind != "square" else "circle")
        return dataclasses.replace(claim, size="small" if claim.size != "small" else "large")
    if isinstance(claim, C.Listing):  # one cell too many, or one missing
        extra = next((r, c) for r in range(1, 10) for c in range(1, 10) if (r, c) not in claim.cells)
        return dataclasses.replace(claim, cells=claim.cells[1:] if claim.cells else (extra,))
    if isinstance(claim, C.Compare):
        return dataclasses.replace(claim, relation="less" if claim.relation != "less" else "more")
    if isinstance(claim, (C.OptionIs, C.Answer)):
        return dataclasses.replace(claim, index=(claim.index + 1) % len(problem.choices))
    return None


def test_gold_rationales_end_on_1_and_never_score_0(problems):
    for p in problems:
        s = scores(p, p.solution)
        assert s[-1] == 1.0 and min(s) >= 0.5, (p.solution, s)
        assert all(round(x * 10) == x * 10 for x in s)  # steps of 0.1


def test_one_corrupted_count_scores_0_on_exactly_that_sentence(problems):
    checked = 0
    for p in problems:
        sentences = split_sentences(p.solution)
        gold = scores(p, p.solution)
        for i, claim in enumerate(C.parse(s) for s in sentences):
            if isinstance(claim, C.Count):
                corrupted = sentences[:i] + [C.render(falsified(claim, p))] + sentences[i + 1 :]
                got = TEACHER.sentence_scores(p, corrupted)
                assert got[i] == 0.0
                assert got[:i] == gold[:i] and got[i + 1 :] == gold[i + 1 :], (corrupted, got, gold)
                checked += 1
                break
    assert checked > 100


def test_hand_worked_scores():
    p = next(p for p in make_split(ShapesTaskConfig(), "train", 200) if p.extras["question_kind"] == "count")
    listing, count = [c for c in p.extras["gold_claims"] if isinstance(c, (C.Listing, C.Count))]
    text = (
        f"Let's look at the picture. {C.render(listing)} {C.render(listing)} "  # starter, fact, repeat
        f"The moon is made of cheese. {C.render(falsified(count, p))} "  # unreadable, false
        f"{C.render(C.Answer(p.answer))} {C.render(count)[:-1]}"  # answer, unfinished but true
    )
    assert scores(p, text) == [0.5, 1.0, 0.0, 0.0, 0.0, 1.0, 0.2]
    # a reworded repeat of the same claim is a repeat too
    reworded = C._wordings(listing)[1]
    assert scores(p, f"{C.render(listing)} {reworded}") == [1.0, 0.0]
    # a true claim the solution does not need (what cell A1 holds), and the wrong answer
    shape = p.extras["scene"].at(1, 1)
    a1 = C.Cell(1, 1, empty=True) if shape is None else C.Cell(1, 1, shape.size, shape.colour, shape.kind)
    wrong = C.Answer((p.answer + 1) % len(p.choices))
    assert scores(p, f"{C.render(a1)} {C.render(wrong)}") == [0.5, 0.0]


def _corrupt(problem, rng):
    """Random damage of the kinds RL does: false facts, repeats, unreadable text, truncation."""
    sentences = split_sentences(problem.solution)
    out = []
    for sentence in sentences:
        claim = C.parse(sentence)
        roll = rng.random()
        if roll < 0.3 and falsified(claim, problem) is not None:
            out.append(C.render(falsified(claim, problem), rng))
        elif roll < 0.4:
            out.append("blah blah the the.")
        else:
            out.append(sentence)
        if rng.random() < 0.2:
            out.append(out[-1])  # a word-for-word repeat
    text = " ".join(out)
    if rng.random() < 0.4:
        text = text[: int(rng.integers(len(text) // 2, len(text)))]
    return text


def test_overlap_credit_scores_a_partly_right_listing_by_its_right_share(problems):
    """Hand-worked: a count question whose shapes sit in 3 cells; the listing names 2 of them and
    one wrong cell: Jaccard 2 / 4 = 0.5. 1 of them alone: 1 / 3, rounded down to 0.3."""
    overlap = RuleTeacher("overlap")
    p = next(
        p
        for p in problems
        if p.extras["question_kind"] == "count"
        and len(next(c for c in p.extras["gold_claims"] if isinstance(c, C.Listing)).cells) == 3
    )
    listing = next(c for c in p.extras["gold_claims"] if isinstance(c, C.Listing))
    wrong = next((r, c) for r in (1, 2, 3) for c in (1, 2, 3) if (r, c) not in listing.cells)
    two_and_a_wrong = dataclasses.replace(listing, cells=listing.cells[:2] + (wrong,))
    only_one = dataclasses.replace(listing, cells=listing.cells[:1])
    for claim, share in ((two_and_a_wrong, 0.5), (only_one, 0.3), (listing, 1.0)):
        text = f"{C.render(claim)} {C.render(C.Answer(p.answer))}"
        assert overlap.sentence_scores(p, split_sentences(text)) == [share, 1.0], text
        assert scores(p, text) == [1.0 if claim == listing else 0.0, 1.0]  # exact credit: all or nothing
    # a second try at the same listing earns nothing; the first keeps its share
    text = f"{C.render(only_one)} {C.render(two_and_a_wrong)}"
    assert overlap.sentence_scores(p, split_sentences(text)) == [0.3, 0.0]
    # a listing the solution does not need earns nothing for being partly right
    topics = {C.topic(c) for c in p.extras["gold_claims"]}
    other = next(
        C.Listing(cells=(), size=size)
        for size in ("small", "large", None)
        if C.topic(C.Listing(cells=(), size=size)) not in topics
    )
    right = tuple(p.extras["scene"].matching_cells(other.size))
    other = dataclasses.replace(other, cells=right + next((x,) for x in listing.cells + (wrong,) if x not in right))
    assert 0 < C.listing_overlap(other, p.extras["scene"]) < 1
    assert overlap.sentence_scores(p, [C.render(other)]) == [0.0]
    assert overlap.name != TEACHER.name  # the Teacher cache keeps the two scorings apart
    with pytest.raises(ValueError, match="listing_credit"):
        RuleTeacher("partial")


def test_corrections_of_randomly_corrupted_rationales_score_fully_correct(problems):
    rng = np.random.default_rng(0)
    for p in problems:
        corrupted = _corrupt(p, rng)
        fixed = TEACHER.corrected(p, corrupted)
        s = scores(p, fixed)
        assert s[-1] == 1.0 and min(s) >= 0.5, (corrupted, fixed, s)
        assert C.parse(split_sentences(fixed)[-1]) == C.Answer(p.answer)
        # every step of the gold solution is made, by a true claim: the reasoning reaches the answer
        made = {C.topic(c) for c in map(C.parse, split_sentences(fixed)) if TEACHER._facts(p)[1](c)}
        steps = {C.topic(c) for c in p.extras["gold_claims"] if not isinstance(c, C.Starter)}
        assert steps <= made, (corrupted, fixed)


def _cell_claim(scene, row, col):
    shape = scene.at(row, col)
    return C.Cell(row, col, empty=True) if shape is None else C.Cell(row, col, shape.size, shape.colour, shape.kind)


def test_correction_replaces_a_step_off_the_solution_path_with_the_step_it_was_taking(problems):
    """ "What is left of X?" answered from the wrong cell: describing that cell truly is no
    correction. The wrong cell becomes the neighbour asked about, the wrong option the answer's."""
    p = next(p for p in problems if p.extras["question_kind"] == "spatial")
    scene = p.extras["scene"]
    target, neighbour, option, answer = p.extras["gold_claims"][-4:]
    assert isinstance(neighbour, C.Cell) and isinstance(option, C.OptionIs) and answer == C.Answer(p.answer)
    # another cell, described truly (the rule of "keep correct sentences" would keep it)
    elsewhere = next(
        _cell_claim(scene, r, c)
        for r in range(1, scene.rows + 1)
        for c in range(1, scene.cols + 1)
        if (r, c) not in {(target.row, target.col), (neighbour.row, neighbour.col)}
    )
    wrong_option = next(i for i in range(len(p.choices)) if i != p.answer)
    rationale = " ".join(
        [
            "Look at each cell of the grid.",
            C.render(target),
            C.render(elsewhere),
            C.render(C.OptionIs(wrong_option, p.choices[wrong_option])),
            C.render(C.Answer(wrong_option)),
        ]
    )
    corrected = TEACHER.corrected(p, rationale)
    assert claims_of(corrected) == [C.Starter("Look at each cell of the grid."), target, neighbour, option, answer]
    assert corrected.startswith(f"Look at each cell of the grid. {C.render(target)} ")  # kept as written
    assert TEACHER.corrected(p, rationale) == corrected  # the same request, the same correction
    # steps the rationale never took are inserted where the gold solution has them
    inserted = TEACHER.corrected(p, f"{C.render(target)} {C.render(C.Answer(wrong_option))}")
    assert claims_of(inserted) == [target, neighbour, option, answer]


def claims_of(rationale: str) -> list:
    return [C.parse(sentence) for sentence in split_sentences(rationale)]


def test_corrections_use_the_tasks_varied_wordings(problems):
    """Rewritten sentences take the task's wordings as the gold solutions do, not always the first."""
    wordings = set()
    for p in problems[:60]:
        for claim in p.extras["gold_claims"]:
            if isinstance(claim, C.Count):
                wordings.add(TEACHER.corrected(p, C.render(dataclasses.replace(claim, n=claim.n + 1))).split(" ")[0])
    assert {"There", "I"} <= wordings  # "There are 2 circles." and "I count 2 circles."


def test_correction_keeps_correct_sentences_unchanged_and_in_order(problems):
    p = problems[0]
    assert TEACHER.corrected(p, p.solution) == p.solution
    assert TEACHER.corrected(p, "Solution: " + p.solution) == p.solution
    sentences = split_sentences(p.solution)
    claim = C.parse(sentences[0])
    bad = C.render(falsified(claim, p)) if not isinstance(claim, C.Starter) else sentences[0]
    fixed = split_sentences(TEACHER.corrected(p, " ".join([bad, *sentences[1:]])))
    assert fixed[1:] == sentences[1:]
    assert C.parse(fixed[0]) == C.made_true(C.parse(bad), p.extras["scene"], p.choices, p.answer)


def test_judge_prefers_gold_over_corrupted_in_both_orders(problems):
    rng = np.random.default_rng(1)
    for p in problems[:200]:
        corrupted = _corrupt(p, rng)
        if scores(p, corrupted) == scores(p, p.solution):
            continue
        assert TEACHER.verdict(p, p.solution, corrupted) == "a", corrupted
        assert TEACHER.verdict(p, corrupted, p.solution) == "b", corrupted
    assert TEACHER.verdict(problems[0], problems[0].solution, problems[0].solution) == "tie"


def test_async_interface_through_the_batch_bridge(problems):
    batch = [(p, split_sentences(p.solution)) for p in problems[:20]]
    assert run_batch(TEACHER.score_sentences, batch, concurrency=4) == [TEACHER.sentence_scores(*b) for b in batch]
    with pytest.raises(ValueError, match="concurrency"):
        run_batch(TEACHER.score_sentences, batch, concurrency=0)


def test_problem_without_scene_is_refused_with_its_id():
    p = Problem("sqa-42", "Which is a mammal?", ("cat", "trout"), 0, solution="A cat is a mammal.")
    with pytest.raises(ValueError, match="'sqa-42'.*API Teacher"):
        TEACHER.sentence_scores(p, ["A cat is a mammal."])

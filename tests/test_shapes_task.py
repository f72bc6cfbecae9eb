"""The built-in shapes task: determinism, answers visible in the pixels, rationale shape."""

import re

import numpy as np
import pytest

from ares_jax.data import Problem, answer_prompt, parse_answer, rationale_prompt, rationale_target
from ares_jax.data.shapes import ShapesTaskConfig, make_problem, make_split, png_bytes, read_scene, render
from ares_jax.data.shapes import claims as C
from ares_jax.data.shapes.scene import COLOURS, KINDS, SIZES, Scene, Shape
from ares_jax.text import split_sentences

CONFIG = ShapesTaskConfig()


@pytest.fixture(scope="module")
def problems():
    return make_split(CONFIG, "train", 600) + make_split(CONFIG, "test", 200)


def test_generation_is_deterministic_and_independent_of_split_size():
    a = make_split(CONFIG, "train", 30)
    b = make_split(CONFIG, "train", 50)[:30]
    for x, y in zip(a, b):
        assert (x.question, x.choices, x.answer, x.solution) == (y.question, y.choices, y.answer, y.solution)
        np.testing.assert_array_equal(x.image, y.image)
    other_seed = make_split(ShapesTaskConfig(seed=1), "train", 30)
    assert [p.solution for p in other_seed] != [p.solution for p in a]
    assert make_split(CONFIG, "test", 5)[0].solution != a[0].solution


def test_every_question_kind_and_option_count_occurs(problems):
    assert {p.extras["question_kind"] for p in problems} == {"count", "compare", "lookup", "spatial", "which_true"}
    assert {len(p.choices) for p in problems} == {2, 3, 4, 5}


def test_options_come_in_a_fixed_order(problems):
    """Numbers ascending from 0, attribute values in their canonical order, the groups of a
    comparison in the question's order: the letter of an answer follows from its content."""
    for p in problems:
        kind = p.extras["question_kind"]
        if kind == "count":
            assert p.choices == ("0", "1", "2", "3", "4")
        elif kind in ("lookup", "spatial"):
            assert p.choices in (COLOURS, KINDS, SIZES), p.choices
        elif kind == "compare":
            first, second = re.search(r"(?:more|larger:) (.+) or (?:more )?(.+)\?", p.question).groups()
            assert p.choices[:2] == (f"more {first}", f"more {second}")
            assert p.choices[2:] in ((), ("the same number",))


def test_images_are_small_uint8_and_round_trip_through_png(problems):
    import io

    from PIL import Image

    image = problems[0].image
    assert image.dtype == np.uint8 and image.shape == (48, 48, 3)
    decoded = np.asarray(Image.open(io.BytesIO(png_bytes(image))))
    np.testing.assert_array_equal(decoded, image)


def test_scene_read_back_from_pixels_equals_the_scene(problems):
    for p in problems:
        assert read_scene(p.image) == p.extras["scene"], p.id


_DESC = rf"(?:({'|'.join(SIZES)}) )?(?:({'|'.join(COLOURS)}) )?({'|'.join(KINDS)}|shape)s"


def _count(scene, size, colour, kind):
    return sum(
        (size is None or s.size == size)
        and (colour is None or s.colour == colour)
        and (kind in (None, "shape") or s.kind == kind)
        for s in scene.cells.values()
    )


def _group(phrase):
    size, colour, kind = re.fullmatch(_DESC, phrase).groups()
    return size, colour, kind


def solve_from_pixels(problem: Problem) -> int:
    """Answer the question from the image alone (an independent solver over the question text)."""
    scene = read_scene(problem.image)
    q, choices = problem.question, problem.choices
    if m := re.fullmatch(rf"How many ({_DESC}) are in the picture\?", q):
        return choices.index(str(_count(scene, *_group(m.group(1)))))
    if m := (
        re.fullmatch(r"Are there more (.+) or more (.+)\?", q)
        or re.fullmatch(r"Which group is larger: (.+) or (.+)\?", q)
    ):
        a, b = (_count(scene, *_group(g)) for g in m.groups())
        want = "the same number" if a == b else f"more {m.group(1) if a > b else m.group(2)}"
        return choices.index(want)
    if m := re.fullmatch(r"What (colour|kind|size) (?:of shape )?is (?:the shape )?in cell ([A-Z])(\d)\?", q):
        shape = scene.at(int(m.group(3)), ord(m.group(2)) - ord("A") + 1)
        return choices.index(getattr(shape, m.group(1)))
    where = r"directly (left of|right of|above|below) the (\w+) (\w+)"
    if m := re.fullmatch(rf"What (colour|kind|size) (?:of shape )?is (?:the shape )?{where}\?", q):
        attribute, direction, colour, kind = m.groups()
        ((row, col),) = [pos for pos, s in scene.cells.items() if (s.colour, s.kind) == (colour, kind)]
        dr, dc = {"left of": (0, -1), "right of": (0, 1), "above": (-1, 0), "below": (1, 0)}[direction]
        return choices.index(getattr(scene.at(row + dr, col + dc), attribute))
    if q == "Which statement about the picture is true?":
        true = [i for i, text in enumerate(choices) if C.is_true(C.parse(text), scene, choices, -1)]
        assert len(true) == 1, (choices, true)
        return true[0]
    raise AssertionError(f"unrecognised question {q!r}")


def test_every_answer_is_recomputed_from_the_pixels(problems):
    for p in problems:
        assert solve_from_pixels(p) == p.answer, (p.id, p.question, p.choices)


def test_gold_rationales_have_3_to_6_checkable_sentences_in_varied_wording(problems):
    openings = set()
    for p in problems:
        sentences = split_sentences(p.solution)
        assert 3 <= len(sentences) <= 6, p.solution
        claims = [C.parse(s) for s in sentences]
        assert None not in claims, p.solution
        assert claims[-1] == C.Answer(p.answer)
        assert list(claims) == list(p.extras["gold_claims"])
        openings.update(s.split()[0] for s in sentences)
    assert len(openings) >= 10  # several wordings, not one template


def test_every_claim_wording_parses_back_to_the_claim():
    rng = np.random.default_rng(0)
    claims = [
        C.Count(0, colour="red"),
        C.Count(1, kind="circle"),
        C.Count(4, "large", None, "square"),
        C.Count(2, None, "blue", "triangle"),
        C.Cell(1, 2, "small", "red", "circle"),
        C.Cell(3, 4, colour="green", kind="square"),
        C.Cell(2, 2, colour="yellow"),
        C.Cell(4, 1, size="large"),
        C.Cell(2, 3, kind="triangle"),
        C.Cell(1, 1, empty=True),
        C.Listing((), colour="red", kind="square"),
        C.Listing(((2, 3),), "small", None, "circle"),
        C.Listing(((1, 1), (3, 2)), colour="blue"),
        C.Listing(((1, 2), (2, 1), (3, 3), (12, 4)), kind="triangle"),
        C.Compare(3, 2, "more"),
        C.Compare(1, 4, "less"),
        C.Compare(2, 2, "equal"),
        C.OptionIs(1, "green"),
        C.OptionIs(0, "a small red square"),
        C.Answer(2),
        C.Starter("Let's count the shapes."),
    ]
    for claim in claims:
        for wording in C._wordings(claim):
            assert C.parse(wording) == claim, wording
    assert C.parse(C.render(C.Answer(0), rng)) == C.Answer(0)
    assert C.parse("Solution: Let's count the shapes.") == C.Starter("Let's count the shapes.")
    assert C.parse("The sky is green.") is None


def test_a_listing_is_true_only_for_exactly_the_matching_cells():
    scene = Scene(
        3,
        3,
        {
            (1, 1): Shape("small", "red", "circle"),
            (2, 3): Shape("large", "red", "square"),
            (3, 2): Shape("large", "blue", "circle"),
        },
    )
    red = [
        C.parse(text)
        for text in (
            "The red shapes are in cells A1 and C2.",
            "Cells C2 and A1 have red shapes.",  # any order
            "The red shapes are in cells A1, C2 and B3.",
            "Only cell A1 has a red shape.",  # one too many, one missing
            "The red shapes are in cells A1 and A1.",
            "No cell has a red shape.",
        )
    ]  # a cell twice, none
    assert [C.is_true(claim, scene, (), 0) for claim in red] == [True, True, False, False, False, False]
    assert C.is_true(C.parse("The only large circle is in cell B3."), scene, (), 0)
    assert C.is_true(C.parse("No cell holds a small square."), scene, (), 0)
    assert C.made_true(red[2], scene, (), 0) == C.Listing(((1, 1), (2, 3)), colour="red")


def test_prompts_follow_mm_cot_formats(problems):
    p = problems[0]
    prompt = rationale_prompt(p)
    assert p.context == ""  # the built-in task has no hint: MM-CoT writes N/A
    assert prompt.startswith(f"Question: {p.question}\nContext: N/A\nOptions: (A) {p.choices[0]} (B)")
    assert prompt.endswith("\nSolution:")
    assert rationale_target(p) == f"Solution: {p.solution}"
    assert rationale_target(p, with_lecture=True) == f"Solution: {p.lecture} {p.solution}"
    assert answer_prompt(p, "Solution: x.").endswith("\nSolution: x.\nAnswer:")
    assert parse_answer("The answer is (B).", 3) == 1
    assert parse_answer("The answer is (E).", 3) == -1
    assert parse_answer("no idea", 3) == -1


def test_problem_rejects_bad_records():
    with pytest.raises(ValueError, match="'q1'.*answer index 3"):
        Problem("q1", "?", ("a", "b"), 3)
    with pytest.raises(ValueError, match="'q2'.*2 to 26 choices"):
        Problem("q2", "?", ("a",), 0)
    with pytest.raises(ValueError, match="unknown"):
        ShapesTaskConfig(kinds=("count", "colouring"))


def test_settings_that_cannot_give_a_question_kind_fail_naming_the_keys():
    lone_cell = ShapesTaskConfig(rows=1, cols=1, min_shapes=1, max_shapes=1, kinds=("spatial",))
    with pytest.raises(ValueError, match="gave no 'spatial' question.*rows, cols, min_shapes or max_shapes"):
        make_problem(lone_cell, "train", 0)


def test_render_draws_only_palette_colours_and_grid():
    problem = make_problem(CONFIG, "train", 3)
    colours = {tuple(c) for c in problem.image.reshape(-1, 3)}
    from ares_jax.data.shapes.scene import BACKGROUND, GRID_LINE, PALETTE

    assert colours <= {BACKGROUND, GRID_LINE, *PALETTE.values()}
    np.testing.assert_array_equal(render(problem.extras["scene"]), problem.image)

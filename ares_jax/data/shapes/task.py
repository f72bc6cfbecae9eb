"""The built-in task: multiple-choice questions about a rendered grid of shapes.

Five kinds of question, each needing the image: counting (list the cells that hold the shapes,
then count the list), comparing two counts (list both groups), looking up an attribute at a
cell, an attribute of the shape next to a named one, and "which statement is true". Options
come in a fixed order (numbers ascending, colours, kinds and sizes in the order of `scene.py`),
as exam questions with a fixed set of answers list them. Each problem's gold rationale is 3 to 6
sentences, each one checkable claim (`claims.py`), in varied wording. Generation is
deterministic: problem `i` of a split depends only on (seed, split, i), so changing a split's
size does not change the problems it shares.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ares_jax.data.problem import Problem
from ares_jax.data.shapes import claims as C
from ares_jax.data.shapes.scene import ATTRIBUTE_VALUES, COLOURS, KINDS, SIZES, Scene, random_scene, render

QUESTION_KINDS = ("count", "compare", "lookup", "spatial", "which_true")
SPLITS = ("train", "val", "test")
COUNT_CHOICES = ("0", "1", "2", "3", "4")
MAX_LISTED = 4  # cells a compared group may have: two lists and a comparison fit in 64 tokens
MAX_SCENE_DRAWS = 1000  # scenes tried for one problem before the settings are declared unfit
_SPLIT_CODE = {name: code for code, name in enumerate(SPLITS)}
_DIRECTIONS = {"left of": (0, -1), "right of": (0, 1), "above": (-1, 0), "below": (1, 0)}
_LECTURES = {
    "count": "To count shapes, list the cells that hold one, then count the cells in the list.",
    "compare": "To compare two groups, list the cells of each group; the longer list has more.",
    "lookup": "A cell is named by its column letter (A at the left) and its row number (1 at the top).",
    "spatial": "Directly left of cell B2 is cell A2; directly above it is cell B1.",
    "which_true": "Check each statement against the picture; exactly one of them is true.",
}


@dataclasses.dataclass(frozen=True)
class ShapesTaskConfig:
    train_size: int = 8000
    val_size: int = 1000
    test_size: int = 1000
    seed: int = 0
    rows: int = 3
    cols: int = 3
    cell_px: int = 16
    min_shapes: int = 3
    max_shapes: int = 7
    kinds: tuple[str, ...] = QUESTION_KINDS
    # The share of the training problems whose gold rationale the loop's SFT stages learn (the
    # first ones); the rest come with their answer only, for RL and the Teacher's corrections, as
    # part of a real dataset has no written solution. The generator writes every solution anyway
    # (the scene's facts); `data.gold_rationales` sets a count instead.
    gold_share: float = 1.0

    def __post_init__(self):
        if not 0 < self.gold_share <= 1:
            raise ValueError(f"data.shapes.gold_share must be in (0, 1], got {self.gold_share}")
        unknown = [k for k in self.kinds if k not in QUESTION_KINDS]
        if unknown or not self.kinds:
            raise ValueError(f"data.shapes.kinds: unknown {unknown}; choose from {QUESTION_KINDS}")
        if not (1 <= self.rows <= 9 and 1 <= self.cols <= 26):
            raise ValueError("data.shapes: rows must be 1..9 and cols 1..26 (cells are named A1..Z9)")
        if not 1 <= self.min_shapes <= self.max_shapes <= self.rows * self.cols:
            raise ValueError(
                f"data.shapes: need 1 <= min_shapes ({self.min_shapes}) <= max_shapes ({self.max_shapes}) "
                f"<= rows * cols ({self.rows * self.cols})"
            )

    @property
    def image_size(self) -> int:
        return self.rows * self.cell_px


def _maybe_starter(rng, text: str) -> list:
    return [C.Starter(text)] if rng.random() < 0.5 else []


def _attribute_question(attribute: str, where: str) -> tuple[str, list[str]]:
    """("What colour is the shape <where>?", the colours in order), likewise for kind and size."""
    subject = {"colour": "What colour is the shape", "kind": "What kind of shape is", "size": "What size is the shape"}[
        attribute
    ]
    return f"{subject} {where}?", list(ATTRIBUTE_VALUES[attribute])


def _count_question(scene: Scene, rng):
    attribute_sets = [("colour",), ("kind",), ("colour", "kind"), ("size", "kind")]
    chosen = attribute_sets[rng.integers(len(attribute_sets))]
    attrs = {name: ATTRIBUTE_VALUES[name][rng.integers(len(ATTRIBUTE_VALUES[name]))] for name in chosen}
    cells = tuple(scene.matching_cells(**attrs))
    if len(cells) >= len(COUNT_CHOICES):
        return None
    answer = len(cells)
    question = f"How many {C.describe(**attrs, plural=True)} are in the picture?"
    claims = _maybe_starter(rng, "Let's count the shapes.") + [
        C.Listing(cells, **attrs),
        C.Count(len(cells), **attrs),
        C.Answer(answer),
    ]
    return question, list(COUNT_CHOICES), answer, claims


def _compare_question(scene: Scene, rng):
    attribute = "colour" if rng.random() < 0.5 else "kind"
    values = rng.choice(ATTRIBUTE_VALUES[attribute], size=2, replace=False).tolist()
    groups = [{attribute: v} for v in values]
    listings = [C.Listing(tuple(scene.matching_cells(**g)), **g) for g in groups]
    counts = [len(listing.cells) for listing in listings]
    if max(counts) > MAX_LISTED:
        return None
    names = [C.describe(**g, plural=True) for g in groups]
    choices = [f"more {names[0]}", f"more {names[1]}"]
    if counts[0] == counts[1] or rng.random() < 0.5:
        choices.append("the same number")
    relation = "more" if counts[0] > counts[1] else "less" if counts[0] < counts[1] else "equal"
    answer = {"more": 0, "less": 1, "equal": 2}[relation]
    wording = rng.integers(2)
    question = (
        f"Are there more {names[0]} or more {names[1]}?"
        if wording == 0
        else f"Which group is larger: {names[0]} or {names[1]}?"
    )
    claims = _maybe_starter(rng, "Let's compare the two groups.") + [
        *listings,
        C.Compare(counts[0], counts[1], relation),
        C.Answer(answer),
    ]
    return question, choices, answer, claims


def _lookup_question(scene: Scene, rng):
    row, col = scene.positions()[rng.integers(len(scene.cells))]
    shape = scene.at(row, col)
    attribute = tuple(ATTRIBUTE_VALUES)[rng.integers(len(ATTRIBUTE_VALUES))]
    question, choices = _attribute_question(attribute, f"in cell {C.cell_name(row, col)}")
    truth = getattr(shape, attribute)
    answer = choices.index(truth)
    claims = _maybe_starter(rng, "Columns are lettered from the left and rows numbered from the top.") + [
        C.Cell(row, col, shape.size, shape.colour, shape.kind),
        C.Cell(row, col, **{attribute: truth}),
        C.OptionIs(answer, truth),
        C.Answer(answer),
    ]
    return question, choices, answer, claims


def _spatial_question(scene: Scene, rng):
    candidates = []
    for (row, col), shape in scene.cells.items():
        if scene.count(colour=shape.colour, kind=shape.kind) != 1:
            continue  # "the red circle" must name one shape
        for direction, (dr, dc) in _DIRECTIONS.items():
            if scene.at(row + dr, col + dc) is not None:
                candidates.append((row, col, direction))
    if not candidates:
        return None
    row, col, direction = candidates[rng.integers(len(candidates))]
    dr, dc = _DIRECTIONS[direction]
    target, neighbour = scene.at(row, col), scene.at(row + dr, col + dc)
    attribute = tuple(ATTRIBUTE_VALUES)[rng.integers(len(ATTRIBUTE_VALUES))]
    name = C.describe(colour=target.colour, kind=target.kind)
    question, choices = _attribute_question(attribute, f"directly {direction} the {name}")
    truth = getattr(neighbour, attribute)
    answer = choices.index(truth)
    claims = _maybe_starter(rng, "Look at each cell of the grid.") + [
        C.Cell(row, col, colour=target.colour, kind=target.kind),
        C.Cell(row + dr, col + dc, neighbour.size, neighbour.colour, neighbour.kind),
        C.OptionIs(answer, truth),
        C.Answer(answer),
    ]
    return question, choices, answer, claims


def _random_statement(scene: Scene, rng):
    """A true claim about the scene: a count by colour or kind, or a cell's full content."""
    pick = rng.integers(3)
    if pick == 0:
        colour = COLOURS[rng.integers(len(COLOURS))]
        return C.Count(scene.count(colour=colour), colour=colour)
    if pick == 1:
        kind = KINDS[rng.integers(len(KINDS))]
        return C.Count(scene.count(kind=kind), kind=kind)
    row, col = int(rng.integers(1, scene.rows + 1)), int(rng.integers(1, scene.cols + 1))
    shape = scene.at(row, col)
    return C.Cell(row, col, empty=True) if shape is None else C.Cell(row, col, shape.size, shape.colour, shape.kind)


def _falsified(claim, rng):
    if isinstance(claim, C.Count):
        return dataclasses.replace(claim, n=max(0, claim.n + int(rng.choice([-2, -1, 1, 2]))) or claim.n + 1)
    if claim.empty:
        return C.Cell(claim.row, claim.col, *(v[rng.integers(len(v))] for v in (SIZES, COLOURS, KINDS)))
    attribute, pool = [("size", SIZES), ("colour", COLOURS), ("kind", KINDS)][rng.integers(3)]
    other = [v for v in pool if v != getattr(claim, attribute)]
    return dataclasses.replace(claim, **{attribute: other[rng.integers(len(other))]})


def _which_true_question(scene: Scene, rng):
    n_options = int(rng.integers(2, 5))
    statements, subjects = [], set()
    while len(statements) < n_options:
        fact = _random_statement(scene, rng)
        if C.topic(fact) not in subjects:
            subjects.add(C.topic(fact))
            statements.append(fact)
    answer = int(rng.integers(n_options))
    shown = [fact if i == answer else _falsified(fact, rng) for i, fact in enumerate(statements)]
    choices = [C.render(s, rng).rstrip(".") for s in shown]
    question = "Which statement about the picture is true?"
    facts = statements if len(statements) >= 2 else [C.Starter("Let's check each option."), *statements]
    return question, choices, answer, [*facts, C.Answer(answer)]


_BUILDERS = {
    "count": _count_question,
    "compare": _compare_question,
    "lookup": _lookup_question,
    "spatial": _spatial_question,
    "which_true": _which_true_question,
}


def make_problem(config: ShapesTaskConfig, split: str, index: int) -> Problem:
    """Problem `index` of `split`; the same (config.seed, split, index) always gives the same one."""
    rng = np.random.default_rng([config.seed, _SPLIT_CODE[split], index])
    kind = config.kinds[rng.integers(len(config.kinds))]
    for _ in range(MAX_SCENE_DRAWS):
        scene = random_scene(rng, config.rows, config.cols, config.min_shapes, config.max_shapes)
        built = _BUILDERS[kind](scene, rng)
        if built is not None:
            break
    else:
        raise ValueError(
            f"data.shapes: {MAX_SCENE_DRAWS} scenes of {config.rows}x{config.cols} cells with {config.min_shapes} to "
            f"{config.max_shapes} shapes gave no {kind!r} question (a count needs at most {len(COUNT_CHOICES) - 1} "
            f"matching shapes, a comparison at most {MAX_LISTED} per group, a spatial question a uniquely named "
            "shape with a neighbour); change rows, cols, min_shapes or max_shapes, or leave the kind out of "
            "data.shapes.kinds"
        )
    question, choices, answer, gold_claims = built
    solution = " ".join(C.render(claim, rng) for claim in gold_claims)
    return Problem(
        id=f"shapes-{split}-{index}",
        question=question,
        choices=tuple(choices),
        answer=answer,
        context="",
        image=render(scene, config.cell_px),
        lecture=_LECTURES[kind],
        solution=solution,
        split=split,
        extras={"scene": scene, "question_kind": kind, "gold_claims": tuple(gold_claims)},
    )


def make_split(config: ShapesTaskConfig, split: str, size: int | None = None) -> list[Problem]:
    if split not in _SPLIT_CODE:
        raise ValueError(f"unknown split {split!r}; the built-in task has {SPLITS}")
    if size is None:
        size = getattr(config, f"{split}_size")
    return [make_problem(config, split, i) for i in range(size)]


def make_dataset(config: ShapesTaskConfig = ShapesTaskConfig()) -> dict[str, list[Problem]]:
    return {split: make_split(config, split) for split in SPLITS}

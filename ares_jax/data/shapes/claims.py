"""The claim language of the built-in task's rationales.

Every rationale sentence is one claim the scene can check: a count, the content of a cell, the
list of cells that hold some kind of shape, a comparison of two numbers, which option holds a
text, or the final answer. Each claim kind has a few wordings (`render` picks one), `parse`
reads any of them back, `is_true` checks a claim against the problem, `topic` says what a claim
is about (a claim is "relevant" when a gold rationale makes a claim on the same topic) and
`made_true` rewrites a false claim with the fact.
Neutral opening sentences (`STARTERS`) are true and decide nothing.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Sequence

import numpy as np

from ares_jax.data.shapes.scene import COLOURS, KINDS, SIZES, Scene
from ares_jax.text.fluency import sentence_key

LETTERS = "ABCDE"


@dataclasses.dataclass(frozen=True)
class Count:
    """`n` shapes with the given attributes (None: any) in the picture."""

    n: int
    size: str | None = None
    colour: str | None = None
    kind: str | None = None


@dataclasses.dataclass(frozen=True)
class Cell:
    """Cell (row, col) is empty, or holds a shape with the given attributes (None: unstated)."""

    row: int
    col: int
    size: str | None = None
    colour: str | None = None
    kind: str | None = None
    empty: bool = False


@dataclasses.dataclass(frozen=True)
class Listing:
    """Exactly the cells `cells` ((row, col) pairs; gold rationales list them in reading order,
    any order is true) hold a shape with the given attributes (None: any); an empty tuple says
    no cell does."""

    cells: tuple
    size: str | None = None
    colour: str | None = None
    kind: str | None = None


@dataclasses.dataclass(frozen=True)
class Compare:
    a: int
    b: int
    relation: str  # "more" | "less" | "equal"


@dataclasses.dataclass(frozen=True)
class OptionIs:
    """Option `index` reads `text`."""

    index: int
    text: str


@dataclasses.dataclass(frozen=True)
class Answer:
    index: int


@dataclasses.dataclass(frozen=True)
class Starter:
    """A neutral opening thought: true, decides nothing."""

    text: str


Claim = Count | Cell | Listing | Compare | OptionIs | Answer | Starter

STARTERS = (
    "Let's look at the picture.",
    "Look at each cell of the grid.",
    "Columns are lettered from the left and rows numbered from the top.",
    "Let's count the shapes.",
    "Let's compare the two groups.",
    "Let's check each option.",
)
_STARTER_KEYS = {s.lower().rstrip("."): s for s in STARTERS}


def letter(index: int) -> str:
    return f"({LETTERS[index]})"


def cell_name(row: int, col: int) -> str:
    """Spreadsheet-style name of a cell: column letter, then row number ("B3": row 3, column 2).
    One short word per cell, so a small model ties it to the cell's image features quickly."""
    return f"{chr(ord('A') + col - 1)}{row}"


def cells_text(cells) -> str:
    """ "A1", "A1 and C2", "A1, B3 and D4"."""
    names = [cell_name(row, col) for row, col in cells]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def describe(size=None, colour=None, kind=None, plural: bool = False) -> str:
    """ "large red circles", "blue shape", "triangle"."""
    words = [w for w in (size, colour) if w] + [kind or "shape"]
    return " ".join(words) + ("s" if plural else "")


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def render(claim: Claim, rng: np.random.Generator | None = None) -> str:
    """One wording of `claim` as a sentence (the first wording when `rng` is None)."""
    options = _wordings(claim)
    return options[0] if rng is None else options[int(rng.integers(len(options)))]


def _wordings(claim: Claim) -> list[str]:
    if isinstance(claim, Starter):
        return [claim.text]
    if isinstance(claim, Count):
        desc_one = describe(claim.size, claim.colour, claim.kind)
        desc_many = describe(claim.size, claim.colour, claim.kind, plural=True)
        if claim.n == 0:
            return [f"There are no {desc_many}.", f"I see no {desc_many}."]
        if claim.n == 1:
            return [f"There is 1 {desc_one}.", f"I count 1 {desc_one}."]
        return [f"There are {claim.n} {desc_many}.", f"I count {claim.n} {desc_many}."]
    if isinstance(claim, Cell):
        where = f"cell {cell_name(claim.row, claim.col)}"
        if claim.empty:
            return [f"{_capitalise(where)} is empty.", f"There is nothing in {where}."]
        desc = describe(claim.size, claim.colour, claim.kind)
        if claim.kind is None:  # one attribute, no kind: "... is green."
            words = " ".join(w for w in (claim.size, claim.colour) if w)
            return [f"The shape in {where} is {words}."]
        out = [
            f"The shape in {where} is a {desc}.",
            f"{_capitalise(where)} has a {desc}.",
            f"In {where} there is a {desc}.",
        ]
        if claim.colour:  # unambiguous enough to name first
            out.append(f"The {desc} is in {where}.")
        return out
    if isinstance(claim, Listing):
        one = describe(claim.size, claim.colour, claim.kind)
        many = describe(claim.size, claim.colour, claim.kind, plural=True)
        if not claim.cells:
            return [f"No cell has a {one}.", f"No cell holds a {one}."]
        where = cells_text(claim.cells)
        if len(claim.cells) == 1:
            return [f"The only {one} is in cell {where}.", f"Only cell {where} has a {one}."]
        return [f"The {many} are in cells {where}.", f"Cells {where} have {many}."]
    if isinstance(claim, Compare):
        a, b = claim.a, claim.b
        return {
            "more": [f"{a} is more than {b}.", f"{a} is greater than {b}."],
            "less": [f"{a} is less than {b}.", f"{a} is fewer than {b}."],
            "equal": [f"{a} is equal to {b}.", f"{a} and {b} are the same."],
        }[claim.relation]
    if isinstance(claim, OptionIs):
        text = claim.text.rstrip(".")
        return [f"{_capitalise(text)} is option {letter(claim.index)}.", f"Option {letter(claim.index)} is {text}."]
    if isinstance(claim, Answer):
        L = letter(claim.index)
        return [f"So the answer is {L}.", f"Therefore, the answer is {L}.", f"Thus, the answer is {L}."]
    raise TypeError(f"not a claim: {claim!r}")


# ---- parsing -------------------------------------------------------------------------------

_NUM = r"(\d+|no)"
_SIZE = "|".join(SIZES)
_COLOUR = "|".join(COLOURS)
_KIND = "|".join(KINDS)
_DESC = rf"(?:({_SIZE}) )?(?:({_COLOUR}) )?({_KIND}|shape)s?"
_WHERE = r"cell ([a-z])(\d+)"
_CELL_LIST = r"((?:[a-z]\d+, )*[a-z]\d+ and [a-z]\d+)"
_PATTERNS = [
    ("count", re.compile(rf"^(?:there (?:are|is)|i count|i see) {_NUM} {_DESC}$")),
    ("cell", re.compile(rf"^the shape in {_WHERE} is an? {_DESC}$")),
    ("cell", re.compile(rf"^{_WHERE} has an? {_DESC}$")),
    ("cell", re.compile(rf"^in {_WHERE} there is an? {_DESC}$")),
    ("cell_attribute", re.compile(rf"^the shape in {_WHERE} is (?:({_SIZE}) ?)?({_COLOUR})?$")),
    ("cell_named_first", re.compile(rf"^the {_DESC} is in {_WHERE}$")),
    ("empty", re.compile(rf"^{_WHERE} is empty$")),
    ("empty", re.compile(rf"^there is nothing in {_WHERE}$")),
    ("listing_none", re.compile(rf"^no cell (?:has|holds) an? {_DESC}$")),
    ("listing_one", re.compile(rf"^the only {_DESC} is in {_WHERE}$")),
    ("listing_one_cell_first", re.compile(rf"^only {_WHERE} has an? {_DESC}$")),
    ("listing", re.compile(rf"^the {_DESC} are in cells {_CELL_LIST}$")),
    ("listing_cells_first", re.compile(rf"^cells {_CELL_LIST} have {_DESC}$")),
    ("compare", re.compile(r"^(\d+) is (more|greater|less|fewer) than (\d+)$")),
    ("equal", re.compile(r"^(\d+) is equal to (\d+)$")),
    ("equal", re.compile(r"^(\d+) and (\d+) are the same$")),
    ("answer", re.compile(r"^(?:(?:so|therefore|thus|hence),? )?the answer is \(([a-e])\)$")),
    ("option_first", re.compile(r"^option \(([a-e])\) is (.+)$")),
    ("option_last", re.compile(r"^(.+) is option \(([a-e])\)$")),
]


def _row_col(column_letter: str, row_digits: str) -> tuple[int, int]:
    return int(row_digits), ord(column_letter) - ord("a") + 1


def _cell_list(text: str) -> tuple:
    return tuple(_row_col(name[0], name[1:]) for name in re.split(r", | and ", text))


def _kind(word: str) -> str | None:
    return None if word == "shape" else word


def _int(token: str) -> int:
    return 0 if token == "no" else int(token)


def parse(sentence: str) -> Claim | None:
    """The claim a sentence makes, or None when it is not one the task's language can read."""
    text = sentence_key(sentence)
    if text.startswith("solution:"):
        text = text[len("solution:") :].strip()
    if text in _STARTER_KEYS:
        return Starter(_STARTER_KEYS[text])
    for name, pattern in _PATTERNS:
        m = pattern.match(text)
        if not m:
            continue
        g = m.groups()
        if name == "count":
            return Count(_int(g[0]), g[1], g[2], _kind(g[3]))
        if name == "cell":
            return Cell(*_row_col(g[0], g[1]), g[2], g[3], _kind(g[4]))
        if name == "cell_attribute":
            if g[2] is None and g[3] is None:
                return None
            return Cell(*_row_col(g[0], g[1]), g[2], g[3], None)
        if name == "cell_named_first":
            return Cell(*_row_col(g[3], g[4]), g[0], g[1], _kind(g[2]))
        if name == "empty":
            return Cell(*_row_col(g[0], g[1]), empty=True)
        if name == "listing_none":
            return Listing((), g[0], g[1], _kind(g[2]))
        if name == "listing_one":
            return Listing((_row_col(g[3], g[4]),), g[0], g[1], _kind(g[2]))
        if name == "listing_one_cell_first":
            return Listing((_row_col(g[0], g[1]),), g[2], g[3], _kind(g[4]))
        if name == "listing":
            return Listing(_cell_list(g[3]), g[0], g[1], _kind(g[2]))
        if name == "listing_cells_first":
            return Listing(_cell_list(g[0]), g[1], g[2], _kind(g[3]))
        if name == "compare":
            relation = "more" if g[1] in ("more", "greater") else "less"
            return Compare(int(g[0]), int(g[2]), relation)
        if name == "equal":
            return Compare(int(g[0]), int(g[1]), "equal")
        if name == "answer":
            return Answer(LETTERS.lower().index(g[0]))
        if name == "option_first":
            return OptionIs(LETTERS.lower().index(g[0]), g[1])
        if name == "option_last":
            return OptionIs(LETTERS.lower().index(g[1]), g[0])
    return None


# ---- truth, topic, repair ------------------------------------------------------------------


def _same_text(a: str, b: str) -> bool:
    def norm(t):
        return re.sub(r"^(?:a|an|the) ", "", sentence_key(t))

    return norm(a) == norm(b)


def _relation(a: int, b: int) -> str:
    return "more" if a > b else "less" if a < b else "equal"


def is_true(claim: Claim, scene: Scene, choices: Sequence[str], answer: int) -> bool:
    if isinstance(claim, Starter):
        return True
    if isinstance(claim, Count):
        return claim.n == scene.count(claim.size, claim.colour, claim.kind)
    if isinstance(claim, Cell):
        if not (1 <= claim.row <= scene.rows and 1 <= claim.col <= scene.cols):
            return False
        shape = scene.at(claim.row, claim.col)
        if claim.empty or shape is None:
            return claim.empty and shape is None
        return all(
            want is None or want == have
            for want, have in ((claim.size, shape.size), (claim.colour, shape.colour), (claim.kind, shape.kind))
        )
    if isinstance(claim, Listing):
        listed = sorted(set(claim.cells))
        return len(listed) == len(claim.cells) and listed == scene.matching_cells(claim.size, claim.colour, claim.kind)
    if isinstance(claim, Compare):
        return claim.relation == _relation(claim.a, claim.b)
    if isinstance(claim, OptionIs):
        return claim.index < len(choices) and _same_text(claim.text, choices[claim.index])
    if isinstance(claim, Answer):
        return claim.index == answer
    raise TypeError(f"not a claim: {claim!r}")


def listing_overlap(claim: Listing, scene: Scene) -> float:
    """How much of a listing is right: the Jaccard index of the cells it names and the cells that
    hold such a shape (1.0 when both are empty; a cell named twice counts once)."""
    listed, matching = set(claim.cells), set(scene.matching_cells(claim.size, claim.colour, claim.kind))
    return len(listed & matching) / len(listed | matching) if listed | matching else 1.0


def topic(claim: Claim):
    """What the claim is about; two claims on one topic support the same step of reasoning."""
    if isinstance(claim, Count):
        return ("count", claim.size, claim.colour, claim.kind)
    if isinstance(claim, Cell):
        return ("cell", claim.row, claim.col)
    if isinstance(claim, Listing):
        return ("listing", claim.size, claim.colour, claim.kind)
    if isinstance(claim, Compare):
        return ("compare", min(claim.a, claim.b), max(claim.a, claim.b))
    if isinstance(claim, OptionIs):
        return ("option", claim.index)
    if isinstance(claim, Answer):
        return ("answer",)
    return ("starter",)


def made_true(claim: Claim, scene: Scene, choices: Sequence[str], answer: int) -> Claim | None:
    """`claim` with its facts replaced by the true ones; None when nothing true can be said
    about its subject (a cell outside the grid, an option that does not exist)."""
    if is_true(claim, scene, choices, answer):
        return claim
    if isinstance(claim, Count):
        return dataclasses.replace(claim, n=scene.count(claim.size, claim.colour, claim.kind))
    if isinstance(claim, Cell):
        if not (1 <= claim.row <= scene.rows and 1 <= claim.col <= scene.cols):
            return None
        shape = scene.at(claim.row, claim.col)
        if shape is None:
            return Cell(claim.row, claim.col, empty=True)
        return Cell(claim.row, claim.col, shape.size, shape.colour, shape.kind)
    if isinstance(claim, Listing):
        return dataclasses.replace(claim, cells=tuple(scene.matching_cells(claim.size, claim.colour, claim.kind)))
    if isinstance(claim, Compare):
        return dataclasses.replace(claim, relation=_relation(claim.a, claim.b))
    if isinstance(claim, OptionIs):
        for index, text in enumerate(choices):
            if _same_text(claim.text, text):
                return OptionIs(index, text)
        return OptionIs(claim.index, choices[claim.index]) if claim.index < len(choices) else None
    if isinstance(claim, Answer):
        return Answer(answer)
    raise TypeError(f"not a claim: {claim!r}")

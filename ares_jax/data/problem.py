"""`Problem`: one multiple-choice question, the record every data source produces.

The fields are ScienceQA's (question, choices, answer index, hint, image, lecture, solution,
split); `context` is the hint plus an optional caption, as MM-CoT builds it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)
class Problem:
    """A multiple-choice question with its gold rationale.

    image: the picture, for the Teachers and pixel models: uint8 pixels `[H, W, 3]`, a path to an
      image file, encoded image bytes (PNG/JPEG), or None for a text-only question.
    features: precomputed image features `[P, F]` the model reads instead of pixels (MM-CoT's
      ViT/DETR/CLIP tables), or None.
    extras: source-specific fields (ScienceQA's subject/grade, the built-in task's scene).
    """

    id: str
    question: str
    choices: tuple[str, ...]
    answer: int
    context: str = ""
    image: np.ndarray | str | bytes | None = None
    lecture: str = ""
    solution: str = ""
    split: str = "train"
    features: np.ndarray | None = None
    extras: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if not 2 <= len(self.choices) <= 26:
            raise ValueError(f"problem {self.id!r}: needs 2 to 26 choices, has {len(self.choices)}")
        if not 0 <= self.answer < len(self.choices):
            raise ValueError(f"problem {self.id!r}: answer index {self.answer} outside its {len(self.choices)} choices")

    @property
    def kind(self) -> str:
        """The question's kind (the built-in task's count, lookup, ...); "all" for sources without one."""
        return self.extras.get("question_kind", "all")

    @property
    def answer_letter(self) -> str:
        return chr(ord("A") + self.answer)

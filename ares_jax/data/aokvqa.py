"""A-OKVQA in allenai's original JSON with COCO 2017 images.

    <root>/aokvqa_v1p0_<split>.json   [{question_id, image_id, question, choices,
                                       correct_choice_idx, rationales, direct_answers,
                                       difficult_direct_answer, split}, ...]
    <coco>/<split>2017/<image_id:012>.jpg

A-OKVQA in MM-CoT's `problems.json` style goes through `scienceqa.load_problems_json`.
The gold rationale ("solution") is the annotators' rationales joined by a space, in their order;
there is no hint or lecture. The test split has no answers: use val to evaluate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from ares_jax.data.images import check_image, resolve_inside
from ares_jax.data.problem import Problem
from ares_jax.data.records import BadRecords, DataError, RecordError, optional_folder, read_json
from ares_jax.data.scienceqa import problem_from_record, read_captions

EXTRA_FIELDS = ("question_id", "image_id", "direct_answers", "difficult_direct_answer", "rationales")


def coco_image(coco: Path, split: str, image_id: int, file: Path, qid: str) -> Path:
    """`<coco>/<split>2017/<image_id:012>.jpg`, refused when missing or outside `coco`."""
    path = resolve_inside(coco, f"{split}2017/{image_id:012d}.jpg", file, qid)
    if not path.is_file():
        raise RecordError(file, qid, f"image file {path} does not exist")
    return path


def as_problems_record(record: Mapping, file: Path, qid: str) -> dict:
    """An allenai record in the fields of a `problems.json` record (what `problem_from_record` reads)."""
    if "correct_choice_idx" not in record:
        raise RecordError(file, qid, "has no correct_choice_idx (A-OKVQA's test split has no answers; evaluate on val)")
    rationales = record.get("rationales", [])
    if not isinstance(rationales, list) or not all(isinstance(r, str) for r in rationales):
        raise RecordError(file, qid, f"rationales must be a list of strings, got {rationales!r}")
    return {
        "question": record.get("question"),
        "choices": record.get("choices"),
        "answer": record.get("correct_choice_idx"),
        "hint": "",
        "lecture": "",
        "solution": " ".join(r.strip() for r in rationales),
    }


def load_aokvqa(
    root: str | Path,
    split: str,
    *,
    coco: str | Path | None = None,
    captions: str | Path | None = None,
    bad: BadRecords | None = None,
) -> list[Problem]:
    """The problems of `aokvqa_v1p0_<split>.json` in file order, ids = `question_id`; images from
    the COCO folder when given. Bad records raise RecordError naming the file and the
    question id, or are skipped and counted by `bad`."""
    root, bad = Path(root), bad or BadRecords()
    path = root / f"aokvqa_v1p0_{split}.json"
    records = read_json(path)
    if not isinstance(records, list):
        raise DataError(f"{path}: must be a list of question records")
    caption_of = read_captions(captions) if captions else {}
    coco = optional_folder(coco, "COCO image folder")
    problems = []
    for index, record in enumerate(records):
        qid = str(record.get("question_id", f"#{index}")) if isinstance(record, Mapping) else f"#{index}"
        try:
            if not isinstance(record, Mapping) or "question_id" not in record:
                raise RecordError(path, qid, "must be an object with a question_id")
            image = None
            if coco is not None:
                image_id = record.get("image_id")
                if not isinstance(image_id, int) or isinstance(image_id, bool):
                    raise RecordError(path, qid, f"image_id must be an integer, got {image_id!r}")
                image = coco_image(coco, split, image_id, path, qid)
                check_image(image, path, qid)
            problems.append(
                problem_from_record(
                    qid,
                    as_problems_record(record, path, qid),
                    path,
                    split,
                    caption_of.get(qid, ""),
                    image=None if image is None else str(image),
                    extras={name: record[name] for name in EXTRA_FIELDS if name in record},
                )
            )
        except RecordError as error:
            bad(error)
    return problems

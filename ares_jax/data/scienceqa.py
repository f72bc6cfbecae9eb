"""ScienceQA in its official layout (lupantech/ScienceQA, as MM-CoT and ARES read it).

    <root>/problems.json      qid -> {question, choices, answer, hint, image, task, grade, subject,
                              topic, category, skill, lecture, solution, split}
    <root>/pid_splits.json    {"train": [qid, ...], "val": [...], "test": [...], "minitrain": ...}
    captions file (optional)  {"captions": {qid: text}}
    image folder (optional)   <images>/<split>/<qid>/image.png   (or <images>/<qid>/image.png)
    features (optional)       <name>.npy [N, P, F] + name_map.json (qid -> row): images.FeatureTable,
                              attached by data.load.load_split

The same layout carries A-OKVQA in MM-CoT's `problems.json` style (ARES's release numbers its
questions "1".."18201"); there the `image` field may also name a COCO file directly in <images>.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ares_jax.data.images import check_image, resolve_inside
from ares_jax.data.problem import Problem
from ares_jax.data.prompts import join_context
from ares_jax.data.records import BadRecords, DataError, RecordError, optional_folder, read_json

EXTRA_FIELDS = ("task", "grade", "subject", "topic", "category", "skill")


def read_captions(path: str | Path) -> dict[str, str]:
    """A captions file `{"captions": {qid: text}}` (MM-CoT's / ScienceQA's format)."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("captions"), dict):
        raise DataError(f'{path}: a captions file must be {{"captions": {{qid: text}}}}')
    return {str(qid): str(text) for qid, text in data["captions"].items()}


def problem_from_record(
    qid: str, record: Any, file: Path | str, split: str, caption: str = "", image=None, extras: Mapping[str, Any] = ()
) -> Problem:
    """One `problems.json` (or HF parquet) record as a `Problem`; RecordError naming `file` and
    `qid` when a field is missing or wrong."""
    if not isinstance(record, Mapping):
        raise RecordError(file, qid, f"must be an object, got {type(record).__name__}")

    def field(name, kind, what, default=None):
        """The record's `name`; `default` when absent or null, an error when required."""
        value = record.get(name)
        if value is None:
            if default is None:
                raise RecordError(file, qid, f"missing field {name!r}")
            value = default
        if not isinstance(value, kind) or isinstance(value, bool):
            raise RecordError(file, qid, f"field {name!r} must be {what}, got {value!r}")
        return value

    choices = field("choices", (list, tuple), "a list")
    if not all(isinstance(choice, str) for choice in choices):
        raise RecordError(file, qid, f"every choice must be a string, got {choices!r}")
    answer = field("answer", int, "an integer")
    if not 0 <= answer < len(choices):
        raise RecordError(file, qid, f"answer index {answer} outside its {len(choices)} choices")
    if not 2 <= len(choices) <= 26:
        raise RecordError(file, qid, f"needs 2 to 26 choices, has {len(choices)}")
    hint = field("hint", str, "a string", "")
    extras = {
        **{name: record[name] for name in EXTRA_FIELDS if name in record},
        **dict(extras),
        "caption": caption,
        # ScienceQA's context categories (TXT, IMG, NO), from the record as its evaluation reads them
        "has_text": bool(hint),
        "has_image": bool(record.get("image")),
    }
    return Problem(
        id=str(qid),
        question=field("question", str, "a string"),
        choices=tuple(choices),
        answer=answer,
        context=join_context(hint, caption),
        image=image,
        lecture=field("lecture", str, "a string", ""),
        solution=field("solution", str, "a string", ""),
        split=split,
        extras=extras,
    )


def find_image(images: Path, split: str, qid: str, name: str, file: Path) -> Path:
    """The image file `name` of question `qid`: `<images>/<split>/<qid>/<name>` (the official
    layout), `<images>/<qid>/<name>` (MM-CoT's, all splits in one folder) or `<images>/<name>`
    (a flat folder such as COCO's); RecordError naming `file` and `qid` when none exists."""
    if Path(name).is_absolute() or ".." in Path(name).parts:
        raise RecordError(file, qid, f"image path {name!r} leads outside the dataset folder {images}")
    candidates = [f"{split}/{qid}/{name}", f"{qid}/{name}", name]
    for relative in candidates:
        path = resolve_inside(images, relative, file, qid)  # refuses a symbolic link pointing out
        if path.is_file():
            return path
    raise RecordError(
        file,
        qid,
        f"image file {images / candidates[0]} does not exist (nor "
        f"{images / candidates[1]} or {images / candidates[2]})",
    )


def load_problems_json(
    root: str | Path,
    split: str,
    *,
    captions: str | Path | None = None,
    images: str | Path | None = None,
    bad: BadRecords | None = None,
) -> list[Problem]:
    """The problems of `split` (any key of `pid_splits.json`: train, val, test, minitrain, ...)
    in `pid_splits.json` order, with their image files when `images` names the folder. Bad
    records raise RecordError naming the file and the qid, or are skipped and counted by `bad`."""
    root, bad = Path(root), bad or BadRecords()
    problems_path, splits_path = root / "problems.json", root / "pid_splits.json"
    records, splits = read_json(problems_path), read_json(splits_path)
    if not isinstance(records, dict):
        raise DataError(f"{problems_path}: must map question ids to records")
    if not isinstance(splits, dict) or split not in splits:
        names = ", ".join(sorted(splits)) if isinstance(splits, dict) else "none"
        raise DataError(f"{splits_path}: no split {split!r} (it has: {names})")
    caption_of = read_captions(captions) if captions else {}
    images = optional_folder(images, "image folder")
    problems = []
    for qid in map(str, splits[split]):
        if qid not in records:
            bad(RecordError(splits_path, qid, f"listed in split {split!r} but absent from {problems_path}"))
            continue
        record = records[qid]
        try:
            image = None
            name = record.get("image") if isinstance(record, Mapping) else None
            if name and images is not None:
                image = find_image(images, str(record.get("split", split)), qid, str(name), problems_path)
                check_image(image, problems_path, qid)
            problems.append(
                problem_from_record(
                    qid,
                    record,
                    problems_path,
                    split,
                    caption_of.get(qid, ""),
                    image=None if image is None else str(image),
                )
            )
        except RecordError as error:
            bad(error)
    return problems

"""Any TFDS builder as `Problem` records, for TPU users who keep their data in TFDS format
(locally or on GCS). Needs the optional `tensorflow-datasets` package, imported only here.

Reads through `tfds.data_source` (random access over ArrayRecord files, no TensorFlow graph).
`fields` maps each `Problem` field to the builder's feature name ("question=question_text");
unmapped fields take the same name. Text features arrive as bytes and are decoded as UTF-8;
an `image` feature arrives as uint8 pixels.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ares_jax.data.problem import Problem
from ares_jax.data.records import BadRecords, DataError, RecordError
from ares_jax.data.scienceqa import problem_from_record

PROBLEM_FIELDS = ("id", "question", "choices", "answer", "hint", "image", "lecture", "solution")


def parse_fields(pairs: Sequence[str]) -> dict[str, str]:
    """["question=question_text", ...] -> {problem field: feature name}, every field present."""
    mapping = {name: name for name in PROBLEM_FIELDS}
    for pair in pairs:
        field, sep, feature = pair.partition("=")
        if not sep or field.strip() not in PROBLEM_FIELDS or not feature.strip():
            raise DataError(f"data.tfds_fields: {pair!r} must be FIELD=FEATURE with FIELD one of {PROBLEM_FIELDS}")
        mapping[field.strip()] = feature.strip()
    return mapping


def _text(value):
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return _text(value.item())
    return value


def _plain(value):
    """A TFDS value as the plain Python a `problems.json` record holds."""
    if isinstance(value, np.ndarray) and value.dtype.kind in "OSU":
        return [_text(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [_text(v) for v in value]
    if isinstance(value, np.integer) or (isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind == "i"):
        return int(value)
    return _text(value)


def load_tfds(
    name: str,
    split: str,
    *,
    data_dir: str | None = None,
    fields: Mapping[str, str] | None = None,
    bad: BadRecords | None = None,
) -> list[Problem]:
    """The problems of builder `name`'s `split` (TFDS split syntax, e.g. "train[:1000]")."""
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise DataError(
            "data.source=tfds needs the `tensorflow-datasets` package: pip install 'ares-jax[tfds]'"
        ) from None
    fields, bad = fields or parse_fields(()), bad or BadRecords()
    file = f"tfds:{name}[{split}]" + (f" in {data_dir}" if data_dir else "")
    try:
        source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)  # prepared data only
    except Exception as error:  # TFDS raises its own kinds for a missing builder, split or files
        raise DataError(f"{file}: cannot open: {error}") from None
    problems = []
    for index in range(len(source)):
        example = source[index]
        qid = str(_plain(example.get(fields["id"], f"{split}/{index}")))
        record = {
            field: _plain(example[feature])
            for field, feature in fields.items()
            if field not in ("id", "image") and feature in example
        }
        image = example.get(fields["image"])
        image = np.asarray(image, np.uint8) if image is not None and np.size(image) else None
        try:
            problems.append(problem_from_record(qid, record, file, split, image=image))
        except RecordError as error:
            bad(error)
    return problems

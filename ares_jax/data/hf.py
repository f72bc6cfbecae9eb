"""ScienceQA through HF `datasets`: the hub's parquet layout (derek-thomas/ScienceQA), from a
local folder or, when the machine is online, by hub name. Needs the optional `datasets` extra.

Columns: image (PNG, or null), question, choices, answer, hint, task, grade, subject, topic,
category, skill, lecture, solution. Splits: train, validation (also called "val" here), test.
The parquet rows carry no ScienceQA question id: a problem's id is "<split>/<row>" unless the
table has an `id` column.
"""

from __future__ import annotations

from pathlib import Path

from ares_jax.data.images import check_image
from ares_jax.data.problem import Problem
from ares_jax.data.records import BadRecords, DataError, RecordError
from ares_jax.data.scienceqa import problem_from_record, read_captions

SPLIT_NAMES = {"val": "validation"}


def _datasets():
    try:
        import datasets
    except ImportError:
        raise DataError("data.source=hf needs the `datasets` package: pip install 'ares-jax[datasets]'") from None
    return datasets


def load_hf_scienceqa(
    source: str | Path,
    split: str,
    *,
    captions: str | Path | None = None,
    cache_dir: str | Path | None = None,
    bad: BadRecords | None = None,
) -> list[Problem]:
    """The problems of `split` in row order. `source`: a local folder holding the parquet files
    (`<split>-*.parquet`, optionally under `data/`) or a hub name such as
    "derek-thomas/ScienceQA" (downloads; never used by the tests)."""
    datasets, bad = _datasets(), bad or BadRecords()
    hf_split = SPLIT_NAMES.get(split, split)
    local = Path(source)
    where = str(local) if local.exists() else str(source)
    try:
        table = datasets.load_dataset(where, split=hf_split, cache_dir=None if cache_dir is None else str(cache_dir))
    except (ValueError, FileNotFoundError, OSError) as error:
        raise DataError(f"{source}: cannot load split {hf_split!r} with HF datasets: {error}") from None
    if "image" in table.column_names:
        table = table.cast_column("image", datasets.Image(decode=False))  # bytes: decoded when used
    caption_of = read_captions(captions) if captions else {}
    file = f"{source} [{hf_split}]"
    problems = []
    for row_index, row in enumerate(table):
        qid = str(row.get("id") or f"{split}/{row_index}")
        try:
            image = (row.get("image") or {}).get("bytes")
            if image is not None:
                check_image(image, file, qid)
            problems.append(problem_from_record(qid, row, file, split, caption_of.get(qid, ""), image=image))
        except RecordError as error:
            bad(error)
    return problems

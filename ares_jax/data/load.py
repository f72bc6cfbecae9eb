"""One entry point from the `data` config section to `Problem` records, whatever the source."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from ares_jax.data.images import FeatureTable
from ares_jax.data.problem import Problem
from ares_jax.data.records import BadRecords, DataError


def feature_table(data) -> FeatureTable | None:
    """The `data.features` table (its `name_map.json` beside it unless `data.name_map` says)."""
    if not data.features:
        return None
    features = Path(data.features)
    return FeatureTable(features, Path(data.name_map) if data.name_map else features.parent / "name_map.json")


def load_split(data, split: str, log: Callable[[str], None] = print) -> list[Problem]:
    """The problems of `split` from the source `data.source` names (`data` is the config's
    `DataConfig`); with `data.features`, each problem carries its precomputed features."""
    bad = BadRecords(skip=data.skip_bad_records, log=log)
    captions = data.captions or None
    images = data.images or None
    if data.source == "shapes":
        from ares_jax.data.shapes.task import make_split

        try:
            return make_split(data.shapes, split)
        except ValueError as error:
            raise DataError(f"data.source=shapes: {error}") from None
    if data.source == "scienceqa" or (data.source == "aokvqa" and (Path(data.path) / "problems.json").exists()):
        from ares_jax.data.scienceqa import load_problems_json

        problems = load_problems_json(data.path, split, captions=captions, images=images, bad=bad)
    elif data.source == "aokvqa":
        from ares_jax.data.aokvqa import load_aokvqa

        problems = load_aokvqa(data.path, split, coco=images, captions=captions, bad=bad)
    elif data.source == "hf":
        from ares_jax.data.hf import load_hf_scienceqa

        problems = load_hf_scienceqa(data.path, split, captions=captions, bad=bad)
    else:
        from ares_jax.data.tfds import load_tfds, parse_fields

        problems = load_tfds(
            data.path, split, data_dir=data.tfds_data_dir or None, fields=parse_fields(data.tfds_fields), bad=bad
        )
    table = feature_table(data)
    if table is not None:
        problems = [dataclasses.replace(p, features=table[p.id]) for p in problems]
    if bad.skipped:
        log(f"data: skipped {bad.skipped} bad records of split {split!r} (data.skip_bad_records=true)")
    if not problems:
        raise DataError(f"{data.path}: split {split!r} has no usable problems")
    return problems

"""The real-dataset loaders: ScienceQA (official layout, features, captions, image folder),
A-OKVQA (MM-CoT problems.json style and allenai JSON with COCO), HF parquet, TFDS; MM-CoT's
prompts for real records; every bad-input case names the file and the record."""

import gzip
import io
import json
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from conftest import png
from PIL import Image

from ares_jax.config import ConfigError, DataConfig, load_config
from ares_jax.data import answer_prompt, rationale_prompt, rationale_target
from ares_jax.data.aokvqa import load_aokvqa
from ares_jax.data.images import FeatureTable, load_pixels
from ares_jax.data.load import load_split
from ares_jax.data.records import BadRecords, DataError, RecordError
from ares_jax.data.scienceqa import load_problems_json

FIXTURES = Path(__file__).parent / "fixtures"


def sqa_config(tree: Path, **changes) -> DataConfig:
    values = dict(
        source="scienceqa",
        path=str(tree / "data" / "scienceqa"),
        captions=str(tree / "data" / "captions.json"),
        images=str(tree / "images"),
        features=str(tree / "vision_features" / "detr.npy"),
    )
    return DataConfig(**{**values, **changes})


def test_scienceqa_official_layout(sqa):
    data = sqa_config(sqa)
    train, test, mini = (load_split(data, split) for split in ("train", "test", "minitrain"))
    assert [p.id for p in train] == ["1", "2"] and [p.id for p in test] == ["4", "5"] and [p.id for p in mini] == ["2"]
    first = train[0]
    assert first.question == "Which of these states is farthest north?"
    assert first.choices == ("West Virginia", "Louisiana", "Arizona", "Oklahoma") and first.answer == 0
    assert first.context == "A map of the United States."  # empty hint + caption
    assert Path(first.image) == (sqa / "images" / "train" / "1" / "image.png").resolve()
    assert first.extras["skill"] == "Read a map: cardinal directions" and first.extras["grade"] == "grade2"
    assert first.lecture.startswith("Maps have four cardinal directions") and first.split == "train"
    np.testing.assert_array_equal(first.features, np.arange(12, dtype=np.float32).reshape(3, 4))
    assert train[1].image is None and not train[1].features.any() and train[1].features.shape == (3, 4)
    np.testing.assert_array_equal(test[0].features, np.arange(12, 24, dtype=np.float32).reshape(3, 4))
    assert (
        test[0].context
        == "Ospreys eat fish.  Their feet are adapted for grabbing prey.\nFigure: osprey. A bird with its wings spread."
    )
    np.testing.assert_array_equal(load_pixels(test[0].image), np.asarray(Image.open(io.BytesIO(png(4)))))


def test_mmcot_image_folder_without_split_level(sqa):
    """MM-CoT / ARES keep every split's images in one folder: images/<qid>/image.png."""
    flat = sqa / "flat"
    for split, qid in [("train", "1"), ("test", "4")]:
        shutil.copytree(sqa / "images" / split / qid, flat / qid)
    (problem,) = load_problems_json(sqa / "data" / "scienceqa", "train", images=flat)[:1]
    assert Path(problem.image) == (flat / "1" / "image.png").resolve()


# MM-CoT's prompts (utils_prompt.build_train_pair, QCM-E and QCMG-A), written out by hand for two
# real records: ScienceQA "1" and A-OKVQA 22MexNkBPpdZGX6sxbxVBH.
SQA_1_RATIONALE_PROMPT = (
    "Question: Which of these states is farthest north?\n"
    "Context: A map of the United States.\n"
    "Options: (A) West Virginia (B) Louisiana (C) Arizona (D) Oklahoma\n"
    "Solution:"
)
SQA_1_TARGET = (
    "Solution: To find the answer, look at the compass rose. Look at which way the north arrow is "
    "pointing. West Virginia is farthest north."
)
SQA_1_TARGET_WITH_LECTURE = (
    "Solution: Maps have four cardinal directions, or main directions. Those directions are north, south, east, "
    "and west.\\nA compass rose is a set of arrows that point to the cardinal directions. A compass rose usually "
    "shows only the first letter of each cardinal direction.\\nThe north arrow points to the North Pole. On most "
    "maps, north is at the top of the map. To find the answer, look at the compass rose. Look at which way the "
    "north arrow is pointing. West Virginia is farthest north."
)
SQA_1_ANSWER_PROMPT = (
    "Question: Which of these states is farthest north?\n"
    "Context: A map of the United States.\n"
    "Options: (A) West Virginia (B) Louisiana (C) Arizona (D) Oklahoma\n"
    "Solution: West Virginia is farthest north.\n"
    "Answer:"
)
AOKVQA_RATIONALE_PROMPT = (
    "Question: What is the man by the bags awaiting?\n"
    "Context: N/A\n"
    "Options: (A) skateboarder (B) train (C) delivery (D) cab\n"
    "Solution:"
)
AOKVQA_ANSWER_PROMPT = (
    "Question: What is the man by the bags awaiting?\n"
    "Context: N/A\n"
    "Options: (A) skateboarder (B) train (C) delivery (D) cab\n"
    "Solution: He has bags. So a cab is the answer.\n"
    "Answer:"
)


def test_prompts_of_two_real_records(sqa):
    sqa_1 = load_split(sqa_config(sqa), "train")[0]
    assert rationale_prompt(sqa_1) == SQA_1_RATIONALE_PROMPT
    assert rationale_target(sqa_1) == SQA_1_TARGET
    assert rationale_target(sqa_1, with_lecture=True) == SQA_1_TARGET_WITH_LECTURE
    # the rationale arrives as the rationale stage wrote it, "Solution:" tag and all
    assert answer_prompt(sqa_1, "Solution: West Virginia is farthest north.") == SQA_1_ANSWER_PROMPT
    assert answer_prompt(sqa_1, "West Virginia is farthest north.") == SQA_1_ANSWER_PROMPT
    aokvqa = load_aokvqa(FIXTURES / "aokvqa" / "allenai", "train")[0]
    assert rationale_prompt(aokvqa) == AOKVQA_RATIONALE_PROMPT
    assert answer_prompt(aokvqa, "Solution: He has bags.  So a cab is the answer.") == AOKVQA_ANSWER_PROMPT
    assert rationale_target(aokvqa) == "Solution: " + aokvqa.extras["rationales"][0]


def test_prompt_without_caption_and_with_hint(sqa):
    test = load_split(sqa_config(sqa, captions=""), "test")
    assert rationale_prompt(test[1]) == (
        "Question: What is the temperature of a warm bowl of soup?\nContext: Select the better estimate.\n"
        "Options: (A) 45°F (B) 45°C\nSolution:"
    )
    # one pass of "  " -> " " over the whole prompt, as MM-CoT
    assert "Ospreys eat fish. Their feet" in rationale_prompt(test[0])


def _same_problem(a, b):
    fields = ("question", "choices", "answer", "context", "lecture", "solution", "split")
    assert {f: getattr(a, f) for f in fields} == {f: getattr(b, f) for f in fields}
    if a.image is None:
        assert b.image is None
    else:
        np.testing.assert_array_equal(load_pixels(a.image), load_pixels(b.image))


def write_hf_parquet(sqa: Path, qids, split="train") -> Path:
    """The records `qids` of the fixture in the HF hub's ScienceQA parquet layout."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = json.loads((sqa / "data" / "scienceqa" / "problems.json").read_text())
    rows = []
    for qid in qids:
        row = dict(records[qid])
        name, record_split = row.pop("image"), row.pop("split")
        row["image"] = (
            None if not name else {"bytes": (sqa / "images" / record_split / qid / name).read_bytes(), "path": None}
        )
        rows.append(row)
    folder = sqa / "hf" / "data"
    folder.mkdir(parents=True, exist_ok=True)
    hf_split = {"val": "validation"}.get(split, split)
    pq.write_table(pa.Table.from_pylist(rows), folder / f"{hf_split}-00000-of-00001.parquet")
    return sqa / "hf"


def test_same_problem_from_official_layout_and_hf_parquet(sqa, tmp_path):
    pytest.importorskip("datasets")
    official = load_split(sqa_config(sqa, captions="", features=""), "train")
    hf = load_split(DataConfig(source="hf", path=str(write_hf_parquet(sqa, ["1", "2"]))), "train")
    assert [p.id for p in hf] == ["train/0", "train/1"]
    assert isinstance(hf[0].image, bytes) and hf[1].image is None
    for a, b in zip(official, hf, strict=True):
        _same_problem(a, b)
        assert a.extras == b.extras


def test_same_problem_from_aokvqa_allenai_json_and_problems_json(tmp_path):
    coco, images = tmp_path / "coco", tmp_path / "images"
    ids = {"1": 299207, "2": 42}
    for qid, image_id in ids.items():
        (coco / "train2017").mkdir(parents=True, exist_ok=True)
        jpeg = io.BytesIO()
        Image.open(io.BytesIO(png(image_id % 200))).save(jpeg, format="JPEG")
        (coco / "train2017" / f"{image_id:012d}.jpg").write_bytes(jpeg.getvalue())
        (images / qid).mkdir(parents=True)
        (images / qid / "image.png").write_bytes(jpeg.getvalue())  # MM-CoT's folder holds the same picture
    allenai = load_split(
        DataConfig(source="aokvqa", path=str(FIXTURES / "aokvqa" / "allenai"), images=str(coco)), "train"
    )
    mmcot = load_split(
        DataConfig(source="aokvqa", path=str(FIXTURES / "aokvqa" / "mmcot"), images=str(images)), "train"
    )
    assert [p.id for p in allenai] == ["22MexNkBPpdZGX6sxbxVBH", "fixture0000000000000001"]
    assert [p.id for p in mmcot] == ["1", "2"]
    assert Path(allenai[0].image) == (coco / "train2017" / "000000299207.jpg").resolve()
    assert allenai[1].solution == "There is snow on the ground. People wear heavy coats. Snow falls in winter."
    for a, b in zip(allenai, mmcot, strict=True):
        _same_problem(a, b)


def _real(name: str, folder: Path, as_name: str) -> Path:
    """A real file from `tests/fixtures/real/` (copied unchanged from ../shared/fixtures, gzipped)
    written into `folder` under `as_name`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / as_name).write_bytes(gzip.decompress((FIXTURES / "real" / f"{name}.gz").read_bytes()))
    return folder / as_name


def test_real_split_lists(tmp_path):
    """The real ScienceQA and A-OKVQA `pid_splits.json` with our few records: every listed id
    without a record is a bad record, skipped and counted when asked."""
    sqa = tmp_path / "scienceqa"
    _real("scienceqa_pid_splits.json", sqa, "pid_splits.json")
    shutil.copy(FIXTURES / "scienceqa" / "problems.json", sqa / "problems.json")
    with pytest.raises(RecordError, match=r"pid_splits.json: record '3': listed in split 'train' but absent"):
        load_problems_json(sqa, "train")
    bad = BadRecords(skip=True, log=lambda line: None)
    train = load_problems_json(sqa, "train", bad=bad)
    assert [p.id for p in train] == ["1", "2"] and bad.skipped == 12726 - 2
    assert [p.id for p in load_problems_json(sqa, "test", bad=BadRecords(skip=True, log=len))] == ["4", "5"]
    aokvqa = tmp_path / "aokvqa"
    _real("aokvqa_pid_splits.json", aokvqa, "pid_splits.json")
    shutil.copy(FIXTURES / "aokvqa" / "mmcot" / "problems.json", aokvqa / "problems.json")
    bad = BadRecords(skip=True, log=lambda line: None)
    assert [p.id for p in load_problems_json(aokvqa, "val", bad=bad)] == ["17057"] and bad.skipped == 1144


def test_real_name_map_with_a_feature_table(tmp_path):
    """MM-CoT's real `name_map.json` (11,208 ScienceQA questions with an image) over a feature
    table of that many rows."""
    name_map = _real("scienceqa_name_map.json", tmp_path, "name_map.json")
    rows = len(json.loads(name_map.read_text()))
    np.save(tmp_path / "vit.npy", np.arange(rows, dtype=np.float16)[:, None, None] * np.ones((1, 2, 3), np.float16))
    table = FeatureTable(tmp_path / "vit.npy", name_map)
    assert table.shape == (2, 3) and len(table.rows) == rows == 11208
    assert table["21208"][0, 0] == 11207 and table["1"][0, 0] == 0
    assert not table["4"].any()  # test question "4" has no image: zeros, as MM-CoT


# ---------------------------------------------------------------- bad input


def test_missing_files_are_named(sqa):
    (sqa / "data" / "scienceqa" / "problems.json").unlink()
    with pytest.raises(DataError, match=r"scienceqa/problems.json: file not found"):
        load_split(sqa_config(sqa), "train")
    with pytest.raises(DataError, match=r"captions.json: file not found"):
        load_split(sqa_config(sqa, path=str(FIXTURES / "scienceqa"), captions=str(sqa / "captions.json")), "train")
    with pytest.raises(DataError, match=r"name_map.json: file not found"):
        FeatureTable(sqa / "vision_features" / "detr.npy", sqa / "nowhere" / "name_map.json")
    with pytest.raises(DataError, match=r"pid_splits.json: no split 'dev' \(it has: minitest, minitrain"):
        load_problems_json(FIXTURES / "scienceqa", "dev")
    with pytest.raises(DataError, match=r"aokvqa_v1p0_dev.json: file not found"):
        load_aokvqa(FIXTURES / "aokvqa" / "allenai", "dev")


def _edit_problems(sqa: Path, edit):
    path = sqa / "data" / "scienceqa" / "problems.json"
    records = json.loads(path.read_text())
    edit(records)
    path.write_text(json.dumps(records))
    return path


@pytest.mark.parametrize(
    "case, match",
    [
        ("absent", r"pid_splits.json: record '2': listed in split 'train' but absent from .*problems.json"),
        ("answer", r"problems.json: record '2': answer index 2 outside its 2 choices"),
        ("no_image", r"problems.json: record '1': image file .*images/train/1/photo.png does not exist"),
        ("corrupt", r"problems.json: record '1': image .*image.png is not a readable image"),
        ("truncated", r"problems.json: record '1': image .*image.png is not a readable image"),
        ("escape", r"problems.json: record '1': image path '../../secret.png' leads outside the dataset folder"),
        ("absolute", r"problems.json: record '1': image path '/etc/passwd' leads outside the dataset folder"),
        ("link", r"problems.json: record '1': image path .* leads outside the dataset folder"),
        ("field", r"problems.json: record '2': missing field 'question'"),
        ("type", r"problems.json: record '2': field 'answer' must be an integer, got '0'"),
    ],
)
def test_bad_records_name_file_and_record(sqa, tmp_path, case, match):
    image = sqa / "images" / "train" / "1" / "image.png"
    if case == "absent":
        _edit_problems(sqa, lambda r: r.pop("2"))
    elif case == "answer":
        _edit_problems(sqa, lambda r: r["2"].update(answer=2))
    elif case == "no_image":
        _edit_problems(sqa, lambda r: r["1"].update(image="photo.png"))
    elif case == "corrupt":
        image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 4)
    elif case == "truncated":
        image.write_bytes(png(1, size=(40, 40))[:-30])
    elif case == "escape":
        (sqa / "secret.png").write_bytes(png(9))
        _edit_problems(sqa, lambda r: r["1"].update(image="../../secret.png"))
    elif case == "absolute":
        _edit_problems(sqa, lambda r: r["1"].update(image="/etc/passwd"))
    elif case == "link":
        (tmp_path / "outside.png").write_bytes(png(9))
        image.unlink()
        image.symlink_to(tmp_path / "outside.png")
    elif case == "field":
        _edit_problems(sqa, lambda r: r["2"].pop("question"))
    elif case == "type":
        _edit_problems(sqa, lambda r: r["2"].update(answer="0", lecture=None))  # a null lecture is allowed
    with pytest.raises(RecordError, match=match):
        load_split(sqa_config(sqa), "train")
    # with skip_bad_records the bad record is dropped with a warning and counted; the rest loads
    lines = []
    problems = load_split(sqa_config(sqa, skip_bad_records=True), "train", log=lines.append)
    assert len(problems) == 1 and len(lines) == 2
    assert lines[0].startswith("warning: skipped bad record: ") and "record '" in lines[0]
    assert lines[1] == "data: skipped 1 bad records of split 'train' (data.skip_bad_records=true)"


def test_feature_rows_must_match_the_name_map(sqa):
    np.save(sqa / "vision_features" / "detr.npy", np.zeros((3, 3, 4), np.float32))
    with pytest.raises(DataError, match=r"name_map.json: maps 2 question ids but .*detr.npy has 3 feature rows"):
        load_split(sqa_config(sqa), "train")
    (sqa / "vision_features" / "name_map.json").write_text(json.dumps({"1": "0", "4": "7", "5": "1"}))
    with pytest.raises(RecordError, match=r"name_map.json: record '4': row 7 outside the 3 feature rows"):
        load_split(sqa_config(sqa), "train")


def test_pytorch_features_are_refused_with_the_conversion(sqa):
    (sqa / "vision_features" / "vit.pth").write_bytes(b"\x80\x02 pickled")
    with pytest.raises(DataError, match=r"vit.pth: PyTorch feature files are not read .* numpy.save"):
        FeatureTable(sqa / "vision_features" / "vit.pth", sqa / "vision_features" / "name_map.json")
    with pytest.raises(ConfigError, match=r"data.features: .*vit.pth is a PyTorch file"):
        load_config(None, ["data.source=scienceqa", "data.path=x", "data.features=vision_features/vit.pth"])


def test_aokvqa_bad_records(tmp_path):
    with pytest.raises(
        RecordError,
        match=r"aokvqa_v1p0_test.json: record 'fixture0000000000000003': has no "
        r"correct_choice_idx \(A-OKVQA's test split has no answers",
    ):
        load_aokvqa(FIXTURES / "aokvqa" / "allenai", "test")
    (tmp_path / "coco" / "train2017").mkdir(parents=True)
    with pytest.raises(
        RecordError,
        match=r"aokvqa_v1p0_train.json: record '22MexNkBPpdZGX6sxbxVBH': image file "
        r".*train2017/000000299207.jpg does not exist",
    ):
        load_aokvqa(FIXTURES / "aokvqa" / "allenai", "train", coco=tmp_path / "coco")


def test_an_empty_split_is_an_error(sqa):
    path = sqa / "data" / "scienceqa" / "pid_splits.json"
    path.write_text(json.dumps({"train": [], "test": ["4"]}))
    with pytest.raises(DataError, match=r"scienceqa: split 'train' has no usable problems"):
        load_split(sqa_config(sqa), "train")


def test_loading_writes_nothing_into_the_dataset(sqa):
    before = sorted((p, p.stat().st_mtime_ns) for p in sqa.rglob("*"))
    load_split(sqa_config(sqa), "train")
    assert sorted((p, p.stat().st_mtime_ns) for p in sqa.rglob("*")) == before


# ---------------------------------------------------------------- TFDS (no TensorFlow here)


class _FakeSource(list):
    pass


def test_tfds_field_mapping_with_a_stand_in_module(monkeypatch):
    """`tensorflow-datasets` is not installed in CI; a stand-in module with the one call the
    loader makes (`data_source`) checks the field mapping and the bytes decoding."""
    opened = {}

    def data_source(name, *, split, data_dir, download):
        opened.update(name=name, split=split, data_dir=data_dir, download=download)
        return _FakeSource(
            [
                {
                    "qid": b"q1",
                    "question_text": b"Which is red?",
                    "options": np.array([b"apple", b"sky"], dtype=object),
                    "label": np.int64(0),
                    "hint": b"",
                    "solution": b"Apples are red.",
                    "image": np.zeros((2, 2, 3), np.uint8),
                },
                {
                    "qid": b"q2",
                    "question_text": b"Bad",
                    "options": np.array([b"a", b"b"], dtype=object),
                    "label": np.int64(5),
                    "hint": b"",
                    "solution": b"",
                    "image": np.zeros((2, 2, 3), np.uint8),
                },
            ]
        )

    monkeypatch.setitem(sys.modules, "tensorflow_datasets", types.SimpleNamespace(data_source=data_source))
    data = DataConfig(
        source="tfds",
        path="my_scienceqa:1.0.0",
        tfds_data_dir="gs://bucket/tfds",
        tfds_fields=("id=qid", "question=question_text", "choices=options", "answer=label"),
        skip_bad_records=True,
    )
    lines = []
    (problem,) = load_split(data, "train[:2]", log=lines.append)
    assert opened == {
        "name": "my_scienceqa:1.0.0",
        "split": "train[:2]",
        "data_dir": "gs://bucket/tfds",
        "download": False,
    }
    assert (problem.id, problem.question, problem.choices, problem.answer, problem.solution) == (
        "q1",
        "Which is red?",
        ("apple", "sky"),
        0,
        "Apples are red.",
    )
    assert problem.image.shape == (2, 2, 3)
    assert "tfds:my_scienceqa:1.0.0[train[:2]] in gs://bucket/tfds: record 'q2': answer index 5 outside" in lines[0]


def test_tfds_and_hf_missing_packages_say_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(DataError, match=r"pip install 'ares-jax\[tfds\]'"):
        load_split(DataConfig(source="tfds", path="x"), "train")
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(DataError, match=r"pip install 'ares-jax\[datasets\]'"):
        load_split(DataConfig(source="hf", path="x"), "train")
    with pytest.raises(DataError, match=r"tfds_fields: 'question' must be FIELD=FEATURE"):
        load_split(DataConfig(source="tfds", path="x", tfds_fields=("question",)), "train")

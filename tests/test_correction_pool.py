"""`correction.pool=answer_only`: the Teacher corrects only training questions whose gold rationale
the SFT stages do not learn; the start-up error when there are none."""

import json

import pytest
from conftest import TINY_SHAPES_RUN, stopped_at_start_up

from ares_jax.config import ConfigError, load_config
from ares_jax.data.shapes import ShapesTaskConfig, make_split
from ares_jax.loop import phases
from ares_jax.main import main

TRAIN = make_split(ShapesTaskConfig(train_size=64), "train")


def test_the_pool_is_every_training_problem_or_those_without_a_gold_rationale():
    assert phases.correction_pool(TRAIN, load_config(None, ["data.gold_rationales=40"])) == TRAIN
    answer_only = load_config(None, ["data.gold_rationales=40", "correction.pool=answer_only"])
    assert phases.correction_pool(TRAIN, answer_only) == TRAIN[40:]
    # the built-in task's share: a quarter of 64 answer-only
    assert phases.correction_pool(TRAIN, load_config(None, ["correction.pool=answer_only"])) == TRAIN[48:]
    every_gold = load_config(None, ["data.gold_rationales=64", "correction.pool=answer_only"])
    with pytest.raises(ConfigError, match="correction.pool=answer_only: every one of the 64 training problems"):
        phases.correction_pool(TRAIN, every_gold)


def test_an_ares_run_corrects_only_answer_only_questions(tmp_path, capsys):
    args = [
        f"workdir={tmp_path}",
        *TINY_SHAPES_RUN,
        "rationale.steps=6",
        "data.gold_rationales=40",
        "correction.pool=answer_only",
        "correction.questions=30",  # the 24 answer-only questions, 6 of them twice
    ]
    assert main(args) == 0
    assert (
        "note: correction.questions=30 is more than the 24 questions of correction.pool=answer_only: "
        "some are corrected more than once a round"
    ) in capsys.readouterr().out
    corrected = [row["id"] for row in json.loads((tmp_path / "corrections" / "round_1.json").read_text())]
    assert len(corrected) == 30 and set(corrected) == {p.id for p in TRAIN[40:]}
    markdown = (tmp_path / "report.md").read_text()
    assert "Correction SFT: the Teacher's corrections of 30 rationales of answer-only questions, 4 steps" in markdown


def test_no_answer_only_question_stops_at_start_up(tmp_path, capsys):
    err = stopped_at_start_up(tmp_path, capsys, "correction.pool=answer_only")
    assert "bad configuration: correction.pool=answer_only: every one of the 64 training problems has a gold" in err

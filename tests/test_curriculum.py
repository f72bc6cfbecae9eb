"""The rationale SFT's curriculum (`rationale.first_kinds` / `first_steps`): which problems its
first steps see, and the start-up error when the training split has none of them (a run with a
curriculum: tests/test_loop.py, the baseline-only run)."""

from collections import Counter

from conftest import TINY_SHAPES_RUN

from ares_jax.config import RationaleConfig
from ares_jax.data.shapes import ShapesTaskConfig, make_split
from ares_jax.main import main
from ares_jax.sft.curriculum import first_stage_problems

TRAIN = make_split(ShapesTaskConfig(train_size=64), "train")


def test_first_stage_problems_are_those_of_the_chosen_kinds():
    curriculum = RationaleConfig(steps=100, batch_size=4, first_kinds=("count", "compare"), first_steps=5)
    chosen = first_stage_problems(TRAIN, curriculum)
    kinds = Counter(p.extras["question_kind"] for p in TRAIN)
    assert len(chosen) == kinds["count"] + kinds["compare"] > 0
    assert {p.extras["question_kind"] for p in chosen} == {"count", "compare"}
    assert all(p.question.startswith(("How many", "Are there more", "Which group")) for p in chosen)
    assert first_stage_problems(TRAIN, RationaleConfig()) == []  # no curriculum


def test_a_curriculum_without_its_problems_stops_at_start_up_naming_the_key(tmp_path, capsys):
    args = [f"workdir={tmp_path / 'run'}", *TINY_SHAPES_RUN, "data.shapes.kinds=[lookup]", "rationale.steps=6"]
    assert main([*args, "rationale.first_kinds=[count]", "rationale.first_steps=3"]) == 2
    err = capsys.readouterr().err
    assert "bad configuration: rationale.first_kinds ['count']: 0 training problems, fewer than one batch (8)" in err
    assert "the training split's kinds: lookup (64)" in err
    assert not (tmp_path / "run" / "checkpoints").exists()  # stopped before anything was written

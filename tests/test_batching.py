"""From problems to token batches."""

import jax
import numpy as np
import pytest

from ares_jax.data import answer_target
from ares_jax.data.batching import (
    StackedRows,
    answer_examples,
    batch_at,
    build_tokenizer,
    encode_prompts,
    encode_sft,
    fixed_batches,
    rationale_examples,
    stack_images,
)
from ares_jax.data.problem import Problem
from ares_jax.data.shapes import ShapesTaskConfig, make_split
from ares_jax.data.shapes.scene import COLOURS, KINDS, SIZES, Scene, Shape, cell_feature_dim, cell_features, render
from ares_jax.parallel import batch_sharding, make_mesh, put_batch


@pytest.fixture(scope="module")
def problems():
    return make_split(ShapesTaskConfig(), "train", 200)


@pytest.fixture(scope="module")
def tokenizer(problems):
    return build_tokenizer(problems, 400)


def test_tokenizer_round_trips_the_task_text(problems, tokenizer):
    prompts, targets = rationale_examples(problems[:20])
    for text in prompts + targets:
        assert tokenizer.decode(tokenizer.encode(text)) == text


def test_sft_batch_shifts_targets_right_after_the_start_token(problems, tokenizer):
    prompts, targets = rationale_examples(problems[:4])
    batch = encode_sft(tokenizer, prompts, targets, stack_images(problems[:4]), 80, 64, decoder_start_token_id=0)
    labels, mask = batch["labels"], batch["label_mask"]
    np.testing.assert_array_equal(batch["decoder_input_ids"][:, 0], 0)
    np.testing.assert_array_equal(batch["decoder_input_ids"][:, 1:], labels[:, :-1])
    for row, target in enumerate(targets):
        n = int(mask[row].sum())
        assert tokenizer.decode(labels[row, :n]) == target and labels[row, n - 1] == tokenizer.eos_id
    assert batch["image"].shape == (4, 48, 48, 3) and batch["input_ids"].shape == (4, 80)


def test_rationale_examples_mix_given_rationales_with_gold_ones(problems):
    """The correction SFT's set with correction.gold_questions: corrections, then gold rationales."""
    prompts, targets = rationale_examples(problems[:3], ["It is red.", "Solution: So (A).", None])
    assert targets[:2] == ["Solution: It is red.", "Solution: So (A)."]
    assert targets[2] == rationale_examples(problems[2:3])[1][0] and targets[2].startswith("Solution: ")
    assert prompts == rationale_examples(problems[:3])[0]
    with pytest.raises(ValueError):
        rationale_examples(problems[:3], ["one rationale for three problems"])


def test_answer_examples_pair_rationale_with_answer(problems):
    prompts, targets = answer_examples(problems[:2], ["It is red.", "Solution: So (A)."])
    assert prompts[0].endswith("Solution: It is red.\nAnswer:") and prompts[1].endswith("Solution: So (A).\nAnswer:")
    assert targets == [answer_target(p) for p in problems[:2]]


def test_images_must_be_all_or_none(problems):
    text_only = Problem("t1", "?", ("a", "b"), 0)
    assert stack_images([text_only, text_only]) is None
    with pytest.raises(ValueError, match="'t1' has no image array"):
        stack_images([problems[0], text_only])
    with pytest.raises(ValueError, match="3 images for 2 prompts"):
        encode_prompts(build_tokenizer(problems[:5], 300), ["a", "b"], np.zeros((3, 2)), 4)


def test_training_batches_cover_each_epoch_once_and_fixed_batches_pad():
    arrays = {"x": np.arange(10)}
    epochs = [np.concatenate([batch_at(arrays, 3, 0, step)["x"] for step in range(e * 3, e * 3 + 3)]) for e in (0, 1)]
    for epoch in epochs:
        assert len(set(epoch.tolist())) == 9  # 3 full batches of 3, the leftover row dropped
    assert epochs[0].tolist() != epochs[1].tolist()  # a fresh order each epoch
    np.testing.assert_array_equal(batch_at(arrays, 3, 0, 4)["x"], batch_at(arrays, 3, 0, 4)["x"])  # pure in step
    assert batch_at(arrays, 3, 1, 0)["x"].tolist() != batch_at(arrays, 3, 0, 0)["x"].tolist()
    with pytest.raises(ValueError, match="fewer than one batch"):
        batch_at(arrays, 11, 0, 0)
    got = list(fixed_batches(arrays, 4))
    assert [real for _, real in got] == [4, 4, 2]
    np.testing.assert_array_equal(got[-1][0]["x"], [8, 9, 0, 0])


def test_cell_features_carry_what_the_pixels_show(problems):
    # hand-worked: a 2x3 grid with a large red circle in A1 and a small blue triangle in C2
    scene = Scene(2, 3, {(1, 1): Shape("large", "red", "circle"), (2, 3): Shape("small", "blue", "triangle")})
    features = cell_features(render(scene), rows=2, cols=3)
    #                 red green blue yellow | circle square triangle | small large | empty | row 1 2 | col 1 2 3
    a1 = np.array([1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 1, 0, 1, 0, 0], np.float32)
    b1 = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 0], np.float32)
    c2 = np.array([0, 0, 1, 0, 0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 1], np.float32)
    assert features.shape == (6, cell_feature_dim(2, 3)) == (6, 15)
    np.testing.assert_array_equal(features[[0, 1, 5]], [a1, b1, c2])
    # the task's images: features from the pixels agree with the generator's scene record
    for p in problems[:50]:
        features, scene = cell_features(p.image), p.extras["scene"]
        for index, row_features in enumerate(features):
            shape = scene.at(index // 3 + 1, index % 3 + 1)
            assert row_features[9] == (shape is None)
            if shape is not None:
                assert row_features[COLOURS.index(shape.colour)] == 1 and row_features[4 + KINDS.index(shape.kind)] == 1
                assert row_features[7 + SIZES.index(shape.size)] == 1 and row_features[:9].sum() == 3


def test_stacked_rows_read_only_the_rows_asked_for():
    read = []

    class Row:  # a memory-mapped row that records being read
        def __init__(self, i):
            self.i, self.shape, self.dtype = i, (2, 3), np.dtype(np.float32)

        def __array__(self, dtype=None, copy=None):
            read.append(self.i)
            return np.full(self.shape, self.i, np.float32)

    table = StackedRows([Row(i) for i in range(10)])
    assert table.shape == (10, 2, 3) and len(table) == 10
    batch = table[np.array([7, 2, 5, 0])]  # a training batch's rows: nothing read yet
    assert isinstance(batch, StackedRows) and batch.shape == (4, 2, 3) and read == []
    shard = batch[(slice(1, 3), slice(None), slice(None))]  # what one device of the mesh asks for
    assert read == [2, 5] and shard.shape == (2, 2, 3) and (shard[:, 0, 0] == [2, 5]).all()
    read.clear()
    assert np.array_equal(np.asarray(batch)[:, 0, 0], [7, 2, 5, 0]) and read == [7, 2, 5, 0]
    assert np.array_equal(batch[3], np.zeros((2, 3)))
    laid = put_batch({"image": batch}, batch_sharding(make_mesh(-1, 1, 1)))["image"]
    assert isinstance(laid, jax.Array) and np.array_equal(np.asarray(laid)[:, 0, 0], [7, 2, 5, 0])
    first, real = next(fixed_batches({"image": table}, 4))
    assert real == 4 and np.array_equal(np.asarray(first["image"])[:, 0, 0], [0, 1, 2, 3])

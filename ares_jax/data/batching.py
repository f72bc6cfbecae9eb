"""From `Problem` records to the numpy batches the jitted steps take (host side, no JAX)."""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from ares_jax.data.problem import Problem
from ares_jax.data.prompts import answer_prompt, answer_target, rationale_prompt, rationale_target
from ares_jax.text.tokenizer import Tokenizer, train_bpe_tokenizer


def build_tokenizer(problems: Sequence[Problem], vocab_size: int) -> Tokenizer:
    """A byte-level BPE tokenizer trained on the prompts, rationales and answers of `problems`."""
    corpus = []
    for p in problems:
        corpus += [rationale_prompt(p), rationale_target(p, with_lecture=True), answer_target(p)]
    return train_bpe_tokenizer(corpus, vocab_size)


class StackedRows:
    """Per-example arrays (memory-mapped feature rows) as one `[N, ...]` array, read when used:
    indexing with row numbers (a batch's rows) gives another StackedRows; a slice (what
    `put_batch` asks for each device) or `np.asarray` reads and stacks just those rows. So a
    process of a multi-host run reads from disk only its own devices' rows of each batch."""

    def __init__(self, rows: Sequence):
        if not len(rows):
            raise ValueError("StackedRows needs at least one row")
        self.rows = list(rows)
        self.shape = (len(self.rows), *np.shape(self.rows[0]))
        self.dtype = self.rows[0].dtype

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key):
        if isinstance(key, (np.ndarray, list)):
            return StackedRows([self.rows[i] for i in np.asarray(key).tolist()])
        first, rest = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        if isinstance(first, slice):
            return np.stack(self.rows[first])[(slice(None), *rest)]
        return np.asarray(self.rows[first])[rest]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        stacked = np.stack(self.rows)
        return stacked if dtype is None else stacked.astype(dtype)


def stack_images(problems: Sequence[Problem]) -> np.ndarray | None:
    """`[B, ...]` image array (pixels or features) of problems that all have one; None when none
    has one; an error naming the first problem without one when only some do."""
    images = [p.image for p in problems]
    if all(image is None for image in images):
        return None
    for p, image in zip(problems, images):
        if not isinstance(image, np.ndarray):
            raise ValueError(
                f"problem {p.id!r} has no image array (got {type(image).__name__}); a batch must be all "
                "images or all text-only"
            )
    return np.stack(images)


def encode_prompts(tokenizer: Tokenizer, prompts: Sequence[str], images: np.ndarray | None, max_length: int) -> dict:
    """`input_ids`, `attention_mask` `[B, max_length]` int32, and `image` `[B, ...]` unless None."""
    ids, mask = tokenizer.batch_encode(prompts, max_length)
    batch = {"input_ids": ids, "attention_mask": mask}
    if images is not None:
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images for {len(prompts)} prompts")
        batch["image"] = images
    return batch


def encode_sft(
    tokenizer: Tokenizer,
    prompts: Sequence[str],
    targets: Sequence[str],
    images: np.ndarray | None,
    max_source_length: int,
    max_target_length: int,
    decoder_start_token_id: int = 0,
) -> dict:
    """A teacher-forcing batch: prompts as `encode_prompts`, plus `decoder_input_ids` (targets
    shifted right after the start token), `labels` and `label_mask` `[B, max_target_length]`."""
    batch = encode_prompts(tokenizer, prompts, images, max_source_length)
    labels, label_mask = tokenizer.batch_encode(targets, max_target_length)
    decoder_input_ids = np.concatenate(
        [np.full((len(targets), 1), decoder_start_token_id, np.int32), labels[:, :-1]], axis=1
    )
    return dict(batch, decoder_input_ids=decoder_input_ids, labels=labels, label_mask=label_mask)


def rationale_examples(problems: Sequence[Problem], rationales: Sequence[str | None] | None = None):
    """(prompts, targets) of the rationale stage; targets are the gold solutions unless given
    (a None among `rationales`: that problem's gold solution)."""
    prompts = [rationale_prompt(p) for p in problems]
    rationales = [None] * len(problems) if rationales is None else rationales
    targets = [
        rationale_target(p) if r is None else r if r.startswith("Solution:") else f"Solution: {r}"
        for p, r in zip(problems, rationales, strict=True)
    ]
    return prompts, targets


def answer_examples(problems: Sequence[Problem], rationales: Sequence[str]):
    """(prompts, targets) of the answer stage: question + rationale -> "The answer is (X)."."""
    return [answer_prompt(p, r) for p, r in zip(problems, rationales)], [answer_target(p) for p in problems]


def batch_at(arrays: dict, batch_size: int, seed: int, step: int) -> dict:
    """Training batch number `step` of `batch_size` rows: each epoch a fresh permutation (from
    `seed` and the epoch), the last partial batch of an epoch dropped (fixed shapes). A pure
    function of `step`, so a resumed run continues the same data order without replaying it."""
    n = len(next(iter(arrays.values())))
    if n < batch_size:
        raise ValueError(f"{n} examples are fewer than one batch of {batch_size}")
    per_epoch = n // batch_size
    epoch, index = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(n)
    rows = order[index * batch_size : (index + 1) * batch_size]
    return {key: value[rows] for key, value in arrays.items()}


def fixed_batches(arrays: dict, batch_size: int) -> Iterator[tuple[dict, int]]:
    """Batches in order for inference, the last one padded by repeating row 0 to `batch_size`
    (fixed shapes); yields (batch, number of real rows)."""
    n = len(next(iter(arrays.values())))
    for start in range(0, n, batch_size):
        rows = np.arange(start, min(start + batch_size, n))
        real = len(rows)
        rows = np.concatenate([rows, np.zeros(batch_size - real, rows.dtype)])
        yield {key: value[rows] for key, value in arrays.items()}, real

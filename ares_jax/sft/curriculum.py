"""Which training problems the SFT stages see (host side): those with a gold rationale, and the
rationale SFT's curriculum (its first steps)."""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from ares_jax.config import ConfigError, DataConfig, RationaleConfig, gold_count
from ares_jax.data.problem import Problem


def gold_problems(train: Sequence[Problem], data: DataConfig) -> Sequence[Problem]:
    """The training problems whose gold rationales the SFT stages learn (the baseline's rationale
    and answer models, SFT-more, `correction.gold_questions`): the first `gold_count` of the
    training split. The others are questions with an answer only, for RL and the Teacher's
    corrections. A ConfigError naming the key when the split has fewer problems."""
    count = gold_count(data.source, data.gold_rationales, len(train), data.shapes.gold_share)
    if count == len(train):
        return train
    if count > len(train):
        raise ConfigError(
            f"data.gold_rationales={count}: the training split ({data.train_split}) has only {len(train)} problems"
        )
    return train[:count]


def first_stage_problems(train: Sequence[Problem], rationale: RationaleConfig) -> list[Problem]:
    """The training problems of `rationale.first_kinds` (the curriculum's first
    `rationale.first_steps` steps); empty without a curriculum. A ConfigError naming the key when
    they do not fill one batch, with the kinds the training split has."""
    if not rationale.first_steps:
        return []
    chosen = [p for p in train if p.kind in rationale.first_kinds]
    if len(chosen) < rationale.batch_size:
        kinds = Counter(p.kind for p in train)
        raise ConfigError(
            f"rationale.first_kinds {list(rationale.first_kinds)}: {len(chosen)} training problems, fewer than one "
            f"batch ({rationale.batch_size}); the training split's kinds: "
            + ", ".join(f"{kind} ({n})" for kind, n in sorted(kinds.items()))
        )
    return chosen

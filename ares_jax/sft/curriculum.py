"""The rationale SFT's curriculum: which training problems its first steps see (host side)."""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from ares_jax.config import ConfigError, RationaleConfig
from ares_jax.data.problem import Problem


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

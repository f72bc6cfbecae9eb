"""Data: the `Problem` record, prompt formats, the built-in shapes task (knows nothing of models)."""

from ares_jax.data.problem import Problem
from ares_jax.data.prompts import (
    answer_prompt,
    answer_target,
    join_context,
    parse_answer,
    rationale_prompt,
    rationale_target,
    strip_solution_tag,
)

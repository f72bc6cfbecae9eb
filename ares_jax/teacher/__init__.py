"""AI Teachers: sentence scores, corrections and pairwise judgements (knows nothing of JAX)."""

from ares_jax.teacher.base import Teacher, Verdict, run_batch
from ares_jax.teacher.parsing import TeacherFormatError, parse_sentence_scores
from ares_jax.teacher.rule import RuleTeacher

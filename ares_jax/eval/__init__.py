"""Evaluation: answer accuracy, Teacher-judged win rate, ROUGE-L and fluency defects."""

from ares_jax.eval.metrics import answer_accuracy, fluency, mean_rouge_l, rouge_l, win_rate

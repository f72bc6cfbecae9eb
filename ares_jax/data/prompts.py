"""MM-CoT's two prompt formats: rationale ("QCM-E") and answer ("QCMG-A").

    Question: <question>\nContext: <context>\nOptions: (A) x (B) y\nSolution:
      -> "Solution: <rationale>"
    ... the same ... Solution: <rationale>\nAnswer:
      -> "The answer is (B)."

As MM-CoT builds them (`utils_prompt.build_train_pair`): the context is the hint and the
optional caption joined by a space, "N/A" when both are empty; line breaks inside the lecture and
solution are written as the two characters backslash-n; each prompt has one pass of "  " -> " "
and is stripped. (MM-CoT's data loader then also collapses all whitespace before tokenizing;
T5's SentencePiece tokenizer does the same, so that step is left to the tokenizer.)
"""

from __future__ import annotations

import re

from ares_jax.data.problem import Problem

SOLUTION_TAG = "Solution:"


def options_text(choices) -> str:
    return " ".join(f"({chr(ord('A') + i)}) {choice}" for i, choice in enumerate(choices))


def join_context(hint: str, caption: str = "") -> str:
    """`Problem.context` as MM-CoT builds it: hint and image caption joined by a space, stripped
    (the prompt writes "N/A" when it is empty)."""
    return " ".join([hint, caption]).strip()


def _escape_newlines(text: str) -> str:
    return text.replace("\n", "\\n")


def _tidy(text: str) -> str:
    return text.replace("  ", " ").strip()


def _question_block(problem: Problem) -> str:
    context = problem.context.strip() or "N/A"
    return f"Question: {problem.question}\nContext: {context}\nOptions: {options_text(problem.choices)}\n"


def rationale_prompt(problem: Problem) -> str:
    return _tidy(_question_block(problem) + SOLUTION_TAG)


def rationale_target(problem: Problem, with_lecture: bool = False) -> str:
    """The gold rationale as the model writes it: "Solution: <solution>" (MM-CoT's "E"), or with
    the lecture first (its "LE")."""
    parts = (problem.lecture, problem.solution) if with_lecture else (problem.solution,)
    body = " ".join(_escape_newlines(part.strip()) for part in parts if part.strip())
    return _tidy(f"{SOLUTION_TAG} {body}")


def strip_solution_tag(rationale: str) -> str:
    text = rationale.strip()
    return text[len(SOLUTION_TAG) :].strip() if text.startswith(SOLUTION_TAG) else text


def answer_prompt(problem: Problem, rationale: str) -> str:
    return _tidy(_question_block(problem) + f"{SOLUTION_TAG} {strip_solution_tag(rationale)}\nAnswer:")


def answer_target(problem: Problem) -> str:
    return f"The answer is ({problem.answer_letter})."


_ANSWER = re.compile(r"answer is \(([A-Z])\)")


def parse_answer(text: str, num_choices: int) -> int:
    """The option index named by "The answer is (X)." in `text`; -1 when absent or out of range."""
    match = _ANSWER.search(text)
    if not match:
        return -1
    index = ord(match.group(1)) - ord("A")
    return index if index < num_choices else -1

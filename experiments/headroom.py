"""How much can RL gain over a trained rationale model? Greedy against sampled rationales on the
validation split of the built-in task.

    python experiments/headroom.py workdir=RUN [key=value ...] [--temperatures 1.0,0.7] [--k 4]

RUN is a finished run (a `rounds=0` baseline, or any run: its latest policy and answer models are
read, nothing is written there). For each sampling temperature it prints, on the validation
split: the greedy answer accuracy and mean sentence score, the same for sampled rationales, pass@k
(a right conclusion among the k samples of a question), the sentence score by claim type, and the
mean length. RL sharpens what sampling already finds: pass@k above greedy accuracy is the headroom.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict

import jax
import numpy as np

from ares_jax.config import load_config_args
from ares_jax.data.load import load_split
from ares_jax.data.prompts import parse_answer
from ares_jax.data.shapes import claims as C
from ares_jax.loop.generation import infer_answers, write_rationales
from ares_jax.loop.rollout import collect_samples
from ares_jax.loop.run import plan, setup
from ares_jax.loop.state import StopSignals
from ares_jax.teacher.base import run_batch
from ares_jax.text.sentences import split_sentences


def claim_type(sentence: str) -> str:
    claim = C.parse(sentence)
    return "unparsed" if claim is None else type(claim).__name__


def summarise(problems, rationales, answers, scores) -> dict:
    by_type = defaultdict(list)
    for rationale, row in zip(rationales, scores):
        for sentence, score in zip(split_sentences(rationale), row or []):
            by_type[claim_type(sentence)].append(score)
    return {
        "accuracy": float(np.mean([a == p.answer for a, p in zip(answers, problems)])),
        "sentence_score": float(np.mean([np.mean(s) for s in scores if s])),
        "sentences": float(np.mean([len(s or []) for s in scores])),
        "score_by_claim": {k: [round(float(np.mean(v)), 3), len(v)] for k, v in sorted(by_type.items())},
    }


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--temperatures", default="1.0")
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--questions", type=int, default=500)
    args, overrides = parser.parse_known_args(argv)
    config = load_config_args(overrides)
    steps = plan(config)
    run = setup(config, lambda message: print(message, file=sys.stderr), StopSignals(), [name for name, _ in steps])
    state = run.resume()
    policy, answer = state.models.policy, state.models.answer
    problems = load_split(config.data, "val")[: args.questions]
    teacher = run.teacher

    def score(rationales, repeated):
        return run_batch(
            teacher.score_sentences,
            [(p, split_sentences(r)) for p, r in zip(repeated, rationales)],
            8,
            stats=teacher.stats,
        )

    greedy = write_rationales(run.policy_model, policy, run.tokenizer, problems, config)
    greedy_answers = infer_answers(run.answer_model, answer, run.tokenizer, problems, greedy, config)
    result = {"greedy": summarise(problems, greedy, greedy_answers, score(greedy, problems))}
    for temperature in map(float, args.temperatures.split(",")):
        texts = collect_samples(run, policy, problems, jax.random.key(1), args.k, temperature, config.rl.top_k)
        repeated = [p for p in problems for _ in range(args.k)]
        answers = infer_answers(run.answer_model, answer, run.tokenizer, repeated, texts, config)
        concluded = np.array([parse_answer(t, len(p.choices)) == p.answer for t, p in zip(texts, repeated)])
        summary = summarise(repeated, texts, answers, score(texts, repeated))
        summary["pass_at_k"] = float(concluded.reshape(-1, args.k).any(axis=1).mean())
        summary["concluded_right"] = float(concluded.mean())
        result[f"sampled_T{temperature}"] = summary
    json.dump(result, sys.stdout, indent=1)
    print()
    run.close()  # frees the work directory's lock


if __name__ == "__main__":
    main()

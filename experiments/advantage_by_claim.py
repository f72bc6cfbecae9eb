"""Which sentences does the first PPO update push up or down? The advantages of one rollout buffer
from a trained rationale model, averaged over each sentence's tokens and grouped by claim type.

    python experiments/advantage_by_claim.py baseline_from=RUN [key=value ...] [--batches 2] [--warmup-batches 0]

RUN is a finished `rounds=0` run (its baseline policy is read; nothing is written there; the
script's own work directory is a temporary one). The
rollouts, the Teacher's scores and the advantages are the RL round's own (`collect_rollout` with the
value model as a round starts: the policy's trunk and a fresh head). Prints, per claim type: how
many sentences, their mean Teacher score, and the mean advantage of their tokens (as the PPO loss
sees it: after whitening when `ppo.whiten_advantages`), the first sentence of a rationale apart.
`--warmup-batches N`: first train the value model alone on N other rollout batches, as
`rl.value_warmup_batches` does.
A zero-reward sentence kind whose tokens get negative advantages on average is one RL learns to drop.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import jax
import numpy as np

from ares_jax.config import load_config_args
from ares_jax.data.prompts import strip_solution_tag
from ares_jax.data.shapes import claims as C
from ares_jax.loop.phases import _questions
from ares_jax.loop.rollout import collect_rollout
from ares_jax.loop.run import BASELINE_PHASES, plan, setup
from ares_jax.loop.state import StopSignals, copy_tree
from ares_jax.models import init_params, transplant
from ares_jax.parallel import to_host
from ares_jax.teacher.rule import RuleTeacher
from ares_jax.text.sentences import response_segments
from ares_jax.train_state import TrainState


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--warmup-batches", type=int, default=0)
    args, overrides = parser.parse_known_args(argv)
    workdir = tempfile.mkdtemp(prefix="advantage_by_claim_")
    config = load_config_args([*overrides, f"workdir={workdir}", "method=rl_only", "rounds=1"])
    run = setup(config, lambda message: print(message, file=sys.stderr), StopSignals(), [n for n, _ in plan(config)])
    policy = run.start_from_baseline(Path(config.baseline_from), BASELINE_PHASES).models.policy
    value = transplant(policy, init_params(run.value_model, jax.random.key(config.seed + 2)))
    optimizer, _, value_step, scoring, _ = run.rl_trainer()
    rl = config.rl
    questions = _questions(run, (args.warmup_batches + args.batches) * rl.prompts_per_rollout, 1, 0)
    warmup, questions = (
        questions[: args.warmup_batches * rl.prompts_per_rollout],
        questions[args.warmup_batches * rl.prompts_per_rollout :],
    )
    train_state = TrainState.create(copy_tree({"policy": policy, "value": value}), optimizer)
    for start in range(0, len(warmup), rl.prompts_per_rollout):
        buffer, _ = collect_rollout(
            run,
            train_state.params,
            policy,
            warmup[start : start + rl.prompts_per_rollout],
            jax.random.key(100 + start),
            config.ppo.kl_coef,
            scoring,
        )
        for epoch in range(rl.epochs):
            order = np.random.default_rng([start, epoch]).permutation(rl.prompts_per_rollout * rl.k_samples)
            for first in range(0, len(order), rl.minibatch_size):
                rows = jax.numpy.asarray(order[first : first + rl.minibatch_size])
                train_state, _ = value_step(train_state, jax.tree_util.tree_map(lambda x: x[rows], buffer))
    value = train_state.params["value"]
    teacher = RuleTeacher()
    groups = defaultdict(lambda: [[], []])  # claim type -> (scores, mean advantages)
    for batch_index in range(args.batches):
        problems = questions[
            batch_index * config.rl.prompts_per_rollout : (batch_index + 1) * config.rl.prompts_per_rollout
        ]
        buffer, _ = collect_rollout(
            run,
            {"policy": policy, "value": value},
            policy,
            problems,
            jax.random.key(batch_index),
            config.ppo.kl_coef,
            scoring,
        )
        lengths = to_host(buffer["response_mask"]).sum(axis=1)
        _, sentences, segment_ids = response_segments(run.tokenizer, to_host(buffer["tokens"]), lengths)
        advantages = to_host(buffer["advantages"])
        repeated = [p for p in problems for _ in range(config.rl.k_samples)]
        for row, (problem, row_sentences) in enumerate(zip(repeated, sentences)):
            texts = [strip_solution_tag(s) for s in row_sentences]
            scores = teacher.sentence_scores(problem, texts)
            for index, (text, score) in enumerate(zip(texts, scores)):
                on = segment_ids[row] == index
                if not on.any():
                    continue
                claim = C.parse(text)
                kind = "unparsed" if claim is None else type(claim).__name__
                for key in (kind, "(first sentence)" if index == 0 else "(later sentences)"):
                    groups[key][0].append(score)
                    groups[key][1].append(float(advantages[row][on].mean()))
    print("| sentence | n | mean score | mean advantage of its tokens |\n|---|---|---|---|")
    for kind, (scores, advantage) in sorted(groups.items()):
        print(f"| {kind} | {len(scores)} | {np.mean(scores):.3f} | {np.mean(advantage):+.3f} |")
    run.close()  # frees the work directory's lock


if __name__ == "__main__":
    main()

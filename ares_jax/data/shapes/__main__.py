"""`python -m ares_jax.data.shapes [--split test] [--index 0] [--png out.png]`: show one problem of
the built-in task (its text, its rule-Teacher scores, and its image as a PNG)."""

import argparse

from ares_jax.data.prompts import rationale_prompt
from ares_jax.data.shapes.scene import save_png
from ares_jax.data.shapes.task import ShapesTaskConfig, make_problem
from ares_jax.teacher.rule import RuleTeacher
from ares_jax.text.sentences import split_sentences

parser = argparse.ArgumentParser(prog="python -m ares_jax.data.shapes", description=__doc__)
parser.add_argument("--split", default="test", choices=("train", "val", "test"))
parser.add_argument("--index", type=int, default=0)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--png", help="write the image here (scaled x4)")
args = parser.parse_args()

problem = make_problem(ShapesTaskConfig(seed=args.seed), args.split, args.index)
print(rationale_prompt(problem))
print(f"Gold rationale: {problem.solution}")
sentences = split_sentences(problem.solution)
print(f"Rule Teacher scores: {RuleTeacher().sentence_scores(problem, sentences)}")
print(f"Answer: ({problem.answer_letter}) {problem.choices[problem.answer]}")
if args.png:
    save_png(problem.image, args.png, scale=4)
    print(f"image: {args.png}")

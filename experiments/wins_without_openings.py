"""How much of a win rate is the neutral opening sentences: the rule Teacher's judgements of run
A's rationales against run B's on the same problems, as written and with every neutral opening
("Let's count the shapes.", a `Starter` claim, score 0.5) taken out of both.

    python experiments/wins_without_openings.py A/eval/rl_2.json B/eval/baseline.json [--split test] [key=value ...]

Files and problems as for `experiments/steps_table.py`. The judgements are the report's
(`ares_jax.eval.win_rate`: each pair judged in both orders, a tie half a win); the rule judge orders
rationales by a right conclusion, then the mean sentence score, less 0.25 per fluency defect
(`RuleTeacher.quality`).
"""

from __future__ import annotations

from steps_table import files_and_problems, rationales

from ares_jax.data.prompts import strip_solution_tag
from ares_jax.data.shapes import claims as C
from ares_jax.eval import win_rate
from ares_jax.teacher.rule import RuleTeacher
from ares_jax.text.sentences import split_sentences


def without_openings(rationale: str) -> str:
    """`rationale` without its neutral opening sentences (the solution tag dropped too)."""
    sentences = split_sentences(strip_solution_tag(rationale))
    return " ".join(s for s in sentences if not isinstance(C.parse(s), C.Starter))


def paired_win_rate(teacher: RuleTeacher, problems: dict, rows_a: dict, rows_b: dict) -> dict[str, float]:
    """`ares_jax.eval.win_rate` of A's rationales over B's ({id: rationale} each) on the problems
    both hold."""
    ids = sorted(rows_a.keys() & rows_b.keys())
    return win_rate(teacher, [problems[i] for i in ids], [rows_a[i] for i in ids], [rows_b[i] for i in ids])


def main(argv=None):
    args, config, problems = files_and_problems(argv)
    if len(args.files) != 2:
        raise SystemExit("give two evaluation files: A's and B's")
    teacher = RuleTeacher(config.teacher.rule_listing_credit)
    rows_a, rows_b = (rationales(path) for path in args.files)
    print(f"{args.files[0]} against {args.files[1]} ({args.split})")
    for label, change in (("as written", lambda text: text), ("without neutral openings", without_openings)):
        stripped_a = {i: change(text) for i, text in rows_a.items()}
        stripped_b = {i: change(text) for i, text in rows_b.items()}
        judged = paired_win_rate(teacher, problems, stripped_a, stripped_b)
        print(
            f"  {label}: {judged['win_rate']:.1%} ({judged['wins']:.0f} wins, {judged['ties']:.0f} ties, "
            f"{judged['losses']:.0f} losses of {judged['judgements']:.0f} judgements)"
        )


if __name__ == "__main__":
    main()

"""The rule Teacher's sentence scores of an evaluation, by the kind of claim each sentence makes:
how many of each a rationale holds on average and their mean score (a listing naming no cell is
counted apart from one naming cells; "none" is text that is no claim).

    python experiments/scores_by_claim.py RUN/eval/LABEL.json [...] [--split test|val|train] [key=value ...]

Files and problems as for `experiments/steps_table.py` (the round's own questions, `eval/rl_<r>_seen_<n>.json`,
are training problems: `--split train`)."""

from __future__ import annotations

from collections import defaultdict

from steps_table import files_and_problems, read_rows

from ares_jax.data.prompts import strip_solution_tag
from ares_jax.data.shapes import claims as C
from ares_jax.teacher.rule import RuleTeacher
from ares_jax.text.sentences import split_sentences


def claim_kind(claim) -> str:
    if claim is None:
        return "none"
    if isinstance(claim, C.Listing) and not claim.cells:
        return "empty listing"
    return type(claim).__name__


def by_claim(rows: list[dict], problems: dict, teacher: RuleTeacher) -> dict[str, list[float]]:
    """{claim kind: the scores of every sentence of that kind} over `rows`."""
    scores = defaultdict(list)
    for row in rows:
        sentences = split_sentences(strip_solution_tag(row["rationale"]))
        for sentence, score in zip(sentences, teacher.sentence_scores(problems[row["id"]], sentences)):
            scores[claim_kind(C.parse(sentence))].append(score)
    return scores


def main(argv=None):
    args, config, problems = files_and_problems(argv)
    teacher = RuleTeacher(config.teacher.rule_listing_credit)
    for path in args.files:
        rows = read_rows(path)
        scores = by_claim(rows, problems, teacher)
        print(f"\n{path} ({args.split}, {len(rows)} rationales)\n")
        print("| claim | per rationale | mean score |\n|---|---|---|")
        for kind, values in sorted(scores.items(), key=lambda item: -len(item[1])):
            print(f"| {kind} | {len(values) / len(rows):.2f} | {sum(values) / len(values):.3f} |")


if __name__ == "__main__":
    main()

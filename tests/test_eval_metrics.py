"""Evaluation metrics on hand-worked examples."""

import numpy as np
import pytest

from ares_jax.data.shapes import ShapesTaskConfig, make_split
from ares_jax.eval import answer_accuracy, fluency, mean_rouge_l, rouge_l, win_rate
from ares_jax.teacher import RuleTeacher, Teacher
from ares_jax.text import repeated_ngram_rate, sentence_key


def test_answer_accuracy():
    assert answer_accuracy([0, 2, -1, 1], [0, 1, 1, 1]) == 0.5
    with pytest.raises(ValueError, match="3 predictions for 2 problems"):
        answer_accuracy([0, 1, 2], [0, 1])


def test_rouge_l_hand_worked():
    # LCS "the cat on the mat" = 5 of 6 tokens each way: P = R = F = 5/6
    assert rouge_l("The cat sat on the mat.", "the cat is on the mat") == pytest.approx(5 / 6)
    # LCS "a c" = 2; P = 2/4, R = 2/3, F = 2PR/(P+R) = 4/7
    assert rouge_l("a b c d", "a c e") == pytest.approx(4 / 7)
    assert rouge_l("x y", "a b") == 0.0 and rouge_l("", "a") == 0.0
    assert rouge_l("same words here", "Same, words: here!") == 1.0
    assert mean_rouge_l(["a b c d", "x"], ["a c e", "x"]) == pytest.approx((4 / 7 + 1) / 2)


def test_fluency_defect_rates_hand_worked():
    rationales = [
        "There are 2 dogs. There are 2 dogs! So yes.",  # repeated sentence (end marks ignored)
        "one two three one two three.",  # 3-grams: 123 231 312 123 -> 1 repeat of 4
        "Dogs run. Cats",  # unfinished
        "Fine.",
    ]
    got = fluency(rationales)
    assert got["repeated_sentence"] == 0.25
    assert got["unfinished"] == 0.25
    # rationale 1: "there are 2 dogs there are 2 dogs so yes": 8 trigrams, "there are 2", "are 2 dogs" repeat
    expected_first = 2 / 8
    assert repeated_ngram_rate(rationales[0]) == pytest.approx(expected_first)
    assert got["repeated_ngram"] == pytest.approx((expected_first + 0.25 + 0 + 0) / 4)
    assert fluency([]) == {"repeated_sentence": 0.0, "repeated_ngram": 0.0, "unfinished": 0.0}
    assert sentence_key("  So the answer is (B).") == "so the answer is (b)"


class FirstAlwaysWins(Teacher):
    """A Teacher with pure position bias."""

    async def score_sentences(self, problem, sentences):
        return [0.5] * len(sentences)

    async def correct(self, problem, rationale):
        return rationale

    async def judge(self, problem, a, b):
        return "a"


def test_win_rate_cancels_position_bias_and_counts_ties_half():
    problems = make_split(ShapesTaskConfig(), "test", 6)
    golds = [p.solution for p in problems]
    broken = [p.solution.split(".")[0] for p in problems]  # first sentence cut, no conclusion
    assert win_rate(FirstAlwaysWins(), problems, golds, broken)["win_rate"] == 0.5
    rule = RuleTeacher()
    result = win_rate(rule, problems, golds, broken, concurrency=2)
    assert result == {"win_rate": 1.0, "ci95": [1.0, 1.0], "wins": 12.0, "ties": 0.0, "losses": 0.0, "judgements": 12.0}
    assert win_rate(rule, problems, broken, golds)["win_rate"] == 0.0
    assert win_rate(rule, problems, golds, golds)["win_rate"] == 0.5
    with pytest.raises(ValueError, match="one rationale from each model"):
        win_rate(rule, problems, golds, broken[:2])


def test_mean_with_ci95_by_hand():
    from ares_jax.eval.metrics import mean_with_ci95

    # values 1, 0, 1, 0: mean 0.5, sample std sqrt(1/3), half width 1.96 * 0.57735 / 2 = 0.5658.
    mean, low, high = mean_with_ci95([1, 0, 1, 0])
    assert mean == 0.5 and abs(low - (0.5 - 0.565803)) < 1e-6 and abs(high - (0.5 + 0.565803)) < 1e-6
    assert mean_with_ci95([0.25]) == (0.25, 0.25, 0.25) and mean_with_ci95([]) == (0.0, 0.0, 0.0)


def test_correctness_difference_by_hand():
    from ares_jax.eval.metrics import correctness_difference

    # A right on problems 0 and 2, B right on 1 and 2; problem 3 wrong for both (an unparsed -1).
    np.testing.assert_array_equal(correctness_difference([0, 2, 1, -1], [1, 1, 1, 2], [0, 1, 1, 0]), [1, -1, 0, 0])
    with pytest.raises(ValueError, match="3 and 2 predictions for 3 problems"):
        correctness_difference([0, 1, 2], [0, 1], [0, 1, 2])


def test_the_report_names_the_rl_settings():
    from ares_jax.config import load_config_args, to_dict
    from ares_jax.eval.report import _rl_settings_lines

    group = to_dict(load_config_args(["method=rl_only", "ppo.advantage=group", "ppo.whiten_advantages=false"]))
    assert _rl_settings_lines(group)[0] == (
        "RL: rewards at sentence ends, group-relative sentence advantages (no critic), advantages not whitened, "
        "KL coefficient 0.0001, learning rate 0.0001, 4 PPO epochs per rollout batch, sampling temperature 1.0."
    )
    bonus = to_dict(load_config_args(["ppo.entropy_coef=0.05", "rl.keep_best=accuracy"]))
    assert _rl_settings_lines(bonus)[0].endswith(
        "sampling temperature 1.0, entropy bonus 0.05; each round ends with its policy of best validation accuracy."
    )
    monte_carlo = to_dict(load_config_args(["ppo.value_lambda=1.0"]))
    assert _rl_settings_lines(monte_carlo)[0].startswith(
        "RL: rewards at sentence ends, GAE (gamma 1.0, lambda 0.95) over the value model (its targets with "
        "lambda 1.0), warmed up alone on the first 2 rollout batches, advantages whitened"
    )
    assert "targets" not in _rl_settings_lines(to_dict(load_config_args(["ppo.value_lambda=0.95"])))[0]
    both = to_dict(load_config_args(["ppo.value_lambda=1.0", "rl.value_learning_rate=0.001"]))
    assert (
        "over the value model (its targets with lambda 1.0, its own learning rate 0.001), warmed up"
        in (_rl_settings_lines(both)[0])
    )
    assert _rl_settings_lines(to_dict(load_config_args(["rounds=0"]))) == []
    assert _rl_settings_lines(to_dict(load_config_args(["method=sft_more"]))) == []


def test_the_report_names_the_share_of_gold_rationales():
    from ares_jax.config import load_config_args, to_dict
    from ares_jax.eval.report import _gold_rationale_lines

    assert _gold_rationale_lines(to_dict(load_config_args([]))) == [
        "Gold rationales: the SFT stages learnt those of the first 3000 of the 4000 training questions; the others "
        "have their answer only (RL and the Teacher's corrections ask about every one).",
        "",
    ]
    assert (
        "first 2000 of the 4000" in _gold_rationale_lines(to_dict(load_config_args(["data.gold_rationales=2000"])))[0]
    )
    assert _gold_rationale_lines(to_dict(load_config_args(["data.shapes.gold_share=1.0"]))) == []
    older = to_dict(load_config_args([]))
    del older["data"]["shapes"]["gold_share"]  # a report written before the key: every gold rationale
    assert _gold_rationale_lines(older) == []
    dataset = to_dict(load_config_args(["data.source=scienceqa", "data.path=x"]))
    assert _gold_rationale_lines(dataset) == []  # a dataset's every gold rationale (its size is not in the config)
    dataset["data"]["gold_rationales"] = 500
    assert _gold_rationale_lines(dataset)[0].startswith(
        "Gold rationales: the SFT stages learnt those of the first 500 "
    )


def test_non_neutral_mean_by_hand():
    from ares_jax.eval.evaluate import non_neutral_mean

    # per rationale: (1.0 + 0.8) / 2, nothing but neutral (left out), (0.0 + 0.4) / 2, no sentence (left out)
    assert non_neutral_mean([[0.5, 1.0, 0.8], [0.5], [0.0, 0.5, 0.4], []]) == pytest.approx((0.9 + 0.2) / 2)
    assert non_neutral_mean([[0.5, 0.5], []]) is None


def test_where_neutral_sentences_stand_moves_the_sentence_score_and_not_the_non_neutral_one():
    """Gold rationales (every sentence above 0.5) and wrong ones (below): a neutral opening put
    before the gold ones only lowers their mean sentence score, put before the wrong ones raises
    it; the score without neutral sentences is the same either way (the Teacher's scores, not a
    copy of its rule: evaluate asks the rule Teacher)."""
    from ares_jax.data.prompts import strip_solution_tag
    from ares_jax.data.shapes import claims as C
    from ares_jax.eval.evaluate import evaluate
    from ares_jax.text import split_sentences

    problems = [p for p in make_split(ShapesTaskConfig(), "train", 40) if p.solution][:6]
    gold = [
        " ".join(s for s in split_sentences(strip_solution_tag(p.solution)) if not isinstance(C.parse(s), C.Starter))
        for p in problems
    ]
    wrong = [f"The answer is ({'BA'[p.answer != 0]})." for p in problems]  # a false conclusion, score < 0.5
    opening = C.STARTERS[0]

    def scores(gold_texts, wrong_texts):
        metrics = evaluate([*gold_texts, *wrong_texts], [0] * 12, [*problems, *problems], RuleTeacher(), 4)
        return metrics["mean_sentence_score"], metrics["mean_non_neutral_score"]

    plain = scores(gold, wrong)
    placed_well = scores(gold, [f"{opening} {t}" for t in wrong])  # openings where the rest scores low
    placed_badly = scores([f"{opening} {t}" for t in gold], wrong)
    assert placed_badly[0] < plain[0] < placed_well[0]
    assert placed_well[1] == pytest.approx(plain[1]) and placed_badly[1] == pytest.approx(plain[1])


def test_curves_png_gives_each_curve_its_own_panel():
    """Every RL panel holds its rounds' curve and nothing else; the SFT losses and the test
    accuracy have panels of their own (a panel added to RL_PANELS once pushed the value loss
    under the SFT losses)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ares_jax.eval.report import RL_PANELS, _figure

    curves = {f"rl_{r}/{metric}": [[0, 0.1 * r], [1, 0.2 * r]] for r in (1, 2) for metric, _ in RL_PANELS}
    curves |= {"rationale_sft/loss": [[0, 2.0], [10, 1.0]], "answer_sft/loss": [[0, 1.0], [10, 0.5]]}
    phases = {"baseline": {"answer_accuracy": 0.5}, "rl_1": {"answer_accuracy": 0.6}}
    figure = _figure({"curves": curves, "phases": phases}, plt)
    by_title = {axis.get_title(): axis for axis in figure.axes if axis.axison}
    assert list(by_title) == [title for _, title in RL_PANELS] + ["SFT losses", "test answer accuracy per phase"]
    for metric, title in RL_PANELS:
        lines = by_title[title].get_lines()
        assert [line.get_label() for line in lines] == ["rl_1", "rl_2"]
        assert [list(line.get_ydata()) for line in lines] == [[0.1, 0.2], [0.2, 0.4]]
    assert [line.get_label() for line in by_title["SFT losses"].get_lines()] == ["rationale_sft", "answer_sft"]
    plt.close(figure)

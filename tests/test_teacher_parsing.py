"""Parsing Teacher replies: what real models send, and what must be refused."""

import pytest

from ares_jax.teacher import TeacherFormatError, parse_sentence_scores

SENTENCES = ["There are 2 red circles.", "2 is more than 1.", "There are 2 red circles.", "So the answer is (A)."]


@pytest.mark.parametrize(
    "reply, expected",
    [
        # a plain object, keys exactly the sentences (identical keys kept, one score each)
        (
            '{"There are 2 red circles.": 1.0, "2 is more than 1.": 0.5, "There are 2 red circles.": 0.0, '
            '"So the answer is (A).": 1.0}',
            [1.0, 0.5, 0.0, 1.0],
        ),
        # fenced, surrounded by prose, numbered keys, numbers as strings
        (
            'Sure! Here are the scores:\n```json\n{"1. There are 2 red circles.": "0.9", "2. 2 is more than 1.": "0.5",'
            ' "3. There are 2 red circles.": "0.0", "4. So the answer is (A).": "1"}\n```\nHope this helps.',
            [0.9, 0.5, 0.0, 1.0],
        ),
        # reworded keys: matched by position since the counts agree
        ('{"two red circles": 0.8, "more than": 0.6, "repeat": 0, "answer": 1}', [0.8, 0.6, 0.0, 1.0]),
        # keys naming the sentences in another order: matched by text, repeats occurrence by occurrence
        (
            '{"So the answer is (A)": 1.0, "There are 2 red circles": 0.7, "2 is more than 1": 0.5, '
            '"There are 2 red circles": 0.1}',
            [0.7, 0.5, 0.1, 1.0],
        ),
        # a bare list, a list of objects, a list of pairs, a wrapping key
        ("[0.1, 0.2, 0.3, 0.4]", [0.1, 0.2, 0.3, 0.4]),
        (
            '{"scores": [{"sentence": "a", "score": 0.3}, {"sentence": "b", "score": 0.4}, {"sentence": "c", '
            '"score": 0.5}, {"sentence": "d", "score": 0.6}]}',
            [0.3, 0.4, 0.5, 0.6],
        ),
        ('[["a", 0.3], ["b", 1], ["c", 0], ["d", "0.5"]]', [0.3, 1.0, 0.0, 0.5]),
        ('The JSON: {"result": {"a": 0.2, "b": 0.2, "c": 0.2, "d": 0.2}} -- end', [0.2, 0.2, 0.2, 0.2]),
    ],
)
def test_accepts_what_real_models_return(reply, expected):
    assert parse_sentence_scores(reply, SENTENCES) == expected


@pytest.mark.parametrize(
    "reply, message",
    [
        ("", "empty reply"),
        ("   \n", "empty reply"),
        ("I think all sentences are fine.", "no JSON"),
        ("[0.1, 0.2, 0.3]", "3 scores for 4 sentences"),
        ('{"a": 1, "b": 1, "c": 1, "d": 1, "e": 1}', "5 scores for 4 sentences"),
        ("[0.1, 1.5, 0.3, 0.4]", "score 2: 1.5 is outside [0, 1]"),
        ("[0.1, -0.1, 0.3, 0.4]", "outside [0, 1]"),
        ("[0.1, NaN, 0.3, 0.4]", "score 2: NaN"),
        ('{"a": "<score>", "b": 1, "c": 1, "d": 1}', "placeholder '<score>' left unfilled"),
        ('{"a": "...", "b": 1, "c": 1, "d": 1}', "placeholder"),
        ('{"a": "high", "b": 1, "c": 1, "d": 1}', "'high' is not a number"),
        ('{"a": true, "b": 1, "c": 1, "d": 1}', "True is not a score"),
        ('[{"sentence": "a"}, 1, 1, 1]', "has no score field"),
    ],
)
def test_rejects_unusable_replies(reply, message):
    with pytest.raises(TeacherFormatError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_sentence_scores(reply, SENTENCES)


def test_format_error_is_a_value_error():
    assert issubclass(TeacherFormatError, ValueError)

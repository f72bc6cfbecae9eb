"""Sentence splitting rules and the token -> sentence map, on a table of cases."""

import numpy as np
import pytest

from ares_jax.text import Tokenizer, segment_ids, sentence_spans, split_sentences, train_bpe_tokenizer

CASES = [
    # basic ends, and a trailing fragment
    ("There are 3 circles. 3 is more than 2! Is it? So", ["There are 3 circles.", "3 is more than 2!", "Is it?", "So"]),
    # decimals are not ends
    ("The rod is 1.5 m long. It is short.", ["The rod is 1.5 m long.", "It is short."]),
    # titles and e.g. / i.e. never end a sentence
    (
        "Mr. Smith met Dr. Jones on St. Mark street. Mrs. Lee came.",
        ["Mr. Smith met Dr. Jones on St. Mark street.", "Mrs. Lee came."],
    ),
    ("Use a tool, e.g. a hammer. Or i.e. a saw.", ["Use a tool, e.g. a hammer.", "Or i.e. a saw."]),
    # initialisms inside a sentence, and at the end of the text
    ("The U.S. capital is in D.C. and is old. It grew.", ["The U.S. capital is in D.C. and is old.", "It grew."]),
    ("It is in the U.S.", ["It is in the U.S."]),
    # a single capital letter before the point is an answer option, not an initialism
    ("The answer is B. Next one.", ["The answer is B.", "Next one."]),
    # etc. mid-sentence vs at the end of a sentence
    ("Cats, dogs, etc. are pets. Fish etc. Birds fly.", ["Cats, dogs, etc. are pets.", "Fish etc.", "Birds fly."]),
    # ellipsis inside a sentence vs ending one
    ("Wait... then count them. Hmm... The end.", ["Wait... then count them.", "Hmm...", "The end."]),
    # closing quotes and brackets belong to the sentence they close
    ('He said "three." Then (see above.) Done.', ['He said "three."', "Then (see above.)", "Done."]),
    # MM-CoT's literal backslash-n is whitespace
    ("Solution: First line.\\nSecond line.\\n\\nThird", ["Solution: First line.", "Second line.", "Third"]),
    # repeated sentences stay separate
    ("So the answer is (A). So the answer is (A).", ["So the answer is (A).", "So the answer is (A)."]),
    ("", []),
    ("   ", []),
]


@pytest.mark.parametrize("text,expected", CASES)
def test_split_sentences(text, expected):
    assert split_sentences(text) == expected


def test_spans_index_the_original_text():
    text = "Solution: A.\\nB is 2.5 big. C"
    spans = sentence_spans(text)
    assert [text[s:e] for s, e in spans] == split_sentences(text) == ["Solution: A.", "B is 2.5 big.", "C"]


def test_segment_ids_hand_worked():
    # text:  "Ab. Cd."  tokens: "Ab" "." " Cd" "." "</s>"
    spans = sentence_spans("Ab. Cd.")
    assert spans == [(0, 3), (4, 7)]
    offsets = [(0, 2), (2, 3), (3, 6), (6, 7), (7, 7)]
    np.testing.assert_array_equal(segment_ids(offsets, spans), [0, 0, 1, 1, 1])
    # whitespace-only tokens join the sentence before them
    np.testing.assert_array_equal(segment_ids([(0, 3), (3, 4), (4, 7)], spans), [0, 0, 1])
    assert (segment_ids([(0, 0)], []) == -1).all()


@pytest.mark.parametrize("kind", ["bpe", "bytes"])
def test_segment_ids_from_a_real_tokenizer(kind):
    text = "There are 4 red circles. 4 is more than 3. So the answer is (B). The big"
    if kind == "bpe":
        tok = train_bpe_tokenizer([text] * 5 + ["Red circles are more than blue squares."], vocab_size=300)
    else:
        from transformers import ByT5Tokenizer

        tok = Tokenizer(ByT5Tokenizer())
    decoded, offsets = tok.decode_with_offsets(tok.encode(text))
    spans = sentence_spans(decoded)
    ids = segment_ids(offsets, spans)
    assert ids.min() == 0 and ids.max() == 3 and (np.diff(ids) >= 0).all()
    for sentence, (s, e) in enumerate(spans):
        tokens = [i for i, seg in enumerate(ids) if seg == sentence]
        covered = "".join(decoded[offsets[i][0] : offsets[i][1]] for i in tokens)
        assert covered.strip().startswith(decoded[s:e])


def test_response_segments_for_a_padded_batch():
    from ares_jax.text import response_segments

    tok = train_bpe_tokenizer(["There are 4 red circles. So the answer is (B)."] * 5, vocab_size=290)
    rows = [tok.encode("There are 4 red circles. So the answer is (B)."), tok.encode("There are 4")]
    length = max(map(len, rows)) + 2
    tokens = np.zeros((2, length), np.int32)
    for i, row in enumerate(rows):
        tokens[i, : len(row)] = row
    texts, sentences, ids = response_segments(tok, tokens, [len(r) for r in rows])
    assert texts == ["There are 4 red circles. So the answer is (B).", "There are 4"]
    assert sentences == [["There are 4 red circles.", "So the answer is (B)."], ["There are 4"]]
    assert ids.shape == (2, length)
    assert (ids[0, : len(rows[0])] >= 0).all() and (ids[0, len(rows[0]) :] == -1).all()
    assert set(ids[0, : len(rows[0])]) == {0, 1} and set(ids[1, : len(rows[1])]) == {0}
    assert ids[0, len(rows[0]) - 1] == 1  # the EOS belongs to the last sentence

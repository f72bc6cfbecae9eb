"""The tokenizer interface on BPE, word-level, SentencePiece and byte (ByT5) tokenizers."""

import json

import numpy as np
import pytest

from ares_jax.text import Tokenizer, train_bpe_tokenizer

CORPUS = [
    f"There are {i} red circles. {i} is more than {i - 1}. So the answer is ({'ABCD'[i % 4]})." for i in range(1, 60)
] + ["The small blue square is left of the big green star.", "Is the triangle above the circle?"]

GENERATED = "There are 4 red circles. 4 is more than 3. So the answer is (B). The big"


@pytest.fixture(scope="module")
def bpe():
    return train_bpe_tokenizer(CORPUS, vocab_size=300)


def word_level():
    from tokenizers import Tokenizer as Raw
    from tokenizers import decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = sorted({w for text in CORPUS for w in text.replace(".", " .").replace("?", " ?").split()})
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(words)}}
    raw = Raw(models.WordLevel(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    raw.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    return Tokenizer(
        PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    )


def sentencepiece_folder(tmp_path):
    spm = pytest.importorskip("sentencepiece")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(CORPUS))
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(tmp_path / "spiece"),
        vocab_size=80,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        minloglevel=2,
    )
    folder = tmp_path / "sp"
    folder.mkdir()
    (folder / "spiece.model").write_bytes((tmp_path / "spiece.model").read_bytes())
    return folder


def check_offsets(tok: Tokenizer, text: str):
    ids = tok.encode(text)
    decoded, offsets = tok.decode_with_offsets(ids)
    assert len(offsets) == len(ids)
    # Spans tile the text in order, and each token's span holds the characters it decodes to.
    assert offsets[0][0] == 0 and offsets[-1][1] == len(decoded)
    for (s0, e0), (s1, _) in zip(offsets, offsets[1:]):
        assert s0 <= e0 == s1
    for token, (start, end) in zip(ids, offsets):
        piece = tok.decode([token])
        if token in (tok.pad_id, tok.eos_id):
            assert start == end
        elif piece.strip() and "\ufffd" not in piece:  # not a lone byte of a multi-byte character
            assert decoded[start:end].strip() == piece.strip(), (token, piece, decoded[start:end])
    return decoded, offsets


def test_bpe_round_trip_and_offsets(bpe, tmp_path):
    assert bpe.pad_id == 0 and bpe.eos_id == 1
    ids = bpe.encode(GENERATED)
    assert ids[-1] == bpe.eos_id
    assert bpe.decode(ids) == GENERATED
    decoded, offsets = check_offsets(bpe, GENERATED)
    assert decoded == GENERATED
    encoding = bpe.encode_with_offsets(GENERATED)
    assert encoding.ids == ids
    # Offsets from decoding agree with the fast tokenizer's own encoding offsets (where it gives
    # them tight; byte-level BPE attaches the space before a word to that word).
    for (s, e), (es, ee) in zip(offsets[:-1], encoding.offsets[:-1]):
        assert (s, e) == (es, ee)
    bpe.save(tmp_path)
    again = Tokenizer.from_folder(tmp_path)
    assert again.encode(GENERATED) == ids


def test_word_level_offsets():
    tok = word_level()
    decoded, offsets = check_offsets(tok, "There are 4 red circles . So the answer is ( B ) .")
    assert decoded.startswith("There are 4 red circles")


def test_sentencepiece_folder_loads_and_maps_offsets(tmp_path):
    tok = Tokenizer.from_folder(sentencepiece_folder(tmp_path))
    assert tok.pad_id == 0 and tok.eos_id == 1
    decoded, _ = check_offsets(tok, GENERATED)
    assert decoded == GENERATED


def test_byte_tokenizer_multibyte_characters():
    from transformers import ByT5Tokenizer

    tok = Tokenizer(ByT5Tokenizer())
    text = "Größe: 3 ≤ 5. Done."
    decoded, offsets = check_offsets(tok, text)
    assert decoded == text
    # "ö" is two bytes: the first byte alone decodes to nothing of the text, the second completes it.
    first, second = tok.encode("ö", add_eos=False)
    _, pair = tok.decode_with_offsets([first, second])
    assert pair == [(0, 0), (0, 1)]


def test_batch_encode_pads_and_truncates(bpe):
    ids, mask = bpe.batch_encode(["There are 3 red circles.", GENERATED], max_length=8)
    assert ids.shape == (2, 8) and ids.dtype == np.int32
    short = bpe.encode("There are 3 red circles.")
    assert len(short) < 8
    np.testing.assert_array_equal(ids[0, : len(short)], short)
    assert (ids[0, len(short) :] == bpe.pad_id).all() and mask[0].sum() == len(short)
    assert mask[1].all() and ids[1, -1] == bpe.eos_id  # cut, still ends with eos


def test_missing_folder_and_empty_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such tokenizer folder"):
        Tokenizer.from_folder(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text(json.dumps({}))
    with pytest.raises((ValueError, OSError), match="empty"):
        Tokenizer.from_folder(tmp_path / "empty")

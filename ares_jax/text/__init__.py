"""Text handling that knows nothing of JAX: tokenizers with character offsets (sentence
splitting and sentence-to-token segments come with the RL core)."""

from ares_jax.text.fluency import (
    ends_unfinished,
    is_finished,
    repeated_ngram_rate,
    repeated_sentences,
    sentence_key,
)
from ares_jax.text.sentences import (
    batch_segment_ids,
    response_segments,
    segment_ids,
    sentence_spans,
    split_sentences,
)
from ares_jax.text.tokenizer import Encoding, Tokenizer, train_bpe_tokenizer

"""Documents into chunks: sizes and overlap by a token counter, breaks at paragraphs then sentences,
spans into the document, and the limits of a chunking option."""

from __future__ import annotations

import pytest

from chutes_embeddings.documents.chunking import MIN_CHUNK_TOKENS, Chunker, Chunking, chunker_for
from chutes_embeddings.errors import InvalidInput


def words(text: str) -> int:
    """A stand-in tokenizer's count: one token a word."""
    return len(text.split())


PARAGRAPHS = [" ".join(f"W{p}x{i}." if i % 6 == 5 else f"W{p}x{i}" for i in range(30)) for p in range(4)]
DOCUMENT = "\n\n".join(PARAGRAPHS)


def test_chunks_fit_break_at_paragraphs_and_their_spans_point_into_the_document():
    [pieces] = Chunker(words, 64).split([DOCUMENT], Chunking(max_tokens=40))
    assert [p.text for p in pieces] == PARAGRAPHS  # a paragraph (30 words) fits, two do not
    for p in pieces:
        assert DOCUMENT[p.start:p.end] == p.text


def test_a_paragraph_too_long_breaks_at_sentences_with_the_overlap_asked():
    [pieces] = Chunker(words, 64).split([PARAGRAPHS[0]], Chunking(max_tokens=16, overlap=6))
    assert all(words(p.text) <= 16 for p in pieces) and len(pieces) > 2
    assert all(p.text.endswith(".") for p in pieces[:-1])  # sentence breaks (six words a sentence)
    for a, b in zip(pieces, pieces[1:]):
        assert 0 < a.end - b.start and words(PARAGRAPHS[0][b.start:a.end]) <= 6  # they share <= 6 tokens


def test_a_short_text_is_one_chunk_and_the_default_size_is_the_models_room():
    chunker = Chunker(words, 20)
    assert chunker.split(["one two"], Chunking()) == [[("one two", 0, 7)]]
    assert all(words(p.text) <= 20 for p in chunker.split([DOCUMENT], Chunking())[0])


@pytest.mark.parametrize("chunking, field, limit", [
    (Chunking(max_tokens=65), "chunking.max_tokens", 64),
    (Chunking(max_tokens=MIN_CHUNK_TOKENS - 1), "chunking.max_tokens", MIN_CHUNK_TOKENS),
    (Chunking(max_tokens=32, overlap=32), "chunking.overlap", 31),
    (Chunking(max_tokens=32, overlap=-1), "chunking.overlap", 31),
])
def test_bad_chunking_names_the_field_and_the_limit(chunking, field, limit):
    with pytest.raises(InvalidInput) as err:
        Chunker(words, 64).split(["text"], chunking)
    assert (err.value.field, err.value.limit) == (field, limit)


def test_the_room_leaves_out_the_special_tokens_and_the_document_prompt():
    def tokenize(texts):  # [CLS] ... [SEP] around one token a word
        return [[0] * (words(t) + 2) for t in texts], [words(t) + 2 for t in texts]

    chunker = chunker_for(tokenize, 256, "passage: of a document")
    assert chunker.room == 256 - 2 - 4 and chunker.count("three words here") == 3

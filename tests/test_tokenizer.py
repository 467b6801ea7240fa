import pytest
import torch

from miniclip import Tokenizer

CAPTIONS = [
    "a photo of a red circle", "two blue squares", "a green star to the left of a yellow triangle",
    "a large purple heart", "a small orange cross above a red square", "three green circles",
] * 20


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.train(CAPTIONS, vocab_size=300, context_length=12)


def test_encode_layout(tok):
    t = tok.encode(["a red circle", "two blue squares"])
    assert t.shape == (2, 12) and t.dtype == torch.long
    for row in t:
        assert row[0] == tok.start_id
        end = (row == tok.end_id).nonzero()
        assert len(end) == 1
        assert (row[end[0, 0] + 1:] == tok.pad_id).all()


def test_round_trip_and_lowercase(tok):
    assert tok.decode(tok.encode(["A Red CIRCLE", "two blue squares"])) == ["a red circle", "two blue squares"]


def test_truncation_keeps_the_end_token(tok):
    long = " ".join(["a red circle"] * 30)
    row = tok.encode([long])[0]
    assert row.shape == (12,) and row[-1] == tok.end_id and (row != tok.pad_id).all()


@pytest.mark.parametrize("text", ["", "🙂🚀 a red 🟥", "красный круг", "赤い丸", "\x00\t\n", "é" * 100])
def test_odd_text_encodes(tok, text):
    row = tok.encode([text])[0]
    assert row[0] == tok.start_id and (row == tok.end_id).sum() == 1
    if text and len(text) < 5:
        assert tok.decode(tok.encode([text]))[0] == text.lower().strip()


def test_save_load_one_json(tok, tmp_path):
    path = tmp_path / "tokenizer.json"
    path.write_text(tok.to_json())
    assert [p.name for p in tmp_path.iterdir()] == ["tokenizer.json"]
    tok2 = Tokenizer.load(path)
    assert tok2.context_length == 12 and tok2.vocab_size == tok.vocab_size
    torch.testing.assert_close(tok2.encode(CAPTIONS[:6]), tok.encode(CAPTIONS[:6]))


def test_end_id_is_not_two(tok):
    # transformers treats eos_token_id == 2 as "pool at the highest id"; ours must be found by position
    assert tok.end_id == 3 and tok.pad_id == 0


def test_too_small_vocab_raises():
    with pytest.raises(ValueError, match="vocab_size"):
        Tokenizer.train(CAPTIONS, vocab_size=100)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.json"):
        Tokenizer.load(tmp_path / "nothere.json")


def test_bpe_ids_are_what_encode_puts_between_start_and_end(tok):
    for text in ["a red circle", "two blue squares", "three green circles"]:  # each fits in the context of 12
        row = tok.encode(text)[0].tolist()
        ids = tok.bpe_ids(text)
        assert row[: len(ids) + 2] == [tok.start_id, *ids, tok.end_id]
    long = " ".join(["a red circle"] * 30)
    assert len(tok.bpe_ids(long)) > tok.context_length  # never cut


def test_unpadded_is_a_copy_without_padding_or_truncation(tok):
    raw = tok.unpadded()
    long = " ".join(["a red circle"] * 30)
    assert len(raw.encode("a red circle").ids) == len(tok.bpe_ids("a red circle")) + 2  # <start>, <end>, no padding
    assert len(raw.encode(long).ids) > tok.context_length
    assert tok.encode(long).shape == (1, 12)  # the tokenizer itself still pads and truncates

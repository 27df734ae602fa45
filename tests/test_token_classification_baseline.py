"""The token-classification baseline trains and predicts on a tiny random BERT."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from transformers import BertConfig, BertModel, BertTokenizerFast

from nagner.data.example import Entity, Sentence
from nagner.evaluation import evaluate_entities
from nagner.token_classification import TokenClassificationBaseline  # noqa: E402

span = Entity.from_span

WORDS = "john mary paris london acme corp lives in works at visited the city and met".split()

RAW = [
    ("john lives in paris", [("PER", 0, 1), ("LOC", 3, 4)]),
    ("mary lives in london", [("PER", 0, 1), ("LOC", 3, 4)]),
    ("john works at acme corp", [("PER", 0, 1), ("ORG", 3, 5)]),
    ("mary works at acme", [("PER", 0, 1), ("ORG", 3, 4)]),
    ("john visited the city", [("PER", 0, 1)]),
    ("mary met john", [("PER", 0, 1), ("PER", 2, 3)]),
    ("acme corp visited london", [("ORG", 0, 2), ("LOC", 3, 4)]),
    ("the city and paris", [("LOC", 3, 4)]),
    ("john and mary met in paris", [("PER", 0, 1), ("PER", 2, 3), ("LOC", 5, 6)]),
    ("mary visited acme corp in london", [("PER", 0, 1), ("ORG", 2, 4), ("LOC", 5, 6)]),
    ("lives in the city", []),
    ("john met mary at acme", [("PER", 0, 1), ("PER", 2, 3), ("ORG", 4, 5)]),
    ("london and paris", [("LOC", 0, 1), ("LOC", 2, 3)]),
    ("mary works in paris", [("PER", 0, 1), ("LOC", 3, 4)]),
    ("john visited london and paris", [("PER", 0, 1), ("LOC", 2, 3), ("LOC", 4, 5)]),
    ("acme works", [("ORG", 0, 1)]),
    ("the city met mary", [("PER", 3, 4)]),
    ("johnny lives in parisville", [("PER", 0, 1), ("LOC", 3, 4)]),  # words split into sub-tokens
    ("mary and john visited acme corp", [("PER", 0, 1), ("PER", 2, 3), ("ORG", 4, 6)]),
    ("paris", [("LOC", 0, 1)]),
]
SENTENCES = [Sentence(text.split(), [span(*s) for s in spans]) for text, spans in RAW]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    """A random 2-layer BERT and a WordPiece tokenizer of ~80 pieces, saved like a hub model."""
    path = tmp_path_factory.mktemp("tiny-bert")
    letters = list(string.ascii_lowercase)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *letters, *(f"##{c}" for c in letters)]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab=str(path / "vocab.txt"))  # transformers 5 ignores vocab_file=
    tokenizer.save_pretrained(path)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def trained(tiny_bert) -> tuple[TokenClassificationBaseline, dict]:
    baseline = TokenClassificationBaseline(tiny_bert)
    result = baseline.train(
        SENTENCES[:16], dev_sentences=SENTENCES[16:], epochs=2, lr=1e-3, batch_size=8, max_length=32, seed=0
    )
    return baseline, result


def test_labels_sit_on_first_subtokens(tiny_bert):
    baseline = TokenClassificationBaseline(tiny_bert)
    baseline.labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    encoded = baseline.encode(["johnny", "lives", "in", "paris"], ["B-PER", "O", "O", "B-LOC"])
    tokens = baseline.tokenizer.convert_ids_to_tokens(encoded.features["input_ids"])
    assert tokens[:4] == ["[CLS]", "john", "##n", "##y"]
    assert encoded.first_subtokens == [1, 4, 5, 6]
    assert encoded.features["labels"] == [-100, 1, -100, -100, 0, 0, 3, -100]
    assert encoded.truncated_words == encoded.untokenized_words == 0


def test_words_beyond_max_length_are_counted(tiny_bert):
    baseline = TokenClassificationBaseline(tiny_bert)
    baseline.max_length = 6  # [CLS] + 4 sub-tokens + [SEP]
    encoded = baseline.encode("john lives in paris and london".split())
    assert encoded.first_subtokens == [1, 2, 3, 4, None, None]
    assert encoded.truncated_words == 2


def test_train_reports_losses_and_dev_epochs(trained):
    baseline, result = trained
    assert baseline.labels == ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    assert result["train_loss"] > 0
    assert len(result["dev_f1"]) == 2
    assert result["best_epoch"] in (1, 2)


def test_predictions_are_valid_flat_entities(trained):
    baseline, _ = trained
    long = Sentence(("john lives in paris and " * 10).split())
    sentences = [*SENTENCES, long, Sentence([])]
    predictions = baseline.predict(sentences, batch_size=4)
    assert len(predictions) == len(sentences)
    assert predictions[-1] == []
    types = {"PER", "LOC", "ORG"}
    for sentence, entities in zip(sentences, predictions, strict=True):
        taken: set[int] = set()
        for entity in entities:
            assert entity.type in types
            assert not entity.is_discontinuous
            assert entity.indices[-1] < len(sentence.words)
            assert taken.isdisjoint(entity.indices)
            taken.update(entity.indices)
    # 30 word pieces fit between [CLS] and [SEP]; the other 20 words are predicted O
    assert baseline.truncated_words == 20
    assert all(entity.indices[-1] < 30 for entity in predictions[-2])


def test_non_flat_training_data_is_refused(tiny_bert):
    nested = Sentence("john lives in paris".split(), [span("LOC", 2, 4), span("LOC", 3, 4)])
    with pytest.raises(ValueError, match="flat entities"):
        TokenClassificationBaseline(tiny_bert).train([nested], epochs=1)


def test_fits_its_training_data(tiny_bert):
    """End to end: labels, first sub-token alignment and decoding agree, so the model can overfit."""
    baseline = TokenClassificationBaseline(tiny_bert)
    baseline.train(SENTENCES, epochs=30, lr=3e-3, batch_size=10, max_length=32, seed=0)
    predicted = baseline.predict(SENTENCES)
    assert evaluate_entities([s.entities for s in SENTENCES], predicted).f1 > 0.9

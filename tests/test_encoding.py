"""Sentences → encoder features with slot targets, the collator, and the EncodingReport."""

from __future__ import annotations

import logging

import pytest
import torch

from nagner.data.example import Entity, Sentence
from nagner.modeling import NagNerCollator, NagNerConfig, encode_sentence, encode_sentences
from nagner.modeling.targets import END, IGNORE
from nagner.modeling.windows import plan_windows

I = IGNORE  # noqa: E741


@pytest.fixture(scope="module")
def tokenizer(tiny_encoder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_encoder))


def make_config(**kwargs) -> NagNerConfig:
    return NagNerConfig(entity_types=["LOC", "ORG", "PER"], **{"max_pointers": 6, **kwargs})


def ids(tokenizer, *tokens: str) -> list[int]:
    return tokenizer.convert_tokens_to_ids(list(tokens))


EXAMPLE = Sentence(
    ["the", "university", "of", "xy", "paris"],
    [
        Entity("ORG", (1, 2, 4)),  # discontinuous: [1, 3) and [4, 5)
        Entity("PER", (1, 2)),  # nested, same start
        Entity("LOC", (4,)),
        Entity("LOC", (0, 1)),
        Entity("LOC", (4,)),  # a duplicate counts once
    ],
)


def test_exact_features_of_a_tiny_example(tokenizer):
    config = make_config()
    (feature,) = encode_sentence(EXAMPLE, tokenizer, config, with_targets=True, sentence_index=7)
    assert feature == {
        "input_ids": ids(tokenizer, "[CLS]", "the", "university", "of", "x", "##y", "paris", "[SEP]"),
        "word_first": [1, 2, 3, 4, 6],
        "word_last": [1, 2, 3, 5, 6],
        "sentence_index": 7,
        "word_offset": 0,
        "n_words": 5,
        "start_labels": [1.0, 1.0, 0.0, 0.0, 1.0],
        "end_labels": [0.0, 1.0, 1.0, 0.0, 1.0],
        "count_labels": [1, 2, 0, 0, 1],
        # sorted entities: LOC (0, 1), LOC (4,), ORG (1, 2, 4), PER (1, 2)
        "entity_starts": [0, 4, 1, 1],
        "entity_pointers": [
            [2, END, I, I, I, I],
            [5, END, I, I, I, I],
            [3, 5, 5, END, I, I],
            [3, END, I, I, I, I],
        ],
        "entity_types": [1, 1, 2, 3],
    }


def test_collator_pads_exactly(tokenizer):
    config = make_config()
    short = Sentence(["berlin"])
    features, report = encode_sentences([EXAMPLE, short], tokenizer, config, with_targets=True)
    assert report.entities == 4 and report.unfit == 0
    batch = NagNerCollator(tokenizer.pad_token_id, config.max_pointers)(features)
    cls, sep, pad = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id
    assert batch["input_ids"].tolist() == [
        ids(tokenizer, "[CLS]", "the", "university", "of", "x", "##y", "paris", "[SEP]"),
        [cls, *ids(tokenizer, "berlin"), sep] + [pad] * 5,
    ]
    assert batch["attention_mask"].tolist() == [[1] * 8, [1] * 3 + [0] * 5]
    assert batch["word_first"].tolist() == [[1, 2, 3, 4, 6], [1, 0, 0, 0, 0]]
    assert batch["word_last"].tolist() == [[1, 2, 3, 5, 6], [1, 0, 0, 0, 0]]
    assert batch["word_mask"].tolist() == [[True] * 5, [True] + [False] * 4]
    assert batch["word_mask"].dtype == torch.bool
    assert batch["start_labels"].tolist() == [[1, 1, 0, 0, 1], [0, 0, 0, 0, 0]]
    assert batch["end_labels"].tolist() == [[0, 1, 1, 0, 1], [0, 0, 0, 0, 0]]
    assert batch["count_labels"].tolist() == [[1, 2, 0, 0, 1], [0, I, I, I, I]]
    assert batch["entity_starts"].tolist() == [[0, 4, 1, 1], [-1, -1, -1, -1]]
    assert batch["entity_pointers"].shape == (2, 4, 6)
    assert batch["entity_pointers"][0].tolist() == features[0]["entity_pointers"]
    assert (batch["entity_pointers"][1] == I).all()
    assert batch["entity_types"].tolist() == [[1, 1, 2, 3], [I, I, I, I]]


def test_collator_without_targets_and_with_an_empty_sentence(tokenizer):
    config = make_config()
    features, _ = encode_sentences([Sentence([]), Sentence(["paris"])], tokenizer, config)
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    assert [f["input_ids"] for f in features] == [[cls, sep], [cls, *ids(tokenizer, "paris"), sep]]
    assert "entity_starts" not in features[0]
    batch = NagNerCollator(0, 6)(features)
    assert set(batch) == {"input_ids", "attention_mask", "word_first", "word_last", "word_mask"}
    assert batch["word_mask"].tolist() == [[False], [True]]


def test_a_word_the_tokenizer_drops_becomes_unk(tokenizer):
    assert tokenizer(["\u200b"], add_special_tokens=False)["input_ids"] == [[]]  # dropped by the tokenizer
    (feature,) = encode_sentence(Sentence(["paris", "\u200b", "berlin"]), tokenizer, make_config())
    assert feature["input_ids"] == ids(tokenizer, "[CLS]", "paris", "[UNK]", "berlin", "[SEP]")
    assert feature["word_first"] == feature["word_last"] == [1, 2, 3]


def test_long_words_are_cut_to_max_subwords_per_word(tokenizer):
    (feature,) = encode_sentence(
        Sentence(["abcdef", "paris"]), tokenizer, make_config(max_subwords_per_word=3)
    )
    assert feature["input_ids"] == ids(tokenizer, "[CLS]", "a", "##b", "##c", "paris", "[SEP]")
    assert feature["word_first"] == [1, 4] and feature["word_last"] == [3, 4]


def test_windows_carry_their_offsets_and_local_targets(tokenizer):
    config = make_config(max_subwords=6)  # 4 one-piece words per window
    words = ["paris"] * 8
    sentence = Sentence(words, [Entity("LOC", (3,)), Entity("ORG", (2, 3, 5))])
    features = encode_sentence(sentence, tokenizer, config, with_targets=True, sentence_index=2)
    assert plan_windows([1] * 8, 4) == [(0, 4), (2, 6), (4, 8)]
    assert [
        (f["word_offset"], len(f["word_first"]), f["n_words"], f["sentence_index"]) for f in features
    ] == [
        (0, 4, 8, 2),
        (2, 4, 8, 2),
        (4, 4, 8, 2),
    ]
    # ORG (2, 3, 5) spans 4 words: every window that holds it cuts the sentence at its first
    # word, so no window could ever output it -- it is not a target anywhere, and reported.
    assert [f["entity_starts"] for f in features] == [[3], [1], []]  # window coordinates
    assert features[1]["entity_pointers"] == [[2, END, I, I, I, I]]
    assert [f["start_labels"] for f in features] == [[0, 0, 0, 1], [0, 1, 0, 0], [0, 0, 0, 0]]
    assert [f["end_labels"] for f in features] == [[0, 0, 0, 1], [0, 1, 0, 0], [0, 0, 0, 0]]
    _, report = encode_sentences([sentence], tokenizer, config, with_targets=True)
    assert (report.outside_windows, report.unfit) == (1, 1)


def test_an_unknown_type_is_an_error(tokenizer):
    with pytest.raises(ValueError, match="entity type 'MISC' is not in the model's label set"):
        encode_sentence(
            Sentence(["paris"], [Entity("MISC", (0,))]), tokenizer, make_config(), with_targets=True
        )


# --------------------------------------------------------------------------------- report


def test_report_counts_every_entity_that_cannot_be_a_target(tokenizer, caplog):
    config = make_config(max_pointers=4, max_entities_per_start=2, max_subwords=8)  # 2 fragments, 6 words
    fragments = Sentence(["paris"] * 6, [Entity("LOC", (0, 2, 4)), Entity("LOC", (0, 2))])
    per_start = Sentence(
        ["paris"] * 5, [Entity("LOC", (1,)), Entity("ORG", (1,)), Entity("PER", (1,)), Entity("LOC", (1, 2))]
    )
    long = Sentence(["paris"] * 14, [Entity("ORG", tuple(range(2, 10))), Entity("LOC", (12,))])
    long.source, long.line = "corpus.jsonl", 3
    with caplog.at_level(logging.WARNING, logger="nagner.modeling.encoding"):
        features, report = encode_sentences(
            [fragments, per_start, long], tokenizer, config, with_targets=True
        )
    assert (
        report.entities,
        report.too_many_fragments,
        report.too_many_per_start,
        report.outside_windows,
    ) == (
        8,
        1,
        2,
        1,
    )
    assert report.unfit == 4
    assert report.examples == [
        "sentence: LOC [0, 2, 4] (too many fragments)",
        # sorted LOC (1,), LOC (1, 2), ORG (1,), PER (1,): the first two become targets
        "sentence: ORG [1] (too many per start)",
        "sentence: PER [1] (too many per start)",
        "corpus.jsonl:3: ORG [2, 3, 4, 5, 6, 7, 8, 9] (outside windows)",
    ]
    assert "4 of 8 entities cannot be training targets" in caplog.text
    targets = sum(len(f["entity_starts"]) for f in features if f["sentence_index"] < 2)
    assert targets == 1 + 2  # (0, 2) of the first sentence; two of the four at word 1


def test_report_is_silent_when_everything_fits(tokenizer, caplog):
    with caplog.at_level(logging.WARNING, logger="nagner.modeling.encoding"):
        _, report = encode_sentences([EXAMPLE], tokenizer, make_config(), with_targets=True)
    assert report.unfit == 0 and report.examples == [] and caplog.text == ""


def test_report_counts_an_unfit_entity_beyond_the_first_window(tokenizer):
    config = make_config(max_pointers=4, max_subwords=8)  # windows of 6 words, 2 fragments at most
    sentence = Sentence(["paris"] * 14, [Entity("LOC", (9, 11, 13))])  # 3 fragments, windows 2 and 3 only
    features, report = encode_sentences([sentence], tokenizer, config, with_targets=True)
    assert all(f["entity_starts"] == [] for f in features)  # it is not a target anywhere ...
    assert report.too_many_fragments == 1  # ... so it must be reported


def test_sentence_subwords_equal_the_tokenizer_called_word_by_word(tiny_encoder, tmp_path):
    """Words are encoded once each, in one call, through a bare copy of the fast tokenizer's
    backend: the pieces equal the transformers call per sentence, even when the saved
    tokenizer.json pads and truncates (all-MiniLM-L6-v2's pads to 128), and the copy is made once."""
    import json
    import shutil

    from transformers import AutoTokenizer

    from nagner.modeling import encoding

    folder = tmp_path / "padded"
    shutil.copytree(tiny_encoder, folder)
    saved = json.loads((folder / "tokenizer.json").read_text())
    saved["padding"] = {"strategy": {"Fixed": 8}, "direction": "Right", "pad_to_multiple_of": None,
                        "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"}
    saved["truncation"] = {"direction": "Right", "max_length": 2, "strategy": "LongestFirst", "stride": 0}
    (folder / "tokenizer.json").write_text(json.dumps(saved))
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    assert tokenizer.backend_tokenizer.padding is not None  # the file's settings are on the backend
    sentences = [["Paris", "abcdef", "\u200b", "paris"], [], ["Üb", "xy", "abcdef", "…"], ["the"]]
    found = encoding.sentence_subwords(tokenizer, sentences, 4)
    assert tokenizer.backend_tokenizer.padding is not None  # the tokenizer itself is left as it was
    assert encoding.sentence_subwords(tokenizer, [[]], 4) == [[]]
    # transformers switches the file's padding and truncation off on every call
    expected = [
        [(ids or [tokenizer.unk_token_id])[:4] for ids in tokenizer(words, add_special_tokens=False)["input_ids"]]
        if words else []
        for words in sentences
    ]
    assert expected[0] == [ids(tokenizer, "paris"), ids(tokenizer, "a", "##b", "##c", "##d"),
                           ids(tokenizer, "[UNK]"), ids(tokenizer, "paris")]
    assert found == expected
    copy = encoding._BARE_BACKENDS[tokenizer]
    encoding.sentence_subwords(tokenizer, sentences, 4)
    assert encoding._BARE_BACKENDS[tokenizer] is copy
    config = make_config(max_subwords_per_word=4)
    batched, _ = encode_sentences([Sentence(words) for words in sentences if words], tokenizer, config)
    one_by_one = [f for k, words in enumerate(w for w in sentences if w)
                  for f in encode_sentence(Sentence(words), tokenizer, config, sentence_index=k)]
    assert batched == one_by_one

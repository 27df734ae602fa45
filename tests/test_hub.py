import json

import pytest
from datasets import ClassLabel, Dataset, Features, Sequence, Value

from nagner.data.example import Entity
from nagner.data.hub import load_hub_dataset, sentences_from_hf_dataset
from nagner.errors import NagNerInputError

NAMES = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def test_class_label_tags():
    features = Features({"tokens": Sequence(Value("string")), "ner_tags": Sequence(ClassLabel(names=NAMES))})
    dataset = Dataset.from_dict(
        {"tokens": [["Ann", "Lee", "in", "Oslo"], ["hi"]], "ner_tags": [[1, 2, 0, 3], [0]]}, features=features
    )
    first, second = sentences_from_hf_dataset(dataset, source="toy")
    assert first.words == ["Ann", "Lee", "in", "Oslo"]
    assert first.entities == [Entity("PER", (0, 1)), Entity("LOC", (3,))]
    assert second.entities == []
    assert (second.source, second.line) == ("toy", 2)


def test_string_tags_and_errors():
    dataset = Dataset.from_dict({"words": [["a", "b"], ["c"]], "labels": [["B-X", "I-X"], ["Q-X"]]})
    assert sentences_from_hf_dataset(dataset.select([0]), "words", "labels")[0].entities == [Entity("X", (0, 1))]
    with pytest.raises(NagNerInputError, match="'Q-X'") as info:
        sentences_from_hf_dataset(dataset, "words", "labels", source="d")
    assert info.value.line == 2
    with pytest.raises(NagNerInputError, match="no column 'tokens'"):
        sentences_from_hf_dataset(dataset)
    short = Dataset.from_dict({"tokens": [["a", "b"]], "ner_tags": [["O"]]})
    with pytest.raises(NagNerInputError, match="2 tokens but 1 tags"):
        sentences_from_hf_dataset(short)


def test_load_local_json_file(tmp_path):
    path = tmp_path / "train.jsonl"
    rows = [{"tokens": ["Bob", "visits", "Rome"], "ner_tags": ["B-PER", "O", "B-LOC"]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    sentences = load_hub_dataset("json", split="train", data_files=str(path), cache_dir=str(tmp_path / "cache"))
    assert [s.entities for s in sentences] == [[Entity("PER", (0,)), Entity("LOC", (2,))]]
    assert sentences[0].source == "json:train"


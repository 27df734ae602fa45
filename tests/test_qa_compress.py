"""`knowledge-qa compress` end to end on tiny models: an adapter folder from `knowledge-qa train` is
merged, pruned (SIMPLE) or quantized (QuantGPT), saved as a plain folder, and runs in the agent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny_text_models import minilm_tokenizer
from transformers import BertConfig, EncoderDecoderConfig, EncoderDecoderModel

from knowledge_qa.cli import main

DATA = Path(__file__).resolve().parent.parent / "data"
QUESTIONS = DATA / "qa_questions.json"


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def tiny_bert2bert_dir(tmp_path_factory) -> Path:
    """A tiny bert2bert with the MiniLM tokenizer (the warm-started model's shape, random weights)."""
    tokenizer = minilm_tokenizer()
    torch.manual_seed(0)
    sizes = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                 vocab_size=tokenizer.vocab_size, max_position_embeddings=512)
    config = EncoderDecoderConfig.from_encoder_decoder_configs(
        BertConfig(**sizes), BertConfig(**sizes, is_decoder=True, add_cross_attention=True)
    )
    config.decoder_start_token_id, config.pad_token_id, config.eos_token_id = (
        tokenizer.cls_token_id, tokenizer.pad_token_id, tokenizer.sep_token_id,
    )
    model = EncoderDecoderModel(config)
    model.generation_config.decoder_start_token_id = tokenizer.cls_token_id
    model.generation_config.eos_token_id = tokenizer.sep_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    folder = tmp_path_factory.mktemp("bert2bert")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_prune_a_trained_adapter_and_answer_with_it(tmp_path, capsys, tiny_bert2bert_dir):
    trained = tmp_path / "geek"
    code, out, _ = run_cli(capsys, "train", "--questions", QUESTIONS, "--base", tiny_bert2bert_dir, "--output", trained,
                           "--role", "core", "--epochs", "1", "--max-examples-per-task", "4", "--adapter-options", "r=2")
    assert code == 0, out
    pruned = tmp_path / "pruned"
    code, out, err = run_cli(capsys, "compress", "--model", trained / "core", "--questions", QUESTIONS, "--output", pruned,
                             "--method", "simple", "--reduction", "0.4", "--steps", "2", "--mask-steps", "2", "--max-examples", "40")
    assert code == 0, err
    report = json.loads((pruned / "compression.json").read_text())
    assert 0.2 < report["parameters"]["reduction"] < 0.6
    assert report["compressed_loss"]["tokens"] == report["teacher_loss"]["tokens"] > 0
    assert not (pruned / "adapter_config.json").exists()  # a plain folder
    code, out, _ = run_cli(capsys, "ask", "Did Aristotle use a laptop?", "--core", pruned, "--no-retrieval", "--no-exploration")
    assert code == 0 and "Answer: " in out


@pytest.mark.parametrize("granularity", ["tensor", "channel"])
def test_quantize_a_causal_model_for_the_agent(tmp_path, capsys, tiny_text_model_dirs, granularity):
    output = tmp_path / "w4"
    code, _, err = run_cli(capsys, "compress", "--model", tiny_text_model_dirs["causal"], "--questions", QUESTIONS,
                           "--output", output, "--method", "quantgpt", "--bits", "4", "--granularity", granularity,
                           "--steps", "2", "--max-examples", "20")
    assert code == 0, err
    report = json.loads((output / "compression.json").read_text())
    assert report["options"]["granularity"] == granularity
    assert report["storage"]["compression"] > 6
    code, out, _ = run_cli(capsys, "ask", "Did Aristotle use a laptop?", "--core", output, "--no-retrieval", "--no-exploration")
    assert code == 0 and "Answer: " in out


def test_an_unsupported_architecture_exits_2_without_writing_anything(tmp_path, capsys, tiny_text_model_dirs):
    output = tmp_path / "out"
    code, _, err = run_cli(capsys, "compress", "--model", tiny_text_model_dirs["seq2seq"], "--questions", QUESTIONS,
                           "--output", output, "--method", "simple", "--steps", "1", "--mask-steps", "1", "--max-examples", "10")
    assert code == 2 and "SIMPLE supports BERT-style models" in err  # the tiny seq2seq is a T5
    assert "Traceback" not in err
    assert not output.exists() and not list(tmp_path.glob(".out.*"))


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--bits", "9"], "expected a bit width from 2 to 8"),
        (["--reduction", "1.5"], "expected a number between 0 and 1"),
        (["--granularity", "group"], "invalid choice: 'group'"),
    ],
)
def test_bad_flags_exit_2(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as stop:
        main(["compress", "--model", "m", "--questions", str(QUESTIONS), "--output", str(tmp_path / "out"), *flags])
    assert stop.value.code == 2 and message in capsys.readouterr().err

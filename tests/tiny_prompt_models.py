"""Tiny seeded models (BERT, Llama, T5; vocabulary 64, width 32) and helpers for the tests of the
prompt-conditioned adapters (MiLoRA, PARA)."""

from __future__ import annotations

import torch
from torch import nn
from transformers import (
    BertConfig,
    BertModel,
    LlamaConfig,
    LlamaForCausalLM,
    T5Config,
    T5ForConditionalGeneration,
)

from nagner.peft import adapter_parameters

VOCAB, HIDDEN = 64, 32


def tiny_bert() -> BertModel:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    return BertModel(config).eval()


def tiny_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        pad_token_id=0,
    )
    return LlamaForCausalLM(config).eval()


def tiny_t5() -> T5ForConditionalGeneration:
    torch.manual_seed(0)
    config = T5Config(
        vocab_size=VOCAB,
        d_model=HIDDEN,
        d_kv=16,
        d_ff=64,
        num_layers=2,
        num_heads=2,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )
    return T5ForConditionalGeneration(config).eval()


@torch.no_grad()
def randomize(model: nn.Module, name: str = "default", seed: int = 0) -> None:
    """Move adapter ``name`` off its initialisation (PARA's generators start at all ones, MiLoRA's
    experts at B = 0, its router near uniform)."""
    generator = torch.Generator().manual_seed(seed)
    for _, parameter in adapter_parameters(model, name):
        parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.5)


def ids(batch: int, length: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(3, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


def greedy(model: nn.Module, inputs: torch.Tensor, **kwargs) -> torch.Tensor:
    return model.generate(inputs, max_new_tokens=5, min_new_tokens=5, do_sample=False, **kwargs)

"""Tiny random generative models for the compression tests: GPT-2 (causal) and a bert2bert
`EncoderDecoderModel` (the shape of `knowledge_qa`'s warm-started seq2seq), small vocabularies."""

from __future__ import annotations

import torch
from transformers import BertConfig, EncoderDecoderConfig, EncoderDecoderModel, GPT2Config, GPT2LMHeadModel

VOCAB = 100


def tiny_gpt2(seed: int = 0, hidden: int = 64, heads: int = 4, layers: int = 2) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(n_embd=hidden, n_layer=layers, n_head=heads, vocab_size=VOCAB, n_positions=32,
                        bos_token_id=0, eos_token_id=0, pad_token_id=0)
    return GPT2LMHeadModel(config).eval()


def tiny_bert2bert(seed: int = 0, hidden: int = 64, heads: int = 4, layers: int = 2) -> EncoderDecoderModel:
    torch.manual_seed(seed)
    sizes = dict(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=2 * hidden,
                 vocab_size=VOCAB, max_position_embeddings=32)
    encoder = BertConfig(**sizes)
    decoder = BertConfig(**sizes, is_decoder=True, add_cross_attention=True)
    config = EncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id, config.pad_token_id = 1, 0
    return EncoderDecoderModel(config).eval()


def random_batches(model, count: int = 3, seed: int = 0, rows: int = 4, length: int = 10) -> list[dict]:
    """Batches of random tokens in the model's shape (labels = inputs for GPT-2, a short target for seq2seq)."""
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(count):
        ids = torch.randint(2, VOCAB, (rows, length), generator=generator)
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        if model.config.is_encoder_decoder:
            batch["labels"] = torch.randint(2, VOCAB, (rows, 6), generator=generator)
        else:
            batch["labels"] = ids.clone()
        batches.append(batch)
    return batches

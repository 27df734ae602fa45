"""`run_layers` computes what `nn.TransformerDecoder` computes on the rows' gathered memories:
self-attention masks (groups, causal), padded words, rows sharing a sentence, gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nagner.modeling.decoder_layers import run_layers


def make_decoder(d: int = 16, heads: int = 4, layers: int = 2, dropout: float = 0.0) -> nn.TransformerDecoder:
    torch.manual_seed(0)
    layer = nn.TransformerDecoderLayer(d, heads, 2 * d, dropout, activation="gelu", batch_first=True, norm_first=True)
    return nn.TransformerDecoder(layer, layers, norm=nn.LayerNorm(d))


@pytest.mark.parametrize("causal", [False, True])
def test_run_layers_equals_the_transformer_decoder(causal):
    decoder = make_decoder().eval()
    B, n, R, Q, d = 3, 5, 4, 6, 16
    words = torch.randn(B, n, d, requires_grad=True)
    word_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0]], dtype=torch.bool)
    row_sentence = torch.tensor([0, 1, 1, 2])  # sentence 1 fills two rows
    queries = torch.randn(R, Q, d, requires_grad=True)
    groups = torch.tensor([[0, 0, 0, 1, 1, 1], [2, 2, 2, 2, 2, 2], [3, 3, 4, 4, 5, 5], [6, 6, 6, 6, 6, 6]])
    allowed = groups[:, :, None] == groups[:, None, :]  # (R, Q, Q)
    if causal:
        allowed = allowed & torch.ones(Q, Q, dtype=torch.bool).tril()
    additive = torch.zeros(allowed.shape).masked_fill(~allowed, float("-inf")).repeat_interleave(4, dim=0)

    expected = decoder(queries, words[row_sentence], tgt_mask=additive,
                       memory_key_padding_mask=~word_mask[row_sentence])
    found = run_layers(decoder, queries, words, word_mask, row_sentence, allowed)
    torch.testing.assert_close(found, expected, atol=1e-5, rtol=1e-5)

    weights = torch.randn_like(expected)
    grads = torch.autograd.grad((expected * weights).sum(), [queries, words, decoder.layers[0].multihead_attn.in_proj_weight])
    found_grads = torch.autograd.grad((found * weights).sum(), [queries, words, decoder.layers[0].multihead_attn.in_proj_weight])
    for a, b in zip(found_grads, grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_run_layers_without_a_mask_and_in_training_mode_without_dropout():
    decoder = make_decoder().train()
    words, word_mask = torch.randn(2, 3, 16), torch.tensor([[1, 1, 1], [1, 0, 0]], dtype=torch.bool)
    queries, row_sentence = torch.randn(2, 4, 16), torch.tensor([1, 0])
    expected = decoder(queries, words[row_sentence], memory_key_padding_mask=~word_mask[row_sentence])
    torch.testing.assert_close(run_layers(decoder, queries, words, word_mask, row_sentence, None), expected,
                               atol=1e-5, rtol=1e-5)


def test_dropout_is_on_in_training_and_off_in_eval():
    decoder = make_decoder(dropout=0.5)
    words, word_mask = torch.randn(1, 3, 16), torch.ones(1, 3, dtype=torch.bool)
    queries, row_sentence = torch.randn(1, 4, 16), torch.tensor([0])
    decoder.eval()
    torch.testing.assert_close(run_layers(decoder, queries, words, word_mask, row_sentence, None),
                               run_layers(decoder, queries, words, word_mask, row_sentence, None))
    decoder.train()
    torch.manual_seed(1)
    first = run_layers(decoder, queries, words, word_mask, row_sentence, None)
    torch.manual_seed(2)
    assert not torch.allclose(first, run_layers(decoder, queries, words, word_mask, row_sentence, None))

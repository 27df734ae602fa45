"""The slot decoder's transformer layers, run on packed rows with each sentence's cross-attention
keys and values computed once.

The layers are `torch.nn.TransformerDecoderLayer` modules (pre-norm, GELU, batch first), kept as
they are so checkpoints and `nn.TransformerDecoder`'s parameter names do not change; `run_layers`
computes what ``nn.TransformerDecoder(tgt, memory[row_sentence], ...)`` computes, with these
differences in cost, not in result:

- a sentence packed into several rows had its words projected to keys and values once per row
  per layer; here once per sentence, then gathered per row;
- `nn.MultiheadAttention`'s argument checks and mask conversions run once per call of
  `run_layers`, not per layer and attention (they dominated the decoder at batch 1);
- attention is a plain matmul, softmax, matmul (`_attend`): the problems are small (a few to a
  few dozen queries per row, tens of words), where CPU `scaled_dot_product_attention` took 2–4×
  as long (measured at the decoder's shapes on the project's 2-core machine; same results within
  1e-6).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def run_layers(
    decoder: nn.TransformerDecoder,
    queries: torch.Tensor,
    words: torch.Tensor,
    word_mask: torch.Tensor,
    row_sentence: torch.Tensor,
    allowed: torch.Tensor | None,
) -> torch.Tensor:
    """queries: (R, Q, d) packed slot positions; words: (B, n, d) the memory of each sentence;
    word_mask: (B, n) True for real words; row_sentence: (R,) the sentence of each row; allowed:
    (R, Q, Q) which positions a position may attend to (None: all) → (R, Q, d) after the final norm."""
    first = decoder.layers[0].self_attn
    heads = first.num_heads
    dropout = first.dropout if decoder.training else 0.0
    self_mask = None if allowed is None else allowed.unsqueeze(1)  # (R, 1, Q, Q)
    padding = torch.zeros(word_mask.shape, dtype=words.dtype, device=words.device)
    cross_mask = padding.masked_fill(~word_mask, float("-inf"))[row_sentence][:, None, None, :]  # (R, 1, 1, n)
    x = queries
    for layer in decoder.layers:
        h = layer.norm1(x)
        q, k, v = F.linear(h, layer.self_attn.in_proj_weight, layer.self_attn.in_proj_bias).chunk(3, dim=-1)
        x = x + layer.dropout1(_attend(layer.self_attn, q, _heads(k, heads), _heads(v, heads), self_mask, dropout))
        h = layer.norm2(x)
        cross = layer.multihead_attn
        d = h.shape[-1]
        q = F.linear(h, cross.in_proj_weight[:d], cross.in_proj_bias[:d])
        k, v = F.linear(words, cross.in_proj_weight[d:], cross.in_proj_bias[d:]).chunk(2, dim=-1)  # (B, n, d) each
        k, v = _heads(k, heads)[row_sentence], _heads(v, heads)[row_sentence]  # (R, heads, n, d / heads)
        x = x + layer.dropout2(_attend(cross, q, k, v, cross_mask, dropout))
        h = layer.norm3(x)
        x = x + layer.dropout3(layer.linear2(layer.dropout(layer.activation(layer.linear1(h)))))
    return decoder.norm(x) if decoder.norm is not None else x


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(N, L, d) → (N, heads, L, d / heads)."""
    N, L, d = x.shape
    return x.view(N, L, heads, d // heads).transpose(1, 2)


def _attend(
    attention: nn.MultiheadAttention,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    dropout: float,
) -> torch.Tensor:
    """q: (R, Q, d) projected queries; k, v: (R, heads, n, d / heads); mask: broadcastable to
    (R, heads, Q, n), boolean (True: attend) or additive → (R, Q, d) after the output projection."""
    R, Q, d = q.shape
    q = _heads(q, attention.num_heads)  # (R, heads, Q, d / heads)
    scores = q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5  # (R, heads, Q, n)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    weights = F.dropout(scores.softmax(-1), dropout) if dropout else scores.softmax(-1)
    out = weights @ v  # (R, heads, Q, d / heads)
    return attention.out_proj(out.transpose(1, 2).reshape(R, Q, d))

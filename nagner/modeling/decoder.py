"""The slot decoder: every slot's pointer sequence and type in one pass (NAG), or step by step (AR ablation).

Each slot has L pointer positions plus one type position. Input at position t is the slot
query (anchor word state + slot embedding) plus a position embedding; the AR mode adds the
previous target (teacher forcing) and a causal mask, and is otherwise the same module.
Self-attention runs within a slot, cross-attention over the words of the slot's sentence.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class SlotDecoder(nn.Module):
    """Pointer logits over END ∪ words and type logits over NONE ∪ types, for a batch of slots."""

    def __init__(
        self,
        hidden_size: int,
        num_types: int,
        max_pointers: int,
        max_entities_per_start: int,
        layers: int,
        heads: int,
        ffn_size: int,
        dropout: float,
        autoregressive: bool = False,
    ):
        super().__init__()
        if hidden_size % heads:
            raise ValueError(f"decoder_heads ({heads}) must divide the encoder hidden size ({hidden_size})")
        self.max_pointers = max_pointers
        self.slot_embedding = nn.Embedding(max_entities_per_start, hidden_size)
        self.position_embedding = nn.Embedding(max_pointers + 1, hidden_size)  # + the type position
        self.anchor = nn.Linear(hidden_size, hidden_size)
        self.end = nn.Parameter(torch.zeros(hidden_size))  # the END pointer's state
        if autoregressive:  # the ablation's extra inputs: previous pointer, "no previous pointer"
            self.previous = nn.Linear(hidden_size, hidden_size)
            self.begin = nn.Parameter(torch.zeros(hidden_size))
        layer = nn.TransformerDecoderLayer(
            hidden_size, heads, ffn_size, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.layers = nn.TransformerDecoder(layer, layers, norm=nn.LayerNorm(hidden_size))
        self.pointer_query = nn.Linear(hidden_size, hidden_size)
        self.pointer_key = nn.Linear(hidden_size, hidden_size)
        self.type_head = nn.Linear(hidden_size, num_types)

    def reset_parameters(self) -> None:
        """Initialise the free parameters (the linear and norm layers are initialised by the model)."""
        nn.init.normal_(self.end, std=0.02)
        if hasattr(self, "begin"):
            nn.init.normal_(self.begin, std=0.02)

    def queries(self, anchors: torch.Tensor, slot_ranks: torch.Tensor) -> torch.Tensor:
        """anchors: (S, d) start-word states; slot_ranks: (S,) k of the slot → (S, d) slot queries."""
        return self.anchor(anchors) + self.slot_embedding(slot_ranks)

    def previous_inputs(self, words: torch.Tensor, slot_batch: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """AR teacher forcing: state of the previous pointer at each position.

        words: (B, n, d); slot_batch: (S,) sentence of each slot; classes: (S, P) pointer classes
        (0 END, j+1 word j, <0 treated as END) → (S, P + 1, d): position 0 gets BEGIN, position t
        the embedding of classes[:, t-1].
        """
        S = classes.shape[0]
        word = (classes - 1).clamp(min=0)  # (S, P)
        states = words[slot_batch.unsqueeze(1), word]  # (S, P, d)
        states = torch.where((classes > 0).unsqueeze(-1), states, self.end.expand_as(states))
        begin = self.begin.expand(S, 1, -1)
        return torch.cat([begin, self.previous(states)], dim=1)  # (S, P + 1, d)

    def forward(
        self,
        queries: torch.Tensor,
        slot_batch: torch.Tensor,
        words: torch.Tensor,
        word_mask: torch.Tensor,
        previous: torch.Tensor | None = None,
        positions: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Decode slots.

        queries: (S, d); slot_batch: (S,) sentence of each slot; words: (B, n, d) word states;
        word_mask: (B, n) True for real words. ``previous`` (S, P, d) switches on the AR mode
        (causal mask, teacher-forced inputs) for the first P positions. ``positions``: how many
        positions to run, default all L pointer positions + the type position.
        Returns pointer logits (S, P', n + 1) for the pointer positions run, and type logits
        (S, num_types) if the type position was run, else None.

        Slots of one sentence are packed into shared sequences with a block-diagonal self-attention
        mask, so each slot still attends only to itself while the sentence's words are projected
        for cross-attention about once per sentence instead of once per slot (same outputs, less work).
        """
        P = self.max_pointers + 1 if positions is None else positions
        hidden = queries.unsqueeze(1) + self.position_embedding.weight[:P].unsqueeze(0)  # (S, P, d)
        if previous is not None:
            hidden = hidden + previous[:, :P]
        rows, blocks, memory, memory_mask = self._pack(slot_batch, words, word_mask)
        width = int(blocks.max()) + 1  # slots per packed row
        packed = hidden.new_zeros(int(rows.max()) + 1, width, P, hidden.shape[-1])  # (R, G, P, d)
        packed[rows, blocks] = hidden
        mask = self._attention_mask(width, P, causal=previous is not None, device=hidden.device)
        out = self.layers(
            packed.flatten(1, 2), memory, tgt_mask=mask, memory_key_padding_mask=~memory_mask
        ).view_as(packed)  # (R, G, P, d)
        pointer_states = out[:, :, : min(P, self.max_pointers)]  # (R, G, P_ptr, d)
        logits = self.pointer_logits(pointer_states.flatten(1, 2), memory, memory_mask)  # (R, G*P_ptr, n + 1)
        logits = logits.view(*pointer_states.shape[:3], -1)[rows, blocks]  # (S, P_ptr, n + 1)
        type_logits = self.type_head(out[rows, blocks, self.max_pointers]) if P > self.max_pointers else None
        return logits, type_logits

    @staticmethod
    def _pack(
        slot_batch: torch.Tensor, words: torch.Tensor, word_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Where each slot goes: packed row (S,) and place in the row (S,), and each row's words.

        A row holds up to G slots of one sentence, G = the mean number of slots per sentence
        (rounded), so rows are rarely padded and a sentence's words are projected about once.
        Returns rows (S,), blocks (S,), memory (R, n, d), memory_mask (R, n).
        """
        sentences, row = torch.unique(slot_batch, return_inverse=True)  # (B',), (S,)
        counts = torch.bincount(row, minlength=sentences.shape[0])  # (B',)
        order = torch.argsort(row, stable=True)
        rank = torch.empty_like(row)  # index of each slot among its sentence's slots
        rank[order] = torch.arange(row.shape[0], device=row.device) - (torch.cumsum(counts, 0) - counts)[row[order]]
        width = max(1, round(row.shape[0] / sentences.shape[0]))
        rows_per_sentence = (counts + width - 1) // width  # (B',)
        first_row = torch.cumsum(rows_per_sentence, 0) - rows_per_sentence  # (B',)
        row_sentence = sentences.repeat_interleave(rows_per_sentence)  # (R,)
        return first_row[row] + rank // width, rank % width, words[row_sentence], word_mask[row_sentence]

    @staticmethod
    def _attention_mask(blocks: int, positions: int, causal: bool, device: torch.device) -> torch.Tensor | None:
        """(C*P, C*P) additive mask: a position sees only its own slot (and, causal, no later position)."""
        if blocks == 1 and not causal:
            return None
        index = torch.arange(blocks * positions, device=device)
        allowed = (index[:, None] // positions) == (index[None, :] // positions)
        if causal:
            allowed &= index[:, None] >= index[None, :]
        return torch.zeros(allowed.shape, device=device).masked_fill(~allowed, float("-inf"))

    def pointer_logits(self, states: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
        """states: (B', Q, d), memory: (B', n, d) → (B', Q, n + 1), class 0 = END, padded words −inf."""
        query = self.pointer_query(states)  # (B', Q, d)
        keys = self.pointer_key(torch.cat([self.end.expand(memory.shape[0], 1, -1), memory], dim=1))  # (B', n+1, d)
        logits = query @ keys.transpose(1, 2) / math.sqrt(query.shape[-1])  # (B', Q, n + 1)
        valid = torch.cat([memory_mask.new_ones(memory_mask.shape[0], 1), memory_mask], dim=1)  # (B', n + 1)
        return logits.masked_fill(~valid.unsqueeze(1), float("-inf"))

"""The slot decoder: every slot's pointer sequence and type in one pass (NAG), or step by step (AR ablation).

Each slot has L pointer positions plus one type position. Input at position t is the slot
query (anchor word state + slot-rank embedding) plus a position embedding; the AR mode adds the
previous target (teacher forcing) and a causal mask, and is otherwise the same module.
With ``cross_slot_attention`` the slots that share a start word attend to each other (so two slots
on one start word can tell each other apart and one can say NONE instead of repeating the other;
DETR / PIQN let all queries meet, which costs memory quadratic in a sentence's slots), else each
slot attends only to itself. Groups of one sentence are packed into rows with a block-diagonal
mask; how many slots a row holds (1, 2, 4, 8 or 16) is chosen per batch by a FLOP estimate
(`_pack`): every row is padded to the widest, so wide rows waste positions where sentences have
few slots. The words' cross-attention keys and values, and the pointer keys, are projected once
per sentence and shared by its rows (`decoder_layers.run_layers`).

Pointer logits over END ∪ words are a scaled dot product; with ``pointer_prior`` they also add
the detector's end logit of the word (at fragment-end positions, weighted by a learned scalar)
and a learned bias per position and bucketed distance from the start word (W2NER's distance
buckets), so a pointer needs evidence to reach far.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from nagner.modeling.decoder_layers import run_layers

DISTANCE_BUCKETS = 10


def distance_bucket(distance: torch.Tensor) -> torch.Tensor:
    """Bucket of word distances ≥ 0: 0..4 exact, then 5-7, 8-15, 16-31, 32-63, ≥ 64 (negatives → 0)."""
    d = distance.clamp(min=0)
    log_bucket = torch.floor(torch.log2(d.clamp(min=1).float())).long() + 3  # 5-7 → 5, 8-15 → 6, ...
    return torch.where(d < 5, d, log_bucket.clamp(max=DISTANCE_BUCKETS - 1))


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
        ffn_size: int | None,
        dropout: float,
        autoregressive: bool = False,
        cross_slot_attention: bool = True,
        pointer_prior: bool = True,
        model_size: int | None = None,
    ):
        """hidden_size: the encoder's word-state size; model_size: the decoder's own width, at most
        the encoder's (word states are projected to it once per batch; None: the encoder's)."""
        super().__init__()
        d = min(model_size, hidden_size) if model_size else hidden_size
        if d % heads:
            raise ValueError(f"decoder_heads ({heads}) must divide the decoder width ({d})")
        self.max_pointers = max_pointers
        self.cross_slot_attention = cross_slot_attention
        self.word_projection = nn.Linear(hidden_size, d) if d != hidden_size else nn.Identity()
        self.slot_embedding = nn.Embedding(max_entities_per_start, d)
        self.position_embedding = nn.Embedding(max_pointers + 1, d)  # + the type position
        self.anchor = nn.Linear(d, d)
        self.end = nn.Parameter(torch.zeros(d))  # the END pointer's state
        if autoregressive:  # the ablation's extra inputs: previous pointer, "no previous pointer"
            self.previous = nn.Linear(d, d)
            self.begin = nn.Parameter(torch.zeros(d))
        if pointer_prior:
            self.distance_bias = nn.Parameter(torch.zeros(max_pointers, DISTANCE_BUCKETS))
            self.end_weight = nn.Parameter(torch.ones(()))
        layer = nn.TransformerDecoderLayer(
            d, heads, ffn_size or 2 * d, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.layers = nn.TransformerDecoder(layer, layers, norm=nn.LayerNorm(d))
        self.pointer_query = nn.Linear(d, d)
        self.pointer_key = nn.Linear(d, d)
        self.type_head = nn.Linear(d, num_types)

    def project(self, words: torch.Tensor) -> torch.Tensor:
        """Encoder word states (B, n, hidden) → the decoder's width (B, n, d)."""
        return self.word_projection(words)

    @property
    def pointer_prior(self) -> bool:
        return hasattr(self, "distance_bias")

    def reset_parameters(self) -> None:
        """Initialise the free parameters (the linear, norm and embedding layers are initialised by the model)."""
        nn.init.normal_(self.end, std=0.02)
        if hasattr(self, "begin"):
            nn.init.normal_(self.begin, std=0.02)
        if self.pointer_prior:
            nn.init.zeros_(self.distance_bias)
            nn.init.ones_(self.end_weight)

    def queries(self, anchors: torch.Tensor, slot_ranks: torch.Tensor) -> torch.Tensor:
        """anchors: (S, d) start-word states; slot_ranks: (S,) k of the slot → (S, d) slot queries."""
        return self.anchor(anchors) + self.slot_embedding(slot_ranks)

    def previous_inputs(self, words: torch.Tensor, slot_batch: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """AR teacher forcing: state of the previous pointer at each position.

        words: (B, n, d) projected word states; slot_batch: (S,) sentence of each slot; classes: (S, P) pointer classes
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
        slot_word: torch.Tensor,
        words: torch.Tensor,
        word_mask: torch.Tensor,
        end_logits: torch.Tensor | None = None,
        previous: torch.Tensor | None = None,
        positions: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Decode slots.

        queries: (S, d); slot_batch / slot_word: (S,) sentence and start word of each slot;
        words: (B, n, d) word states at the decoder's width (`project`); word_mask: (B, n) True for real words; end_logits: (B, n)
        the detector's end logits (used with ``pointer_prior``). ``previous`` (S, P, d) switches on
        the AR mode (causal mask, teacher-forced inputs) for the first P positions. ``positions``:
        how many positions to run, default all L pointer positions + the type position.
        Returns pointer logits (S, P', n + 1) for the pointer positions run, and type logits
        (S, num_types) if the type position was run, else None.
        """
        P = self.max_pointers + 1 if positions is None else positions
        hidden = queries.unsqueeze(1) + self.position_embedding.weight[:P].unsqueeze(0)  # (S, P, d)
        if previous is not None:
            hidden = hidden + previous[:, :P]
        group = _start_groups(slot_batch, slot_word) if self.cross_slot_attention else torch.arange(
            slot_batch.shape[0], device=slot_batch.device
        )
        row, col, width, row_sentence, row_group = _pack(slot_batch, group, self._row_cost(P, words.shape[1]))
        packed = hidden.new_zeros(row_sentence.shape[0], width, P, hidden.shape[-1])  # (R, G, P, d)
        packed[row, col] = hidden
        allowed = self._allowed(row_group, P, causal=previous is not None)
        out = run_layers(self.layers, packed.flatten(1, 2), words, word_mask, row_sentence, allowed).view_as(packed)  # (R, G, P, d)
        P_ptr = min(P, self.max_pointers)
        pointer_states = out[:, :, :P_ptr].flatten(1, 2)  # (R, G*P_ptr, d)
        logits = self.pointer_logits(pointer_states, words, word_mask, row_sentence)  # (R, G*P_ptr, n + 1)
        logits = logits.view(out.shape[0], width, P_ptr, -1)[row, col]  # (S, P_ptr, n + 1)
        if self.pointer_prior:
            logits = logits + self._prior(slot_batch, slot_word, end_logits, P_ptr, logits.shape[-1] - 1)
        type_logits = self.type_head(out[row, col, self.max_pointers]) if P > self.max_pointers else None
        return logits, type_logits

    def _prior(
        self, slot_batch: torch.Tensor, slot_word: torch.Tensor, end_logits: torch.Tensor | None, P: int, n: int
    ) -> torch.Tensor:
        """(S, P, n + 1) additive pointer prior: distance bias + end logit at fragment-end positions (END: 0)."""
        distance = torch.arange(n, device=slot_word.device)[None, :] - slot_word[:, None]  # (S, n)
        bias = self.distance_bias[:P][:, distance_bucket(distance)].permute(1, 0, 2)  # (S, P, n)
        if end_logits is not None:
            is_end = (torch.arange(P, device=bias.device) % 2 == 0).to(bias.dtype)  # (P,)
            bias = bias + self.end_weight * is_end[None, :, None] * end_logits[slot_batch][:, None, :n]
        return torch.cat([bias.new_zeros(bias.shape[0], P, 1), bias], dim=-1)

    def _row_cost(self, positions: int, words: int):
        """Estimated multiply-adds of one packed row of ``width`` slots (``positions`` each) over a
        memory of ``words`` words: per decoder layer the slots' projections, FFN, self-attention
        and attention to the words, plus a fixed cost per row (its copy of the sentence's keys and
        values and its own attention call, counted as d·d·words/2: fitted on CoNLL and CADEC test
        decoding, where d/4 … 4d per gathered word were tried and d/2 was fastest on both); then
        the pointer query projection and scores. (The words' keys and values are projected once
        per sentence, whatever the packing.)"""
        layer = self.layers.layers[0]
        d, f, L = layer.linear1.in_features, layer.linear1.out_features, len(self.layers.layers)

        def cost(width: int) -> int:
            queries = width * positions
            per_layer = queries * (6 * d * d + 2 * d * f + 2 * d * words) + 2 * d * queries * queries + d * d * words // 2
            return L * per_layer + queries * d * (d + words)

        return cost

    def _allowed(self, row_group: torch.Tensor, positions: int, causal: bool) -> torch.Tensor | None:
        """Which packed positions a position attends to, (R, G*P, G*P) boolean, or None when all:
        the positions of its own group's slots (and, causal, no later step).
        row_group: (R, G) group of each packed slot (padding has groups of its own)."""
        R, G = row_group.shape
        if G == 1 and not causal:
            return None
        index = torch.arange(G * positions, device=row_group.device)
        step, slot = index % positions, index // positions
        groups = row_group[:, slot]  # (R, G*P)
        allowed = groups[:, :, None] == groups[:, None, :]  # (R, G*P, G*P)
        if causal:
            allowed = allowed & (step[:, None] >= step[None, :])
        return None if bool(allowed.all()) else allowed

    def pointer_logits(
        self, states: torch.Tensor, words: torch.Tensor, word_mask: torch.Tensor, row_sentence: torch.Tensor
    ) -> torch.Tensor:
        """states: (R, Q, d) of rows of sentences row_sentence (R,); words: (B, n, d); word_mask:
        (B, n) → (R, Q, n + 1), class 0 = END, padded words −inf (keys projected once per sentence)."""
        query = self.pointer_query(states)  # (R, Q, d)
        keys = self.pointer_key(torch.cat([self.end.expand(words.shape[0], 1, -1), words], dim=1))  # (B, n+1, d)
        logits = query @ keys[row_sentence].transpose(1, 2) / math.sqrt(query.shape[-1])  # (R, Q, n + 1)
        valid = torch.cat([word_mask.new_ones(word_mask.shape[0], 1), word_mask], dim=1)[row_sentence]  # (R, n + 1)
        return logits.masked_fill(~valid.unsqueeze(1), float("-inf"))


def _start_groups(slot_batch: torch.Tensor, slot_word: torch.Tensor) -> torch.Tensor:
    """(S,) group id of each slot: slots with the same sentence and start word share one."""
    _, group = torch.unique(torch.stack([slot_batch, slot_word], dim=1), dim=0, return_inverse=True)
    return group


ROW_CAPACITIES = (1, 2, 4, 8, 16)


def _pack(slot_batch: torch.Tensor, group: torch.Tensor, row_cost=None, capacities: tuple[int, ...] = ROW_CAPACITIES):
    """Where each slot goes in the packed decoder input: rows hold whole groups of one sentence,
    filled in order up to a capacity (or one group, if larger), every row padded to the widest.
    The capacity is the one of ``capacities`` whose packing costs least by ``row_cost(width)``
    (the cost of one row of that width; the first capacity wins ties; without ``row_cost``, the
    largest capacity).

    slot_batch, group: (S,). Returns row (S,), col (S,), the row width G, the sentence of each row
    (R,) and the group of each packed place (R, G) (padding: -1 - col, a group of its own).
    """
    S = slot_batch.shape[0]
    order = torch.argsort(slot_batch * (S + 1) + group, stable=True).tolist()  # by sentence, then group
    slot_batch_list, group_list = slot_batch.tolist(), group.tolist()
    sizes: dict[int, int] = {}
    for g in group_list:
        sizes[g] = sizes.get(g, 0) + 1

    def fill(capacity: int) -> tuple[list[int], list[int], list[int], int]:
        rows, cols, row_sentence = [0] * S, [0] * S, []
        fill, current_group, sentence = 0, None, None
        width = 1
        for s in order:
            b, g = slot_batch_list[s], group_list[s]
            if g != current_group:  # a new group starts: does it fit the current row?
                if sentence != b or fill + sizes[g] > max(capacity, sizes[g]):
                    row_sentence.append(b)
                    fill = 0
                current_group, sentence = g, b
            rows[s], cols[s] = len(row_sentence) - 1, fill
            fill += 1
            width = max(width, fill)
        return rows, cols, row_sentence, width

    if row_cost is None:
        rows, cols, row_sentence, width = fill(max(capacities))
    else:
        plans = [fill(capacity) for capacity in capacities]
        rows, cols, row_sentence, width = min(plans, key=lambda plan: len(plan[2]) * row_cost(plan[3]))
    device = slot_batch.device
    row = torch.tensor(rows, dtype=torch.long, device=device)
    col = torch.tensor(cols, dtype=torch.long, device=device)
    row_group = -1 - torch.arange(width, device=device).repeat(len(row_sentence), 1)  # (R, G)
    row_group[row, col] = group
    return row, col, width, torch.tensor(row_sentence, dtype=torch.long, device=device), row_group

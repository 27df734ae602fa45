"""Set matching of gold entities to decoder slots.

Slots are grouped by the word they start at; several gold entities may start at the same
word (nested or discontinuous entities sharing a head) and their order inside the group is
not defined. Within each group the gold entities are assigned to slots with minimum total
cost, cost = −log p(pointer sequence) − log p(type): the assignment problem solved by the
Hungarian algorithm (`scipy.optimize.linear_sum_assignment`). Slots left without a gold
entity are trained to say NONE. This is what makes the loss a *set* loss.
"""

from __future__ import annotations

from collections import defaultdict

import torch

from nagner.modeling.targets import IGNORE


@torch.no_grad()
def match_slots(
    pointer_log_probs: torch.Tensor,
    type_log_probs: torch.Tensor,
    slot_groups: list[tuple[int, int]],
    gold_pointers: torch.Tensor,
    gold_types: torch.Tensor,
    gold_groups: list[tuple[int, int]],
    gold_type_bias: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Assign every gold entity to one slot of its group.

    pointer_log_probs: (S, L, C) log-softmax over END ∪ words; type_log_probs: (S, T + 1) the
    slots' type logits (or log-probabilities); gold_type_bias: (G, T + 1) added to a slot's type
    logits when it takes that gold entity (span typing: the type evidence of the gold span);
    slot_groups: (sentence, start word) of each slot; gold_pointers: (G, L) classes (IGNORE pad);
    gold_types: (G,); gold_groups: (sentence, start word) of each gold entity.
    Every gold group must have at least as many slots as gold entities.
    Returns (slot index, gold index) pairs as two (M,) long tensors, M = G.
    """
    slots_of: dict[tuple[int, int], list[int]] = defaultdict(list)
    for s, group in enumerate(slot_groups):
        slots_of[group].append(s)
    golds_of: dict[tuple[int, int], list[int]] = defaultdict(list)
    for g, group in enumerate(gold_groups):
        golds_of[group].append(g)
    slot_index: list[int] = []
    gold_index: list[int] = []
    for group, golds in golds_of.items():
        slots = slots_of[group]
        if len(slots) < len(golds):
            raise ValueError(f"group {group} has {len(golds)} gold entities but only {len(slots)} slots")
        if len(slots) == 1:
            slot_index.append(slots[0])
            gold_index.append(golds[0])
            continue
        bias = None if gold_type_bias is None else gold_type_bias[golds]
        cost = slot_costs(
            pointer_log_probs[slots], type_log_probs[slots], gold_pointers[golds], gold_types[golds], bias
        )
        from scipy.optimize import linear_sum_assignment  # deferred: 0.5 s of imports, training only

        rows, cols = linear_sum_assignment(cost.float().cpu().numpy())
        slot_index.extend(slots[r] for r in rows)
        gold_index.extend(golds[c] for c in cols)
    device = pointer_log_probs.device
    return torch.tensor(slot_index, dtype=torch.long, device=device), torch.tensor(
        gold_index, dtype=torch.long, device=device
    )


def slot_costs(
    pointer_log_probs: torch.Tensor,
    type_log_probs: torch.Tensor,
    gold_pointers: torch.Tensor,
    gold_types: torch.Tensor,
    gold_type_bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cost of giving each of m slots each of c gold entities: (m, c).

    pointer_log_probs: (m, L, C); type_log_probs: (m, T + 1) logits or log-probabilities;
    gold_pointers: (c, L); gold_types: (c,); gold_type_bias: (c, T + 1) or None.
    """
    m, L, C = pointer_log_probs.shape
    c = gold_pointers.shape[0]
    valid = gold_pointers != IGNORE  # (c, L)
    targets = gold_pointers.clamp(min=0)  # (c, L)
    picked = pointer_log_probs.unsqueeze(1).expand(m, c, L, C).gather(
        -1, targets.unsqueeze(0).expand(m, c, L).unsqueeze(-1)
    )[..., 0]  # (m, c, L)
    sequence = (picked * valid.unsqueeze(0)).sum(-1)  # (m, c)
    if gold_type_bias is None:
        typed = type_log_probs.log_softmax(-1)[:, gold_types]  # (m, c)
    else:
        combined = (type_log_probs.unsqueeze(1) + gold_type_bias.unsqueeze(0)).log_softmax(-1)  # (m, c, T + 1)
        typed = combined.gather(-1, gold_types.view(1, c, 1).expand(m, c, 1))[..., 0]
    return -(sequence + typed)

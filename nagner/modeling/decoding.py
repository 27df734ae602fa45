"""From decoder outputs to entities: beam search over pointer sequences, scores and post-processing.

Every slot's pointer sequence is chosen under the entity grammar (`PointerGrammar`): a position
that ends a fragment points at or after the fragment's start; a position that may start a next
fragment points at least two words after the previous end, or at END. ``beam_size`` sequences
are kept per slot and the one with the highest summed log-probability wins (beam 1 is exactly the
greedy `PointerGrammar`); ``end_bias`` is added to END's logit wherever a next fragment could start.

Entity score = p_start · Π p(pointer) · p(type). Slots typed NONE and entities scoring below the
threshold are dropped; an entity found by several slots is kept once, with its best score and
type; in the ``flat`` overlap mode the best-scoring entities that share no word are kept.
"""

from __future__ import annotations

import torch

from nagner.modeling.targets import END, grammar_mask, pointers_to_indices

Found = tuple[int, tuple[int, ...], float]  # (type id, word indices, score)


def beam_search(
    logits: torch.Tensor, starts: torch.Tensor, n_words: torch.Tensor, beam_size: int = 1, end_bias: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best pointer sequence of every slot under the grammar.

    logits: (S, L, C) pointer logits (class 0 END, j + 1 word j); starts: (S,) start words;
    n_words: (S,) sentence lengths → classes (S, L) (END-padded after END) and their summed
    log-probability (S,).
    """
    classes, log_prob = beam_candidates(logits, starts, n_words, beam_size, end_bias)
    return classes[:, 0], log_prob[:, 0]


def beam_candidates(
    logits: torch.Tensor, starts: torch.Tensor, n_words: torch.Tensor, beam_size: int = 1, end_bias: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``beam_size`` best pointer sequences of every slot (`beam_search`'s arguments), best
    first: classes (S, K, L) and summed log-probabilities (S, K); −inf marks a beam that does not
    exist (fewer valid sequences than K)."""
    S, L, C = logits.shape
    K = beam_size
    device = logits.device
    log_prob = torch.full((S, K), float("-inf"), device=device)
    log_prob[:, 0] = 0.0  # one live beam to begin with
    fragment_start = starts[:, None].expand(S, K).clone()  # (S, K)
    previous_end = fragment_start.clone()
    ended = torch.zeros(S, K, dtype=torch.bool, device=device)
    classes = torch.zeros(S, K, L, dtype=torch.long, device=device)
    lengths = n_words[:, None].expand(S, K)
    only_end = torch.full((C,), float("-inf"), device=device)
    only_end[END] = 0.0
    for t in range(L):
        allowed = grammar_mask(t, L, lengths, fragment_start, previous_end, C)  # (S, K, C)
        step = logits[:, t].float()
        if t % 2 == 1 and end_bias:
            step = step + end_bias * torch.nn.functional.one_hot(torch.tensor(END, device=device), C)
        step = step.log_softmax(-1).unsqueeze(1).masked_fill(~allowed, float("-inf"))  # (S, K, C)
        step = torch.where(ended.unsqueeze(-1), only_end, step)  # an ended beam goes on with END, free
        total = (log_prob.unsqueeze(-1) + step).reshape(S, K * C)
        log_prob, flat = total.topk(K, dim=-1)  # (S, K)
        beam, choice = flat // C, flat % C
        gather = beam.unsqueeze(-1).expand(S, K, L)
        classes = classes.gather(1, gather)
        classes[:, :, t] = choice
        was_ended = ended.gather(1, beam)
        fragment_start, previous_end = fragment_start.gather(1, beam), previous_end.gather(1, beam)
        ended = was_ended | (choice == END)
        if t % 2 == 0:
            previous_end = torch.where(ended, previous_end, choice - 1)
        else:
            fragment_start = torch.where(ended, fragment_start, choice - 1)
    return classes, log_prob


def select_entities(
    slot_batch: list[int],
    slot_word: list[int],
    classes: list[list[int]],
    type_id: list[int],
    score: list[float],
    batch_size: int,
    threshold: float = 0.0,
    overlap: str = "any",
) -> list[list[Found]]:
    """Entities of every sentence from per-slot decisions (module docstring), sorted by (indices, type)."""
    best: list[dict[tuple[int, ...], tuple[float, int]]] = [{} for _ in range(batch_size)]
    for b, w, c, t, s in zip(slot_batch, slot_word, classes, type_id, score):
        if t == 0 or s < threshold:
            continue
        indices = pointers_to_indices(w, c)
        if s > best[b].get(indices, (-1.0, 0))[0]:
            best[b][indices] = (s, t)
    results: list[list[Found]] = []
    for found in best:
        entities = [(t, indices, s) for indices, (s, t) in found.items()]
        if overlap == "flat":
            entities = non_overlapping(entities)
        results.append(sorted(entities, key=lambda e: (e[1], e[0])))
    return results


def non_overlapping(entities: list[Found]) -> list[Found]:
    """The best-scoring entities that share no word with a better one (greedy by score)."""
    taken: set[int] = set()
    kept = []
    for entity in sorted(entities, key=lambda e: (-e[2], e[1], e[0])):
        if taken.isdisjoint(entity[1]):
            kept.append(entity)
            taken.update(entity[1])
    return kept

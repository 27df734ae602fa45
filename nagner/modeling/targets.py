"""Entity ⇄ pointer sequence.

A slot is anchored at the entity's first word, so its target only lists the fragment
boundaries after it: end of fragment 1, start of fragment 2, end of fragment 2, …, then END.
Pointer class 0 is END, class j + 1 is word j. A contiguous entity is one pointer + END,
whatever its length.
"""

from __future__ import annotations

import torch

from nagner.data.example import Entity

END = 0
IGNORE = -100


def pointers_needed(entity: Entity) -> int:
    """Pointer positions an entity needs, END included: 2 per fragment."""
    return 2 * len(entity.fragments)


def entity_to_pointers(entity: Entity, max_pointers: int) -> list[int]:
    """The slot target of ``entity``, padded with IGNORE to ``max_pointers``."""
    classes: list[int] = []
    for k, (begin, end) in enumerate(entity.fragments):
        if k > 0:
            classes.append(begin + 1)
        classes.append(end - 1 + 1)  # last word of the fragment
    classes.append(END)
    if len(classes) > max_pointers:
        raise ValueError(f"entity {entity} needs {len(classes)} pointers, max_pointers is {max_pointers}")
    return classes + [IGNORE] * (max_pointers - len(classes))


def pointers_to_indices(start: int, classes: list[int]) -> tuple[int, ...]:
    """Word indices of the entity that starts at ``start`` and has pointer ``classes`` (END-cut)."""
    bounds = [start]
    for c in classes:
        if c == END:
            break
        bounds.append(c - 1)
    if len(bounds) % 2:  # a fragment start without its end: close it on itself
        bounds.append(bounds[-1])
    indices: list[int] = []
    for begin, last in zip(bounds[::2], bounds[1::2]):
        indices.extend(range(begin, last + 1))
    return tuple(indices)


def grammar_mask(
    t: int, max_pointers: int, n_words: torch.Tensor, fragment_start: torch.Tensor, previous_end: torch.Tensor, C: int
) -> torch.Tensor:
    """Allowed classes at position t: (..., C) bool for states shaped like ``fragment_start``."""
    word = torch.arange(C, device=n_words.device) - 1  # (C,): END -> -1
    in_sentence = (word >= 0) & (word < n_words.unsqueeze(-1))  # (..., C)
    if t % 2 == 0:
        allowed = in_sentence & (word >= fragment_start.unsqueeze(-1))
    elif t == max_pointers - 1:
        allowed = torch.zeros_like(in_sentence)
    else:
        allowed = in_sentence & (word >= previous_end.unsqueeze(-1) + 2)
    if t % 2 == 1:
        allowed[..., END] = True
    return allowed


class PointerGrammar:
    """Greedy pointer choice under the entity grammar, one position at a time, all slots at once.

    The grammar restricts which class is chosen; the sequence's log-probability sums the model's
    own log-probabilities of the choices (not renormalised over the allowed classes, which would
    make a forced step free and favour sequences whose later steps the grammar forces).

    Position t even = end of a fragment (>= that fragment's start; END not allowed); t odd = END
    or the start of a next fragment (>= previous end + 2, so there is a gap); the last position,
    if odd, can only be END. Slots that said END keep saying END. The NAG decoder feeds it all
    positions of one pass; the AR ablation feeds it one decoder step at a time.
    """

    def __init__(self, starts: torch.Tensor, n_words: torch.Tensor, max_pointers: int):
        """starts: (S,) anchor word of each slot; n_words: (S,) length of its sentence."""
        self.max_pointers = max_pointers
        self.n_words = n_words
        self.fragment_start = starts.clone()  # (S,)
        self.previous_end = starts.clone()  # (S,)
        self.ended = torch.zeros_like(starts, dtype=torch.bool)
        self.classes = torch.zeros(starts.shape[0], max_pointers, dtype=torch.long, device=starts.device)
        self.log_prob = torch.zeros(starts.shape[0], device=starts.device)
        self.t = 0

    def step(self, logits: torch.Tensor) -> torch.Tensor:
        """logits: (S, n + 1) for position t → chosen classes (S,); advances t."""
        t, C = self.t, logits.shape[-1]
        allowed = grammar_mask(t, self.max_pointers, self.n_words, self.fragment_start, self.previous_end, C)  # (S, C)
        best = logits.masked_fill(~allowed, float("-inf")).argmax(-1)  # (S,)
        choice = torch.where(self.ended, torch.zeros_like(self.ended, dtype=torch.long), best)
        gained = logits.float().log_softmax(-1).gather(1, choice[:, None])[:, 0]  # the model's own probability
        self.log_prob = self.log_prob + torch.where(self.ended, torch.zeros_like(gained), gained)
        self.classes[:, t] = choice
        self.ended = self.ended | (choice == END)
        if t % 2 == 0:
            self.previous_end = torch.where(self.ended, self.previous_end, choice - 1)
        else:
            self.fragment_start = torch.where(self.ended, self.fragment_start, choice - 1)
        self.t += 1
        return choice


def pointer_word_mask(starts: torch.Tensor, classes: torch.Tensor, n: int) -> torch.Tensor:
    """Which words each slot's entity covers, for many slots at once (as `pointers_to_indices`).

    starts: (S,) start words; classes: (S, L) pointer classes (END or IGNORE ends the entity; a
    fragment left open is closed on itself) → (S, n) bool.
    """
    S, L = classes.shape
    words = torch.arange(n, device=classes.device)[None, :]  # (1, n)
    covered = torch.zeros(S, n, dtype=torch.bool, device=classes.device)
    fragment_start = starts.clone()  # (S,)
    open_ = torch.ones(S, dtype=torch.bool, device=classes.device)  # a fragment awaits its end
    alive = torch.ones(S, dtype=torch.bool, device=classes.device)  # no END yet
    for t in range(L):
        word = classes[:, t] - 1  # (S,): -1 for END, below for IGNORE
        pointed = alive & (word >= 0)
        if t % 2 == 0:
            last = torch.where(pointed, word, fragment_start)  # END here closes the fragment on itself
            inside = (words >= fragment_start[:, None]) & (words <= last[:, None])  # (S, n)
            covered |= inside & open_[:, None]
            open_ = torch.zeros_like(open_)
        else:
            fragment_start = torch.where(pointed, word, fragment_start)
            open_ = pointed
        alive = pointed
    covered |= (words == fragment_start[:, None]) & open_[:, None]
    return covered

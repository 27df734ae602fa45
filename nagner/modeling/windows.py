"""Sliding windows for sentences longer than the encoder's subword budget.

Windows overlap by about half, so every entity shorter than half a window lies strictly
inside at least one window (not touching its cut edges). At prediction time an entity is
kept only from windows where it does not touch a cut edge, so a window's truncated view of
an entity never reaches the output, and duplicates from overlapping windows are merged.
"""

from __future__ import annotations


def plan_windows(subword_counts: list[int], budget: int) -> list[tuple[int, int]]:
    """Word ranges ``[start, end)`` whose subword counts fit ``budget``, overlapping by ~half.

    A sentence that fits gives one window. An empty sentence gives ``[(0, 0)]``.
    """
    n = len(subword_counts)
    if budget < 1:
        raise ValueError("window budget must be >= 1 subword")
    if sum(subword_counts) <= budget:
        return [(0, n)]
    windows: list[tuple[int, int]] = []
    start = 0
    while True:
        end, used = start, 0
        while end < n and (used + subword_counts[end] <= budget or end == start):
            used += subword_counts[end]
            end += 1
        windows.append((start, end))
        if end >= n:
            return windows
        start = max(start + 1, start + (end - start) // 2)


def inside_window(indices: tuple[int, ...], window: tuple[int, int], n_words: int) -> bool:
    """Whether an entity lies in ``window`` without touching an edge where the window cuts the sentence."""
    begin, end = window
    if indices[0] < begin or indices[-1] >= end:
        return False
    if begin > 0 and indices[0] == begin:
        return False
    return not (end < n_words and indices[-1] == end - 1)

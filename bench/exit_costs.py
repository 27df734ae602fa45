"""Costs of early-exit inference for the LECO scripts (`bench/leco.py`, `bench/leco_ner.py`): FLOPs
as counted by `torch.utils.flop_counter.FlopCounterMode` (matrix products and attention: what
dominates an encoder; element-wise work is not counted), and per-input wall-clock latency at batch
1 with the systems interleaved input by input (the order alternating)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode


def total_flops(run: Callable[[Any], Any], inputs: Sequence[Any]) -> int:
    """FLOPs of ``run`` over every input (one call each)."""
    with FlopCounterMode(display=False) as counter:
        for item in inputs:
            run(item)
    return counter.get_total_flops()


@torch.no_grad()
def interleaved_latency(systems: dict[str, Callable[[Any], Any]], inputs: Sequence[Any], threads: int) -> dict[str, dict[str, float]]:
    """Per system: the median latency (ms) over ``inputs``, the total (s), and the median and
    quartiles of the per-input ratio to the first system (speed-up: first / this)."""
    torch.set_num_threads(threads)
    names = list(systems)
    for run in systems.values():  # warm-up
        run(inputs[0])
    times: dict[str, list[float]] = {name: [] for name in names}
    for index, item in enumerate(inputs):
        for name in names if index % 2 == 0 else names[::-1]:
            began = time.perf_counter()
            systems[name](item)
            times[name].append(time.perf_counter() - began)
    report = {}
    for name in names:
        ratios = sorted(a / b for a, b in zip(times[names[0]], times[name]))
        quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
        report[name] = {
            "median_ms": 1000 * statistics.median(times[name]),
            "total_s": sum(times[name]),
            "speed_up_total": sum(times[names[0]]) / sum(times[name]),
            "speed_up_median": quartiles[1], "speed_up_q1": quartiles[0], "speed_up_q3": quartiles[2],
        }
    return report

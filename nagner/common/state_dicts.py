"""Checking that stored tensors fit a model before any is copied in."""

from __future__ import annotations

from collections.abc import Mapping

import torch


def check_tensors_fit(expected: Mapping[str, torch.Tensor], stored: Mapping[str, torch.Tensor], source: str) -> None:
    """ValueError, starting with ``source``, unless ``stored`` holds exactly the keys of ``expected``
    with the same shapes: it names how many are missing and unexpected, with an example of each, or
    the first tensor of another shape."""
    missing = sorted(set(expected) - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    if missing or unexpected:
        parts = [f"{len(missing)} missing (e.g. {missing[0]})"] if missing else []
        parts += [f"{len(unexpected)} unexpected (e.g. {unexpected[0]})"] if unexpected else []
        raise ValueError(f"{source}: tensors do not fit the model: {'; '.join(parts)}")
    for key, target in expected.items():
        if stored[key].shape != target.shape:
            raise ValueError(f"{source}: {key} has shape {tuple(stored[key].shape)}, expected {tuple(target.shape)}")


@torch.no_grad()
def copy_tensors(expected: Mapping[str, torch.Tensor], stored: Mapping[str, torch.Tensor], source: str) -> None:
    """Copy ``stored`` into the tensors of ``expected`` (in place) after `check_tensors_fit`."""
    check_tensors_fit(expected, stored, source)
    for key, target in expected.items():
        target.copy_(stored[key])

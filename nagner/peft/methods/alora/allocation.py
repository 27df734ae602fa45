"""ALoRA's allocation procedure: AB-LoRA rank importance from batched ablations, and rounds that
prune the least important ranks and give them to the modules that lost none.

Importance of rank i of module m on a validation batch, with S = −loss (the paper's metric):

    IS(m, i) = S(M) − S(M ∖ (m,i)) + S(M_(m,i))  ≅  loss(M ∖ (m,i)) − loss(M_(m,i))

M ∖ (m,i): the adapter with that one rank off; M_(m,i): that rank alone on (every other rank of the
adapter, in every module, off). S(M) is the same for every rank and is left out. That is two
evaluations per rank, 2·R in all. They are batched: a chunk of K gate settings is one forward pass
on the validation batch repeated K times (rows k·b … (k+1)·b − 1 are copy k), each module gating
copy k of its rank activations with row k of a (K, r) mask (`alora.ablated_ranks`). ``loss_fn``
returns per-example losses, so each copy's loss is the mean of its b rows; the base model's work is
repeated per copy, but there are ⌈2R / K⌉ forward passes instead of 2R.

A round (Algorithm 1): score every rank that is on; switch off the ``n_prune`` lowest; hand the
same number of new ranks to the modules that lost none, as evenly as possible, the remainder to
the modules with the higher mean importance first (new A rows Kaiming as at init, new B columns
zero, so the outputs do not jump). The pruned ranks are cut out of the tensors (A rows, B columns,
their optimizer state); a module's rank goes into the config's ``rank_pattern``. When every module
lost a rank there is no receiver and the budget shrinks by ``n_prune`` (as in the paper).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from nagner.peft.attach import DEFAULT_NAME, adapter_config
from nagner.peft.methods.alora.adapter import AloraAdapter, ablated_ranks, alora_adapters
from nagner.peft.methods.lora import module_pattern
from nagner.peft.procedures import LossFn, per_example_loss


def paper_allocation_steps(steps_per_epoch: int, total_steps: int, rounds: int = 8) -> list[int]:
    """The optimizer steps of ALoRA's allocation rounds as in the paper: after the first epoch, then
    every quarter epoch, at most ``rounds``, all before ``total_steps``. Empty when training is
    shorter than one epoch (callers should warn: the adapter then stays plain LoRA)."""
    quarter = max(1, steps_per_epoch // 4)
    return [s for s in (steps_per_epoch + k * quarter for k in range(rounds)) if s < total_steps]


def repeat_batch(batch: Mapping[str, Any], copies: int) -> dict[str, Any]:
    """``batch`` with every tensor repeated ``copies`` times along dim 0, copy-major."""
    return {
        k: v.repeat(copies, *([1] * (v.dim() - 1))) if torch.is_tensor(v) and v.dim() > 0 else v
        for k, v in batch.items()
    }


@torch.no_grad()
def rank_importance(
    model: nn.Module,
    name: str,
    loss_fn: LossFn,
    batch: Mapping[str, Any],
    masks_per_forward: int = 32,
) -> dict[str, torch.Tensor]:
    """AB-LoRA importance ``loss(M∖r) − loss(M_r)`` of every rank of ALoRA adapter ``name``, per
    module a (r,) tensor (NaN for ranks that are off). Runs in eval mode (no dropout) with
    ``masks_per_forward`` gate settings per forward pass (the batch repeated that many times)."""
    adapters = alora_adapters(model, name)
    modules = list(adapters)
    ranks = [(j, int(i)) for j, m in enumerate(modules) for i in adapters[m].active_ranks()]
    scores = {m: torch.full((adapters[m].r,), math.nan) for m in modules}
    if not ranks:
        return scores
    # Two settings per rank: (module index, rank, alone?); "without" first.
    plan = torch.tensor([(j, i, alone) for j, i in ranks for alone in (0, 1)], dtype=torch.long).view(-1, 3)
    losses: list[torch.Tensor] = []
    training = model.training
    model.eval()
    try:
        for chunk in plan.split(max(masks_per_forward, 1)):
            copies = chunk.shape[0]
            masks = {m: _chunk_masks(adapters[m], j, chunk) for j, m in enumerate(modules)}
            with ablated_ranks(adapters, masks):
                per_example = loss_fn(model, repeat_batch(batch, copies))
            if per_example.dim() != 1 or per_example.numel() % copies:
                raise ValueError(
                    f"loss_fn must return per-example losses (n,); got shape {tuple(per_example.shape)} "
                    f"for a batch repeated {copies} times"
                )
            losses.append(per_example.float().view(copies, -1).mean(1))  # (K,)
    finally:
        model.train(training)
    pairs = torch.cat(losses).view(-1, 2)  # (R, 2): without, alone
    for (j, i), (without, alone) in zip(ranks, pairs.tolist()):
        scores[modules[j]][i] = without - alone
    return scores


def _chunk_masks(adapter: AloraAdapter, module_index: int, chunk: torch.Tensor) -> torch.Tensor:
    """The (K, r) gates of one module for a chunk of (module, rank, alone) settings."""
    mask = adapter.rank_mask.expand(chunk.shape[0], -1).clone()  # (K, r)
    chunk = chunk.to(mask.device)
    mask[chunk[:, 2].bool()] = 0  # "alone" settings: every other rank of the model off
    rows = (chunk[:, 0] == module_index).nonzero().squeeze(1)
    mask[rows, chunk[rows, 1]] = chunk[rows, 2].to(mask.dtype)
    return mask


@dataclass(frozen=True)
class AllocationRound:
    """What one round did, per module."""

    importance: dict[str, torch.Tensor]  # (r,) before the round, NaN where off
    pruned: dict[str, int]  # ranks taken away
    added: dict[str, int]  # new ranks given
    ranks: dict[str, int]  # ranks after the round


@torch.no_grad()
def alora_allocation_round(
    model: nn.Module,
    name: str,
    loss_fn: LossFn,
    batch: Mapping[str, Any],
    n_prune: int,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    masks_per_forward: int = 32,
) -> AllocationRound:
    """One ALoRA round on adapter ``name`` (see the module docstring). ``batch``: the validation
    batch (on the model's device); ``loss_fn(model, batch)`` → per-example losses (n,), e.g.
    `per_example_loss`. Pass the training ``optimizer`` so the resized parameters keep their state
    (Adam moments cut and padded like the tensors); parameters stay the same objects."""
    adapters = alora_adapters(model, name)
    scores = rank_importance(model, name, loss_fn, batch, masks_per_forward)
    candidates = [
        (float(s), m, i) for m, values in scores.items() for i, s in enumerate(values.tolist()) if s == s
    ]
    if not 0 < n_prune < len(candidates):
        raise ValueError(f"n_prune must be in 1..{len(candidates) - 1} (ranks that are on), got {n_prune}")
    # Stable sort: on equal scores the rank that comes first in the model goes first.
    lowest = sorted(range(len(candidates)), key=lambda k: candidates[k][0])[:n_prune]
    pruned = {m: 0 for m in adapters}
    cut: dict[str, set[int]] = {m: set() for m in adapters}
    for k in lowest:
        _, m, i = candidates[k]
        pruned[m] += 1
        cut[m].add(i)
    added = _share(n_prune, [m for m in adapters if pruned[m] == 0], scores)
    if not any(added.values()):
        warnings.warn(
            f"ALoRA round: every module lost a rank, {n_prune} ranks leave the budget", stacklevel=2
        )
    for m, adapter in adapters.items():
        keep = [int(i) for i in adapter.active_ranks() if int(i) not in cut[m]]
        if len(keep) != adapter.r or added[m]:
            _resize_ranks(adapter, torch.tensor(keep, dtype=torch.long), added[m], optimizer)
    ranks = {m: a.r for m, a in adapters.items()}
    adapter_config(model, name).rank_pattern = module_pattern(ranks)
    return AllocationRound(importance=scores, pruned=pruned, added=added, ranks=ranks)


def _share(count: int, receivers: list[str], scores: dict[str, torch.Tensor]) -> dict[str, int]:
    """``count`` ranks over ``receivers``, as evenly as possible, the remainder to the higher mean
    importance first; every other module gets 0."""
    added = {m: 0 for m in scores}
    if not receivers:
        return added

    def mean_importance(module: str) -> float:
        values = scores[module][~scores[module].isnan()]
        return float(values.mean()) if values.numel() else -math.inf

    order = sorted(receivers, key=mean_importance, reverse=True)
    each, extra = divmod(count, len(order))
    for k, m in enumerate(order):
        added[m] = each + (k < extra)
    return added


def _resize_ranks(
    adapter: AloraAdapter, keep: torch.Tensor, new: int, optimizer: torch.optim.Optimizer | None
) -> None:
    """Keep ranks ``keep`` (in order), then append ``new`` fresh ranks (gates on)."""
    A, B = adapter.lora_A.weight, adapter.lora_B.weight  # (r, d_in), (d_out, r)
    fresh_A = torch.zeros(new, A.shape[1], dtype=A.dtype, device=A.device)
    if new and adapter.init_weights == "gaussian":
        nn.init.normal_(fresh_A, std=1 / (keep.numel() + new))
    elif new:
        nn.init.kaiming_uniform_(fresh_A, a=math.sqrt(5))  # fan_in = d_in, as A at init
    state = getattr(optimizer, "state", {}) if optimizer is not None else {}
    _cut_and_pad(A, keep, fresh_A, 0, state)
    _cut_and_pad(B, keep, torch.zeros(B.shape[0], new, dtype=B.dtype, device=B.device), 1, state)
    rank = keep.numel() + new
    adapter.rank_mask = torch.ones(rank, dtype=adapter.rank_mask.dtype, device=adapter.rank_mask.device)
    adapter.r = adapter.lora_A.out_features = adapter.lora_B.in_features = rank


def _cut_and_pad(
    parameter: nn.Parameter, keep: torch.Tensor, fresh: torch.Tensor, dim: int, state: Mapping
) -> None:
    """In place (same Parameter object): select ``keep`` along ``dim`` and append ``fresh``; optimizer
    state tensors of the parameter's shape get the same cut and zero padding."""
    keep = keep.to(parameter.device)
    moments = state.get(parameter, {}) if hasattr(state, "get") else {}
    for key, value in list(moments.items()):
        if torch.is_tensor(value) and value.shape == parameter.shape:
            moments[key] = torch.cat(
                [value.index_select(dim, keep), torch.zeros_like(fresh, dtype=value.dtype)], dim
            )
    parameter.grad = None
    parameter.set_(torch.cat([parameter.index_select(dim, keep), fresh], dim))  # bumps the version


class AloraCallback(TrainerCallback):
    """Runs `alora_allocation_round` during `Trainer` training: after optimizer step number
    ``at_steps`` (``on_step_end``) and at the end of epoch number ``at_epochs`` (1-based). The
    paper trains one epoch first, then runs a round every quarter epoch, at most 8 rounds.

    ``batch``: the validation batch (moved to the model's device); ``n_prune``: ranks per round
    (default: the number of adapted modules, the paper's n_A = N_mod). ``history`` collects each
    `AllocationRound`. ``adapted_module``: the module the adapter was attached to when that is not
    the Trainer's model itself (e.g. the encoder inside a task model; ``loss_fn`` then gets it as
    its first argument and computes the task loss itself).
    """

    def __init__(
        self,
        batch: Mapping[str, Any],
        loss_fn: LossFn = per_example_loss,
        name: str = DEFAULT_NAME,
        n_prune: int | None = None,
        at_steps: Sequence[int] = (),
        at_epochs: Sequence[int] = (),
        masks_per_forward: int = 32,
        adapted_module: nn.Module | None = None,
    ):
        self.batch = batch
        self.adapted_module = adapted_module
        self.loss_fn = loss_fn
        self.name = name
        self.n_prune = n_prune
        self.at_steps = set(at_steps)
        self.at_epochs = set(at_epochs)
        self.masks_per_forward = masks_per_forward
        self.history: list[AllocationRound] = []

    def run_round(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> AllocationRound:
        """One round now (what the hooks call)."""
        model = self.adapted_module if self.adapted_module is not None else model
        device = next(model.parameters()).device
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in self.batch.items()}
        n_prune = self.n_prune if self.n_prune is not None else len(alora_adapters(model, self.name))
        result = alora_allocation_round(
            model,
            self.name,
            self.loss_fn,
            batch,
            n_prune,
            optimizer=optimizer,
            masks_per_forward=self.masks_per_forward,
        )
        self.history.append(result)
        return result

    def on_step_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: Any = None,
        **kwargs: Any,
    ) -> None:
        if state.global_step in self.at_steps:
            self.run_round(model, kwargs.get("optimizer"))

    def on_epoch_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: Any = None,
        **kwargs: Any,
    ) -> None:
        if state.epoch is not None and round(state.epoch) in self.at_epochs:
            self.run_round(model, kwargs.get("optimizer"))

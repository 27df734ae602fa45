"""WID's progressive masks and weight squeezing (read from the official code; see
``../shared/research/compression.md``).

Masks: every ``w_step`` optimizer steps, each mask grows by 1/``increments`` of its final size, until
the targets are reached after ``increments·w_step`` steps. The dimensions added are the kept ones
whose row of the ranking compactor has the smallest L2 norm (a dimension once masked stays masked).
``dim`` strategy: the hidden and attention masks cut the same number of dimensions in every head
(chunks of the head size); ``head``: they drop whole heads, ranked by the summed norm.

Squeezing, on the compactors' gradients before each optimizer step: until the first masks, every
compactor gets an L2 term (grad += w); after, the masked rows / columns get grad ← min(λ, 1)·w, and
with λ > 1 an extra (λ − 1)·w in Adam's first moment, so they shrink towards zero quickly while
the kept ones follow the training loss.
"""

from __future__ import annotations

import torch

from nagner.compression.wid.plan import WidPlan


def masked_counts(plan: WidPlan, step: int) -> dict[str, int]:
    """How many dimensions each mask hides after optimizer step ``step``."""
    config = plan.config
    done = min(step // config.w_step, config.increments)
    counts = {}
    for name in plan.masks.names:
        if name.startswith("ffn."):
            total = plan.intermediate_size - config.target_intermediate
            counts[name] = total * done // config.increments
        else:
            total = plan.hidden_size - config.target_hidden  # (in whole heads for "head")
            unit = plan.hidden_size // plan.head_size if config.strategy == "dim" else plan.head_size
            counts[name] = (total // unit) * done // config.increments * unit
    return counts


@torch.no_grad()
def update_masks(plan: WidPlan, step: int) -> bool:
    """Grow the masks to their size at ``step`` (call it after each optimizer step); True when a
    mask changed."""
    counts = masked_counts(plan, step)
    changed = False
    for name, count in counts.items():
        keep = plan.masks.keep(name)
        if int((~keep).sum()) >= count:
            continue
        norms = plan.rankers[name].row.norm(dim=1)  # (size,): one per input dimension of the ranker
        if name.startswith("ffn."):
            new = mask_lowest(norms, keep, count)
        else:
            new = mask_lowest_per_head(norms, keep, count, plan.head_size, plan.config.strategy)
        plan.masks.set(name, new)
        changed = True
    if changed:
        plan.masks.active = True
    return changed


def mask_lowest(norms: torch.Tensor, keep: torch.Tensor, count: int) -> torch.Tensor:
    """``keep`` (True = kept) with the lowest-norm kept dimensions masked until ``count`` are masked."""
    scores = norms.masked_fill(~keep, float("-inf"))  # masked first, so they stay masked
    masked = scores.topk(count, largest=False).indices
    new = torch.ones_like(keep)
    new[masked] = False
    return new


def mask_lowest_per_head(norms: torch.Tensor, keep: torch.Tensor, count: int, head_size: int, strategy: str) -> torch.Tensor:
    """`mask_lowest` over chunks of ``head_size``: the same number in every chunk (``dim``), or
    whole chunks by their summed norm (``head``)."""
    chunks = norms.view(-1, head_size)  # (heads, head_size)
    kept = keep.view(-1, head_size)
    if strategy == "head":
        scores = chunks.sum(-1).masked_fill(~kept.all(-1), float("-inf"))  # (heads,)
        dropped = scores.topk(count // head_size, largest=False).indices
        new = torch.ones_like(kept)
        new[dropped] = False
        return new.view(-1)
    per_head = count // chunks.shape[0]
    rows = [mask_lowest(chunk, k, per_head) for chunk, k in zip(chunks, kept, strict=True)]
    return torch.stack(rows).view(-1)


@torch.no_grad()
def squeeze_gradients(plan: WidPlan, optimizer: torch.optim.Optimizer | None = None) -> None:
    """Apply the squeeze to the compactors' gradients (and Adam's first moment) before a step."""
    lam = plan.config.l2_lambda
    entries = [(plan.embedding_compactor, None, "hidden")]
    for linear in plan.linears.values():
        entries += [(linear.row, linear.in_mask, None), (linear.column, None, linear.out_mask)]
    for weight, row_mask, column_mask in entries:
        if weight.grad is None:
            weight.grad = torch.zeros_like(weight)
        if not plan.masks.active:
            weight.grad.add_(weight)
            continue
        squeezed = torch.zeros_like(weight, dtype=torch.bool)
        if row_mask is not None:
            squeezed |= ~plan.masks.keep(row_mask)[:, None]
        if column_mask is not None:
            squeezed |= ~plan.masks.keep(column_mask)[None, :]
        weight.grad.copy_(torch.where(squeezed, min(lam, 1.0) * weight, weight.grad))
        state = optimizer.state.get(weight, {}) if optimizer is not None else {}
        if lam > 1 and "exp_avg" in state:
            extra = torch.where(squeezed, (lam - 1) * weight, torch.zeros_like(weight))
            state["exp_avg"].copy_(torch.where(squeezed, state["exp_avg"] * 0.9 + 0.1 * extra, state["exp_avg"]))

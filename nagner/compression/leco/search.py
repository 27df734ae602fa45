"""LECO's exit search: first-order DARTS. The exit mixtures' architecture logits α learn on held-out
batches, everything else on training batches, in alternate steps; then every layer keeps its best
exit type (`discretize`) and the multi-exit model is trained again with those exits alone."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import torch

from nagner.compression.leco.multi_exit import MultiExitClassifier

Batch = Mapping[str, torch.Tensor]


@dataclass
class SearchResult:
    """The exit type chosen per layer, and the losses of the alternate steps."""

    exits: list[str]
    train_losses: list[float] = field(default_factory=list)
    held_out_losses: list[float] = field(default_factory=list)


def search_exits(
    model: MultiExitClassifier,
    train: Iterable[Batch],
    held_out: Iterable[Batch],
    steps: int,
    learning_rate: float = 5e-5,
    architecture_learning_rate: float = 3e-3,
) -> SearchResult:
    """``steps`` alternate updates (α on a held-out batch, then the weights on a training batch;
    both iterables are cycled); returns each layer's best type."""
    alphas = model.exit_architecture_parameters()
    if not alphas:
        raise ValueError("the model's exits are already discrete: build it with exits=None to search")
    alpha_ids = {id(p) for p in alphas}
    weights = [p for p in model.parameters() if id(p) not in alpha_ids and p.requires_grad]
    weight_optimizer = torch.optim.AdamW(weights, lr=learning_rate)
    alpha_optimizer = torch.optim.Adam(alphas, lr=architecture_learning_rate)
    train_batches, held_out_batches = itertools.cycle(train), itertools.cycle(held_out)
    result = SearchResult(exits=[])
    model.train()
    for _ in range(steps):
        loss = model(**next(held_out_batches))["loss"]
        alpha_optimizer.zero_grad(set_to_none=True)
        for alpha, gradient in zip(alphas, torch.autograd.grad(loss, alphas), strict=True):
            alpha.grad = gradient
        alpha_optimizer.step()
        result.held_out_losses.append(float(loss.detach()))
        loss = model(**next(train_batches))["loss"]
        weight_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for alpha in alphas:
            alpha.grad = None  # α moves on held-out data only
        weight_optimizer.step()
        result.train_losses.append(float(loss.detach()))
    model.eval()
    result.exits = model.chosen_exits()
    return result


def discretize(model: MultiExitClassifier) -> MultiExitClassifier:
    """A multi-exit model on the same encoder with each layer's best exit type (new exit weights,
    to be trained again)."""
    return MultiExitClassifier(model.encoder, model.classes, model.chosen_exits())

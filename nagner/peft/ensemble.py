"""Parameter-efficient weight ensembling (Lv et al., ACL 2023): start a new task's adapter from a
bank of adapters trained on other tasks.

    θ_new = Σ_i w_i·θ_i  tensor by tensor,   w = softmax(s / T) over the source adapters

It is an initialiser (train afterwards), not a merge: every tensor — LoRA's A and B, bottleneck
Down/Up, tensor-train cores — is averaged itself, so ΔW of the result is not Σ w_i·ΔW_i.

The score s of a source says how close it is to the target task; every scorer here returns
"higher = closer". The published estimators run each source adapter on target data with the
model (the source's tensors are loaded into the model's adapter ``name`` for the duration, then
its own tensors are put back), through a task callable ``logits_fn(model, batch) → (logits (…, C),
labels (…))``; labels < 0 (e.g. -100) are ignored, so any token- or sequence-level task fits:

    loss_score        −mean cross-entropy                       (paper's T = 0.1)
    kl_score          −mean KL(p_reference ‖ p_source), the reference an adapter briefly tuned
                      on the target shots
    el2n_score        −mean ‖softmax − onehot‖₂
    grad_norm_score   −mean over batches of ‖∇_adapter batch loss‖₂ (GraNd, batch-level)
    cosine_score      mean cos(softmax, onehot)
    parameter_cosine_score   cosine of the flattened tensors of a target-tuned adapter and each
                      source (weight-based, no model; paper's T = 0.001)

Leave-one-out (the target's own adapter excluded from the bank) is the ``exclude`` argument.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from nagner.common.state_dicts import check_tensors_fit
from nagner.peft.attach import active_adapters, adapted_layers, adapter_parameters, set_active
from nagner.peft.config import WEIGHTS_FILE
from nagner.peft.serialization import adapter_state_dict

StateDict = Mapping[str, torch.Tensor]
LogitsFn = Callable[[nn.Module, Any], tuple[torch.Tensor, torch.Tensor]]


# ------------------------------------------------------------------------------------ weights
def softmax_weights(scores: Mapping[str, float], temperature: float = 1.0) -> dict[str, float]:
    """softmax(s / T) over ``scores``: small T → all weight on the best score, large T → uniform."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not scores:
        raise ValueError("no scores to weight")
    values = torch.tensor([float(s) for s in scores.values()], dtype=torch.float64)
    weights = torch.softmax(values / temperature, dim=0)
    return dict(zip(scores, weights.tolist(), strict=True))


def _check_bank(expected: StateDict, sources: Mapping[str, StateDict]) -> None:
    """Every source must hold exactly ``expected``'s keys with the same shapes."""
    for source, tensors in sources.items():
        check_tensors_fit(expected, tensors, f"source adapter {source!r}")


def ensemble_init(
    model: nn.Module,
    name: str,
    sources: Mapping[str, StateDict],
    scores: Mapping[str, float],
    temperature: float = 1.0,
    exclude: str | Iterable[str] = (),
) -> dict[str, float]:
    """Set adapter ``name``'s tensors to Σ softmax(s/T)_i·θ_i over ``sources`` (each a state dict
    as `adapter_state_dict` returns or `load_adapter_bank` reads) minus ``exclude``; returns the
    weights used. Every source needs a score and the adapter's exact keys and shapes."""
    excluded = {exclude} if isinstance(exclude, str) else set(exclude)
    bank = {k: v for k, v in sources.items() if k not in excluded}
    if not bank:
        raise ValueError("no source adapter left after exclude")
    unscored = sorted(set(bank) - set(scores))
    if unscored:
        raise ValueError(f"no score for source adapter(s) {', '.join(map(repr, unscored))}")
    unknown = sorted(set(scores) - set(sources))
    if unknown:
        raise ValueError(f"scores name unknown source adapter(s) {', '.join(map(repr, unknown))}")
    weights = softmax_weights({k: scores[k] for k in bank}, temperature)
    _check_sources(model, name, bank)
    target = adapter_state_dict(model, name)
    with torch.no_grad():
        for key, tensor in target.items():
            total = torch.zeros(tensor.shape, dtype=torch.float64, device=tensor.device)
            for source, weight in weights.items():
                total += weight * bank[source][key].to(tensor.device, torch.float64)
            tensor.copy_(total)
    return weights


def load_adapter_bank(
    dirs: Mapping[str, str | Path] | Iterable[str | Path],
) -> dict[str, dict[str, torch.Tensor]]:
    """Saved adapters' tensors by name: ``{name: folder}``, or folders named by their last part.
    Reads ``adapter_model.safetensors`` of each folder (as `save_adapter` writes it)."""
    if isinstance(dirs, Mapping):
        folders = {name: Path(path) for name, path in dirs.items()}
    else:
        paths = [Path(p) for p in dirs]
        folders = {p.name: p for p in paths}
        if len(folders) != len(paths):
            raise ValueError("adapter folders share a name: pass {name: folder} instead")
    bank: dict[str, dict[str, torch.Tensor]] = {}
    for name, folder in folders.items():
        path = folder / WEIGHTS_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no adapter weights for source {name!r}")
        bank[name] = load_file(str(path))
    return bank


# ------------------------------------------------------------------------------------ scorers
def _require_unmerged(model: nn.Module, name: str) -> None:
    if any(name in layer.merged for layer in adapted_layers(model).values()):
        raise ValueError(f"adapter {name!r} is merged into the weights: unmerge it first")


def _check_sources(model: nn.Module, name: str, sources: Mapping[str, StateDict]) -> None:
    _require_unmerged(model, name)
    _check_bank(adapter_state_dict(model, name), sources)


@contextmanager
def _running(model: nn.Module, name: str, tensors: StateDict) -> Iterator[None]:
    """Adapter ``name`` alone active, in eval mode, holding ``tensors``; its own tensors, the
    active adapters, merged weights and the train/eval mode are put back after."""
    current = adapter_state_dict(model, name)
    saved = {k: v.detach().clone() for k, v in current.items()}
    layers = adapted_layers(model)
    merged = {module_name: list(layer.merged) for module_name, layer in layers.items()}
    active, training = active_adapters(model), model.training
    set_active(model, name)  # unmerges the others
    model.eval()
    try:
        with torch.no_grad():
            for key, value in current.items():
                value.copy_(tensors[key])
        yield
    finally:
        with torch.no_grad():
            for key, value in current.items():
                value.copy_(saved[key])
        set_active(model, active)
        for module_name, layer in layers.items():
            layer.merge(merged[module_name])
        model.train(training)


def _labelled(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (…, C) and labels (…) → the labelled rows: (N, C) float32, (N,)."""
    logits = logits.reshape(-1, logits.shape[-1]).float()
    labels = labels.reshape(-1).to(logits.device)
    keep = labels >= 0
    return logits[keep], labels[keep]


def _token_mean(
    model: nn.Module,
    name: str,
    sources: Mapping[str, StateDict],
    batches: Sequence[Any],
    logits_fn: LogitsFn,
    statistic: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> dict[str, float]:
    """Per source: the mean of ``statistic(logits (N, C), labels (N,)) → (N,)`` over all labelled
    rows of ``batches``."""
    _check_sources(model, name, sources)
    scores: dict[str, float] = {}
    for source, tensors in sources.items():
        total, count = 0.0, 0
        with _running(model, name, tensors), torch.no_grad():
            for batch in batches:
                logits, labels = _labelled(*logits_fn(model, batch))
                total += statistic(logits, labels).sum().item()
                count += labels.numel()
        if count == 0:
            raise ValueError("the batches hold no labelled position (all labels < 0)")
        scores[source] = total / count
    return scores


def loss_score(
    model: nn.Module, name: str, sources: Mapping[str, StateDict], batches: Sequence[Any], logits_fn: LogitsFn
) -> dict[str, float]:
    """−mean cross-entropy of each source adapter on ``batches`` (a list of target batches)."""
    return _token_mean(
        model, name, sources, batches, logits_fn, lambda z, y: -F.cross_entropy(z, y, reduction="none")
    )


def el2n_score(
    model: nn.Module, name: str, sources: Mapping[str, StateDict], batches: Sequence[Any], logits_fn: LogitsFn
) -> dict[str, float]:
    """−mean EL2N, ‖softmax(logits) − onehot(label)‖₂, of each source adapter."""

    def el2n(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        error = logits.softmax(-1) - F.one_hot(labels, logits.shape[-1]).float()  # (N, C)
        return -error.norm(dim=-1)

    return _token_mean(model, name, sources, batches, logits_fn, el2n)


def cosine_score(
    model: nn.Module, name: str, sources: Mapping[str, StateDict], batches: Sequence[Any], logits_fn: LogitsFn
) -> dict[str, float]:
    """Mean cosine of the predicted distribution and the one-hot label (p_y / ‖p‖₂)."""

    def cosine(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        p = logits.softmax(-1)  # (N, C)
        return p.gather(1, labels[:, None]).squeeze(1) / p.norm(dim=-1)

    return _token_mean(model, name, sources, batches, logits_fn, cosine)


def kl_score(
    model: nn.Module,
    name: str,
    sources: Mapping[str, StateDict],
    batches: Sequence[Any],
    logits_fn: LogitsFn,
    reference: StateDict,
) -> dict[str, float]:
    """−mean token-level KL(p_reference ‖ p_source) over the labelled rows; ``reference``: the
    tensors of an adapter briefly tuned on the target data (the paper: 64 shots, from random init)."""
    _check_sources(model, name, {"reference": reference, **sources})
    with _running(model, name, reference), torch.no_grad():
        targets = [_labelled(*logits_fn(model, batch))[0].log_softmax(-1) for batch in batches]  # (N, C) each
    scores: dict[str, float] = {}
    for source, tensors in sources.items():
        total, count = 0.0, 0
        with _running(model, name, tensors), torch.no_grad():
            for batch, log_p in zip(batches, targets, strict=True):
                log_q = _labelled(*logits_fn(model, batch))[0].log_softmax(-1)
                total += F.kl_div(log_q, log_p, log_target=True, reduction="sum").item()
                count += log_p.shape[0]
        if count == 0:
            raise ValueError("the batches hold no labelled position (all labels < 0)")
        scores[source] = -total / count
    return scores


def grad_norm_score(
    model: nn.Module, name: str, sources: Mapping[str, StateDict], batches: Sequence[Any], logits_fn: LogitsFn
) -> dict[str, float]:
    """−GraNd: minus the mean over ``batches`` (the paper: 3–5) of the L2 norm of the gradient of
    the batch's mean cross-entropy with respect to the adapter's parameters. A source that already
    fits the target barely wants to move."""
    _check_sources(model, name, sources)
    parameters = [p for _, p in adapter_parameters(model, name)]
    requires = [p.requires_grad for p in parameters]
    scores: dict[str, float] = {}
    try:
        for p in parameters:
            p.requires_grad_(True)
        for source, tensors in sources.items():
            norms = []
            with _running(model, name, tensors):
                for batch in batches:
                    logits, labels = _labelled(*logits_fn(model, batch))
                    grads = torch.autograd.grad(
                        F.cross_entropy(logits, labels), parameters, allow_unused=True
                    )
                    norms.append(torch.cat([g.reshape(-1) for g in grads if g is not None]).norm().item())
            scores[source] = -sum(norms) / len(norms)
    finally:
        for p, flag in zip(parameters, requires, strict=True):
            p.requires_grad_(flag)
    return scores


def parameter_cosine_score(reference: StateDict, sources: Mapping[str, StateDict]) -> dict[str, float]:
    """Cosine between the flattened tensors of ``reference`` (an adapter briefly tuned on the
    target) and of each source (same keys and shapes)."""
    _check_bank(reference, sources)
    keys = sorted(reference)
    flat = torch.cat([reference[k].reshape(-1).double() for k in keys])
    return {
        source: F.cosine_similarity(
            flat, torch.cat([tensors[k].reshape(-1).double() for k in keys]), dim=0
        ).item()
        for source, tensors in sources.items()
    }

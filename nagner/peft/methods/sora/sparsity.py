"""SoRA's sparsity: the proximal step on the gates, the official optimizer groups, a report of
what is left, and pruning into a plain LoRA with the same outputs."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from nagner.peft.attach import DEFAULT_NAME, adapted_layers, adapter_config, peft_state
from nagner.peft.layer import AdaptedLayer
from nagner.peft.methods.lora import LoraAdapter, LoraConfig, module_pattern
from nagner.peft.methods.sora.adapter import SoraAdapter


def sora_adapters(model: nn.Module, name: str = DEFAULT_NAME) -> dict[str, SoraAdapter]:
    """The SoRA adapters named ``name`` by module name; TypeError when ``name`` is not SoRA."""
    adapters = {m: layer.adapters[name] for m, layer in adapted_layers(model).items() if name in layer.adapters}
    if not adapters or not all(isinstance(adapter, SoraAdapter) for adapter in adapters.values()):
        raise TypeError(f"adapter {name!r} is {type(adapter_config(model, name)).__name__}, not SoRA")
    return adapters


@torch.no_grad()
def soft_threshold(gate: torch.Tensor, threshold: float, official: bool = False) -> None:
    """In place: ``gate ← sign(gate)·max(|gate| − ξ, 0)``; with ``official`` the official code's
    sequential rule (zero |g| < 2ξ except ±ξ itself, shrink the rest by ξ)."""
    if threshold <= 0:
        return
    if not official:
        gate.copy_(gate.sign() * (gate.abs() - threshold).clamp_min(0))
        return
    gate[gate > threshold] -= threshold
    gate[gate < -threshold] += threshold
    gate[gate.abs() < threshold] = 0.0


def sora_proximal_step(
    model: nn.Module, threshold: float | None = None, name: str = DEFAULT_NAME, official: bool | None = None
) -> None:
    """The proximal step of ξ‖g‖₁ on every gate of adapter ``name``; call it right after each
    ``optimizer.step()`` in a custom loop. ``threshold`` / ``official`` default to the config's."""
    config = adapter_config(model, name)
    adapters = sora_adapters(model, name)
    threshold = config.prox_threshold if threshold is None else threshold
    official = config.official_prox if official is None else official
    for adapter in adapters.values():
        soft_threshold(adapter.lora_gate, threshold, official)


def sora_param_groups(
    model: nn.Module, name: str = DEFAULT_NAME, weight_decay: float = 0.0, gate_lr: float | None = None
) -> list[dict]:
    """Optimizer parameter groups as in the official recipe: every trainable parameter except the
    gates with ``weight_decay``, the gates without weight decay (their penalty is the L1 term) and
    with ``gate_lr`` when given. E.g. ``AdamW(sora_param_groups(model, weight_decay=0.1), lr=8e-4)``."""
    gates = {id(a.lora_gate) for a in sora_adapters(model, name).values()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    gate_group = {"params": [p for p in trainable if id(p) in gates], "weight_decay": 0.0}
    if gate_lr is not None:
        gate_group["lr"] = gate_lr
    return [
        {"params": [p for p in trainable if id(p) not in gates], "weight_decay": weight_decay},
        gate_group,
    ]


@dataclass(frozen=True)
class SparsityReport:
    """Kept (non-zero gate) and total ranks per module, and the LoRA parameters they carry
    (d_in + d_out per rank; the gates themselves are not counted)."""

    modules: dict[str, tuple[int, int]]  # module → (kept ranks, r)
    kept_ranks: int
    total_ranks: int
    kept_parameters: int
    total_parameters: int

    @property
    def density(self) -> float:
        """Kept share of the ranks."""
        return self.kept_ranks / max(self.total_ranks, 1)


def sparsity_report(model: nn.Module, name: str = DEFAULT_NAME) -> SparsityReport:
    """How many ranks of adapter ``name`` have a non-zero gate, per module and in all."""
    modules: dict[str, tuple[int, int]] = {}
    kept_parameters = total_parameters = 0
    for module_name, adapter in sora_adapters(model, name).items():
        kept = int(adapter.kept_ranks().numel())
        width = adapter.lora_A.in_features + adapter.lora_B.out_features
        modules[module_name] = (kept, adapter.r)
        kept_parameters += kept * width
        total_parameters += adapter.r * width
    return SparsityReport(
        modules=modules,
        kept_ranks=sum(k for k, _ in modules.values()),
        total_ranks=sum(r for _, r in modules.values()),
        kept_parameters=kept_parameters,
        total_parameters=total_parameters,
    )


@torch.no_grad()
def prune_sora(model: nn.Module, name: str = DEFAULT_NAME) -> LoraConfig:
    """Turn SoRA adapter ``name`` into a plain LoRA with the same outputs, in place.

    Per module, the ranks with g = 0 are dropped and g is folded into B (B' = B·diag(g)); the
    module keeps its scaling s (α' = s·r'). Modules left with no rank lose the adapter. The new
    config (`LoraConfig`, returned and stored on the model) names the kept modules exactly, with
    their ranks and α in ``rank_pattern`` / ``alpha_pattern``, so `save_adapter` / `load_adapter`
    rebuild the same shapes and the saved folder is a `peft` LoRA folder. Merged adapters are
    unmerged for the change and merged again after; parameters keep their ``requires_grad``.
    """
    config = adapter_config(model, name)
    adapters = sora_adapters(model, name)
    if all(a.kept_ranks().numel() == 0 for a in adapters.values()):
        raise ValueError(f"every gate of adapter {name!r} is zero: pruning would leave nothing")
    ranks: dict[str, int] = {}
    alphas: dict[str, float] = {}
    state = peft_state(model)
    for module_name, layer in adapted_layers(model).items():
        if name not in layer.adapters:
            continue
        old: SoraAdapter = layer.adapters[name]
        was_merged = name in layer.merged
        layer.unmerge([name])
        keep = old.kept_ranks()
        if keep.numel() == 0:
            _remove_adapter(model, module_name, layer, name)
            continue
        r = int(keep.numel())
        alpha = old.scaling * (r**0.5 if config.use_rslora else r)
        new = LoraAdapter(layer.in_features, layer.out_features, r, alpha, config)
        new.scaling = old.scaling  # exactly, not α'/r' rounded
        A = old.lora_A.weight
        new.to(A.device, A.dtype)
        new.lora_A.weight.copy_(A[keep])
        new.lora_B.weight.copy_(old.lora_B.weight[:, keep] * old.lora_gate[keep])
        for parameter in new.parameters():
            parameter.requires_grad_(A.requires_grad)
        new.train(old.training)
        layer.adapters[name] = new
        if was_merged:
            layer.merge([name])
        ranks[module_name], alphas[module_name] = r, alpha
    pruned = LoraConfig(
        target_modules=sorted(ranks),
        r=config.r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        use_rslora=config.use_rslora,
        init_lora_weights=config.init_lora_weights,
        rank_pattern=module_pattern(ranks),
        alpha_pattern=module_pattern(alphas),
    )
    state.configs[name] = pruned
    if name in state.extras:  # a plain LoRA now: no gates, no L1 term
        del state.extras[name]
        for handle in state.handles.pop(name, []):
            handle.remove()
    return pruned


def _remove_adapter(model: nn.Module, module_name: str, layer: AdaptedLayer, name: str) -> None:
    """Take adapter ``name`` off one layer (the host goes back when no adapter is left)."""
    del layer.adapters[name]
    layer.active = [n for n in layer.active if n != name]
    if len(layer.adapters) == 0:
        model.set_submodule(module_name, layer.base_layer)

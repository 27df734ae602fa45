"""Parameter counts and a readable tree of where adapters sit."""

from __future__ import annotations

from torch import nn

from nagner.peft.attach import STATE_ATTR, adapted_layers, is_adapter_parameter, peft_state


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """``trainable``, ``total`` and ``adapter`` (all attached adapters) parameter counts."""
    total = trainable = adapter = 0
    for name, parameter in model.named_parameters():
        count = parameter.numel()
        total += count
        trainable += count if parameter.requires_grad else 0
        if is_adapter_parameter(name):
            adapter += count
    return {"trainable": trainable, "total": total, "adapter": adapter}


def summary(model: nn.Module) -> str:
    """The adapted modules as a tree (module → adapter → tensor shapes), each adapter's state
    (active / merged), model-level parts, then trainable and total parameter counts."""
    lines: list[str] = [type(model).__name__]
    for module_name, layer in adapted_layers(model).items():
        host = type(layer.base_layer).__name__
        lines.append(f"├── {module_name} ({host} {layer.in_features}→{layer.out_features})")
        for name, adapter in layer.adapters.items():
            flags = [f for f, on in (("active", name in layer.active), ("merged", name in layer.merged)) if on]
            shapes = ", ".join(f"{k}:{list(p.shape)}" for k, p in adapter.named_parameters())
            lines.append(f"│   └── {name} [{type(adapter).__name__}{'; ' + ', '.join(flags) if flags else ''}] {shapes}")
    state = peft_state(model)
    if state is not None:
        for name, extras in state.extras.items():
            count = sum(p.numel() for p in extras.parameters())
            lines.append(f"├── {STATE_ATTR}.extras.{name} ({type(extras).__name__}, {count:,} parameters)")
    counts = parameter_counts(model)
    share = 100 * counts["trainable"] / max(counts["total"], 1)
    lines.append(
        f"trainable {counts['trainable']:,} of {counts['total']:,} parameters ({share:.4f}%); "
        f"adapters {counts['adapter']:,}"
    )
    return "\n".join(lines)

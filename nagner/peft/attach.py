"""Attach named adapters to any `nn.Module` by module names, switch, merge and detach them.

The model is changed in place (the OpenDelta idea: no edits to the model's code): each targeted
linear layer is replaced by an `AdaptedLayer` that keeps the original as ``base_layer``; model-level
parts (routers, generators) live under ``model.nagner_peft``. Detaching restores the original
modules, so a detached model has exactly its old modules and state-dict keys.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from nagner.peft.config import AdapterConfig
from nagner.peft.layer import AdaptedLayer
from nagner.peft.targets import find_targets, model_modules

STATE_ATTR = "nagner_peft"
DEFAULT_NAME = "default"


class PeftState(nn.Module):
    """Bookkeeping of the adapters on one model: configs, model-level extras and their hooks."""

    def __init__(self) -> None:
        super().__init__()
        self.configs: dict[str, AdapterConfig] = {}
        self.extras = nn.ModuleDict()
        self.handles: dict[str, list[RemovableHandle]] = {}
        self.active: list[str] = []


def peft_state(model: nn.Module) -> PeftState | None:
    """The model's adapter bookkeeping, or None when no adapter is attached."""
    state = getattr(model, STATE_ATTR, None)
    return state if isinstance(state, PeftState) else None


def _require_state(model: nn.Module) -> PeftState:
    state = peft_state(model)
    if state is None or not state.configs:
        raise ValueError("the model has no adapter attached")
    return state


def adapted_layers(model: nn.Module) -> dict[str, AdaptedLayer]:
    """Every `AdaptedLayer` of the model by module name, in model order (`targets.model_modules`)."""
    return {name: m for name, m in model_modules(model).items() if isinstance(m, AdaptedLayer)}


def adapter_names(model: nn.Module) -> list[str]:
    """Names of the attached adapters, in attach order."""
    state = peft_state(model)
    return list(state.configs) if state is not None else []


def active_adapters(model: nn.Module) -> list[str]:
    state = peft_state(model)
    return list(state.active) if state is not None else []


def adapter_config(model: nn.Module, name: str = DEFAULT_NAME) -> AdapterConfig:
    state = _require_state(model)
    _check_names(state, [name])
    return state.configs[name]


def _check_names(state: PeftState, names: list[str]) -> None:
    unknown = [n for n in names if n not in state.configs]
    if unknown:
        raise KeyError(f"no adapter named {', '.join(map(repr, unknown))}; attached: {', '.join(state.configs) or 'none'}")


def _adapter_dtype(weight: torch.Tensor) -> torch.dtype:
    """Adapters of half-precision hosts train in float32 (as `peft`'s autocast_adapter_dtype)."""
    return torch.float32 if weight.dtype in (torch.float16, torch.bfloat16) else weight.dtype


def attach(
    model: nn.Module,
    config: AdapterConfig,
    name: str = DEFAULT_NAME,
    *,
    activate: bool = True,
    freeze_base: bool = True,
) -> list[str]:
    """Attach adapter ``name`` built from ``config``; returns the adapted module names.

    ``activate``: make it the (only) active adapter. ``freeze_base``: make only this adapter's
    parameters trainable (everything else of ``model`` is frozen). Raises `TargetError` when a
    target names no module, ValueError for a taken or malformed name.
    """
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-]*", name):
        raise ValueError(f"adapter name {name!r}: use letters, digits, '_' or '-' (no dots)")
    if isinstance(model, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
        # The adapter state is registered as a child module: a container would run or list it as a layer.
        raise TypeError(
            f"attach adapters to the model that owns the {type(model).__name__}, not to the container itself "
            "(wrap it in an nn.Module)"
        )
    state = peft_state(model)
    if state is not None and name in state.configs:
        raise ValueError(f"an adapter named {name!r} is attached already; detach it or pick another name")
    targets = find_targets(model, config)
    if state is None:
        state = PeftState()
        model.add_module(STATE_ATTR, state)
    layers: dict[str, AdaptedLayer] = {}
    for module_name in targets:
        module = model.get_submodule(module_name)
        layer = module if isinstance(module, AdaptedLayer) else AdaptedLayer(module)
        if layer is not module:
            model.set_submodule(module_name, layer)
        weight = layer.weight
        layer.adapters[name] = config.build_adapter(layer, module_name).to(weight.device, _adapter_dtype(weight))
        layers[module_name] = layer
    state.configs[name] = config
    extras = config.build_extras(model, layers)
    if extras is not None:
        first = next(iter(layers.values())).weight
        state.extras[name] = extras.to(first.device, _adapter_dtype(first))
        state.handles[name] = extras.install(model, name)
    if activate:
        set_active(model, name)
    if freeze_base:
        set_trainable(model, name)
    return targets


def adapter_parameters(model: nn.Module, name: str) -> list[tuple[str, nn.Parameter]]:
    """(full name, parameter) of adapter ``name``: its per-layer parts and model-level extras."""
    state = _require_state(model)
    _check_names(state, [name])
    marker, extras = f".adapters.{name}.", f"{STATE_ATTR}.extras.{name}."
    return [(n, p) for n, p in model.named_parameters() if marker in n or n.startswith(extras)]


def is_adapter_parameter(name: str) -> bool:
    """True for the state-dict key or parameter name of an adapter's own tensor (per layer or
    model-level), relative to the module the adapters were attached to."""
    return ".adapters." in name or name.startswith(f"{STATE_ATTR}.") or f".{STATE_ATTR}." in name


def base_parameter_name(name: str) -> str:
    """The name a base-model tensor has without adapters (attaching moves a host layer's tensors
    under ``….base_layer``)."""
    return name.replace(".base_layer.", ".")


def base_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of ``model`` as it was before any adapter was attached: adapter tensors left
    out, base-layer tensors under their original names. Merged adapters are part of the weights."""
    return {
        base_parameter_name(key): tensor for key, tensor in model.state_dict().items() if not is_adapter_parameter(key)
    }


def set_trainable(model: nn.Module, names: str | list[str]) -> None:
    """Only the parameters of adapter(s) ``names`` require grad; the rest of ``model`` is frozen."""
    names = [names] if isinstance(names, str) else list(names)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for name in names:
        for _, parameter in adapter_parameters(model, name):
            parameter.requires_grad_(True)


def set_active(model: nn.Module, names: str | list[str]) -> None:
    """Make ``names`` the active adapters (applied in this order). Merged adapters that become
    inactive are unmerged first, so the weights never hold an inactive adapter."""
    names = [names] if isinstance(names, str) else list(names)
    state = _require_state(model)
    _check_names(state, names)
    for layer in adapted_layers(model).values():
        layer.unmerge([n for n in layer.merged if n not in names])
        layer.active = [n for n in names if n in layer.adapters]
    state.active = names


@contextmanager
def disable(model: nn.Module) -> Iterator[None]:
    """Run the base model: every adapter off (merged ones are taken out of the weights for the
    duration and put back after)."""
    layers = list(adapted_layers(model).values())
    remerge = {id(layer): (list(layer.merged), layer.keeps_original) for layer in layers}
    for layer in layers:
        layer.unmerge()
        layer.disabled = True
    try:
        yield
    finally:
        for layer in layers:
            layer.disabled = False
            names, keep_original = remerge[id(layer)]
            layer.merge(names, keep_original=keep_original)


def merge(model: nn.Module, names: list[str] | None = None, keep_original: bool = False) -> None:
    """Add the ΔW of ``names`` (default: the active adapters) to the host weights, in place: no
    copy of a weight is held, and `unmerge` subtracts ΔW again (exact to a rounding step of the
    weights' dtype). ``keep_original=True`` keeps a copy of each merged weight, so that `unmerge`
    restores it bit for bit (one weight's memory per merged layer). Prompt-conditioned and
    non-linear adapters raise TypeError."""
    state = _require_state(model)
    names = list(state.active) if names is None else names
    _check_names(state, names)
    inactive = [n for n in names if n not in state.active]
    if inactive:
        raise ValueError(f"cannot merge inactive adapters {inactive}: activate them first")
    for layer in adapted_layers(model).values():
        layer.merge([n for n in names if n in layer.adapters], keep_original=keep_original)


def unmerge(model: nn.Module, names: list[str] | None = None) -> None:
    """Take ``names`` (default: all merged) out of the host weights (bit for bit where `merge` kept
    the originals)."""
    for layer in adapted_layers(model).values():
        layer.unmerge(names)


def detach(model: nn.Module, names: str | list[str] | None = None) -> None:
    """Remove adapter(s) ``names`` (default: all). Merged ones are unmerged first. A layer left
    with no adapter is replaced by its original module; with no adapter left at all, the model is
    exactly as before attaching (parameters keep their current requires_grad)."""
    state = _require_state(model)
    names = list(state.configs) if names is None else ([names] if isinstance(names, str) else list(names))
    _check_names(state, names)
    for module_name, layer in adapted_layers(model).items():
        layer.unmerge([n for n in names if n in layer.merged])
        for name in names:
            if name in layer.adapters:
                del layer.adapters[name]
        layer.active = [n for n in layer.active if n not in names]
        if len(layer.adapters) == 0:
            model.set_submodule(module_name, layer.base_layer)
    for name in names:
        for handle in state.handles.pop(name, []):
            handle.remove()
        if name in state.extras:
            del state.extras[name]
        del state.configs[name]
    state.active = [n for n in state.active if n not in names]
    if not state.configs:
        delattr(model, STATE_ATTR)


def auxiliary_loss(model: nn.Module) -> torch.Tensor | None:
    """The sum of the active adapters' extra training-loss terms (MiLoRA load balancing, SoRA's
    L1 term), or None when there are none. Add it to the task loss in a custom loop;
    `nagner.peft.trainer.AdapterTrainer` does it for the HF `Trainer`."""
    state = peft_state(model)
    if state is None:
        return None
    terms = [extras.auxiliary_loss() for name, extras in state.extras.items() if name in state.active]
    for layer in adapted_layers(model).values():
        terms += [layer.adapters[name].auxiliary_loss() for name in layer.active]
    terms = [t for t in terms if t is not None]
    return torch.stack([t.reshape(()) for t in terms]).sum() if terms else None


def merge_and_unload(model: nn.Module, names: list[str] | None = None) -> nn.Module:
    """Merge ``names`` (default: the active adapters) for good and remove every adapter: the
    model is left with plain modules whose weights include the deltas. Returns ``model``."""
    state = _require_state(model)
    names = list(state.active) if names is None else names
    merge(model, names)
    for layer in adapted_layers(model).values():
        layer.forget_original()
    detach(model)
    return model

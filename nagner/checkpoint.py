"""Load a trained model folder for prediction, with errors a user can act on.

The folder is checked before torch and transformers are imported, so a wrong ``--model``
fails in a fraction of a second instead of after seconds of imports.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from nagner.errors import NagNerInputError

if TYPE_CHECKING:
    from nagner.modeling import NagNerModel

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
DEFAULT_MODEL = Path(__file__).resolve().parent / "default_model"


def default_model_path() -> Path:
    """The shipped default model: a LoRA adapter + NAG-NER heads for the all-MiniLM-L6-v2 encoder,
    trained on CoNLL-2003 English (PER, LOC, ORG, MISC); see its README.md for data and scores."""
    if not (DEFAULT_MODEL / "config.json").is_file():
        raise NagNerInputError("the default model is not installed with this copy of nagner; give --model DIR", DEFAULT_MODEL)
    return DEFAULT_MODEL


def check_checkpoint(path: str | Path) -> Path:
    """``path`` as a Path after checking it looks like a nagner checkpoint folder: it exists, is a
    folder, has a config.json of model_type "nagner" and a weights file. Raises NagNerInputError."""
    path = Path(path)
    if not path.exists():
        raise NagNerInputError("no such model folder", path)
    if not path.is_dir():
        raise NagNerInputError("not a folder; expected a model folder saved by nagner train", path)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise NagNerInputError("not a nagner checkpoint: no config.json in this folder", path)
    try:
        model_type = json.loads(config_file.read_text(encoding="utf-8")).get("model_type")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        raise NagNerInputError("not a nagner checkpoint: config.json is not a JSON object", config_file) from None
    if model_type != "nagner":
        raise NagNerInputError(
            f"not a nagner checkpoint: config.json has model_type {model_type!r}, expected 'nagner'", config_file
        )
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        raise NagNerInputError(f"not a nagner checkpoint: no weights ({', '.join(WEIGHT_FILES)})", path)
    return path


@contextmanager
def no_transformers_progress_bars() -> Iterator[None]:
    """transformers' own progress bars (loading and writing shards) off, restored afterwards."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """No progress bars or info chatter from transformers while loading (restored afterwards);
    what matters (missing weights) is checked here and raised as an error instead."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with no_transformers_progress_bars():
            yield
    finally:
        hf_logging.set_verbosity(verbosity)


def _missing_weights(model: NagNerModel, folder: Path) -> list[str]:
    """Parameters of ``model`` that ``folder/model.safetensors`` lacks (they would stay random)."""
    from safetensors import safe_open

    weights = folder / "model.safetensors"
    if not weights.is_file():
        return []
    with safe_open(str(weights), "pt") as stored:
        keys = set(stored.keys())
    return sorted(set(model.trainable_state_dict()) - keys)


def load_checkpoint(path: str | Path | None = None, device: str | None = None) -> NagNerModel:
    """The `NagNerModel` saved in folder ``path`` (by ``save_pretrained``), in eval mode; with no
    ``path``, the shipped default model (`default_model_path`).

    ``device``: where to put it; by default CUDA when available, else CPU. Raises
    NagNerInputError for a folder that is not a checkpoint (see :func:`check_checkpoint`),
    weights that do not load or do not cover every parameter, and a missing tokenizer.
    """
    path = check_checkpoint(default_model_path() if path is None else path)
    import torch

    from nagner.modeling import NagNerModel

    try:
        with quiet_transformers():
            model = NagNerModel.from_pretrained(path)
        missing = _missing_weights(model, path)
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise NagNerInputError(f"cannot load the checkpoint: {first_line}", path) from None
    if missing:
        raise NagNerInputError(
            f"the checkpoint lacks {len(missing)} weights (e.g. {missing[0]}); they would be random", path
        )
    if model.tokenizer is None:
        raise NagNerInputError("the checkpoint has no tokenizer (tokenizer_config.json)", path)
    model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return model.eval()

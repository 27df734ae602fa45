"""Shared fixtures: a tiny random BERT encoder with a real WordPiece tokenizer, saved to disk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from nagner.testing import build_tiny_encoder

# Tiny models run fastest on one thread, and the suite shares the machine's cores.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="session")
def _runtime_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Exported runtimes (`nagner predict`'s fast start) go to a temporary folder, not the user's cache."""
    os.environ["NAGNER_CACHE"] = str(tmp_path_factory.mktemp("nagner-cache"))
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a tiny random BERT encoder with its tokenizer (built once per test session)."""
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny-encoder"))


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_encoder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained NAG-NER model (random heads, seed 0; PER, LOC, ORG, ADR) on the tiny encoder,
    saved: for tests of the commands around a model, not of what it predicts."""
    from nagner.modeling import NagNerModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-model")
    NagNerModel.from_encoder(tiny_encoder, ["PER", "LOC", "ORG", "ADR"]).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_text_model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Saved tiny random T5 ("seq2seq") and GPT-2 ("causal") folders with the MiniLM tokenizer."""
    from tiny_text_models import save_tiny_model

    root = tmp_path_factory.mktemp("tiny_text_models")
    return {kind: save_tiny_model(kind, root / kind) for kind in ("seq2seq", "causal")}


@pytest.fixture(scope="session")
def tiny_text_model(tiny_text_model_dirs):
    """kind → a `TransformersModel` over the saved tiny model of that kind (loaded once per kind)."""
    from knowledge_qa.models.transformers_model import TransformersModel

    cache: dict[str, TransformersModel] = {}

    def load(kind: str) -> TransformersModel:
        if kind not in cache:
            cache[kind] = TransformersModel.from_pretrained(str(tiny_text_model_dirs[kind]), device="cpu")
        return cache[kind]

    return load

"""Weight ensembling: softmax weights, ensemble_init, the scorers on a hand-built case, the bank loader."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from nagner.peft import LoraConfig, active_adapters, adapter_state_dict, attach, save_adapter
from nagner.peft.ensemble import (
    cosine_score,
    el2n_score,
    ensemble_init,
    grad_norm_score,
    kl_score,
    load_adapter_bank,
    loss_score,
    parameter_cosine_score,
    softmax_weights,
)

K = 4.0  # logit margin of the hand-built sources
PREFIX = "base_model.model.head."


class Classifier(nn.Module):
    """x (n, 2) → logits (n, 3) through one linear head with zero weights."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(2, 3, bias=False)
        nn.init.zeros_(self.head.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)


def classifier() -> nn.Module:
    """The zero classifier with a rank-2 LoRA (scaling 1) on its head."""
    model = Classifier()
    attach(model, LoraConfig(r=2, lora_alpha=2, target_modules=["head"]))
    return model


def lora(B: list[list[float]]) -> dict[str, torch.Tensor]:
    """LoRA tensors with A = I, so the logits are B·x."""
    return {f"{PREFIX}lora_A.weight": torch.eye(2), f"{PREFIX}lora_B.weight": torch.tensor(B)}


# x = e_1 has label 0, x = e_2 label 1; "good" predicts both right, "zero" is uniform, "bad" says 2.
SOURCES = {
    "good": lora([[K, 0.0], [0.0, K], [0.0, 0.0]]),
    "zero": lora([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]),
    "bad": lora([[0.0, 0.0], [0.0, 0.0], [K, K]]),
}
BATCHES = [(torch.eye(2), torch.tensor([0, 1]))]


def logits_fn(
    model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    inputs, labels = batch
    return model(inputs), labels


def ranked(scores: dict[str, float]) -> list[str]:
    return sorted(scores, key=scores.get, reverse=True)


# ----------------------------------------------------------------------------------------- weights
def test_softmax_temperature() -> None:
    weights = softmax_weights({"a": 1.0, "b": 0.0}, temperature=1.0)
    assert weights["a"] == pytest.approx(math.e / (1 + math.e))
    assert softmax_weights({"a": 1.0, "b": 0.0}, temperature=0.01)["a"] == pytest.approx(1.0)
    assert softmax_weights({"a": 1.0, "b": 0.0}, temperature=1e4)["a"] == pytest.approx(0.5, abs=1e-4)
    assert softmax_weights({"a": 1.0, "b": 0.0}, temperature=0.5)["a"] == pytest.approx(
        math.e**2 / (1 + math.e**2)
    )
    with pytest.raises(ValueError, match="temperature"):
        softmax_weights({"a": 1.0}, temperature=0.0)


def test_ensemble_init_one_hot_reproduces_a_source_and_equal_scores_give_the_mean() -> None:
    model = classifier()
    torch.manual_seed(0)
    bank = {n: {k: torch.randn_like(v) for k, v in adapter_state_dict(model).items()} for n in "abc"}
    weights = ensemble_init(model, "default", bank, {"a": -1e9, "b": 0.0, "c": -1e9})
    assert weights == {"a": 0.0, "b": 1.0, "c": 0.0}
    for key, value in adapter_state_dict(model).items():
        assert torch.equal(value, bank["b"][key])
    ensemble_init(model, "default", bank, {"a": 2.0, "b": 2.0, "c": 2.0}, temperature=0.1)
    for key, value in adapter_state_dict(model).items():
        torch.testing.assert_close(value, (bank["a"][key] + bank["b"][key] + bank["c"][key]) / 3)
    # leave-one-out: the target's own adapter "a" is dropped before the softmax
    weights = ensemble_init(model, "default", bank, {"a": 9.0, "b": 1.0, "c": 1.0}, exclude="a")
    assert weights == pytest.approx({"b": 0.5, "c": 0.5})


def test_ensemble_init_errors_name_the_source_and_tensor() -> None:
    model = classifier()
    good = {k: v.clone() for k, v in adapter_state_dict(model).items()}
    wrong = {**good, f"{PREFIX}lora_B.weight": torch.zeros(3, 4)}
    with pytest.raises(ValueError, match=r"'wrong'.*lora_B.weight has shape \(3, 4\), expected \(3, 2\)"):
        ensemble_init(model, "default", {"good": good, "wrong": wrong}, {"good": 0.0, "wrong": 0.0})
    missing = {f"{PREFIX}lora_A.weight": good[f"{PREFIX}lora_A.weight"]}
    with pytest.raises(ValueError, match="'missing'.*1 missing"):
        ensemble_init(model, "default", {"missing": missing}, {"missing": 0.0})
    with pytest.raises(ValueError, match="no score"):
        ensemble_init(model, "default", {"good": good}, {})


# ----------------------------------------------------------------------------------------- scorers
def test_loss_el2n_cosine_scores() -> None:
    model = classifier()
    for scorer in (loss_score, el2n_score, cosine_score):
        assert ranked(scorer(model, "default", SOURCES, BATCHES, logits_fn)) == ["good", "zero", "bad"]
    # the uniform prediction: CE = log 3, ‖(⅓,⅓,⅓) − e_y‖ = √(2/3), cos = ⅓ / (1/√3) = 1/√3
    assert loss_score(model, "default", SOURCES, BATCHES, logits_fn)["zero"] == pytest.approx(-math.log(3))
    assert el2n_score(model, "default", SOURCES, BATCHES, logits_fn)["zero"] == pytest.approx(
        -math.sqrt(2 / 3)
    )
    assert cosine_score(model, "default", SOURCES, BATCHES, logits_fn)["zero"] == pytest.approx(
        1 / math.sqrt(3)
    )
    p = torch.softmax(torch.tensor([K, 0.0, 0.0]), 0)  # "good" on either input
    assert loss_score(model, "default", SOURCES, BATCHES, logits_fn)["good"] == pytest.approx(
        p[0].log().item()
    )


def test_kl_score_against_a_target_tuned_reference() -> None:
    model = classifier()
    scores = kl_score(model, "default", SOURCES, BATCHES, logits_fn, reference=SOURCES["good"])
    assert ranked(scores) == ["good", "zero", "bad"]
    assert scores["good"] == pytest.approx(0.0, abs=1e-6)
    p = torch.softmax(torch.tensor([K, 0.0, 0.0]), 0)
    assert scores["zero"] == pytest.approx(-(p * (p / (1 / 3)).log()).sum().item(), rel=1e-5)


def test_grad_norm_score() -> None:
    model = classifier()
    scores = grad_norm_score(model, "default", SOURCES, BATCHES, logits_fn)
    assert ranked(scores) == ["good", "zero", "bad"]
    # "zero": ∂L/∂B has columns (p − e_y)/2 of norm √(2/3)/2 each, ∂L/∂A = Bᵀ·… = 0 → ‖∇‖ = 1/√3
    assert scores["zero"] == pytest.approx(-1 / math.sqrt(3), rel=1e-5)


def test_scorers_put_the_adapter_back() -> None:
    model = classifier()
    model.train()
    before = {k: v.clone() for k, v in adapter_state_dict(model).items()}
    grad_flags = [p.requires_grad for p in model.parameters()]
    loss_score(model, "default", SOURCES, BATCHES, logits_fn)
    grad_norm_score(model, "default", SOURCES, BATCHES, logits_fn)
    for key, value in adapter_state_dict(model).items():
        assert torch.equal(value, before[key])
    assert model.training and active_adapters(model) == ["default"]
    assert [p.requires_grad for p in model.parameters()] == grad_flags


def test_parameter_cosine_score() -> None:
    reference = {"w": torch.tensor([1.0, 0.0]), "v": torch.tensor([[0.0]])}
    sources = {
        "same": {"w": torch.tensor([2.0, 0.0]), "v": torch.tensor([[0.0]])},
        "orthogonal": {"w": torch.tensor([0.0, 3.0]), "v": torch.tensor([[1.0]])},
        "opposite": {"w": torch.tensor([-1.0, 0.0]), "v": torch.tensor([[0.0]])},
    }
    scores = parameter_cosine_score(reference, sources)
    assert scores == pytest.approx({"same": 1.0, "orthogonal": 0.0, "opposite": -1.0})


# ------------------------------------------------------------------------------------------- bank
def test_load_adapter_bank_from_saved_folders(tmp_path: Path) -> None:
    model = classifier()
    for name, tensors in SOURCES.items():
        ensemble_init(model, "default", {name: tensors}, {name: 0.0})
        save_adapter(model, tmp_path / name)
    bank = load_adapter_bank([tmp_path / n for n in SOURCES])
    assert list(bank) == list(SOURCES)
    for name, tensors in SOURCES.items():
        assert bank[name].keys() == tensors.keys()
        assert all(torch.equal(bank[name][k], tensors[k]) for k in tensors)
    assert list(load_adapter_bank({"g": tmp_path / "good"})) == ["g"]
    with pytest.raises(FileNotFoundError, match="no adapter weights"):
        load_adapter_bank([tmp_path / "nowhere"])

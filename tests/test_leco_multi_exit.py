"""LECO's exits, multi-exit model and search on a tiny random BERT: exit heads ignore padding, the
joint loss by hand, early-exit inference stops running layers where the rule fires and agrees with
the rule over all exits, and the DARTS search moves α only on held-out data."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertModel

from nagner.compression.leco import (
    EXIT_TYPES,
    ComparisonRule,
    ExitHead,
    MaxProbabilityRule,
    MultiExitClassifier,
    decide,
    discretize,
    search_exits,
)


def tiny_encoder(seed: int = 0) -> BertModel:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=4, num_attention_heads=2, intermediate_size=32)
    return BertModel(config).eval()


def batch(rows: int, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 50, (rows, 7), generator=generator)
    mask = torch.ones_like(ids)
    mask[0, 5:] = 0
    labels = (ids[:, 1] > 25).long()  # learnable from one token
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


@pytest.mark.parametrize("kind", EXIT_TYPES)
def test_every_exit_type_gives_logits_and_ignores_padding(kind):
    torch.manual_seed(1)
    head = ExitHead(kind, hidden=16, classes=3)
    with torch.no_grad():
        if head.query is not None:
            head.query.normal_()
    hidden = torch.randn(2, 6, 16)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    logits = head(hidden, mask)
    assert logits.shape == (2, 3)
    padded = hidden.clone()
    padded[0, 4:] = 100.0  # garbage in the padding
    if kind != "cls_linear":
        torch.testing.assert_close(head(padded, mask)[0], logits[0], rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="unknown exit type"):
        ExitHead("lstm", 16, 3)


def test_the_joint_loss_weights_exits_by_depth():
    model = MultiExitClassifier(tiny_encoder(), classes=2, exits="mean_linear")
    inputs = batch(4, seed=2)
    output = model(**inputs)
    assert output["logits"].shape == (4, 4, 2)
    losses = [torch.nn.functional.cross_entropy(output["logits"][:, i], inputs["labels"]) for i in range(4)]
    expected = sum((i + 1) * loss for i, loss in enumerate(losses)) / 10
    torch.testing.assert_close(output["loss"], expected)


def test_early_exit_stops_the_encoder_where_the_rule_fires():
    model = MultiExitClassifier(tiny_encoder(), classes=2, exits=["cls_linear", "mean_linear", "max_linear", "mlp_mean"]).eval()
    calls = []
    for index, layer in enumerate(model.encoder.encoder.layer):
        layer.register_forward_pre_hook(lambda module, args, index=index: calls.append(index))
    inputs = batch(6, seed=3)
    with torch.no_grad():
        probabilities = model.exit_logits(inputs["input_ids"], inputs["attention_mask"]).softmax(-1)  # (6, 4, 2)
    for rule in (ComparisonRule(2), MaxProbabilityRule(0.5), MaxProbabilityRule(1.1)):
        layers, answers = decide(rule, probabilities)
        for row in range(6):
            calls.clear()
            answer, layer = model.predict_early(
                inputs["input_ids"][row : row + 1], inputs["attention_mask"][row : row + 1], rule
            )
            assert (answer, layer) == (int(answers[row]), int(layers[row]))
            assert calls == list(range(layer))  # the layers after the exit never ran
    assert int(decide(MaxProbabilityRule(0.5), probabilities)[0].max()) == 1  # every input leaves at layer 1
    with pytest.raises(ValueError, match="batch 1"):
        model.predict_early(inputs["input_ids"], inputs["attention_mask"], ComparisonRule(2))


def test_the_search_moves_alpha_on_held_out_data_only_and_discretizes():
    model = MultiExitClassifier(tiny_encoder(), classes=2)
    train, held_out = [batch(8, seed=s) for s in (4, 5)], [batch(8, seed=6)]
    frozen = MultiExitClassifier(tiny_encoder(), classes=2)
    frozen.load_state_dict(model.state_dict())
    result = search_exits(model, train, held_out, steps=15, learning_rate=0.0, architecture_learning_rate=0.05)
    assert len(result.exits) == 4 and set(result.exits) <= set(EXIT_TYPES)
    assert all(not torch.equal(head.alpha, torch.zeros(len(EXIT_TYPES))) for head in model.exits)
    for (name, parameter), (_, before) in zip(model.named_parameters(), frozen.named_parameters(), strict=True):
        if not name.endswith("alpha"):
            assert torch.equal(parameter, before), name  # weights at learning rate 0 did not move
    assert result.held_out_losses[-1] < result.held_out_losses[0]  # α alone lowered the held-out loss
    with torch.no_grad():
        model.exits[2].alpha.copy_(torch.tensor([0.0, 0, 0, 5, 0, 0]))
    student = discretize(model)
    assert student.chosen_exits()[2] == "attention_pool" and student.exit_architecture_parameters() == []
    assert student.encoder is model.encoder


def test_save_and_load_give_the_same_exits_and_refuse_a_search(tmp_path):
    from nagner.common.errors import InputError

    torch.manual_seed(3)
    model = MultiExitClassifier(tiny_encoder(), classes=3, exits=["conv_max", "mean_linear", "attention_pool", "cls_linear"]).eval()
    model.save_pretrained(tmp_path / "model")
    loaded = MultiExitClassifier.from_pretrained(tmp_path / "model")
    data = batch(3, seed=9)
    with torch.no_grad():
        expected = model.exit_logits(data["input_ids"], data["attention_mask"])
        assert torch.equal(loaded.exit_logits(data["input_ids"], data["attention_mask"]), expected)
    assert loaded.chosen_exits() == model.chosen_exits() and loaded.classes == 3
    with pytest.raises(ValueError, match="discretize"):
        MultiExitClassifier(tiny_encoder(), classes=2).save_pretrained(tmp_path / "searching")
    assert not (tmp_path / "searching").exists()
    with pytest.raises(InputError, match="not a multi-exit model folder"):
        MultiExitClassifier.from_pretrained(tmp_path)

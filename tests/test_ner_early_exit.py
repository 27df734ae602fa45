"""Early exiting for NAG-NER: the structured exit rules on hand-made exit sequences, the
defining properties of `predict_early` (a sentence that never exits gets exactly the model's
prediction; the layers after an exit never run; the offline sweep answers what the real early
exit answers), the bridges' file format, and bridge training."""

from __future__ import annotations

import math

import pytest
import torch

from nagner.common.errors import InputError
from nagner.compression.leco.structured_rules import (
    AgreementRule,
    UncertaintyRule,
    VoteRule,
    decide_structured,
    parse_structured_rule,
)
from nagner.data.example import Entity, Sentence
from nagner.exit_training import binary_kl, detector_distillation, train_exit_bridges
from nagner.modeling import NagNerModel
from nagner.modeling.detector import Detection
from nagner.modeling.early_exit import ExitBridges, entities_at_exits, predict_early, record_exits
from nagner.testing import build_tiny_encoder

SENTENCES = [
    Sentence("the university of paris is in paris".split(), [Entity("ORG", (1, 2, 3)), Entity("LOC", (6,))]),
    Sentence("berlin and london".split(), [Entity("LOC", (0,)), Entity("LOC", (2,))]),
    Sentence("a b c d e f g".split(), []),
    Sentence("the london university was at berlin".split(), [Entity("ORG", (1, 2)), Entity("LOC", (5,))]),
]


def test_agreement_rule_exits_after_patience_equal_predictions_in_a_row():
    exits = [("a", 0.9), ("b", 0.9), ("b", 0.9), ("a", 0.9), ("a", 0.9), ("a", 0.9)]
    assert decide_structured(AgreementRule(1), exits) == 3  # b, b
    assert decide_structured(AgreementRule(2), exits) == 6  # a, a, a (the b, b run was too short)
    assert decide_structured(AgreementRule(5), exits) == 6  # never fires: the last exit


def test_vote_rule_counts_agreeing_exits_that_are_not_consecutive():
    exits = [("a", 0.9), ("b", 0.9), ("a", 0.9), ("b", 0.9), ("b", 0.9)]
    assert decide_structured(VoteRule(2), exits) == 3  # a at exits 1 and 3
    assert decide_structured(VoteRule(3), exits) == 5  # b at 2, 4, 5
    assert decide_structured(AgreementRule(1), exits) == 5  # patience resets at each change


def test_uncertainty_rule_exits_at_the_first_sure_enough_exit():
    exits = [("a", 0.8), ("a", 0.35), ("a", 0.1)]
    assert decide_structured(UncertaintyRule(0.4), exits) == 2
    assert decide_structured(UncertaintyRule(0.05), exits) == 3
    with pytest.raises(ValueError):
        AgreementRule(0)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A random three-layer model that opens a slot on every word (so that it predicts entities)."""
    encoder = build_tiny_encoder(tmp_path_factory.mktemp("three-layers"), layers=3)
    torch.manual_seed(0)
    model = NagNerModel.from_encoder(encoder, ["PER", "LOC", "ORG"]).eval()
    model.config.start_threshold = 0.0
    model.config.score_threshold = 0.0
    return model


def _keys(entities):
    return [[(e.type, e.indices, round(e.score, 6)) for e in sentence] for sentence in entities]


def test_a_sentence_that_never_exits_gets_exactly_the_models_prediction(model):
    bridges = ExitBridges.for_model(model)
    with torch.no_grad():
        for bridge in bridges.bridges:  # bridges that change the states: exits must not leak into the last layer
            bridge.weight.mul_(0.5)
    entities, layers = predict_early(model, bridges, SENTENCES, AgreementRule(patience=10))
    assert layers == [3] * len(SENTENCES)
    expected = model.predict_sentences(SENTENCES)
    assert sum(map(len, expected)) > 0
    assert _keys(entities) == _keys(expected)


def test_the_layers_after_the_exit_never_run(model):
    calls = []
    handle = model.encoder.encoder.layer[1].register_forward_hook(lambda *_: calls.append(1))
    try:
        _, layers = predict_early(model, ExitBridges.for_model(model), SENTENCES, UncertaintyRule(1.0))
    finally:
        handle.remove()
    assert layers == [1] * len(SENTENCES) and calls == []


@pytest.mark.parametrize("rule", [AgreementRule(1), VoteRule(2), UncertaintyRule(0.999)])
def test_the_offline_sweep_answers_what_the_real_early_exit_answers(model, rule):
    torch.manual_seed(1)
    bridges = ExitBridges.for_model(model)
    with torch.no_grad():
        for bridge in bridges.bridges:
            bridge.weight.add_(0.3 * torch.randn_like(bridge.weight))
    features, records = record_exits(model, bridges, SENTENCES, batch_size=3)
    swept, swept_layers = entities_at_exits(model, SENTENCES, features, records, rule)
    entities, layers = predict_early(model, bridges, SENTENCES, rule)
    assert layers == swept_layers
    assert [[(e.type, e.indices) for e in s] for s in entities] == [[(e.type, e.indices) for e in s] for s in swept]
    for early, offline in zip(entities, swept):
        assert [e.score for e in early] == pytest.approx([e.score for e in offline], abs=1e-5)


def test_bridges_round_trip_and_refuse_another_model(model, tiny_model_dir, tmp_path):
    bridges = ExitBridges.for_model(model)
    with torch.no_grad():
        bridges.bridges[0].bias.fill_(0.25)
    bridges.save_pretrained(tmp_path / "exits")
    loaded = ExitBridges.from_pretrained(tmp_path / "exits")
    for key, value in bridges.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    other = NagNerModel.from_pretrained(tiny_model_dir)  # two layers, other types
    with pytest.raises(ValueError, match="made for 3 layers"):
        loaded.check_fits(other)
    with pytest.raises(InputError, match="not an exit-bridge folder"):
        ExitBridges.from_pretrained(tmp_path)


def test_training_lowers_the_exit_loss_and_leaves_the_model_unchanged(model):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sentences = SENTENCES * 4
    bridges, losses = train_exit_bridges(model, sentences, epochs=30, learning_rate=2e-2, batch_size=4)
    assert len(losses) >= 2 and losses[-1] < 0.9 * losses[0]
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(not p.requires_grad for p in model.parameters())


def test_binary_kl_by_hand():
    # teacher p = σ(0) = 0.5, student q = σ(ln 3) = 0.75: 0.5 ln(0.5/0.75) + 0.5 ln(0.5/0.25)
    value = binary_kl(torch.tensor([math.log(3.0)]), torch.tensor([0.0]))
    assert value.item() == pytest.approx(0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(2.0), abs=1e-6)
    same = torch.tensor([-2.0, 0.3, 4.0])
    assert torch.allclose(binary_kl(same, same), torch.zeros(3), atol=1e-6)


def test_detector_distillation_is_zero_for_the_teacher_itself_and_counts_only_real_words():
    torch.manual_seed(0)
    teacher = Detection(torch.randn(2, 4), torch.randn(2, 4), torch.randn(2, 4, 3))
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    assert detector_distillation(teacher, teacher, mask).item() == pytest.approx(0.0, abs=1e-6)
    student = Detection(teacher.start_logits.clone(), teacher.end_logits.clone(), teacher.count_logits.clone())
    student.start_logits[0, 3] += 5.0  # a padded word: ignored
    assert detector_distillation(student, teacher, mask).item() == pytest.approx(0.0, abs=1e-6)
    student.start_logits[1, 0] += 2.0  # a real word: 1/5 of its binary KL (5 real words)
    expected = binary_kl(student.start_logits[1, 0], teacher.start_logits[1, 0]).item() / 5
    assert detector_distillation(student, teacher, mask).item() == pytest.approx(expected, rel=1e-5)


def test_distillation_brings_the_exits_detector_closer_to_the_last_layers(model):
    from nagner.modeling.early_exit import _features, layer_word_states

    def distance(bridges):
        """The exits' summed distillation loss to the last layer's detector, over SENTENCES."""
        features, collate = _features(model, SENTENCES)
        batch = collate(features)
        with torch.no_grad():
            states = layer_word_states(model, batch)
            teacher = model.detector(states[-1])
            return sum(detector_distillation(model.detector(bridges(k, states[k - 1])), teacher, batch["word_mask"]).item()
                       for k in range(1, len(states)))

    plain, _ = train_exit_bridges(model, SENTENCES * 4, epochs=20, learning_rate=2e-2, batch_size=4)
    distilled, _ = train_exit_bridges(model, SENTENCES * 4, epochs=20, learning_rate=2e-2, batch_size=4, distillation=5.0)
    assert distance(distilled) < distance(plain)


def test_rules_parse_from_their_command_line_form():
    assert repr(parse_structured_rule("agreement:2")) == "AgreementRule(patience=2)"
    assert repr(parse_structured_rule("vote:3")) == "VoteRule(threshold=3)"
    assert repr(parse_structured_rule("uncertainty:0.25")) == "UncertaintyRule(threshold=0.25)"
    for bad in ("agreement", "agreement:x", "agreement:0", "soon:1", ""):
        with pytest.raises(ValueError, match="agreement:P, vote:K or uncertainty:T"):
            parse_structured_rule(bad)

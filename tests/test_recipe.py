"""The NAG-NER recipe's mechanisms: the slot rule, data-sized settings, initialisation, the count
loss, flat mode, merged adapters at load, decoding tuned on dev, and old checkpoints."""

from __future__ import annotations

import json

import pytest
import torch

import nagner.peft as nagner_peft
from nagner.data.example import Entity, Sentence
from nagner.modeling import NagNerCollator, NagNerConfig, NagNerModel, encode_sentences
from nagner.modeling.detector import Detection
from nagner.modeling.slots import inference_slot_counts, slots_per_start, training_slot_counts
from nagner.modeling.span_typing import span_type_bias
from nagner.modeling.targets import END
from nagner.modeling.tuning import tune_decoding
from nagner.training import data_settings

TYPES = ["LOC", "ORG"]
SENTENCES = [
    Sentence("the university of paris is in paris".split(),
             [Entity("ORG", (1, 2, 3)), Entity("LOC", (3,)), Entity("LOC", (6,))]),
    Sentence("london and berlin university".split(),
             [Entity("LOC", (0,)), Entity("ORG", (0, 3)), Entity("ORG", (2, 3))]),
]


def tiny_model(path, **kwargs) -> NagNerModel:
    torch.manual_seed(0)
    return NagNerModel.from_encoder(path, TYPES, **kwargs)


def batch_of(model: NagNerModel, sentences: list[Sentence]) -> dict[str, torch.Tensor]:
    features, _ = encode_sentences(sentences, model.tokenizer, model.config, with_targets=True)
    return NagNerCollator(model.tokenizer.pad_token_id, model.config.max_pointers)(features)


# ------------------------------------------------------------------------------ the slot rule


def test_slots_per_start_follows_the_cumulative_count_probabilities():
    config = NagNerConfig(entity_types=TYPES, max_entities_per_start=4, count_threshold=0.25)
    probs = torch.tensor([
        [0.0, 1.0, 0.0, 0.0, 0.0],  # surely one entity: 1 slot
        [0.0, 0.6, 0.3, 0.1, 0.0],  # P(>=2) = 0.4, P(>=3) = 0.1: 2 slots
        [0.0, 0.2, 0.3, 0.3, 0.2],  # P(>=2) = 0.8, P(>=3) = 0.5, P(>=4) = 0.2: 3 slots
        [0.0, 0.0, 0.0, 0.0, 1.0],  # 4 slots
    ])
    logits = probs.clamp(min=1e-9).log()[None]  # (1, 4 words, 5 classes)
    assert slots_per_start(logits, config).tolist() == [[1, 2, 3, 4]]
    config.min_slots_per_start = 2
    assert slots_per_start(logits, config).tolist() == [[2, 2, 3, 4]]


def test_training_opens_the_slots_inference_opens_and_more_only_where_gold_or_negatives_need():
    """One rule: without gold entities and negatives, training opens exactly the inference slots;
    gold starts add slots only up to their gold count; negatives only open words the rule left shut."""
    config = NagNerConfig(entity_types=TYPES, min_slots_per_start=2, negative_start_ratio=0.5)
    torch.manual_seed(0)
    B, n = 3, 9
    start_logits = torch.randn(B, n) * 2
    count_logits = torch.randn(B, n, config.max_entities_per_start + 1)
    word_mask = torch.ones(B, n, dtype=torch.bool)
    word_mask[2, 6:] = False
    inference = inference_slot_counts(start_logits, count_logits, word_mask, config)
    no_gold = torch.zeros(B, n, dtype=torch.long)
    training = training_slot_counts(start_logits, count_logits, no_gold, word_mask, config, negatives=False)
    assert torch.equal(training, inference) and inference.sum() > 0
    gold = no_gold.clone()
    gold[0, 1], gold[1, 4] = 5, 1
    with_gold = training_slot_counts(start_logits, count_logits, gold, word_mask, config, negatives=False)
    rule = slots_per_start(count_logits, config)
    assert with_gold[0, 1] == max(5, int(rule[0, 1])) and with_gold[1, 4] == max(1, int(rule[1, 4]))
    elsewhere = gold == 0
    assert torch.equal(with_gold[elsewhere], inference[elsewhere])
    with_negatives = training_slot_counts(start_logits, count_logits, no_gold, word_mask, config, negatives=True)
    opened = with_negatives > inference
    assert opened.any() and (inference[opened] == 0).all() and word_mask[opened].all()
    assert (with_negatives[opened] == 1).all()


def test_the_count_loss_is_trained_at_gold_starts_only(tiny_encoder):
    model = tiny_model(tiny_encoder)
    batch = batch_of(model, SENTENCES)
    B, n = batch["word_mask"].shape
    torch.manual_seed(0)
    count_logits = torch.randn(B, n, model.config.max_entities_per_start + 1, requires_grad=True)
    detection = Detection(torch.randn(B, n), torch.randn(B, n), count_logits)
    _, count_loss, _ = model.criterion.detection(
        detection, batch["word_mask"], batch["start_labels"], batch["end_labels"], batch["count_labels"], None
    )
    count_loss.backward()
    grad = count_logits.grad.abs().sum(-1)  # (B, n)
    starts = batch["count_labels"] > 0
    assert starts.sum() == 5 and (grad[starts] > 0).all() and (grad[~starts] == 0).all()


# -------------------------------------------------------------------------- data-sized settings


def test_settings_follow_from_the_training_data():
    flat = [Sentence("a b c d".split(), [Entity("X", (0, 1)), Entity("Y", (3,))])]
    nested = [Sentence("a b c d".split(), [Entity("X", (0, 1)), Entity("Y", (0,))])]
    crossing = [Sentence("a b c d".split(), [Entity("X", (0, 1)), Entity("Y", (1, 2))])]
    discontinuous = [Sentence("a b c d e f".split(), [Entity("X", (0, 2, 4))])]
    assert data_settings(flat) == {"max_pointers": 2, "min_slots_per_start": 1, "overlap": "flat"}
    assert data_settings(nested) == {"max_pointers": 2, "min_slots_per_start": 2, "overlap": "any"}
    assert data_settings(crossing) == {"max_pointers": 2, "min_slots_per_start": 1, "overlap": "any"}
    assert data_settings(discontinuous) == {"max_pointers": 6, "min_slots_per_start": 1, "overlap": "any"}
    assert data_settings(discontinuous, max_pointers_cap=4)["max_pointers"] == 4


def test_pointer_positions_and_slot_ranks_start_distinct(tiny_encoder):
    model = tiny_model(tiny_encoder)
    assert model.decoder.position_embedding.weight.std().item() == pytest.approx(0.3, rel=0.15)
    assert model.decoder.slot_embedding.weight.std().item() == pytest.approx(0.3, rel=0.15)
    old = tiny_model(tiny_encoder, position_init_std=0.02)
    assert old.decoder.position_embedding.weight.std().item() == pytest.approx(0.02, rel=0.15)


def test_a_checkpoint_from_before_the_recipe_loads_with_the_settings_it_was_trained_with(tiny_encoder, tmp_path):
    legacy = tiny_model(tiny_encoder, pointer_prior=False, span_typing=False, cross_slot_attention=False,
                        negative_start_ratio=0.0, position_init_std=0.02)
    legacy.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    for key in ("format_version", "pointer_prior", "span_typing", "cross_slot_attention",
                "negative_start_ratio", "position_init_std"):
        del config[key]  # what a config.json of the first format holds
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = NagNerModel.from_pretrained(tmp_path)
    assert loaded.config.format_version == 1 and not loaded.config.pointer_prior
    assert not loaded.config.span_typing and not loaded.config.cross_slot_attention
    assert NagNerConfig(entity_types=TYPES).pointer_prior  # new configs get the recipe


def test_a_checkpoint_of_format_2_loads_without_the_span_classifier(tiny_encoder, tmp_path):
    older = tiny_model(tiny_encoder, span_classifier=False)
    older.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["span_classifier"]
    config["format_version"] = 2
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = NagNerModel.from_pretrained(tmp_path)
    assert loaded.config.format_version == 2 and loaded.span_classifier is None and loaded.config.span_typing
    assert tiny_model(tiny_encoder).span_classifier is not None  # new models get it


def test_a_checkpoint_of_format_3_loads_with_the_span_classifier_it_was_trained_with(tiny_encoder, tmp_path):
    older = tiny_model(tiny_encoder, span_gaps=False, span_positives=False)
    older.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["span_gaps"], config["span_positives"]
    config["format_version"] = 3
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = NagNerModel.from_pretrained(tmp_path)  # strict: its weights fit the 3-part classifier
    assert loaded.config.format_version == 3 and not loaded.config.span_gaps and not loaded.config.span_positives
    assert not loaded.span_classifier.gaps and loaded.span_classifier.mlp[0].in_features == 3 * 32
    assert tiny_model(tiny_encoder).config.span_positives  # new models learn the span terms on gold spans too
    assert tiny_model(tiny_encoder, span_gaps=True).span_classifier.mlp[0].in_features == 6 * 32


def test_the_span_terms_alone_learn_the_gold_spans_types_and_none_on_the_negatives(tiny_encoder, monkeypatch):
    """With span_positives the span-term loss is the CE, over the gold spans (towards their types)
    and the span negatives (towards NONE) together, of the span terms alone; without it, of the
    negatives alone."""
    sentences = [Sentence("a b c d e".split(), [Entity("LOC", (0,)), Entity("ORG", (0, 2))])]
    for positives in (True, False):
        model = tiny_model(tiny_encoder, span_positives=positives, span_negatives=3, max_pointers=4)
        batch = batch_of(model, sentences)
        seen = {}
        original_terms = model.criterion.span_terms

        def span_terms(logits, targets, sentence, batch_size, per_sentence=False, seen=seen, original=original_terms):
            seen["logits"], seen["targets"] = logits, targets
            return original(logits, targets, sentence, batch_size, per_sentence)

        negatives = model._span_negatives
        monkeypatch.setattr(model, "_span_negatives", lambda *a, seen=seen, negatives=negatives: seen.setdefault("negatives", negatives(*a)))
        monkeypatch.setattr(model.criterion, "span_terms", span_terms)
        model.eval()  # no dropout: the span logits can be recomputed
        model(**batch)
        negative_logits, _ = seen["negatives"]
        gold_types = torch.tensor([model.config.entity_types.index(t) + 1 for t in ("LOC", "ORG")])
        expected_targets = torch.cat([gold_types, torch.zeros(len(negative_logits), dtype=torch.long)])
        if positives:
            words = model.encode_words(batch["input_ids"], batch["attention_mask"], batch["word_first"], batch["word_last"])
            spans = torch.zeros(2, words.shape[1], dtype=torch.bool)
            spans[0, 0] = spans[1, 0] = spans[1, 2] = True
            gold_logits = model.span_logits(words, model.detector(words), torch.zeros(2, dtype=torch.long), spans)
            assert torch.equal(seen["targets"], expected_targets)
            assert torch.allclose(seen["logits"][:2], gold_logits, atol=1e-5)
        else:
            assert torch.equal(seen["targets"], expected_targets[2:])
        assert len(negative_logits) > 0 and torch.allclose(seen["logits"][-len(negative_logits):], negative_logits)
        loss = original_terms(seen["logits"], seen["targets"], torch.zeros(len(seen["targets"]), dtype=torch.long), 1)
        assert loss.item() == pytest.approx(torch.nn.functional.cross_entropy(seen["logits"], seen["targets"]).item())


def test_the_span_classifier_types_the_slots_spans_in_training_and_at_inference(tiny_encoder, monkeypatch):
    """Training: its loss gradient reaches it. Inference: the type logits that decide each slot are
    the decoder's plus the span terms of the span the slot decodes."""
    model = tiny_model(tiny_encoder)
    assert model.span_classifier is not None
    batch = batch_of(model, SENTENCES[1:])
    model.train()
    model(**batch).loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.span_classifier.parameters())

    model.eval()
    seen = {}
    original = model.span_logits

    def span_logits(words, detection, sentence, spans):
        seen["spans"], seen["logits"] = spans.clone(), original(words, detection, sentence, spans)
        return seen["logits"]

    def run_decoder(words, word_mask, detection, slots, previous_classes=None, positions=None):
        pointers = torch.full((len(slots), model.config.max_pointers, words.shape[1] + 1), -9.0)
        pointers[:, 0, 1:] = 0.0
        pointers[torch.arange(len(slots)), 0, slots.word + 1] = 9.0  # each slot: its start word alone
        pointers[:, 1:, END] = 9.0
        return pointers, torch.zeros(len(slots), model.config.num_types)  # the decoder adds nothing

    monkeypatch.setattr(model, "span_logits", span_logits)
    monkeypatch.setattr(model, "_run_decoder", run_decoder)
    model.config.start_threshold, model.config.score_threshold, model.config.overlap = 0.0, 0.0, "any"
    with torch.no_grad():
        words = model.encode_words(batch["input_ids"], batch["attention_mask"], batch["word_first"], batch["word_last"])
        found = model.decode(words, batch["word_mask"], model.detector(words))
    spans = seen["spans"]  # (S, n): every word opened slots, each slot's span is its start word
    assert spans.sum(-1).eq(1).all() and set(spans.float().argmax(-1).tolist()) == set(range(4))
    slot_word = spans.float().argmax(-1).tolist()
    expected = sorted({(t, (w,)) for w, t in zip(slot_word, seen["logits"].argmax(-1).tolist()) if t > 0}, key=lambda e: e[1])
    assert [f[:2] for f in found[0]] == expected  # types decided by the span terms alone here
    sentence = torch.zeros(len(slot_word), dtype=torch.long)
    assert torch.allclose(seen["logits"], model.span_classifier(words, sentence, spans)
                          + span_type_bias(model.detector(words).word_type_logits, sentence, spans))


def test_a_slot_takes_the_beam_sequence_most_likely_to_be_an_entity(tiny_encoder, monkeypatch):
    """One slot on word 0 whose pointers prefer the span (0, 1, 2) slightly over (0,); the span terms
    say (0, 1, 2) is no entity and (0,) is a LOC; the decoder's type logit (the same for both) is
    sure the slot holds some entity. Beam 1 keeps the likelier pointers; beam 2 takes (0,): the
    choice weighs the span terms alone, which the decoder's certainty would otherwise drown."""
    model = tiny_model(tiny_encoder, max_pointers=2, start_threshold=0.5, overlap="any").eval()
    n = 4
    words, word_mask = torch.zeros(1, n, 32), torch.ones(1, n, dtype=torch.bool)
    one_entity = torch.zeros(1, n, 9)
    one_entity[..., 1] = 9.0  # each start holds one entity: one slot
    detection = Detection(torch.tensor([[9.0, -9.0, -9.0, -9.0]]), torch.zeros(1, n), one_entity)
    pointers = torch.full((1, 2, n + 1), -20.0)
    pointers[0, 0, 1], pointers[0, 0, 3] = 1.0, 1.5  # end at word 0 or (likelier) word 2
    pointers[0, 1, END] = 20.0
    decoder_types = torch.tensor([[-20.0, 0.0, -5.0]])  # NONE, LOC, ORG

    def span_logits(words_, detection_, sentence, spans):
        none = spans.sum(-1) > 1  # the long span is no entity; the one-word span is a LOC
        return torch.where(none[:, None], torch.tensor([8.0, 0.0, 0.0]), torch.tensor([0.0, 8.0, 0.0]))

    monkeypatch.setattr(model, "_run_decoder", lambda *a, **k: (pointers, decoder_types))
    monkeypatch.setattr(model, "span_logits", span_logits)
    assert [f[:2] for f in model.decode(words, word_mask, detection, beam_size=1)[0]] == [(1, (0, 1, 2))]
    (found,) = model.decode(words, word_mask, detection, beam_size=2)
    p_end = torch.tensor([1.0, 1.5]).softmax(-1)[0]
    p_type = torch.tensor([-20.0, 8.0, -5.0]).softmax(-1)[1]
    assert [f[:2] for f in found] == [(1, (0,))]
    assert found[0][2] == pytest.approx(float(torch.tensor(9.0).sigmoid() * p_end * p_type), rel=1e-4)


def test_span_negatives_are_a_matched_slots_other_beam_sequences_that_are_no_gold_entity(tiny_encoder):
    model = tiny_model(tiny_encoder, span_negatives=3, max_pointers=2)
    sentence = Sentence("a b c d e".split(), [Entity("LOC", (0,)), Entity("ORG", (0, 1, 2)), Entity("LOC", (3, 4))])
    batch = batch_of(model, [sentence])
    words = model.encode_words(batch["input_ids"], batch["attention_mask"], batch["word_first"], batch["word_last"])
    detection = model.detector(words)
    from nagner.modeling.slots import Slots

    slots = Slots(torch.tensor([0, 0, 0]), torch.tensor([0, 0, 3]), torch.tensor([0, 1, 0]))
    pointers = torch.full((3, 2, 6), -5.0)
    pointers[0, 0, 1:] = torch.tensor([4.0, 3.0, 2.0, 1.0, 0.0])  # first slot on word 0: ends 0, 1, 2, 3 lead
    pointers[1, 0, 1:] = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0])  # second slot on word 0: ends 4, 3, 2, 1 lead
    pointers[2, 0, 1:] = 1.0  # the slot on word 3 can end at 3 or 4 only
    pointers[:, 1, END] = 5.0
    gold_spans = torch.tensor([[1, 0, 0, 0, 0], [1, 1, 1, 0, 0], [0, 0, 0, 1, 1]], dtype=torch.bool)
    seen = {}

    def span_logits(words_, detection_, sentence_, spans):
        seen["spans"] = spans
        return torch.zeros(len(spans), 3)

    model.span_logits = span_logits
    logits, sentences = model._span_negatives(
        words, batch["word_mask"], detection, pointers, slots, torch.tensor([0, 1, 2]), torch.tensor([0, 0, 0]), gold_spans
    )
    spans = {tuple(row.nonzero()[:, 0].tolist()) for row in seen["spans"]}
    # beams of 4: ends 0-3 (gold: 0, 2), ends 1-4 (gold: 2), and 3-4 for the slot on word 3 (gold: 4)
    assert spans == {(0, 1), (0, 1, 2, 3), (0, 1, 2, 3, 4), (3,)}
    assert len(seen["spans"]) == 2 + 3 + 1 and sentences.eq(0).all() and logits.shape == (6, 3)


# ------------------------------------------------------------------------------------ flat mode


def test_flat_mode_never_outputs_overlapping_entities(tiny_encoder, monkeypatch):
    """Every word opens a slot pointing at the sentence's last word: all spans overlap; the flat
    mode keeps the best one, the "any" mode all of them."""
    n = 5
    for overlap, expected in (("flat", 1), ("any", n)):
        model = tiny_model(tiny_encoder, max_pointers=2, overlap=overlap, start_threshold=0.0).eval()
        monkeypatch.setattr(model, "span_logits", lambda *a: None)  # the scores are the decoder's alone

        def run_decoder(words, word_mask, detection, slots, previous_classes=None, positions=None):
            S = len(slots)
            logits = torch.full((S, 2, n + 1), -9.0)
            logits[:, 0, n] = 5.0 + slots.word.float()  # end at word n - 1; later starts score higher
            logits[:, 1, END] = 5.0
            return logits, torch.tensor([[0.0, 5.0, 0.0]]).expand(S, 3)

        monkeypatch.setattr(model, "_run_decoder", run_decoder)
        detection = Detection(torch.zeros(1, n), torch.zeros(1, n), torch.zeros(1, n, 9))
        (found,) = model.decode(torch.randn(1, n, 32), torch.ones(1, n, dtype=torch.bool), detection)
        assert len(found) == expected
        if overlap == "flat":
            assert found[0][1] == (n - 1,)  # the best-scoring span


# ---------------------------------------------------------------------------- merged at load


def test_an_adapter_merged_at_load_gives_the_unmerged_outputs(tiny_encoder, tmp_path):
    model = tiny_model(tiny_encoder, start_threshold=0.0)
    model.attach_adapter(nagner_peft.config_from_options("lora", {"r": 4, "lora_alpha": 8}))
    with torch.no_grad():
        for name, parameter in model.encoder.named_parameters():
            if "lora_B" in name or "lora_b" in name.lower():
                parameter.normal_(std=0.5)  # a trained adapter's delta is not zero
    model.save_pretrained(tmp_path)
    merged = NagNerModel.from_pretrained(tmp_path)
    unmerged = NagNerModel.from_pretrained(tmp_path, merge_adapter=False)
    assert merged._adapter_merged and not unmerged._adapter_merged
    batch = batch_of(merged, SENTENCES)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "word_first", "word_last")}
    with torch.no_grad():
        a, b = merged.encode_words(**inputs), unmerged.encode_words(**inputs)
        base = tiny_model(tiny_encoder).encode_words(**inputs)
    assert torch.allclose(a, b, atol=1e-5) and not torch.allclose(a, base, atol=1e-3)
    assert merged.predict_sentences(SENTENCES) == unmerged.predict_sentences(SENTENCES)
    merged.train()  # training takes the delta out of the weights again (to a rounding step)
    assert not merged._adapter_merged
    unmerged_state = unmerged.encoder.state_dict()
    for key, value in merged.encoder.state_dict().items():
        torch.testing.assert_close(value, unmerged_state[key], rtol=0, atol=1e-6, msg=key)


# ------------------------------------------------------------------------------------ tuning


def test_tuning_picks_the_best_setting_tried_and_the_model_keeps_it(tiny_encoder, tmp_path):
    from nagner.evaluation import evaluate_entities

    model = tiny_model(tiny_encoder, max_pointers=4).eval()
    best, tried = tune_decoding(model, SENTENCES, batch_size=2)
    assert best.f1 == max(c.f1 for c in tried) and len(tried) > 10
    assert {c.beam_size for c in tried} == {1, 4} and {c.end_bias for c in tried} == {0.0, -1.0, 1.0}
    assert model.config.beam_size == best.beam_size and model.config.score_threshold == best.score_threshold
    again = evaluate_entities([s.entities for s in SENTENCES], model.predict_sentences(SENTENCES))
    assert again.f1 == pytest.approx(best.f1)
    model.save_pretrained(tmp_path)
    assert NagNerModel.from_pretrained(tmp_path).config.start_threshold == best.start_threshold
    flat = tiny_model(tiny_encoder, max_pointers=2).eval()
    _, tried_flat = tune_decoding(flat, SENTENCES, batch_size=2, apply=False)
    # flat: no END bias to tune; beams only because the span classifier can pick among a beam's sequences
    assert {c.beam_size for c in tried_flat} == {1, 4} and {c.end_bias for c in tried_flat} == {0.0}
    assert flat.config.score_threshold == 0.0  # apply=False leaves the model as it was
    plain = tiny_model(tiny_encoder, max_pointers=2, span_classifier=False).eval()
    _, tried_plain = tune_decoding(plain, SENTENCES, batch_size=2, apply=False)
    assert {c.beam_size for c in tried_plain} == {1}

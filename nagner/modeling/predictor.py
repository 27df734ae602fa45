"""What prediction needs of a NAG-NER model, in torch alone: the heads, word states, decoding and
the prediction entry points. `NagNerModel` (a transformers `PreTrainedModel`, for training and
saving) and `NagNerRuntime` (an exported encoder for fast start-up, `nagner.runtime`) both are one.

A class that mixes this in has ``config`` (anything with NagNerConfig's attributes), ``encoder``
(called with input_ids / attention_mask / token_type_ids, returning ``.last_hidden_state`` or the
states themselves), ``tokenizer`` and ``device``, and calls `build_heads` in its constructor.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nagner.data.example import Entity, Sentence
from nagner.modeling.decoder import SlotDecoder
from nagner.modeling.decoding import Found, beam_candidates, select_entities
from nagner.modeling.detector import Detection, MentionDetector
from nagner.modeling.slots import Slots, inference_slot_counts
from nagner.modeling.span_typing import SpanClassifier, span_type_bias
from nagner.modeling.targets import PointerGrammar, pointer_word_mask


def pool_words(states: torch.Tensor, word_first: torch.Tensor, word_last: torch.Tensor) -> torch.Tensor:
    """Sub-token states (B, T, d) → word states (B, n, d): the mean of each word's first and last
    sub-token state (word_first / word_last: (B, n) token indices)."""
    d = states.shape[-1]
    first = states.gather(1, word_first.unsqueeze(-1).expand(-1, -1, d))  # (B, n, d)
    last = states.gather(1, word_last.unsqueeze(-1).expand(-1, -1, d))  # (B, n, d)
    return (first + last) / 2


class NagNerPredictor:
    """Heads, word states, decoding and prediction of a NAG-NER model (a mixin for nn.Module classes)."""

    config: Any
    encoder: Any
    tokenizer: Any

    def build_heads(self, config: Any, hidden: int) -> None:
        """The dropout, mention detector and slot decoder on encoder states of width ``hidden``."""
        self.dropout = nn.Dropout(config.head_dropout)
        self.detector = MentionDetector(
            hidden, config.max_entities_per_start, config.head_dropout,
            num_types=len(config.entity_types) if config.span_typing else 0,
        )
        self.decoder = SlotDecoder(
            hidden,
            config.num_types,
            config.max_pointers,
            config.max_entities_per_start,
            config.decoder_layers,
            config.decoder_heads,
            config.decoder_ffn_size,
            config.decoder_dropout,
            autoregressive=config.decode_mode == "ar",
            cross_slot_attention=config.cross_slot_attention,
            pointer_prior=config.pointer_prior,
            model_size=config.decoder_hidden_size,
        )
        self.span_classifier = (
            SpanClassifier(hidden, config.num_types, config.head_dropout, gaps=config.span_gaps)
            if config.span_classifier
            else None
        )

    def span_logits(
        self, words: torch.Tensor, detection: Detection, sentence: torch.Tensor, spans: torch.Tensor
    ) -> torch.Tensor | None:
        """What the spans add to their slots' type logits (`span_typing`): (S, T + 1), or None
        with neither span term on. words: (B, n, d); sentence: (S,); spans: (S, n) word masks."""
        logits = None
        if detection.word_type_logits is not None:
            logits = span_type_bias(detection.word_type_logits, sentence, spans)
        if self.span_classifier is not None:
            classified = self.span_classifier(words, sentence, spans)
            logits = classified if logits is None else logits + classified
        return logits

    def encode_words(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        word_first: torch.Tensor,
        word_last: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Word states H: (B, n, d), the mean of each word's first and last sub-token state."""
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        states = self.encoder(**inputs)
        states = getattr(states, "last_hidden_state", states)  # (B, T, d)
        return self.dropout(pool_words(states, word_first, word_last))

    def _run_decoder(
        self,
        words: torch.Tensor,
        word_mask: torch.Tensor,
        detection: Detection,
        slots: Slots,
        previous_classes: torch.Tensor | None = None,
        positions: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Decoder outputs for ``slots``: pointer logits (S, P, n + 1), type logits (S, T + 1) or None."""
        projected = self.decoder.project(words)  # (B, n, d_dec)
        queries = self.decoder.queries(projected[slots.batch, slots.word], slots.rank)  # (S, d_dec)
        previous = None
        if previous_classes is not None:
            previous = self.decoder.previous_inputs(projected, slots.batch, previous_classes)
        return self.decoder(
            queries, slots.batch, slots.word, projected, word_mask, detection.end_logits, previous, positions
        )

    # ------------------------------------------------------------------------------------ decode
    def choose_from_beams(
        self,
        words: torch.Tensor,
        detection: Detection,
        slots: Slots,
        pointer_logits: torch.Tensor,
        n_words: torch.Tensor,
        beam_size: int,
        end_bias: float,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Each slot's beam and the sequence it takes (NAG mode, `decode`): the ``beam_size`` best
        pointer sequences (S, K, L) with their log-probabilities (S, K), the span terms of each
        (S, K, T + 1) or None, and the choice (S,): the sequence with the highest log P(pointers)
        + log P_span(not NONE) (the best pointer sequence with beam 1 or no span term).
        pointer_logits: (S, L, n + 1); n_words: (S,) sentence lengths."""
        candidates, log_prob = beam_candidates(pointer_logits, slots.word, n_words, beam_size, end_bias)
        S, K = log_prob.shape
        spans = pointer_word_mask(slots.word.repeat_interleave(K), candidates.flatten(0, 1), words.shape[1])  # (S*K, n)
        span_logits = self.span_logits(words, detection, slots.batch.repeat_interleave(K), spans)
        choice = torch.zeros(S, dtype=torch.long, device=words.device)
        if span_logits is not None:
            span_logits = span_logits.view(S, K, -1)
            if K > 1:  # the sequence of the beam most likely an entity
                entity = span_logits.log_softmax(-1)[..., 1:].logsumexp(-1)  # (S, K)
                choice = (log_prob + entity).argmax(-1)  # (S,)
        return candidates, log_prob, span_logits, choice

    @torch.no_grad()
    def decode(
        self,
        words: torch.Tensor,
        word_mask: torch.Tensor,
        detection: Detection,
        threshold: float | None = None,
        beam_size: int | None = None,
        end_bias: float | None = None,
        none_bias: float | None = None,
    ) -> list[list[Found]]:
        """Entities of every batch row as (type id, word indices, score), from encoder-side outputs.

        NAG mode: one decoder pass for all slots of the batch, then beam search per slot; of its
        beam a slot takes the sequence with the highest log P(pointers) + log P(not NONE | span),
        P from the span terms alone (`choose_from_beams`; `span_logits`: what span positives and
        negatives train, and the part of the type logits that differs between a slot's
        sequences), so a slightly less likely span that
        is an entity wins over one that is not (beam 1: the best pointer sequence, as greedy
        decoding). The type then comes from the decoder's and the span terms' logits. AR mode:
        greedy steps until every slot said END, then one pass for the types. Score = p_start ·
        Π p(pointer) · p(type). ``threshold``, ``beam_size``, ``end_bias`` and ``none_bias`` default
        to the config's. Only the sentences that open a slot go through the decoder, cut to the
        longest of them.
        """
        c = self.config
        threshold = c.score_threshold if threshold is None else threshold
        counts = inference_slot_counts(detection.start_logits, detection.count_logits, word_mask, c)  # (B, n)
        found: list[list[Found]] = [[] for _ in range(words.shape[0])]
        has_slot = counts.sum(-1) > 0  # (B,)
        if not bool(has_slot.any()):
            return found
        opened = None if bool(has_slot.all()) else has_slot.nonzero().squeeze(-1)  # only these are decoded
        if opened is not None:  # cut to them and their longest, without the padding beyond
            longest = int(word_mask[opened].any(0).nonzero().max()) + 1
            words, word_mask, counts = words[opened, :longest], word_mask[opened, :longest], counts[opened, :longest]
            detection = detection.select(opened, longest)
        n = words.shape[1]
        p_start = detection.start_logits.sigmoid()  # (B', n)
        slots = Slots.from_counts(counts)
        n_words = word_mask.sum(-1)[slots.batch]  # (S,)
        none_bias = c.none_bias if none_bias is None else none_bias
        none_shift = torch.zeros(c.num_types, device=words.device)
        none_shift[0] = -none_bias
        if c.decode_mode == "nag":
            pointer_logits, type_logits = self._run_decoder(words, word_mask, detection, slots)
            candidates, candidate_log_prob, span_logits, choice = self.choose_from_beams(
                words, detection, slots, pointer_logits, n_words,
                c.beam_size if beam_size is None else beam_size, c.end_bias if end_bias is None else end_bias,
            )
            rows = torch.arange(len(slots), device=words.device)
            classes, log_prob = candidates[rows, choice], candidate_log_prob[rows, choice]
            type_logits = type_logits + none_shift + (0.0 if span_logits is None else span_logits[rows, choice])
        else:
            grammar = PointerGrammar(slots.word, n_words, c.max_pointers)
            for t in range(c.max_pointers):
                pointer_logits, _ = self._run_decoder(words, word_mask, detection, slots, grammar.classes[:, :t], t + 1)
                grammar.step(pointer_logits[:, t])
                if bool(grammar.ended.all()):
                    break
            _, type_logits = self._run_decoder(words, word_mask, detection, slots, grammar.classes)
            classes, log_prob = grammar.classes, grammar.log_prob
            type_logits = type_logits + none_shift
            span_logits = self.span_logits(words, detection, slots.batch, pointer_word_mask(slots.word, classes, n))
            if span_logits is not None:
                type_logits = type_logits + span_logits
        type_prob, type_id = type_logits.softmax(-1).max(-1)  # (S,), (S,)
        score = p_start[slots.batch, slots.word] * log_prob.exp() * type_prob  # (S,)
        selected = select_entities(
            slots.batch.tolist(), slots.word.tolist(), classes.tolist(), type_id.tolist(), score.tolist(),
            words.shape[0], threshold, c.overlap,
        )
        if opened is None:
            return selected
        for row, entities in zip(opened.tolist(), selected):
            found[row] = entities
        return found

    # ------------------------------------------------------------------------------- prediction
    def predict_sentences(
        self, sentences: list[Sentence], batch_size: int = 32, threshold: float | None = None
    ) -> list[list[Entity]]:
        """Entities (with scores) of each sentence, word indices into ``sentence.words``
        (`nagner.modeling.inference.predict_sentences`)."""
        from nagner.modeling.inference import predict_sentences

        return predict_sentences(self, sentences, batch_size=batch_size, threshold=threshold)

    def predict(
        self,
        texts: str | list[str] | list[list[str]],
        batch_size: int = 32,
        threshold: float | None = None,
        is_split_into_words: bool = False,
    ) -> list[dict[str, Any]]:
        """Entities in raw texts (or pre-tokenized word lists) as JSON-ready records
        (`nagner.modeling.inference.predict_texts`)."""
        from nagner.modeling.inference import predict_texts

        return predict_texts(self, texts, batch_size=batch_size, threshold=threshold, is_split_into_words=is_split_into_words)

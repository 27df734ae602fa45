"""`NagNerModel`: encoder + mention detector + non-autoregressive slot decoder.

    words ─tokenizer─▶ subwords ─encoder─▶ states ─first/last pooling─▶ H (B, n, d)
    H ─MentionDetector─▶ start / end / count / word-type logits per word
    slots (`slots.py`: one rule for training and inference), query = anchor(H_i) + slot_embedding[k]
    SlotDecoder(queries, H) ─one pass─▶ pointers over END ∪ words (L positions) + type over NONE ∪ types
    beam search under the entity grammar; each beam sequence's span typed by the span terms
    (`span_typing.py`: word-type mean + span classifier); a slot takes its likeliest entity;
    scores, de-duplication (`decoding.py`)

Training (`forward` with targets): the slots the rule opens, plus missed gold starts and random
negatives; gold entities are matched to their start word's slots by the Hungarian matcher
(`matcher.py`) and the loss is `criterion.SetCriterion`'s; the span terms alone also learn the gold
spans' types and NONE on a matched slot's other beam sequences that are no entity
(`_span_negatives`), the candidates decoding picks among. The AR mode (ablation only) assigns gold
entities to slots in a fixed order and decodes with a causal mask and teacher forcing.
The heads, word states, decoding and prediction entry points are `predictor.NagNerPredictor`'s
(torch only, shared with the exported `nagner.runtime.NagNerRuntime`); prediction on sentences and raw
text (windows, records) lives in `inference.py`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModel, AutoTokenizer, PreTrainedModel
from transformers.utils import ModelOutput

import nagner.peft as nagner_peft
from nagner.common.encoders import packaged_name, resolve_encoder, weights_fingerprint
from nagner.common.state_dicts import copy_tensors
from nagner.modeling.configuration import NagNerConfig
from nagner.modeling.criterion import SetCriterion
from nagner.modeling.decoder import SlotDecoder
from nagner.modeling.decoding import beam_candidates, beam_search
from nagner.modeling.detector import Detection, MentionDetector
from nagner.modeling.matcher import match_slots
from nagner.modeling.predictor import NagNerPredictor
from nagner.modeling.slots import Slots, training_slot_counts
from nagner.modeling.targets import END, IGNORE, pointer_word_mask

logger = logging.getLogger(__name__)


@dataclass
class NagNerOutput(ModelOutput):
    """`forward`'s result; ``loss`` (and its parts) only when targets were given."""

    loss: torch.Tensor | None = None
    start_logits: torch.Tensor | None = None
    end_logits: torch.Tensor | None = None
    count_logits: torch.Tensor | None = None
    word_type_logits: torch.Tensor | None = None
    pointer_loss: torch.Tensor | None = None
    type_loss: torch.Tensor | None = None
    detect_loss: torch.Tensor | None = None
    count_loss: torch.Tensor | None = None
    typing_loss: torch.Tensor | None = None


class NagNerModel(NagNerPredictor, PreTrainedModel):
    """NAG-NER: flat, nested and discontinuous entities as a set of pointer sequences, decoded in one pass."""

    config_class = NagNerConfig
    base_model_prefix = "nagner"
    main_input_name = "input_ids"

    def __init__(self, config: NagNerConfig, encoder: PreTrainedModel | None = None):
        super().__init__(config)
        self.encoder = encoder if encoder is not None else AutoModel.from_config(config.build_encoder_config())
        if getattr(self.encoder, "pooler", None) is not None:
            self.encoder.pooler = None  # the sentence pooler is never used: no dead weights, no unused DDP params
        self.build_heads(config, self.encoder.config.hidden_size)
        self.criterion = SetCriterion(config)
        self._adapter_merged = False
        self.tokenizer: Any = None
        self.post_init()

    # ----------------------------------------------------------------- construction / persistence
    @classmethod
    def from_encoder(
        cls, encoder_name_or_path: str | Path, entity_types: list[str], **config_kwargs: Any
    ) -> NagNerModel:
        """A new model on a pretrained encoder (any `AutoModel`) and its tokenizer; heads are fresh.

        A hub name whose weights a pip package ships (see `encoder_source`) loads from that package."""
        location = resolve_encoder(str(encoder_name_or_path))
        encoder = AutoModel.from_pretrained(location)
        config = NagNerConfig(
            encoder_config=encoder.config.to_dict(),
            encoder_name_or_path=packaged_name(str(encoder_name_or_path)),
            entity_types=list(entity_types),
            **config_kwargs,
        )
        model = cls(config, encoder=encoder)
        model.tokenizer = AutoTokenizer.from_pretrained(location)
        return model

    # ---------------------------------------------------------------------------------- adapters
    def attach_adapter(self, adapter_config: nagner_peft.AdapterConfig) -> list[str]:
        """Freeze the encoder and attach a `nagner.peft` adapter to it (only the adapter and the
        heads train). Checkpoints then hold only the adapter and the heads. Returns the adapted
        module names (relative to the encoder)."""
        if self.config.adapter is not None:
            raise ValueError("this model has an adapter already")
        targets = nagner_peft.attach(self.encoder, adapter_config, freeze_base=True)
        self.config.adapter = adapter_config.to_dict()
        self.config.encoder_fingerprint = weights_fingerprint(nagner_peft.base_state_dict(self.encoder))
        return targets

    def _frozen_encoder_key(self, key: str) -> bool:
        """True for a state-dict key of the frozen pretrained encoder (not saved with an adapter)."""
        return key.startswith("encoder.") and not nagner_peft.is_adapter_parameter(key)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """With an adapter: the heads and the adapter (what a checkpoint holds); else everything."""
        state = self.state_dict()
        if self.config.adapter is None:
            return state
        return {k: v for k, v in state.items() if not self._frozen_encoder_key(k)}

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *args: Any, **kwargs: Any) -> NagNerModel:
        """Load a checkpoint (config.json + model.safetensors) and the tokenizer saved beside it.

        A checkpoint with an adapter loads its encoder from ``encoder_name_or_path`` (a local
        folder, a packaged encoder or the hub), attaches the adapter and loads adapter + heads;
        with ``merge_adapter`` (default) the adapter is merged for inference (`merge_adapter`)."""
        merge_adapter = kwargs.pop("merge_adapter", True)
        path = Path(pretrained_model_name_or_path)
        config = NagNerConfig.from_pretrained(str(path)) if (path / "config.json").is_file() else None
        if config is not None and config.adapter is not None:
            model = cls._from_adapter_checkpoint(path, config, merge_adapter)
        else:
            loaded = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
            if isinstance(loaded, tuple):  # output_loading_info=True gives (model, info)
                loaded[0].tokenizer = cls._load_tokenizer(path, loaded[0].config)
                return loaded
            model = loaded
        model.tokenizer = cls._load_tokenizer(path, model.config)
        return model

    @staticmethod
    def _load_tokenizer(path: Path, config: NagNerConfig) -> Any:
        if (path / "tokenizer_config.json").exists():
            return AutoTokenizer.from_pretrained(str(path))
        if config.encoder_name_or_path:
            return AutoTokenizer.from_pretrained(resolve_encoder(config.encoder_name_or_path))
        return None

    @classmethod
    def _from_adapter_checkpoint(cls, path: Path, config: NagNerConfig, merge_adapter: bool = True) -> NagNerModel:
        if not config.encoder_name_or_path:
            raise ValueError(f"{path / 'config.json'}: an adapter checkpoint must name its encoder_name_or_path")
        encoder = AutoModel.from_pretrained(resolve_encoder(config.encoder_name_or_path))
        adapter, expected_fingerprint = dict(config.adapter), config.encoder_fingerprint
        config.adapter = None
        model = cls(config, encoder=encoder)
        fingerprint = weights_fingerprint(nagner_peft.base_state_dict(model.encoder))
        if expected_fingerprint and fingerprint != expected_fingerprint:
            raise ValueError(
                f"the encoder {config.encoder_name_or_path!r} has other weights than the one this adapter was "
                f"trained on (fingerprint {fingerprint}, expected {expected_fingerprint})"
            )
        model.attach_adapter(nagner_peft.config_from_dict(adapter, source=str(path / "config.json")))
        model.load_trainable_state(path / "model.safetensors")
        model.eval()
        if merge_adapter:
            model.merge_adapter()
        return model

    def merge_adapter(self) -> bool:
        """Fold the adapter's weight delta into the frozen encoder for inference (same outputs, the
        speed of a plain encoder); `train()` takes it out again, bit for bit, before training.
        Returns False (nothing merged) for an adapter that cannot be merged (prompt-conditioned)."""
        if self.config.adapter is None or self._adapter_merged:
            return self._adapter_merged
        try:
            nagner_peft.merge(self.encoder)
        except TypeError:
            nagner_peft.unmerge(self.encoder)
            return False
        self._adapter_merged = True
        return True

    def unmerge_adapter(self) -> None:
        """Take a merged adapter out of the encoder's weights again, bit for bit."""
        if getattr(self, "_adapter_merged", False):
            nagner_peft.unmerge(self.encoder)
            self._adapter_merged = False

    def train(self, mode: bool = True) -> NagNerModel:
        """`nn.Module.train`; switching to training unmerges a merged adapter first."""
        if mode:
            self.unmerge_adapter()
        return super().train(mode)

    def load_trainable_state(self, weights: str | Path) -> None:
        """Load an adapter checkpoint's tensors (adapter + heads) from ``weights``; every tensor
        must be there with its shape (ValueError naming the first misfits otherwise)."""
        copy_tensors(self.trainable_state_dict(), load_file(str(weights)), str(weights))

    def save_pretrained(self, save_directory: str | Path, *args: Any, **kwargs: Any) -> None:
        """Save config, weights (safetensors) and the tokenizer, so the folder is self-contained.

        With an adapter only the adapter and the heads are saved (the config names the encoder);
        a ``state_dict`` argument (the Trainer passes one) is ignored then."""
        if self.config.adapter is not None:  # training may change it (ALoRA ranks, SoRA pruning)
            self.config.adapter = nagner_peft.adapter_config(self.encoder).to_dict()
        if self.config.adapter is None:
            super().save_pretrained(save_directory, *args, **kwargs)
        else:
            directory = Path(save_directory)
            directory.mkdir(parents=True, exist_ok=True)
            self.config.save_pretrained(str(directory))
            tensors = {k: v.detach().contiguous().cpu() for k, v in self.trainable_state_dict().items()}
            save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(str(save_directory))

    def _init_weights(self, module: nn.Module) -> None:
        if any(module is m for m in self.encoder.modules()):
            self.encoder._init_weights(module)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=self._embedding_std(module))
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, (SlotDecoder, MentionDetector)):
            module.reset_parameters()

    def _embedding_std(self, module: nn.Embedding) -> float:
        """Initial scale of an embedding table.

        The slot-rank and pointer-position embeddings start about as large as the anchor projection
        (0.3, not 0.02), so the slots of one start word, and the positions of one slot ("end of
        fragment 1", "start of fragment 2", …), differ from the first step. With near-identical
        slots the Hungarian assignment of the entities sharing a start flips between steps and both
        slots learn their average; with near-identical positions every position learns the first
        fragment's end and discontinuous entities are never produced (bench/RESULTS.md, 1b).
        """
        decoder = getattr(self, "decoder", None)
        if decoder is not None and module is decoder.slot_embedding:
            return 0.3
        if decoder is not None and module is decoder.position_embedding:
            return self.config.position_init_std
        return 0.02

    def encoder_parameters(self) -> list[nn.Parameter]:
        """Parameters of the pretrained encoder (for a separate learning rate)."""
        return list(self.encoder.parameters())

    def head_parameters(self) -> list[nn.Parameter]:
        """Parameters of the detector and decoder (trained from scratch)."""
        encoder = {id(p) for p in self.encoder.parameters()}
        return [p for p in self.parameters() if id(p) not in encoder]


    # ----------------------------------------------------------------------------------- forward
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        word_first: torch.Tensor,
        word_last: torch.Tensor,
        word_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        start_labels: torch.Tensor | None = None,
        end_labels: torch.Tensor | None = None,
        count_labels: torch.Tensor | None = None,
        entity_starts: torch.Tensor | None = None,
        entity_pointers: torch.Tensor | None = None,
        entity_types: torch.Tensor | None = None,
        per_sentence: bool = False,
    ) -> NagNerOutput:
        """Detector logits, and with targets the training loss (`Trainer` compatible). An adapter's
        own loss terms (SoRA's L1 term, MiLoRA's load balancing) are not part of it: the trainer
        adds them (`nagner.peft.AdapterTrainer`; in a custom loop, `nagner.peft.auxiliary_loss`).

        ``per_sentence``: ``loss`` is (B,), each sentence's own loss (the same terms, averaged
        within the sentence) — what ALoRA's rank importance needs.

        Targets (from `NagNerCollator`): start/end_labels (B, n) 0/1, count_labels (B, n) (−100 pad),
        entity_starts (B, E) (−1 pad), entity_pointers (B, E, L), entity_types (B, E) (−100 pad).
        """
        words = self.encode_words(input_ids, attention_mask, word_first, word_last, token_type_ids)
        return self.heads_forward(
            words, word_mask, start_labels, end_labels, count_labels, entity_starts, entity_pointers, entity_types,
            per_sentence,
        )

    def heads_forward(
        self,
        words: torch.Tensor,
        word_mask: torch.Tensor,
        start_labels: torch.Tensor | None = None,
        end_labels: torch.Tensor | None = None,
        count_labels: torch.Tensor | None = None,
        entity_starts: torch.Tensor | None = None,
        entity_pointers: torch.Tensor | None = None,
        entity_types: torch.Tensor | None = None,
        per_sentence: bool = False,
    ) -> NagNerOutput:
        """`forward` from word states (B, n, d) on: the detector, and with targets the decoder and
        the loss (early-exit training runs the heads on an intermediate layer's states)."""
        detection = self.detector(words)
        output = NagNerOutput(
            start_logits=detection.start_logits, end_logits=detection.end_logits,
            count_logits=detection.count_logits, word_type_logits=detection.word_type_logits,
        )
        if entity_starts is None:
            return output
        gold = entity_starts >= 0  # (B, E)
        gold_batch, gold_starts = gold.nonzero()[:, 0], entity_starts[gold]  # (G,), (G,)
        gold_pointers, gold_types = entity_pointers[gold], entity_types[gold]  # (G, L), (G,)
        gold_spans = pointer_word_mask(gold_starts, gold_pointers, words.shape[1])  # (G, n)
        word_type_labels = None
        if detection.word_type_logits is not None:  # (B, n, T): word i lies inside an entity of type t
            word_type_labels = torch.zeros_like(detection.word_type_logits)
            hits = gold_spans.nonzero()  # (H, 2): (gold entity, word)
            word_type_labels[gold_batch[hits[:, 0]], hits[:, 1], gold_types[hits[:, 0]] - 1] = 1.0
        detect_loss, count_loss, typing_loss = self.criterion.detection(
            detection, word_mask, start_labels, end_labels, count_labels, word_type_labels, per_sentence
        )
        slots = Slots.from_counts(
            training_slot_counts(
                detection.start_logits, detection.count_logits, count_labels, word_mask, self.config, self.training
            )
        )
        pointer_logits, type_logits, pointer_targets, type_targets, span_examples = self._assign_and_decode(
            words, word_mask, detection, slots, gold_batch, gold_starts, gold_pointers, gold_types, gold_spans
        )
        B = word_mask.shape[0]
        pointer_loss, type_loss = self.criterion.generation(
            pointer_logits, type_logits, slots, pointer_targets, type_targets, B, per_sentence
        )
        if span_examples is not None:
            type_loss = type_loss + self.criterion.span_terms(*span_examples, B, per_sentence)
        c = self.config
        output.loss = (
            pointer_loss + type_loss + c.detect_weight * detect_loss + c.count_weight * count_loss
            + c.typing_weight * typing_loss
        )
        output.pointer_loss, output.type_loss = pointer_loss.detach(), type_loss.detach()
        output.detect_loss, output.count_loss, output.typing_loss = (
            detect_loss.detach(), count_loss.detach(), typing_loss.detach()
        )
        return output

    def _assign_and_decode(
        self,
        words: torch.Tensor,
        word_mask: torch.Tensor,
        detection: Detection,
        slots: Slots,
        gold_batch: torch.Tensor,
        gold_starts: torch.Tensor,
        gold_pointers: torch.Tensor,
        gold_types: torch.Tensor,
        gold_spans: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """Give every gold entity a slot (Hungarian in NAG mode, fixed order in AR mode) and run the
        decoder. Returns pointer logits (S, L, n + 1), type logits (S, T + 1) (span-typed when on),
        the targets: pointers (S, L) (IGNORE where none) and types (S,) (0 NONE where unmatched),
        and what the span terms alone learn from (span logits (N, T + 1), types (N,), sentences
        (N,): gold spans with ``span_positives``, `_span_negatives` as NONE) or None."""
        gold_groups = list(zip(gold_batch.tolist(), gold_starts.tolist()))
        span_typed = detection.word_type_logits is not None or self.span_classifier is not None
        if self.config.decode_mode == "nag":
            pointer_logits, type_logits = self._run_decoder(words, word_mask, detection, slots)
            gold_bias = self.span_logits(words, detection, gold_batch, gold_spans)  # None with no span term
            slot_index, gold_index = match_slots(
                pointer_logits.log_softmax(-1), type_logits.detach(), slots.groups(),
                gold_pointers, gold_types, gold_groups, gold_type_bias=None if gold_bias is None else gold_bias.detach(),
            )
        else:
            slot_index, gold_index = self._ordered_assignment(slots, gold_groups)
        pointer_targets = torch.full(
            (len(slots), self.config.max_pointers), IGNORE, dtype=torch.long, device=words.device
        )
        type_targets = torch.zeros(len(slots), dtype=torch.long, device=words.device)  # NONE
        pointer_targets[slot_index] = gold_pointers[gold_index]
        type_targets[slot_index] = gold_types[gold_index]
        if self.config.decode_mode == "ar":
            previous = pointer_targets.masked_fill(pointer_targets == IGNORE, END)
            pointer_logits, type_logits = self._run_decoder(words, word_mask, detection, slots, previous)
        if span_typed:  # type the span each slot stands for: gold where matched, else its own guess
            with torch.no_grad():
                n_words = word_mask.sum(-1)[slots.batch]
                guessed, _ = beam_search(pointer_logits.detach(), slots.word, n_words)
            spans = pointer_word_mask(slots.word, guessed, words.shape[1])  # (S, n)
            spans[slot_index] = gold_spans[gold_index]
            type_logits = type_logits + self.span_logits(words, detection, slots.batch, spans)
        examples = []  # (span logits, types, sentences) the span terms alone learn from
        if self.config.decode_mode == "nag" and self.span_classifier is not None:
            if self.config.span_positives:
                examples.append((gold_bias, gold_types, gold_batch))
            if self.config.span_negatives:
                negative_logits, negative_sentence = self._span_negatives(
                    words, word_mask, detection, pointer_logits, slots, slot_index, gold_batch, gold_spans
                )
                examples.append((negative_logits, torch.zeros_like(negative_sentence), negative_sentence))
        span_examples = tuple(torch.cat(parts) for parts in zip(*examples)) if examples else None
        return pointer_logits, type_logits, pointer_targets, type_targets, span_examples

    def _span_negatives(
        self,
        words: torch.Tensor,
        word_mask: torch.Tensor,
        detection: Detection,
        pointer_logits: torch.Tensor,
        slots: Slots,
        slot_index: torch.Tensor,
        gold_batch: torch.Tensor,
        gold_spans: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Spans that are not entities, for the span terms to learn NONE on: the other sequences of
        a matched slot's beam (``span_negatives`` of them, the slot's own likeliest mistakes) that
        are no gold entity of the sentence. Decoding picks among exactly these candidates
        (`decode`), so this teaches the span terms to reject a wrong boundary that the pointers
        rate highly. Returns their span logits (N, T + 1) and sentences (N,)."""
        with torch.no_grad():
            starts = slots.word[slot_index]
            candidates, log_prob = beam_candidates(
                pointer_logits.detach()[slot_index], starts, word_mask.sum(-1)[slots.batch[slot_index]],
                self.config.span_negatives + 1,
            )  # (M, K, L), (M, K)
            K = candidates.shape[1]
            spans = pointer_word_mask(starts.repeat_interleave(K), candidates.flatten(0, 1), words.shape[1])  # (M*K, n)
            sentence = slots.batch[slot_index].repeat_interleave(K)
            is_gold = ((spans[:, None] == gold_spans[None]).all(-1) & (sentence[:, None] == gold_batch[None])).any(-1)
            keep = torch.isfinite(log_prob.flatten()) & ~is_gold
        return self.span_logits(words, detection, sentence[keep], spans[keep]), sentence[keep]

    @staticmethod
    def _ordered_assignment(slots: Slots, gold_groups: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """AR ablation: the k-th gold entity of a start word (collator order) goes to slot rank k."""
        slot_at = {(b, w, k): s for s, (b, w, k) in enumerate(
            zip(slots.batch.tolist(), slots.word.tolist(), slots.rank.tolist())
        )}
        seen: dict[tuple[int, int], int] = {}
        slot_index, gold_index = [], []
        for g, group in enumerate(gold_groups):
            k = seen.get(group, 0)
            seen[group] = k + 1
            slot_index.append(slot_at[(*group, k)])
            gold_index.append(g)
        device = slots.batch.device
        return torch.tensor(slot_index, dtype=torch.long, device=device), torch.tensor(gold_index, dtype=torch.long, device=device)

"""`NagNerModel`: encoder + mention detector + non-autoregressive slot decoder.

    words ─tokenizer─▶ subwords ─encoder─▶ states ─first/last pooling─▶ H (B, n, d)
    H ─MentionDetector─▶ start / end / count per word
    slots = (start word i, rank k < count_i), query = anchor(H_i) + slot_embedding[k]
    SlotDecoder(queries, H) ─one pass─▶ pointers over END ∪ words (L positions) + type over NONE ∪ types

Training: slots = gold starts (at least as many as gold entities there) plus the detector's
false starts; gold entities are matched to their group's slots by the Hungarian matcher; every
unmatched slot learns NONE. The AR mode (ablation only) assigns gold entities to slots in a
fixed order and decodes with a causal mask and teacher forcing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModel, AutoTokenizer, PreTrainedModel
from transformers.utils import ModelOutput

import nagner.peft as nagner_peft
from nagner.data.example import Entity, Sentence
from nagner.data.jsonl import entity_record
from nagner.data.text import sentence_from_text, with_offsets
from nagner.modeling.configuration import NagNerConfig
from nagner.modeling.decoder import SlotDecoder
from nagner.modeling.detector import MentionDetector
from nagner.modeling.encoder_source import encoder_fingerprint, packaged_name, resolve_encoder
from nagner.modeling.encoding import NagNerCollator, encode_sentences
from nagner.modeling.matcher import match_slots
from nagner.modeling.targets import END, IGNORE, PointerGrammar, pointers_to_indices
from nagner.modeling.windows import inside_window


@dataclass
class NagNerOutput(ModelOutput):
    """`forward`'s result; ``loss`` (and its parts) only when targets were given."""

    loss: torch.Tensor | None = None
    start_logits: torch.Tensor | None = None
    end_logits: torch.Tensor | None = None
    count_logits: torch.Tensor | None = None
    pointer_loss: torch.Tensor | None = None
    type_loss: torch.Tensor | None = None
    detect_loss: torch.Tensor | None = None
    count_loss: torch.Tensor | None = None


@dataclass
class Slots:
    """Decoder slots of a batch: sentence, start word and rank of each, all (S,)."""

    batch: torch.Tensor
    word: torch.Tensor
    rank: torch.Tensor

    @classmethod
    def from_counts(cls, counts: torch.Tensor) -> Slots:
        """counts: (B, n) slots per word → one slot per (b, i, k < counts[b, i])."""
        B, n = counts.shape
        flat = counts.reshape(-1)
        cell = torch.repeat_interleave(torch.arange(B * n, device=counts.device), flat)  # (S,)
        first = torch.cumsum(flat, 0) - flat  # (B*n,) index of each cell's first slot
        rank = torch.arange(cell.shape[0], device=counts.device) - first[cell]
        return cls(cell // n, cell % n, rank)

    def __len__(self) -> int:
        return self.batch.shape[0]

    def groups(self) -> list[tuple[int, int]]:
        return list(zip(self.batch.tolist(), self.word.tolist()))


def _mean(values: torch.Tensor, sentence: torch.Tensor, batch_size: int, per_sentence: bool) -> torch.Tensor:
    """values (N,) of the sentences ``sentence`` (N,) → their mean, or per sentence (B,) (0 where none)."""
    if not per_sentence:
        return values.mean()
    sums = values.new_zeros(batch_size).index_add(0, sentence, values)
    counts = values.new_zeros(batch_size).index_add(0, sentence, torch.ones_like(values))
    return sums / counts.clamp(min=1)


class NagNerModel(PreTrainedModel):
    """NAG-NER: flat, nested and discontinuous entities as a set of pointer sequences, decoded in one pass."""

    config_class = NagNerConfig
    base_model_prefix = "nagner"
    main_input_name = "input_ids"

    def __init__(self, config: NagNerConfig, encoder: PreTrainedModel | None = None):
        super().__init__(config)
        self.encoder = encoder if encoder is not None else AutoModel.from_config(config.build_encoder_config())
        if getattr(self.encoder, "pooler", None) is not None:
            self.encoder.pooler = None  # the sentence pooler is never used: no dead weights, no unused DDP params
        hidden = self.encoder.config.hidden_size
        self.dropout = nn.Dropout(config.head_dropout)
        self.detector = MentionDetector(hidden, config.max_entities_per_start, config.head_dropout)
        self.decoder = SlotDecoder(
            hidden,
            config.num_types,
            config.max_pointers,
            config.max_entities_per_start,
            config.decoder_layers,
            config.decoder_heads,
            config.decoder_ffn_size or 2 * hidden,
            config.decoder_dropout,
            autoregressive=config.decode_mode == "ar",
        )
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
        self.config.encoder_fingerprint = encoder_fingerprint(self.encoder)
        return targets

    def _frozen_encoder_key(self, key: str) -> bool:
        """True for a state-dict key of the frozen pretrained encoder (not saved with an adapter)."""
        return key.startswith("encoder.") and ".adapters." not in key and not key.startswith(
            f"encoder.{nagner_peft.STATE_ATTR}."
        )

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
        folder, a packaged encoder or the hub), attaches the adapter and loads adapter + heads."""
        path = Path(pretrained_model_name_or_path)
        config = NagNerConfig.from_pretrained(str(path)) if (path / "config.json").is_file() else None
        if config is not None and config.adapter is not None:
            model = cls._from_adapter_checkpoint(path, config)
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
    def _from_adapter_checkpoint(cls, path: Path, config: NagNerConfig) -> NagNerModel:
        if not config.encoder_name_or_path:
            raise ValueError(f"{path / 'config.json'}: an adapter checkpoint must name its encoder_name_or_path")
        encoder = AutoModel.from_pretrained(resolve_encoder(config.encoder_name_or_path))
        adapter, expected_fingerprint = dict(config.adapter), config.encoder_fingerprint
        config.adapter = None
        model = cls(config, encoder=encoder)
        fingerprint = encoder_fingerprint(model.encoder)
        if expected_fingerprint and fingerprint != expected_fingerprint:
            raise ValueError(
                f"the encoder {config.encoder_name_or_path!r} has other weights than the one this adapter was "
                f"trained on (fingerprint {fingerprint}, expected {expected_fingerprint})"
            )
        model.attach_adapter(nagner_peft.config_from_dict(adapter, source=str(path / "config.json")))
        model.load_trainable_state(path / "model.safetensors")
        return model.eval()

    def load_trainable_state(self, weights: str | Path) -> None:
        """Load an adapter checkpoint's tensors (adapter + heads) from ``weights``; every tensor
        must be there with its shape (ValueError naming the first misfits otherwise)."""
        stored = load_file(str(weights))
        expected = self.trainable_state_dict()
        missing, unexpected = sorted(set(expected) - set(stored)), sorted(set(stored) - set(expected))
        if missing or unexpected:
            problems = [f"{len(missing)} missing (e.g. {missing[0]})"] if missing else []
            problems += [f"{len(unexpected)} unexpected (e.g. {unexpected[0]})"] if unexpected else []
            raise ValueError(f"{weights}: weights do not fit the model: {'; '.join(problems)}")
        with torch.no_grad():
            for key, target in expected.items():
                if stored[key].shape != target.shape:
                    raise ValueError(f"{weights}: {key} has shape {tuple(stored[key].shape)}, expected {tuple(target.shape)}")
                target.copy_(stored[key])

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
        elif isinstance(module, SlotDecoder):
            module.reset_parameters()

    def _embedding_std(self, module: nn.Embedding) -> float:
        """Initial scale of an embedding table.

        The slot-rank embeddings start about as large as the anchor projection (0.3, not 0.02), so
        the slots of one start word differ from the first step. With near-identical slots the
        Hungarian assignment of the entities sharing a start flips between steps, both slots learn
        their average, and discontinuous entities (which mostly share their start with another
        entity) are rarely produced: on data/sample_discontinuous.json, 25 epochs gave
        discontinuous recall 0.26 with 0.02 and 1.00 with 0.3 (bench/sample_discontinuous.py).
        """
        decoder = getattr(self, "decoder", None)
        return 0.3 if decoder is not None and module is decoder.slot_embedding else 0.02

    def encoder_parameters(self) -> list[nn.Parameter]:
        """Parameters of the pretrained encoder (for a separate learning rate)."""
        return list(self.encoder.parameters())

    def head_parameters(self) -> list[nn.Parameter]:
        """Parameters of the detector and decoder (trained from scratch)."""
        encoder = {id(p) for p in self.encoder.parameters()}
        return [p for p in self.parameters() if id(p) not in encoder]

    # ----------------------------------------------------------------------------------- forward
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
        states = self.encoder(**inputs).last_hidden_state  # (B, T, d)
        d = states.shape[-1]
        first = states.gather(1, word_first.unsqueeze(-1).expand(-1, -1, d))  # (B, n, d)
        last = states.gather(1, word_last.unsqueeze(-1).expand(-1, -1, d))  # (B, n, d)
        return self.dropout((first + last) / 2)

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
        """Detector logits, and with targets the training loss (`Trainer` compatible).

        ``per_sentence``: ``loss`` is (B,), each sentence's own loss (the same terms, averaged
        within the sentence; no adapter auxiliary terms) — what ALoRA's rank importance needs.

        Targets (from `NagNerCollator`): start/end_labels (B, n) 0/1, count_labels (B, n) (−100 pad),
        entity_starts (B, E) (−1 pad), entity_pointers (B, E, L), entity_types (B, E) (−100 pad).
        """
        words = self.encode_words(input_ids, attention_mask, word_first, word_last, token_type_ids)
        start_logits, end_logits, count_logits = self.detector(words)
        output = NagNerOutput(start_logits=start_logits, end_logits=end_logits, count_logits=count_logits)
        if entity_starts is None:
            return output
        B = word_mask.shape[0]
        valid = word_mask
        word_batch = valid.nonzero()[:, 0]  # sentence of each valid word
        bce = F.binary_cross_entropy_with_logits
        detect_loss = _mean(bce(start_logits[valid], start_labels[valid], reduction="none"), word_batch, B, per_sentence)
        detect_loss = detect_loss + _mean(
            bce(end_logits[valid], end_labels[valid], reduction="none"), word_batch, B, per_sentence
        )
        counted = count_labels != IGNORE
        count_loss = _mean(
            F.cross_entropy(count_logits[counted], count_labels[counted], reduction="none"),
            counted.nonzero()[:, 0], B, per_sentence,
        )
        pointer_loss, type_loss = self._generation_loss(
            words, word_mask, start_logits, count_logits, count_labels, entity_starts, entity_pointers, entity_types,
            per_sentence,
        )
        c = self.config
        output.loss = pointer_loss + type_loss + c.detect_weight * detect_loss + c.count_weight * count_loss
        auxiliary = nagner_peft.auxiliary_loss(self.encoder) if c.adapter is not None and not per_sentence else None
        if auxiliary is not None:  # e.g. MiLoRA's load balancing, SoRA's L1 term
            output.loss = output.loss + auxiliary
        output.pointer_loss, output.type_loss = pointer_loss.detach(), type_loss.detach()
        output.detect_loss, output.count_loss = detect_loss.detach(), count_loss.detach()
        return output

    def _generation_loss(
        self,
        words: torch.Tensor,
        word_mask: torch.Tensor,
        start_logits: torch.Tensor,
        count_logits: torch.Tensor,
        count_labels: torch.Tensor,
        entity_starts: torch.Tensor,
        entity_pointers: torch.Tensor,
        entity_types: torch.Tensor,
        per_sentence: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        slots = self._training_slots(start_logits, count_logits, count_labels, word_mask)
        gold = entity_starts >= 0  # (B, E)
        gold_batch = gold.nonzero()[:, 0]
        gold_groups = list(zip(gold_batch.tolist(), entity_starts[gold].tolist()))
        gold_pointers = entity_pointers[gold]  # (G, L)
        gold_types = entity_types[gold]  # (G,)
        pointer_targets = torch.full((len(slots), self.config.max_pointers), IGNORE, device=words.device)
        type_targets = torch.zeros(len(slots), dtype=torch.long, device=words.device)  # NONE
        if self.config.decode_mode == "nag":
            pointer_logits, type_logits = self._run_decoder(words, word_mask, slots)
            slot_index, gold_index = match_slots(
                pointer_logits.log_softmax(-1), type_logits.log_softmax(-1), slots.groups(),
                gold_pointers, gold_types, gold_groups,
            )
        else:
            slot_index, gold_index = self._ordered_assignment(slots, gold_groups)
        pointer_targets[slot_index] = gold_pointers[gold_index]
        type_targets[slot_index] = gold_types[gold_index]
        if self.config.decode_mode == "ar":
            previous = pointer_targets.masked_fill(pointer_targets == IGNORE, END)
            pointer_logits, type_logits = self._run_decoder(words, word_mask, slots, previous)
        B = word_mask.shape[0]
        targeted = pointer_targets != IGNORE  # (S, L)
        if targeted.any():
            pointer_loss = _mean(
                F.cross_entropy(pointer_logits[targeted], pointer_targets[targeted], reduction="none"),
                slots.batch.unsqueeze(1).expand_as(targeted)[targeted], B, per_sentence,
            )
        else:
            pointer_loss = pointer_logits[..., 0].sum() * 0.0  # keep the graph for DDP
            pointer_loss = pointer_loss.expand(B) if per_sentence else pointer_loss
        type_loss = _mean(F.cross_entropy(type_logits, type_targets, reduction="none"), slots.batch, B, per_sentence)
        return pointer_loss, type_loss

    @torch.no_grad()
    def _training_slots(
        self, start_logits: torch.Tensor, count_logits: torch.Tensor, count_labels: torch.Tensor, word_mask: torch.Tensor
    ) -> Slots:
        """Gold starts (max of gold and predicted count) plus the detector's false starts (one slot each)."""
        gold_count = count_labels.clamp(min=0)  # (B, n)
        predicted_start = (start_logits.sigmoid() > self.config.start_threshold) & word_mask
        predicted_count = torch.where(predicted_start, count_logits[..., 1:].argmax(-1) + 1, 0)
        counts = torch.where(gold_count > 0, torch.maximum(gold_count, predicted_count), predicted_start.long())
        counts = counts.clamp(max=self.config.max_entities_per_start) * word_mask
        if counts.sum() == 0:  # keep the decoder in the graph: one NONE slot on the first word
            counts[0, 0] = 1
        return Slots.from_counts(counts)

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

    def _run_decoder(
        self,
        words: torch.Tensor,
        word_mask: torch.Tensor,
        slots: Slots,
        previous_classes: torch.Tensor | None = None,
        positions: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Decoder outputs for ``slots``: pointer logits (S, P, n + 1), type logits (S, T + 1) or None."""
        queries = self.decoder.queries(words[slots.batch, slots.word], slots.rank)  # (S, d)
        previous = None
        if previous_classes is not None:
            previous = self.decoder.previous_inputs(words, slots.batch, previous_classes)
        return self.decoder(queries, slots.batch, words, word_mask, previous, positions)

    # ------------------------------------------------------------------------------------ decode
    @torch.no_grad()
    def decode(
        self,
        words: torch.Tensor,
        word_mask: torch.Tensor,
        start_logits: torch.Tensor,
        count_logits: torch.Tensor,
        threshold: float = 0.0,
    ) -> list[list[tuple[int, tuple[int, ...], float]]]:
        """Entities of every batch row as (type id, word indices, score), from encoder-side outputs.

        NAG mode: one decoder pass for all slots of the batch. AR mode: greedy steps until every
        slot said END, then one pass for the types. Score = p_start · Π p(pointer) · p(type).
        """
        p_start = start_logits.sigmoid()  # (B, n)
        opened = (p_start > self.config.start_threshold) & word_mask
        counts = torch.where(opened, count_logits[..., 1:].argmax(-1) + 1, 0)
        slots = Slots.from_counts(counts)
        results: list[list[tuple[int, tuple[int, ...], float]]] = [[] for _ in range(words.shape[0])]
        if len(slots) == 0:
            return results
        n_words = word_mask.sum(-1)[slots.batch]  # (S,)
        grammar = PointerGrammar(slots.word, n_words, self.config.max_pointers)
        if self.config.decode_mode == "nag":
            pointer_logits, type_logits = self._run_decoder(words, word_mask, slots)
            for t in range(self.config.max_pointers):
                grammar.step(pointer_logits[:, t])
        else:
            for t in range(self.config.max_pointers):
                pointer_logits, _ = self._run_decoder(words, word_mask, slots, grammar.classes[:, :t], t + 1)
                grammar.step(pointer_logits[:, t])
                if bool(grammar.ended.all()):
                    break
            _, type_logits = self._run_decoder(words, word_mask, slots, grammar.classes)
        type_prob, type_id = type_logits.softmax(-1).max(-1)  # (S,), (S,)
        score = p_start[slots.batch, slots.word] * grammar.log_prob.exp() * type_prob  # (S,)
        best: dict[tuple[int, int, tuple[int, ...]], float] = {}
        for b, w, classes, t, s in zip(
            slots.batch.tolist(), slots.word.tolist(), grammar.classes.tolist(), type_id.tolist(), score.tolist()
        ):
            if t == 0 or s < threshold:
                continue
            key = (b, t, pointers_to_indices(w, classes))
            best[key] = max(s, best.get(key, 0.0))
        for (b, t, indices), s in sorted(best.items()):
            results[b].append((t, indices, s))
        return results

    # ------------------------------------------------------------------------------- prediction
    @torch.no_grad()
    def predict_sentences(
        self, sentences: list[Sentence], batch_size: int = 32, threshold: float = 0.0
    ) -> list[list[Entity]]:
        """Entities (with scores) of each sentence, word indices into ``sentence.words``.

        Long sentences are split into overlapping windows; an entity is taken only from windows
        where it does not touch a cut edge, and duplicates from overlapping windows are merged.
        """
        if self.tokenizer is None:
            raise ValueError("this model has no tokenizer; load it with from_pretrained or from_encoder")
        was_training = self.training
        self.eval()
        features, _ = encode_sentences(sentences, self.tokenizer, self.config)
        features.sort(key=lambda f: len(f["input_ids"]))  # similar lengths share a batch: less padding
        collate = NagNerCollator(self.tokenizer.pad_token_id or 0, self.config.max_pointers)
        best: list[dict[tuple[str, tuple[int, ...]], float]] = [{} for _ in sentences]
        device = self.device
        for begin in range(0, len(features), batch_size):
            chunk = [f for f in features[begin : begin + batch_size] if f["word_first"]]
            if not chunk:
                continue
            batch = {k: v.to(device) for k, v in collate(chunk).items()}
            words = self.encode_words(batch["input_ids"], batch["attention_mask"], batch["word_first"], batch["word_last"])
            start_logits, _, count_logits = self.detector(words)
            decoded = self.decode(words, batch["word_mask"], start_logits, count_logits, threshold)
            for feature, entities in zip(chunk, decoded):
                offset, n_words = feature["word_offset"], feature["n_words"]
                window = (offset, offset + len(feature["word_first"]))
                found = best[feature["sentence_index"]]
                for type_id, indices, score in entities:
                    indices = tuple(i + offset for i in indices)
                    if window != (0, n_words) and not inside_window(indices, window, n_words):
                        continue
                    key = (self.config.entity_types[type_id - 1], indices)
                    found[key] = max(score, found.get(key, 0.0))
        self.train(was_training)
        return [
            sorted((Entity(t, idx, s) for (t, idx), s in found.items()), key=lambda e: (e.start, e.indices, e.type))
            for found in best
        ]

    def predict(
        self,
        texts: str | list[str] | list[list[str]],
        batch_size: int = 32,
        threshold: float = 0.0,
        is_split_into_words: bool = False,
    ) -> list[dict[str, Any]]:
        """Entities in raw texts (or pre-tokenized word lists) as JSON-ready records.

        Each record: ``{"text": ..., "entities": [{"type", "text", "spans": [[start, end), ...],
        "score"}]}`` with character offsets into ``text``; a discontinuous entity has several
        spans and its ``text`` joins the fragments with " … ". Word lists are joined by spaces.
        """
        if isinstance(texts, str) or (is_split_into_words and texts and isinstance(texts[0], str)):
            texts = [texts]  # type: ignore[list-item]
        if is_split_into_words:
            sentences = [with_offsets(Sentence(list(words))) for words in texts]
        else:
            sentences = [sentence_from_text(text) for text in texts]
        found = self.predict_sentences(sentences, batch_size=batch_size, threshold=threshold)
        records = []
        for sentence, entities in zip(sentences, found):
            sentence.entities = entities
            records.append({"text": sentence.text, "entities": [entity_record(sentence, e) for e in entities]})
        return records

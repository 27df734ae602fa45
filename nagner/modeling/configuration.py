"""`NagNerConfig`: the label set, the encoder's config, the decoder's shape and the decoding rule, in one config.json."""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, PretrainedConfig

DECODE_MODES = ("nag", "ar")
OVERLAP_MODES = ("any", "flat")
FORMAT_VERSION = 4

# Settings a checkpoint written before FORMAT_VERSION 2 was trained with (it has no key for them):
# they keep such a checkpoint loading and decoding as it was trained.
LEGACY_SETTINGS = {
    "pointer_prior": False,
    "span_typing": False,
    "cross_slot_attention": False,
    "negative_start_ratio": 0.0,
    "position_init_std": 0.02,
    "decoder_hidden_size": None,
}
# Settings added with FORMAT_VERSION 3, off in a checkpoint of an earlier format (it has no weights for them).
FORMAT_2_SETTINGS = {"span_classifier": False, "span_negatives": 0}
# Settings added with FORMAT_VERSION 4, off in a checkpoint of an earlier format (as it was trained).
FORMAT_3_SETTINGS = {"span_gaps": False, "span_positives": False}


class NagNerConfig(PretrainedConfig):
    """Configuration of a `NagNerModel`.

    Model:
        encoder_config: the encoder's config as a dict (so a checkpoint rebuilds its encoder offline).
        encoder_name_or_path: where the encoder's pretrained weights and tokenizer came from.
        entity_types: the label set; type id 0 is reserved for NONE (a rejected slot).
        max_pointers: pointer positions per slot, END included. An entity of F fragments needs
            2F pointers (fragment boundaries after the start word, then END). `build_model` sizes it
            from the training data (2 × its most fragments), so flat data runs 2 positions, not 8.
        max_entities_per_start: most entities that may start at one word (count head classes 0..K).
        decoder_layers / decoder_heads / decoder_hidden_size / decoder_ffn_size / decoder_dropout:
            the slot decoder. Its width (192, at most the encoder's; None: the encoder's) is its own, the word states are
            projected to it once per batch: with many slots the decoder, not the encoder, would
            otherwise dominate training time (a slot runs up to 9 positions through 2 layers).
            decoder_ffn_size defaults to twice the width.
        head_dropout: dropout on pooled word states before the heads.
        position_init_std: initial scale of the pointer-position embeddings (0.3: as large as the
            anchor projection, so "end of fragment 1" and "start of fragment 2" differ from step one).
        cross_slot_attention: slots of one sentence attend to each other (DETR / PIQN), so a slot
            sharing its start word with another can say NONE instead of repeating it.
        pointer_prior: pointer scores add the detector's end logit (fragment-end positions) and a
            learned bias per position and bucketed distance from the start word.
        span_typing: a per-word type head (dense, like token classification) whose mean over the
            entity's words is added to the slot's type logits.
        span_classifier: a classifier on the span's first, last and mean word states adds its logits
            over NONE ∪ types to the slot's type logits (`nagner.modeling.span_typing`).
        span_gaps: the span classifier also reads a discontinuous span's gap: the words either
            side of it and the mean of the skipped words (zeros for a contiguous span). Off by
            default: on CADEC it did not help (dev F1 67.4 against 67.6 without; bench/RESULTS.md
            section 1).
        span_negatives: in training, this many other sequences of each matched slot's pointer beam
            that are no entity teach the span terms NONE; decoding with ``beam_size`` > 1 then
            lets a slot take the beam sequence most likely to be an entity.
        span_positives: in training, the span terms alone also learn each gold span's type, beside
            the negatives' NONE: the beam choice reads them alone, so they are trained alone on
            both (in the slot's type loss they are summed with the decoder's logits, which soon
            carry the type of a matched slot and leave the span terms little gradient there).
    Slots (one rule in training and inference, `nagner.modeling.slots`):
        start_threshold: detector probability above which a word opens slots.
        min_slots_per_start: slots a detected start opens at least (2 where the training data has
            entities sharing a start word; surplus slots learn NONE).
        count_threshold: a start opens its k-th slot (k >= 2) when P(count >= k) exceeds this.
        negative_start_ratio: in training, this fraction of the remaining words also opens slots
            that learn NONE (random negatives, as SetGNER).
    Loss: detect_weight / count_weight / typing_weight weigh the detector's BCE, the count CE (at
        gold starts only, larger counts weighted up) and the word-type BCE.
    Decoding: decode_mode "nag" (one pass, the model) or "ar" (causal mask + greedy steps:
        ablation only); beam_size over pointer sequences under the entity grammar; end_bias added
        to END where a next fragment could start; none_bias subtracted from NONE's type logit (a
        slot whose best type is NONE is dropped; training sees many NONE slots, so NONE can be too
        strong for the recall a user wants); score_threshold: entities scoring below are
        dropped; overlap "flat" keeps the best non-overlapping entities (chosen by `build_model`
        when the training data has no overlapping or discontinuous entity), "any" keeps all.
        `nagner.modeling.tuning.tune_decoding` sets start_threshold, none_bias, beam_size, end_bias
        and score_threshold on dev data.
    Input: max_subwords: subword budget per encoder window, special tokens included (longer
        sentences use sliding windows); max_subwords_per_word: a word's sub-tokens beyond this are cut.
    Text: text_language: the spaCy language whose tokenizer rules split raw text into sentences and
        words (`nagner.data.text`); set from the training run, so prediction tokenizes as training did.
    Adapters: adapter: the `nagner.peft` adapter config when the encoder is frozen and adapted (the
        checkpoint then holds only the adapter and the heads); encoder_fingerprint: hash of the
        frozen encoder's weights, checked on load.
    """

    model_type = "nagner"

    def __init__(
        self,
        encoder_config: dict[str, Any] | None = None,
        encoder_name_or_path: str | None = None,
        entity_types: list[str] | tuple[str, ...] = (),
        max_pointers: int = 8,
        max_entities_per_start: int = 8,
        decoder_layers: int = 2,
        decoder_heads: int = 4,
        decoder_hidden_size: int | None = 192,
        decoder_ffn_size: int | None = None,
        decoder_dropout: float = 0.1,
        head_dropout: float = 0.1,
        position_init_std: float = 0.3,
        cross_slot_attention: bool = True,
        pointer_prior: bool = True,
        span_typing: bool = True,
        span_classifier: bool = True,
        span_gaps: bool = False,
        span_negatives: int = 3,
        span_positives: bool = True,
        start_threshold: float = 0.5,
        min_slots_per_start: int = 1,
        count_threshold: float = 0.25,
        negative_start_ratio: float = 0.3,
        detect_weight: float = 1.0,
        count_weight: float = 0.5,
        typing_weight: float = 1.0,
        decode_mode: str = "nag",
        beam_size: int = 1,
        end_bias: float = 0.0,
        none_bias: float = 0.0,
        score_threshold: float = 0.0,
        overlap: str = "any",
        max_subwords: int = 256,
        max_subwords_per_word: int = 16,
        text_language: str = "en",
        adapter: dict[str, Any] | None = None,
        encoder_fingerprint: str | None = None,
        format_version: int = FORMAT_VERSION,
        **kwargs: Any,
    ):
        if decode_mode not in DECODE_MODES:
            raise ValueError(f"decode_mode must be one of {DECODE_MODES}, got {decode_mode!r}")
        if overlap not in OVERLAP_MODES:
            raise ValueError(f"overlap must be one of {OVERLAP_MODES}, got {overlap!r}")
        if max_pointers < 2:
            raise ValueError("max_pointers must be >= 2 (one fragment end + END)")
        if beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam_size}")
        if not 1 <= min_slots_per_start <= max_entities_per_start:
            raise ValueError(f"min_slots_per_start must be in 1..{max_entities_per_start}, got {min_slots_per_start}")
        if not 0.0 <= negative_start_ratio <= 1.0:
            raise ValueError(f"negative_start_ratio must be in [0, 1], got {negative_start_ratio}")
        if len(set(entity_types)) != len(entity_types):
            raise ValueError(f"entity_types has duplicates: {list(entity_types)}")
        self.encoder_config = dict(encoder_config or {})
        self.encoder_name_or_path = encoder_name_or_path
        self.entity_types = list(entity_types)
        self.max_pointers = max_pointers
        self.max_entities_per_start = max_entities_per_start
        self.decoder_layers = decoder_layers
        self.decoder_heads = decoder_heads
        self.decoder_hidden_size = decoder_hidden_size
        self.decoder_ffn_size = decoder_ffn_size
        self.decoder_dropout = decoder_dropout
        self.head_dropout = head_dropout
        self.position_init_std = position_init_std
        self.cross_slot_attention = cross_slot_attention
        self.pointer_prior = pointer_prior
        self.span_typing = span_typing
        self.span_classifier = span_classifier
        self.span_gaps = span_gaps
        self.span_negatives = span_negatives
        self.span_positives = span_positives
        self.start_threshold = start_threshold
        self.min_slots_per_start = min_slots_per_start
        self.count_threshold = count_threshold
        self.negative_start_ratio = negative_start_ratio
        self.detect_weight = detect_weight
        self.count_weight = count_weight
        self.typing_weight = typing_weight
        self.decode_mode = decode_mode
        self.beam_size = beam_size
        self.end_bias = end_bias
        self.none_bias = none_bias
        self.score_threshold = score_threshold
        self.overlap = overlap
        self.max_subwords = max_subwords
        self.max_subwords_per_word = max_subwords_per_word
        self.text_language = text_language
        self.adapter = dict(adapter) if adapter else None
        self.encoder_fingerprint = encoder_fingerprint
        self.format_version = format_version
        super().__init__(**kwargs)

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs: Any) -> Any:
        """A config.json of an earlier format lacks the switches added since: it gets the settings
        it was trained with (`LEGACY_SETTINGS` before format 2, `FORMAT_2_SETTINGS` before 3,
        `FORMAT_3_SETTINGS` before 4), not today's defaults."""
        if config_dict.get("model_type") == cls.model_type:
            version = config_dict.get("format_version", 1)
            earlier = {
                **(LEGACY_SETTINGS if version < 2 else {}),
                **(FORMAT_2_SETTINGS if version < 3 else {}),
                **(FORMAT_3_SETTINGS if version < 4 else {}),
            }
            config_dict = {**earlier, **config_dict, "format_version": version}
        return super().from_dict(config_dict, **kwargs)

    @property
    def num_types(self) -> int:
        """Type classes including NONE (id 0)."""
        return len(self.entity_types) + 1

    def build_encoder_config(self) -> PretrainedConfig:
        """The encoder's `PretrainedConfig`, rebuilt from the stored dict."""
        if not self.encoder_config:
            raise ValueError("NagNerConfig has no encoder_config; build the model with NagNerModel.from_encoder")
        values = dict(self.encoder_config)
        model_type = values.pop("model_type")
        return AutoConfig.for_model(model_type, **values)


AutoConfig.register(NagNerConfig.model_type, NagNerConfig)

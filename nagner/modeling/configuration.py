"""`NagNerConfig`: the label set, the encoder's config and the decoder's shape, in one config.json."""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, PretrainedConfig

DECODE_MODES = ("nag", "ar")


class NagNerConfig(PretrainedConfig):
    """Configuration of a `NagNerModel`.

    Args:
        encoder_config: the encoder's config as a dict (so a checkpoint rebuilds its encoder offline).
        encoder_name_or_path: where the encoder's pretrained weights and tokenizer came from.
        entity_types: the label set; type id 0 is reserved for NONE (a rejected slot).
        max_pointers: pointer positions per slot, END included. An entity of F fragments needs
            2F pointers (fragment boundaries after the start word, then END), so 8 allows 4 fragments.
        max_entities_per_start: most entities that may start at one word (count head classes 0..K).
        decoder_layers / decoder_heads / decoder_ffn_size / decoder_dropout: the slot decoder.
        head_dropout: dropout on pooled word states before the heads.
        start_threshold: detector probability above which a word opens slots at inference.
        detect_weight / count_weight: loss weights of the detector's BCE and count CE.
        decode_mode: "nag" (one pass, the model) or "ar" (causal mask + greedy steps: ablation only).
        max_subwords: subword budget per encoder window, special tokens included (longer sentences use sliding windows).
        max_subwords_per_word: a word's sub-tokens beyond this are cut (first/last pooling still sees
            the word's start).
        adapter: the `nagner.peft` adapter config (``AdapterConfig.to_dict()``) when the encoder is
            frozen and adapted; the checkpoint then holds only the adapter and the heads, and
            ``encoder_name_or_path`` names the encoder to load under it.
        encoder_fingerprint: hash of the frozen encoder's weights (`encoder_fingerprint`), checked on load.
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
        decoder_ffn_size: int | None = None,
        decoder_dropout: float = 0.1,
        head_dropout: float = 0.1,
        start_threshold: float = 0.5,
        detect_weight: float = 1.0,
        count_weight: float = 0.5,
        decode_mode: str = "nag",
        max_subwords: int = 256,
        max_subwords_per_word: int = 16,
        adapter: dict[str, Any] | None = None,
        encoder_fingerprint: str | None = None,
        **kwargs: Any,
    ):
        if decode_mode not in DECODE_MODES:
            raise ValueError(f"decode_mode must be one of {DECODE_MODES}, got {decode_mode!r}")
        if max_pointers < 2:
            raise ValueError("max_pointers must be >= 2 (one fragment end + END)")
        if len(set(entity_types)) != len(entity_types):
            raise ValueError(f"entity_types has duplicates: {list(entity_types)}")
        self.encoder_config = dict(encoder_config or {})
        self.encoder_name_or_path = encoder_name_or_path
        self.entity_types = list(entity_types)
        self.max_pointers = max_pointers
        self.max_entities_per_start = max_entities_per_start
        self.decoder_layers = decoder_layers
        self.decoder_heads = decoder_heads
        self.decoder_ffn_size = decoder_ffn_size
        self.decoder_dropout = decoder_dropout
        self.head_dropout = head_dropout
        self.start_threshold = start_threshold
        self.detect_weight = detect_weight
        self.count_weight = count_weight
        self.decode_mode = decode_mode
        self.max_subwords = max_subwords
        self.max_subwords_per_word = max_subwords_per_word
        self.adapter = dict(adapter) if adapter else None
        self.encoder_fingerprint = encoder_fingerprint
        super().__init__(**kwargs)

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

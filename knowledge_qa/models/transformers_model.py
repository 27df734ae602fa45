"""Local backend: any transformers seq2seq or causal LM, by hub name or local path, optionally with a
`nagner.peft` adapter, batched on CPU or GPU.

A model folder is either a plain transformers folder, or an adapter folder written by
`knowledge_qa.training` (``adapter_config.json`` naming ``base_model_name_or_path``,
``adapter_model.safetensors`` and, when some base modules were trained in full, e.g. the fresh
cross-attention of a warm-started encoder-decoder, ``trained_modules.safetensors``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer
from transformers.modeling_outputs import BaseModelOutput

from knowledge_qa.errors import QAInputError
from knowledge_qa.models.base import TextModel, continuation, cut_at_stop

logger = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
TRAINED_MODULES = "trained_modules.safetensors"


def is_adapter_folder(path: str | Path) -> bool:
    """True when ``path`` holds an adapter (not a whole model)."""
    return (Path(path) / ADAPTER_CONFIG).is_file()


def load_base(name_or_path: str, *, dtype: torch.dtype | None = None):
    """(model, tokenizer) of a seq2seq or causal LM, chosen by its config. Tokenizers without a pad
    token get their EOS token as pad (causal LMs)."""
    try:
        config = AutoConfig.from_pretrained(name_or_path)
    except OSError as error:
        raise QAInputError(f"cannot load a model config from {name_or_path!r}: {error}") from None
    model_class = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    model = model_class.from_pretrained(name_or_path, dtype=dtype) if dtype else model_class.from_pretrained(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


class TransformersModel(TextModel):
    """`TextModel` over a local transformers model. ``batch_size`` bounds the rows of one forward."""

    def __init__(self, model, tokenizer, *, batch_size: int = 16, max_input_tokens: int = 512, name: str = ""):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.max_input_tokens = max_input_tokens
        self.name = name or getattr(model.config, "_name_or_path", type(model).__name__)
        self.is_seq2seq = bool(model.config.is_encoder_decoder)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        *,
        adapter: str | None = None,
        device: str | None = None,
        dtype: torch.dtype | None = None,
        **options,
    ) -> TransformersModel:
        """Load a model folder or hub name; ``adapter`` adds a `nagner.peft` adapter folder on top.
        A ``name_or_path`` that is itself an adapter folder loads its base model first."""
        from nagner.peft import load_adapter

        if is_adapter_folder(name_or_path):
            adapter, name_or_path = name_or_path, base_model_of(name_or_path)
        model, tokenizer = load_base(name_or_path, dtype=dtype)
        if adapter is not None:
            load_trained_modules(model, adapter)
            load_adapter(model, adapter)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return cls(model.to(device), tokenizer, name=str(adapter or name_or_path), **options)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def describe(self) -> str:
        kind = "seq2seq" if self.is_seq2seq else "causal"
        return f"transformers {kind} {self.name}"

    # ---------------------------------------------------------------- tokenisation
    def encode_prompts(self, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Tokenised prompts (B, L), truncated from the left for causal LMs (keep the question's end
        and the cue) and from the right for seq2seq encoders."""
        self.tokenizer.truncation_side = "right" if self.is_seq2seq else "left"
        self.tokenizer.padding_side = "right" if self.is_seq2seq else "left"
        batch = self.tokenizer(
            list(prompts), return_tensors="pt", padding=True, truncation=True, max_length=self.max_input_tokens
        )
        return {key: value.to(self.device) for key, value in batch.items() if key in ("input_ids", "attention_mask")}

    def target_ids(self, text: str, prompt: str) -> list[int]:
        """Token ids the decoder must produce for ``text`` (seq2seq; ``prompt`` unused), or the ids
        of ``text`` as a continuation of ``prompt`` (causal: `continuation`'s rule, the one the HTTP
        backend scores by too)."""
        if not self.is_seq2seq:
            return self.tokenizer(continuation(prompt, text), add_special_tokens=False).input_ids
        ids = self.tokenizer(text_target=text).input_ids
        start = self.model.config.decoder_start_token_id
        if ids and start is not None and ids[0] == start:  # BERT-style [CLS]: the decoder starts with it already
            ids = ids[1:]
        return ids

    # ---------------------------------------------------------------- TextModel
    @torch.no_grad()
    def generate(
        self, prompts: Sequence[str], *, max_new_tokens: int = 64, num_candidates: int = 1, stop: Sequence[str] = ()
    ) -> list[list[str]]:
        results: list[list[str]] = []
        for start in range(0, len(prompts), self.batch_size):
            chunk = prompts[start : start + self.batch_size]
            inputs = self.encode_prompts(chunk)
            beams = max(1, num_candidates)
            output = self.model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                num_beams=beams,
                num_return_sequences=beams,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
            )  # (B·beams, T)
            if not self.is_seq2seq:
                output = output[:, inputs["input_ids"].shape[1] :]
            texts = self.tokenizer.batch_decode(output, skip_special_tokens=True)
            for row in range(len(chunk)):
                candidates = [cut_at_stop(t, stop).strip() for t in texts[row * beams : (row + 1) * beams]]
                results.append(list(dict.fromkeys(candidates)))
        return results

    @torch.no_grad()
    def score(self, prompts: Sequence[str], options: Sequence[str]) -> list[list[float]]:
        if not options:
            return [[] for _ in prompts]
        rows: list[list[float]] = []
        per_chunk = max(1, self.batch_size // len(options))
        for start in range(0, len(prompts), per_chunk):
            chunk = prompts[start : start + per_chunk]
            if self.is_seq2seq:
                scores = self._score_seq2seq(chunk, [self.target_ids(option, "") for option in options])
            else:
                scores = self._score_causal(chunk, [[self.target_ids(option, prompt) for option in options] for prompt in chunk])
            rows.extend(scores.view(len(chunk), len(options)).tolist())
        return rows

    def _score_seq2seq(self, prompts: Sequence[str], option_ids: list[list[int]]) -> torch.Tensor:
        """Encode each prompt once, decode every option against it: (P·O,) log-likelihoods."""
        inputs = self.encode_prompts(prompts)
        hidden = self.model.get_encoder()(**inputs).last_hidden_state  # (P, L, H)
        count = len(option_ids)
        hidden = hidden.repeat_interleave(count, dim=0)  # (P·O, L, H)
        mask = inputs["attention_mask"].repeat_interleave(count, dim=0)  # (P·O, L)
        width = max(len(ids) for ids in option_ids)
        labels = torch.full((len(option_ids), width), -100, dtype=torch.long)  # (O, T)
        for row, ids in enumerate(option_ids):
            labels[row, : len(ids)] = torch.tensor(ids)
        labels = labels.repeat(len(prompts), 1).to(self.device)  # (P·O, T)
        logits = self.model(encoder_outputs=BaseModelOutput(last_hidden_state=hidden), attention_mask=mask, labels=labels).logits
        return sequence_log_likelihood(logits, labels)

    def _score_causal(self, prompts: Sequence[str], option_ids: list[list[list[int]]]) -> torch.Tensor:
        """Prompt + option as one sequence, right-padded; only the option's tokens are scored.
        option_ids: per prompt, each option's `target_ids` after it."""
        self.tokenizer.truncation_side = "left"
        prompt_ids = self.tokenizer(list(prompts), truncation=True, max_length=self.max_input_tokens).input_ids
        sequences, labels = [], []
        for ids, options in zip(prompt_ids, option_ids, strict=True):
            for option in options:
                sequences.append(ids + option)
                labels.append([-100] * len(ids) + option)
        width = max(len(s) for s in sequences)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([s + [pad] * (width - len(s)) for s in sequences], device=self.device)  # (P·O, T)
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sequences], device=self.device)
        target = torch.tensor([lab + [-100] * (width - len(lab)) for lab in labels], device=self.device)
        logits = self.model(input_ids=input_ids, attention_mask=mask).logits[:, :-1]  # (P·O, T-1, V): predicts token t+1
        return sequence_log_likelihood(logits, target[:, 1:])


def sequence_log_likelihood(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Σ_t log p(labels_t) over positions whose label is not -100: logits (N, T, V), labels (N, T) → (N,)."""
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    keep = labels != -100
    picked = log_probs.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (N, T)
    return (picked * keep).sum(dim=-1)


def base_model_of(adapter_folder: str | Path) -> str:
    """The ``base_model_name_or_path`` an adapter folder names (relative paths are taken from the folder)."""
    path = Path(adapter_folder) / ADAPTER_CONFIG
    try:
        base = json.loads(path.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except json.JSONDecodeError as error:
        raise QAInputError(f"not valid JSON: {error.msg}", path, error.lineno) from None
    if not base:
        raise QAInputError("the adapter names no base_model_name_or_path; pass the base model explicitly", path)
    relative = Path(adapter_folder) / base
    return str(relative) if relative.exists() else base


def load_trained_modules(model: torch.nn.Module, adapter_folder: str | Path) -> None:
    """Copy the fully trained base tensors saved beside an adapter (if any) into ``model``."""
    from safetensors.torch import load_file

    path = Path(adapter_folder) / TRAINED_MODULES
    if not path.is_file():
        return
    stored = load_file(str(path))
    own = model.state_dict()
    unknown = sorted(set(stored) - set(own))
    if unknown:
        raise QAInputError(f"{len(unknown)} saved tensors do not exist in the base model (e.g. {unknown[0]})", path)
    with torch.no_grad():
        for key, value in stored.items():
            own[key].copy_(value)

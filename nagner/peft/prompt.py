"""Plumbing of the prompt-conditioned adapters (MiLoRA, PARA): which tokens are the prompt, how a
layer's prompt is pooled, and when the per-layer routing / vectors are computed and reused.

Every method of this family has one small network per transformer layer l (MiLoRA's router, PARA's
vector generator) that reads H^l, the hidden states of the prompt entering layer l, and produces a
per-sample value (gates over the layer's experts, scaling vectors) that the layer's adapters read.

What the prompt is:

* encoder-only models (BERT): the whole input, minus padding (``attention_mask``);
* causal LMs (Llama): the tokens of the first forward pass of a request (the prefill), minus
  padding, left or right. In teacher-forced training, where response tokens sit in the same
  sequence, name the prompt tokens with `prompt_mask`;
* seq2seq models (T5): the encoder input. Encoder layers pool their own input; decoder layers pool
  the encoder output (what the decoder cross-attends to, computed once per request), masked by the
  encoder's attention mask. The decoder's own tokens at prefill are only the start token, too
  little to condition on.

When it is computed. Each layer's "stack" (its nearest `PreTrainedModel` ancestor: ``bert``,
``model``, ``encoder``, ``decoder``; the attached model for other models) gets a forward pre-hook
that reads the call's ``attention_mask`` (2-D, padding-aware), ``encoder_hidden_states`` /
``encoder_attention_mask`` for decoder stacks, and its KV cache. A stack call is a new prompt
unless it continues a cache (``cache`` / ``past_key_values`` with a non-zero length) or it is a
later forward of the same ``generate`` call (attaching wraps ``generate``; this keeps
``use_cache=False``, which feeds prompt + generated tokens each step, on the prompt's routing).
So within ``generate`` every router / generator runs exactly once, at prefill; decode steps reuse
the cached per-row values.

Beam search and ``num_return_sequences``: ``generate`` repeats every prompt row before the
prefill, so the cached values already have one row per beam, and the beam reordering of the KV
cache only permutes rows among the beams of one prompt, which share their prompt and so their
value. The cache therefore needs no reordering. A decode step whose batch differs from the
prefill's (contrastive search) raises RuntimeError.

Mixed-adapter batches (`nagner.peft.mixed_batch.adapter_batch`): the values are computed for every
row (each row's hidden states already carry that row's own adapters), and an adapter run on its
sample rows reads exactly those rows (`PromptSignal.read`).

Caveats: a layer called outside its stack's forward pools all its tokens; gradient checkpointing
is not supported (the recomputation would route again).
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

from nagner.peft.adapter import Adapter, AdapterExtras
from nagner.peft.attach import adapter_parameters, peft_state
from nagner.peft.layer import AdaptedLayer
from nagner.peft.targets import layer_position

POOLERS = ("self_attention", "mean", "max", "last")
ACTIVATIONS = ("rational", "gelu")

# Ra(x) = Σ_{j=0..6} a_j x^j / (1 + |Σ_{i=1..5} b_i x^i|) fitted to the exact (erf) GELU by least
# squares on 8001 points of [-10, 10] (float64 L-BFGS, odd b_i fixed at 0 so the denominator is
# even and ≥ 1): max |Ra - GELU| = 0.0068 on [-10, 10]; beyond that Ra grows like 0.015·x².
GELU_NUMERATOR = (-0.0068475289, 0.5, 0.4330764, 0.14310162, 0.022723903, 0.0017427068, 5.18525e-05)
GELU_DENOMINATOR = (0.0, 0.2862031, 0.0, 0.0034854161, 0.0)


def check_prompt_options(pooler: str, activation: str) -> None:
    """ValueError unless ``pooler`` and ``activation`` are known names."""
    if pooler not in POOLERS:
        raise ValueError(f"pooler must be one of {', '.join(POOLERS)}; got {pooler!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {activation!r}")


# ----------------------------------------------------------------------------------- components
class RationalActivation(nn.Module):
    """The learnable rational activation of MiLoRA (a "safe" Padé unit), 12 parameters:

        Ra(x) = (a_0 + a_1 x + … + a_6 x^6) / (1 + |b_1 x + … + b_5 x^5|)

    The denominator is ≥ 1, so Ra has no poles. Initialised to approximate GELU (see
    ``GELU_NUMERATOR``)."""

    def __init__(self) -> None:
        super().__init__()
        self.numerator = nn.Parameter(torch.tensor(GELU_NUMERATOR))  # a_0..a_6
        self.denominator = nn.Parameter(torch.tensor(GELU_DENOMINATOR))  # b_1..b_5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top = torch.zeros_like(x)
        for coefficient in self.numerator.flip(0):  # Horner: a_6, …, a_0
            top = top * x + coefficient
        bottom = torch.zeros_like(x)
        for coefficient in self.denominator.flip(0):  # b_5, …, b_1, then one more · x
            bottom = (bottom + coefficient) * x
        return top / (1 + bottom.abs())


def make_activation(kind: str) -> nn.Module:
    """``rational`` (learnable, 12 parameters) or ``gelu`` (fixed)."""
    return RationalActivation() if kind == "rational" else nn.GELU()


class PromptPooler(nn.Module):
    """H (b, n, d) and a prompt mask (b, n) → one vector per sample (b, d).

    ``self_attention`` (MiLoRA's default): u = H·w (w: d weights), a = softmax of u over the prompt
    tokens, p = aᵀH; w starts at zero, i.e. as mean pooling. ``mean`` / ``max`` over the prompt
    tokens; ``last``: the last prompt token (right or left padding alike). Padding positions are
    zeroed before any arithmetic, so NaNs there (fully masked attention rows) cannot leak in.
    """

    def __init__(self, kind: str, hidden: int):
        super().__init__()
        self.kind = kind
        self.score = nn.Linear(hidden, 1, bias=False) if kind == "self_attention" else None
        if self.score is not None:
            nn.init.zeros_(self.score.weight)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if mask is None:
            mask = torch.ones(hidden.shape[:2], dtype=torch.bool, device=hidden.device)
        keep = mask.unsqueeze(-1)  # (b, n, 1)
        if self.kind == "max":
            return hidden.masked_fill(~keep, float("-inf")).amax(1)
        if self.kind == "last":
            positions = torch.arange(hidden.shape[1], device=hidden.device)
            last = torch.where(mask, positions, -1).amax(1)  # (b,)
            return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        hidden = hidden.masked_fill(~keep, 0.0)  # (b, n, d)
        if self.kind == "mean":
            return hidden.sum(1) / mask.sum(1, keepdim=True).to(hidden.dtype)
        scores = self.score(hidden).squeeze(-1).masked_fill(~mask, float("-inf"))  # (b, n)
        return torch.einsum("bn,bnd->bd", scores.softmax(-1), hidden)

    def extra_repr(self) -> str:
        return self.kind


# ------------------------------------------------------------------------------- layer grouping
def layer_prefix(module_name: str, layers_pattern: str | None = None) -> str | None:
    """The name of the transformer layer holding ``module_name``: up to the layer number (see
    `targets.layer_position`): ``encoder.block.3.layer.0.SelfAttention.q`` → ``encoder.block.3``,
    ``model.layers.3.mlp.up_proj`` → ``model.layers.3``."""
    parts = module_name.split(".")
    position = layer_position(parts, layers_pattern)
    return None if position is None else ".".join(parts[: position + 1])


def group_by_layer(module_names: list[str], layers_pattern: str | None = None) -> dict[str, list[str]]:
    """Adapted module names grouped by their transformer layer (model order kept). ValueError
    naming the modules that sit in no numbered layer."""
    groups: dict[str, list[str]] = {}
    loose = []
    for name in module_names:
        prefix = layer_prefix(name, layers_pattern)
        if prefix is None:
            loose.append(name)
        else:
            groups.setdefault(prefix, []).append(name)
    if loose:
        raise ValueError(
            f"prompt-conditioned adapters work per transformer layer, but {', '.join(loose[:3])} "
            "sit in no numbered layer: exclude them (exclude_modules) or set layers_pattern"
        )
    return groups


def model_hidden_size(model: nn.Module) -> int:
    """The width d of the hidden states the routers / generators pool (``model.config.hidden_size``;
    transformers maps T5's d_model and GPT-2's n_embd onto it)."""
    size = getattr(getattr(model, "config", None), "hidden_size", None)
    if not isinstance(size, int):
        raise ValueError(
            "prompt-conditioned adapters need model.config.hidden_size (the width of the hidden states)"
        )
    return size


# ------------------------------------------------------------------------ per-request values
class PromptSignal:
    """What one layer's router / generator computed for the current request, read by that layer's
    adapters: ``value`` (B, k) with one row per prompt row; ``rows`` the rows an adapter run on a
    mixed batch's subset sees (None otherwise); ``used`` the columns any row uses (None = all)."""

    def __init__(self) -> None:
        self.value: torch.Tensor | None = None
        self.rows: torch.Tensor | None = None
        self.used: frozenset[int] | None = None

    def read(self, batch: int) -> torch.Tensor:
        """The value rows for an adapter call over ``batch`` rows: (batch, k)."""
        if self.value is None:
            raise RuntimeError(
                "no prompt has gone through this layer yet: call the model the adapter was attached to"
            )
        if self.rows is not None and self.rows.numel() == batch:
            return self.value.index_select(0, self.rows)
        if self.value.shape[0] != batch:
            raise RuntimeError(
                f"the prompt values were computed for {self.value.shape[0]} rows but this call has {batch}; "
                "decoding that changes the batch after the prefill (e.g. contrastive search) is not supported"
            )
        return self.value


class PromptAdapter(Adapter):
    """An adapter that reads a part of its layer's `PromptSignal`: a column (MiLoRA's gate for this
    expert) or a slice (PARA's vector for this module). Bound when the extras are installed."""

    def __init__(self) -> None:
        super().__init__()
        self.signal: PromptSignal | None = None
        self.part: int | slice = 0

    def bind(self, signal: PromptSignal, part: int | slice) -> None:
        self.signal, self.part = signal, part

    def prompt_value(self, batch: int) -> torch.Tensor:
        """This adapter's per-sample value: (batch,) for a column, (batch, width) for a slice."""
        if self.signal is None:
            raise RuntimeError(
                f"{type(self).__name__} is not bound to a router / generator (attach it with `attach`)"
            )
        return self.signal.read(batch)[:, self.part]


def broadcast_rows(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-sample ``value`` (b,) or (b, d) viewed to broadcast over ``like`` (b, …, d)."""
    middle = [1] * (like.dim() - 1 - (value.dim() - 1))
    return value.reshape(value.shape[0], *middle, *value.shape[1:]).to(like.dtype)


# -------------------------------------------------------------------------------- the hooks
def _positional_names(module: nn.Module) -> list[str]:
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in inspect.signature(module.forward).parameters.values() if p.kind in kinds]


def _argument(names: list[str], args: tuple, kwargs: dict[str, Any], name: str) -> Any:
    """A call's argument ``name``, given by keyword or by position."""
    if name in kwargs:
        return kwargs[name]
    index = names.index(name) if name in names else len(args)
    return args[index] if index < len(args) else None


def _continues_a_cache(cache: Any) -> bool:
    if cache is None:
        return False
    length = getattr(cache, "get_seq_length", None)
    return length() > 0 if callable(length) else len(cache) > 0


class _Stack:
    """One stack's (``bert``, ``model``, ``encoder``, ``decoder``) state during its forward call."""

    def __init__(self, module: nn.Module, cross: bool):
        self.names = _positional_names(module)
        self.cross = cross  # pools the encoder output (seq2seq decoders) instead of its own input
        self.in_call = False
        self.recompute = True  # this call starts a new prompt
        self.routed_in_request = False
        self.source: torch.Tensor | None = None  # encoder output (cross stacks)
        self.mask: torch.Tensor | None = None  # (b, n) bool, True = prompt token


class PromptConditionedExtras(AdapterExtras):
    """Base of the per-layer routers / generators: computes each layer's `PromptSignal` in a
    forward pre-hook on the layer, once per prompt (see the module docstring).

    Subclasses implement `compute` (and `part`: which slice of the signal module j of layer i
    reads). ``prefixes[i]``: layer i's module name; ``module_names[i]``: its adapted modules.
    """

    def __init__(self, groups: dict[str, list[str]], host: AdaptedLayer):
        super().__init__()
        self.prefixes = list(groups)
        self.module_names = [groups[p] for p in self.prefixes]
        self.signals = [PromptSignal() for _ in self.prefixes]
        self.explicit_mask: torch.Tensor | None = None  # set by `prompt_mask`
        self.adapter_name: str | None = None
        self._host = [host]  # a plain list: not a submodule (its weights are not ours)
        self._stacks: list[_Stack] = []
        self._request_open = False

    # ------------------------------------------------------------------------- subclass API
    def compute(self, index: int, hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Layer ``index``'s value from its prompt: hidden (b, n, d), mask (b, n) bool → (b, k)."""
        raise NotImplementedError

    def part(self, index: int, position: int) -> int | slice:
        """Which part of layer ``index``'s value module ``module_names[index][position]`` reads."""
        raise NotImplementedError

    # ---------------------------------------------------------------------------- install
    def install(self, model: nn.Module, name: str) -> list[Any]:
        self.adapter_name = name
        for index, names in enumerate(self.module_names):
            for position, module_name in enumerate(names):
                model.get_submodule(module_name).adapters[name].bind(
                    self.signals[index], self.part(index, position)
                )
        encoder = (
            model.get_encoder()
            if getattr(getattr(model, "config", None), "is_encoder_decoder", False)
            else None
        )
        stacks: dict[int, _Stack] = {}
        handles: list[Any] = []
        for index, prefix in enumerate(self.prefixes):
            stack_module = _stack_of(model, prefix)
            if id(stack_module) not in stacks:
                cross = encoder is not None and stack_module is not encoder
                stacks[id(stack_module)] = stack = _Stack(stack_module, cross)
                handles.append(
                    stack_module.register_forward_pre_hook(
                        partial(self._enter_stack, stack), with_kwargs=True
                    )
                )
                handles.append(
                    stack_module.register_forward_hook(partial(self._leave_stack, stack), always_call=True)
                )
            self._stacks.append(stacks[id(stack_module)])
            layer = model.get_submodule(prefix)
            handles.append(
                layer.register_forward_pre_hook(partial(self._before_layer, index), with_kwargs=True)
            )
        if callable(getattr(type(model), "generate", None)):
            handles.append(_GenerateScope(model, self))
        return handles

    # ------------------------------------------------------------------------------ hooks
    def begin_request(self) -> None:
        """A ``generate`` call starts: its first forward of each stack is the prefill. What an
        earlier request computed is forgotten, so it can never be read for this one."""
        self._request_open = True
        for stack in self._stacks:
            stack.routed_in_request = False
        for signal in self.signals:
            signal.value = None

    def end_request(self) -> None:
        self._request_open = False

    def _enter_stack(self, stack: _Stack, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        cache = _argument(stack.names, args, kwargs, "cache")
        if cache is None:
            cache = _argument(stack.names, args, kwargs, "past_key_values")
        if self._request_open and not stack.routed_in_request and _continues_a_cache(cache):
            raise RuntimeError(
                "generate started from a filled key/value cache (a reused prefix or an earlier turn): "
                f"{type(self).__name__} adapters route on the whole prompt, which this request does not "
                "show; pass the whole prompt without past_key_values"
            )
        stack.in_call = True
        stack.recompute = not (_continues_a_cache(cache) or (self._request_open and stack.routed_in_request))
        stack.routed_in_request = stack.routed_in_request or self._request_open
        if not stack.recompute:
            return
        if stack.cross:
            stack.source = _argument(stack.names, args, kwargs, "encoder_hidden_states")
            mask = _argument(stack.names, args, kwargs, "encoder_attention_mask")
        else:
            mask = _argument(stack.names, args, kwargs, "attention_mask")
        mask = mask.bool() if isinstance(mask, torch.Tensor) and mask.dim() == 2 else None
        if self.explicit_mask is not None and not stack.cross:
            explicit = self.explicit_mask.bool()
            if mask is not None and mask.shape != explicit.shape:
                raise ValueError(
                    f"prompt_mask is {tuple(explicit.shape)} but the attention mask is {tuple(mask.shape)}"
                )
            mask = explicit if mask is None else explicit & mask.to(explicit.device)
        if mask is not None and not bool(mask.any(1).all()):
            raise ValueError("a sample has no prompt token (its prompt / attention mask row is all zeros)")
        stack.mask = mask

    def _leave_stack(self, stack: _Stack, module: nn.Module, args: tuple, output: Any) -> None:
        stack.in_call, stack.source, stack.mask = False, None, None

    def _in_use(self) -> bool:
        host = self._host[0]
        if host.disabled:
            return False
        if host.mixed_batch is not None:
            return self.adapter_name in host.mixed_batch.sample_names
        return self.adapter_name in host.active

    def _before_layer(self, index: int, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        if not self._in_use():
            return
        hidden = args[0] if args else kwargs["hidden_states"]  # (b, n, d)
        signal, stack = self.signals[index], self._stacks[index]
        plan = self._host[0].mixed_batch
        if plan is None:
            signal.rows = None
        else:  # the rows `MixedBatch.apply` will run this adapter on
            signal.rows = (
                plan.bank_rows([self.adapter_name], hidden.shape[0], hidden.device).nonzero().squeeze(1)
            )
        if stack.in_call and not stack.recompute:
            signal.read(hidden.shape[0])  # raises when the batch no longer fits the cached rows
            return
        source, mask = hidden, None
        if stack.in_call:
            source, mask = (stack.source if stack.cross else hidden), stack.mask
        elif stack.cross:
            raise RuntimeError(f"{self.prefixes[index]}: a decoder layer needs its stack's encoder output")
        if source is None:
            raise RuntimeError(f"{self.prefixes[index]}: the decoder got no encoder_hidden_states to pool")
        if mask is not None and mask.shape != source.shape[:2]:
            raise ValueError(
                f"{self.prefixes[index]}: the prompt mask is {tuple(mask.shape)} but the layer pools "
                f"{tuple(source.shape[:2])} tokens"
            )
        dtype = next(self.parameters()).dtype
        signal.value = self.compute(index, source.to(dtype), None if mask is None else mask.to(source.device))


def _stack_of(model: nn.Module, prefix: str) -> nn.Module:
    """The nearest `PreTrainedModel` above layer ``prefix`` (``bert``, ``model``, ``encoder``), or
    ``model`` itself when there is none."""
    parts = prefix.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module = model.get_submodule(".".join(parts[:cut]))
        if isinstance(module, PreTrainedModel):
            return module
    return model


# --------------------------------------------------------------------------------- generate
def prompt_extras(model: nn.Module) -> list[PromptConditionedExtras]:
    """The prompt-conditioned adapters' model-level parts on ``model``."""
    state = peft_state(model)
    extras = state.extras.values() if state is not None else []
    return [e for e in extras if isinstance(e, PromptConditionedExtras)]


def _generate_one_request(model: nn.Module, *args: Any, **kwargs: Any) -> Any:
    """``model.generate`` with every prompt-conditioned adapter told that one request runs."""
    extras = prompt_extras(model)
    for part in extras:
        part.begin_request()
    try:
        return type(model).generate(model, *args, **kwargs)
    finally:
        for part in extras:
            part.end_request()


class _GenerateScope:
    """Wraps ``model.generate`` (one instance attribute shared by all prompt-conditioned adapters);
    ``remove`` takes it away with the last of them."""

    def __init__(self, model: nn.Module, owner: PromptConditionedExtras):
        self.model, self.owner = model, owner
        if not _is_wrapped(model):
            model.generate = types.MethodType(_generate_one_request, model)

    def remove(self) -> None:
        others = [e for e in prompt_extras(self.model) if e is not self.owner]
        if not others and _is_wrapped(self.model):
            del self.model.generate


def _is_wrapped(model: nn.Module) -> bool:
    return getattr(model.__dict__.get("generate"), "__func__", None) is _generate_one_request


@contextmanager
def prompt_mask(model: nn.Module, mask: torch.Tensor) -> Iterator[None]:
    """Inside, the prompt of every forward of a causal / encoder-only model is the tokens where
    ``mask`` (b, n) is 1 (combined with the attention mask): for teacher-forced training, where the
    response tokens of a sample follow its prompt in the same sequence and must not be pooled.
    Seq2seq models need none: the encoder input is the prompt (a mask given here applies to the
    encoder input; decoder layers always pool the encoder output)."""
    extras = prompt_extras(model)
    if not extras:
        raise ValueError("the model has no prompt-conditioned adapter (MiLoRA, PARA) attached")
    for part in extras:
        part.explicit_mask = mask
    try:
        yield
    finally:
        for part in extras:
            part.explicit_mask = None


def bilevel_parameters(model: nn.Module, name: str) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """MiLoRA's bi-level split of adapter ``name``'s parameters: (Ω, Θ), Θ the rational
    activations' coefficients (the paper trains them on the dev split, lr 1e-6), Ω the rest
    (experts / generators, routers, poolers: train split, lr 1e-4). Build one optimizer for each."""
    state = peft_state(model)
    extras = state.extras[name] if state is not None and name in state.extras else None
    if not isinstance(extras, PromptConditionedExtras):
        raise KeyError(f"no prompt-conditioned adapter named {name!r}")
    theta = {id(p): p for m in extras.modules() if isinstance(m, RationalActivation) for p in m.parameters()}
    omega = [p for _, p in adapter_parameters(model, name) if id(p) not in theta]
    return omega, list(theta.values())

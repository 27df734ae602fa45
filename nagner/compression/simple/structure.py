"""Which dimensions of which weights belong to which prunable structure, for the model families
SIMPLE supports: BERT-style encoders and decoders (alone, or as the two halves of an
`EncoderDecoderModel`, the warm-started seq2seq of `knowledge_qa`) and GPT-2.

Every `nn.Linear` / GPT-2 `Conv1D`, `nn.LayerNorm` and `nn.Embedding` that SIMPLE touches gets a
`ModuleSpaces`: the space its input and its output live in. A space is

- ``"hidden"``: the residual stream, one dimension shared by the embeddings, every LayerNorm, every
  attention/FFN input and output, across all layers (and across encoder and decoder);
- ``"heads:<block>"``: the concatenated heads of one attention block (``num_heads × head_dim``);
- ``"qkv:<block>"``: GPT-2's fused query|key|value output, three copies of the heads space;
- ``"ffn:<layer>"``: the intermediate neurons of one feed-forward layer;
- ``None``: not pruned (the vocabulary, positions).

Masking (`masks.py`), parameter counting and extraction (`extract.py`) all read this one table, so
they cannot disagree about what a structure is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

HIDDEN = "hidden"


@dataclass(frozen=True)
class ModuleSpaces:
    """The spaces of one module's input and output (`None`: unpruned)."""

    name: str
    kind: str  # "linear" (nn.Linear), "conv1d" (GPT-2's Conv1D, weight stored [in, out]), "norm", "embedding"
    input: str | None
    output: str | None


@dataclass
class ModelStructure:
    """The prunable structures of one model: every module's spaces, the hidden size, each attention
    block's head count and each FFN layer's width, and the configs to rewrite on extraction."""

    family: str  # "bert" or "gpt2"
    modules: list[ModuleSpaces]
    hidden_size: int
    head_dim: int
    heads: dict[str, int] = field(default_factory=dict)  # block → number of heads
    ffn: dict[str, int] = field(default_factory=dict)  # layer → intermediate width
    # The blocks whose key/value projections distillation reads: block → (key module, value module),
    # or (fused qkv module, None) for GPT-2.
    kv_modules: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    layer_outputs: list[str] = field(default_factory=list)  # modules whose output is a layer's hidden state

    def size(self, space: str) -> int:
        """Units of ``space`` (heads count heads, not dimensions)."""
        if space == HIDDEN:
            return self.hidden_size
        kind, key = space.split(":", 1)
        return self.heads[key] if kind in ("heads", "qkv") else self.ffn[key]

    def groups(self) -> list[str]:
        """Every mask group: the hidden space, each attention block, each FFN layer."""
        return [HIDDEN, *(f"heads:{block}" for block in self.heads), *(f"ffn:{layer}" for layer in self.ffn)]


def describe(model: nn.Module) -> ModelStructure:
    """The `ModelStructure` of a supported model, or ValueError naming what is supported."""
    classes = {type(module).__name__ for module in model.modules()}
    if "GPT2Block" in classes:
        return _gpt2(model)
    if "BertLayer" in classes:
        return _bert(model)
    raise ValueError(
        f"SIMPLE supports BERT-style models (alone or inside an EncoderDecoderModel) and GPT-2; "
        f"got {type(model).__name__}"
    )


def _bert(model: nn.Module) -> ModelStructure:
    configs = [module.config for module in model.modules() if type(module).__name__ == "BertModel"]
    hidden = configs[0].hidden_size
    if any(config.hidden_size != hidden for config in configs):
        raise ValueError("encoder and decoder hidden sizes differ; SIMPLE shares one hidden mask across both")
    head_dim = hidden // configs[0].num_attention_heads
    structure = ModelStructure("bert", [], hidden, head_dim)
    add = structure.modules.append
    for name, module in model.named_modules():
        kind = type(module).__name__
        if kind == "BertEmbeddings":
            for part in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
                if hasattr(module, part):
                    add(ModuleSpaces(f"{name}.{part}", "embedding", None, HIDDEN))
            add(ModuleSpaces(f"{name}.LayerNorm", "norm", HIDDEN, HIDDEN))
        elif kind == "BertAttention":
            block = name
            structure.heads[block] = module.self.num_attention_heads
            heads = f"heads:{block}"
            for part in ("query", "key", "value"):
                add(ModuleSpaces(f"{name}.self.{part}", "linear", HIDDEN, heads))
            add(ModuleSpaces(f"{name}.output.dense", "linear", heads, HIDDEN))
            add(ModuleSpaces(f"{name}.output.LayerNorm", "norm", HIDDEN, HIDDEN))
            structure.kv_modules[block] = (f"{name}.self.key", f"{name}.self.value")
        elif kind == "BertLayer":
            structure.ffn[name] = module.intermediate.dense.out_features
            ffn = f"ffn:{name}"
            add(ModuleSpaces(f"{name}.intermediate.dense", "linear", HIDDEN, ffn))
            add(ModuleSpaces(f"{name}.output.dense", "linear", ffn, HIDDEN))
            add(ModuleSpaces(f"{name}.output.LayerNorm", "norm", HIDDEN, HIDDEN))
            structure.layer_outputs.append(f"{name}.output.LayerNorm")
        elif kind == "BertPooler":
            add(ModuleSpaces(f"{name}.dense", "linear", HIDDEN, HIDDEN))
        elif kind == "BertPredictionHeadTransform":
            add(ModuleSpaces(f"{name}.dense", "linear", HIDDEN, HIDDEN))
            add(ModuleSpaces(f"{name}.LayerNorm", "norm", HIDDEN, HIDDEN))
        elif kind == "BertLMPredictionHead":
            add(ModuleSpaces(f"{name}.decoder", "linear", HIDDEN, None))
    return structure


def _gpt2(model: nn.Module) -> ModelStructure:
    config = next(module.config for module in model.modules() if type(module).__name__ == "GPT2Model")
    if getattr(config, "add_cross_attention", False):
        raise ValueError("GPT-2 with cross-attention is not supported by SIMPLE")
    structure = ModelStructure("gpt2", [], config.n_embd, config.n_embd // config.n_head)
    add = structure.modules.append
    for name, module in model.named_modules():
        kind = type(module).__name__
        if kind == "GPT2Model":
            prefix = f"{name}." if name else ""
            add(ModuleSpaces(f"{prefix}wte", "embedding", None, HIDDEN))
            add(ModuleSpaces(f"{prefix}wpe", "embedding", None, HIDDEN))
            add(ModuleSpaces(f"{prefix}ln_f", "norm", HIDDEN, HIDDEN))
        elif kind == "GPT2Block":
            structure.heads[name] = module.attn.num_heads
            structure.ffn[name] = module.mlp.c_fc.nf
            heads, ffn = f"heads:{name}", f"ffn:{name}"
            add(ModuleSpaces(f"{name}.ln_1", "norm", HIDDEN, HIDDEN))
            add(ModuleSpaces(f"{name}.attn.c_attn", "conv1d", HIDDEN, f"qkv:{name}"))
            add(ModuleSpaces(f"{name}.attn.c_proj", "conv1d", heads, HIDDEN))
            add(ModuleSpaces(f"{name}.ln_2", "norm", HIDDEN, HIDDEN))
            add(ModuleSpaces(f"{name}.mlp.c_fc", "conv1d", HIDDEN, ffn))
            add(ModuleSpaces(f"{name}.mlp.c_proj", "conv1d", ffn, HIDDEN))
            structure.kv_modules[name] = (f"{name}.attn.c_attn", None)
            structure.layer_outputs.append(name)
    if hasattr(model, "lm_head"):
        add(ModuleSpaces("lm_head", "linear", HIDDEN, None))
    return structure

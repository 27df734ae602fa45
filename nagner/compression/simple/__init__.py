"""SIMPLE (Tao et al., Findings of ACL 2023): structured pruning of generative models with learnable
masks over attention heads (encoder self-, decoder self- and cross-attention), FFN neurons and one
hidden dimension shared by the embeddings, every LayerNorm and the residual stream; sparse mask
learning, extraction at a chosen size into a dense model with a standard transformers config, and
fine-tuning with distillation on the kept heads' keys/values and the hidden states.

    pruned, report = prune_with_simple(teacher, batches, reduction=0.48)
    pruned.save_pretrained("pruned")          # AutoModelForCausalLM / AutoModelForSeq2SeqLM load it

Supported: BERT-style encoders/decoders (and `EncoderDecoderModel`s made of them) and GPT-2.
Baselines on the same structures: `magnitude_scores`, `loss_aware_scores`, `movement_scores`.
"""

from nagner.compression.simple.baselines import loss_aware_scores, magnitude_scores, movement_scores
from nagner.compression.simple.extract import extract_pruned
from nagner.compression.simple.masks import StructureMasks, masked_layer_norm, masks_attached
from nagner.compression.simple.outliers import hidden_outliers
from nagner.compression.simple.plan import (
    PrunePlan,
    PruneSizes,
    count_parameters,
    plan_from_scores,
    sizes_for,
    sizes_for_reduction,
)
from nagner.compression.simple.recipe import (
    SimpleOptions,
    distill_finetune,
    extract_at_reduction,
    learn_masks,
    prune_with_simple,
)
from nagner.compression.simple.structure import ModelStructure, ModuleSpaces, describe

__all__ = [
    "ModelStructure",
    "ModuleSpaces",
    "PrunePlan",
    "PruneSizes",
    "SimpleOptions",
    "StructureMasks",
    "count_parameters",
    "describe",
    "distill_finetune",
    "extract_at_reduction",
    "extract_pruned",
    "hidden_outliers",
    "learn_masks",
    "loss_aware_scores",
    "magnitude_scores",
    "masked_layer_norm",
    "masks_attached",
    "movement_scores",
    "plan_from_scores",
    "prune_with_simple",
    "sizes_for",
    "sizes_for_reduction",
]

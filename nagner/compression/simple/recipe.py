"""SIMPLE end to end (Tao et al., Findings ACL 2023): sparse mask learning, thresholded extraction to a
size, and fine-tuning with distillation.

Stage 1 (`learn_masks`): masks start at 1 and train with ``KD(teacher ‖ student) + l1 · Σ|m|``; the
weights train with them ("sparse training": the paper leaves open whether they do; we let them, at a
smaller learning rate). Masks are kept non-negative.
Extraction (`extract_at_reduction`): balanced sizes at the parameter target (`plan.sizes_for_reduction`;
why not the paper's global threshold: see `plan`), each group keeping its largest masks; the masks
fold into the weights. Mask learning moves a mask by at most ``mask_learning_rate × mask_steps``
(Adam), kept below 1 by default so no mask reaches 0 and ranks never tie at 0.
Stage 2 (`distill_finetune`): ``CE + KD + λ1·ℓ_causal + λ2·ℓ_hidden`` against the frozen teacher, where
ℓ_causal is the MSE between the teacher's and the student's keys and values of the kept heads, and
ℓ_hidden the MSE between their layer outputs on the kept hidden dimensions. λ1, λ2, l1, learning
rates and step counts are not given in the paper; ours are `SimpleOptions`' defaults.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nagner.compression.language_modeling import (
    Batch,
    captured_outputs,
    logit_distillation,
    predicted_positions,
    train_steps,
)
from nagner.compression.simple.extract import extract_pruned, space_indices
from nagner.compression.simple.masks import StructureMasks, masks_attached
from nagner.compression.simple.plan import PrunePlan, plan_from_scores, sizes_for_reduction
from nagner.compression.simple.structure import ModelStructure, describe


@dataclass
class SimpleOptions:
    mask_steps: int = 300
    mask_learning_rate: float = 0.002
    weight_learning_rate: float = 2e-5  # weights during mask learning
    l1: float = 5e-5  # per mask entry
    finetune_steps: int = 300
    finetune_learning_rate: float = 1e-4
    causal_weight: float = 1.0  # λ1, keys/values of kept heads
    hidden_weight: float = 1.0  # λ2, layer outputs
    seed: int = 0


def distillation_loss(student: nn.Module, teacher: nn.Module, batch: Batch) -> torch.Tensor:
    """KD(teacher ‖ student) over the predicted tokens (the stage-1 loss ℓ)."""
    with torch.no_grad():
        teacher_logits = teacher(**batch).logits
    student_logits = student(**batch).logits
    return logit_distillation(
        predicted_positions(student, batch, student_logits), predicted_positions(teacher, batch, teacher_logits)
    )


def learn_masks(
    teacher: nn.Module, batches: Sequence[Batch], options: SimpleOptions
) -> tuple[nn.Module, ModelStructure, StructureMasks, list[float]]:
    """Stage 1 on a copy of ``teacher``: (student, its structure, learned masks, losses)."""
    torch.manual_seed(options.seed)
    teacher.eval()
    student = copy.deepcopy(teacher).train()
    structure = describe(student)
    masks = StructureMasks(structure)

    def loss_of(batch: Batch) -> torch.Tensor:
        return distillation_loss(student, teacher, batch) + options.l1 * sum(m.abs().sum() for _, m in masks.items())

    with masks_attached(student, masks):
        losses = train_steps(
            [
                {"params": list(masks.parameters()), "lr": options.mask_learning_rate},
                {"params": list(student.parameters()), "lr": options.weight_learning_rate},
            ],
            batches,
            loss_of,
            steps=options.mask_steps,
            learning_rate=options.mask_learning_rate,
            seed=options.seed,
            after_step=masks.clamp_,
        )
    return student, structure, masks, losses


def mask_scores(masks: StructureMasks) -> dict[str, torch.Tensor]:
    return {group: mask.detach().clone() for group, mask in masks.items()}


def extract_at_reduction(
    student: nn.Module, structure: ModelStructure, masks: StructureMasks, reduction: float
) -> tuple[nn.Module, PrunePlan]:
    """The dense model at the threshold closest to ``reduction`` of the parameters, and its plan."""
    scores = mask_scores(masks)
    sizes = sizes_for_reduction(student, structure, reduction)
    plan = plan_from_scores(structure, scores, sizes)
    folded = copy.deepcopy(masks)
    folded.keep_only_(plan)
    return extract_pruned(student, structure, plan, folded), plan


def _kv_pairs(structure: ModelStructure, plan: PrunePlan, block: str, teacher_out, student_out):
    """[(teacher slice, student tensor)] for the keys and the values of ``block``'s kept heads."""
    key_name, value_name = structure.kv_modules[block]
    kept = space_indices(structure, plan, f"heads:{block}")
    if value_name is not None:  # separate key / value projections
        return [(teacher_out[key_name][..., kept], student_out[key_name]), (teacher_out[value_name][..., kept], student_out[value_name])]
    width = structure.heads[block] * structure.head_dim  # GPT-2: fused [q | k | v]
    student_width = plan.sizes.heads * structure.head_dim
    fused_teacher, fused_student = teacher_out[key_name], student_out[key_name]
    return [
        (fused_teacher[..., part * width + kept], fused_student[..., part * student_width : (part + 1) * student_width])
        for part in (1, 2)
    ]


def distill_finetune(
    student: nn.Module,
    teacher: nn.Module,
    structure: ModelStructure,
    plan: PrunePlan,
    batches: Sequence[Batch],
    options: SimpleOptions,
    *,
    causal_weight: float | None = None,
    hidden_weight: float | None = None,
) -> list[float]:
    """Stage 2: fine-tune the extracted ``student`` in place against the frozen ``teacher``
    (``structure`` and ``plan`` are the teacher's and the extraction's). The weights default to
    ``options``'; 0 switches a term off."""
    causal_weight = options.causal_weight if causal_weight is None else causal_weight
    hidden_weight = options.hidden_weight if hidden_weight is None else hidden_weight
    teacher.eval()
    student.train()
    kv_names = sorted({name for pair in structure.kv_modules.values() for name in pair if name})
    names = kv_names + structure.layer_outputs
    hidden = torch.tensor(plan.hidden, dtype=torch.long)

    with captured_outputs(teacher, names) as teacher_out, captured_outputs(student, names) as student_out:

        def loss_of(batch: Batch) -> torch.Tensor:
            with torch.no_grad():
                teacher_logits = teacher(**batch).logits
            output = student(**batch)
            loss = output.loss + logit_distillation(
                predicted_positions(student, batch, output.logits), predicted_positions(teacher, batch, teacher_logits)
            )
            if causal_weight:
                pairs = [pair for block in structure.kv_modules for pair in _kv_pairs(structure, plan, block, teacher_out, student_out)]
                loss = loss + causal_weight * sum(F.mse_loss(s, t) for t, s in pairs) / len(pairs)
            if hidden_weight:
                terms = [F.mse_loss(student_out[n], teacher_out[n][..., hidden]) for n in structure.layer_outputs]
                loss = loss + hidden_weight * sum(terms) / len(terms)
            return loss

        return train_steps(
            list(student.parameters()), batches, loss_of, steps=options.finetune_steps,
            learning_rate=options.finetune_learning_rate, seed=options.seed,
        )


def prune_with_simple(
    teacher: nn.Module, batches: Sequence[Batch], reduction: float, options: SimpleOptions | None = None
) -> tuple[nn.Module, dict]:
    """Learn masks, extract at ``reduction`` of the parameters, fine-tune with distillation.
    Returns (the pruned model, a report: plan, parameter counts, losses)."""
    from nagner.compression.simple.plan import count_parameters

    options = options or SimpleOptions()
    masked, structure, masks, mask_losses = learn_masks(teacher, batches, options)
    pruned, plan = extract_at_reduction(masked, structure, masks, reduction)
    teacher_structure = describe(teacher)
    finetune_losses = distill_finetune(pruned, teacher, teacher_structure, plan, batches, options)
    full = count_parameters(teacher, teacher_structure)
    kept = count_parameters(teacher, teacher_structure, plan.sizes)
    report = {
        "plan": plan.to_dict(),
        "parameters": {"full": full, "pruned": kept, "reduction": 1 - kept / full},
        "mask_loss": {"first": mask_losses[0], "last": mask_losses[-1]} if mask_losses else {},
        "finetune_loss": {"first": finetune_losses[0], "last": finetune_losses[-1]} if finetune_losses else {},
    }
    return pruned.eval(), report

"""WID (Wu et al., Findings of NAACL 2024): weight-inherited distillation. Every linear layer and the
embeddings of a BERT-style teacher get identity-initialised compactors; norm-based masks grow every
``w_step`` steps while the masked rows and columns are squeezed towards zero; the compactors are then
folded into the teacher's weights, giving a dense, narrower BERT that loads with
``AutoModel.from_pretrained``.

    plan = attach_compactors(teacher, WidConfig(target_hidden=192, target_intermediate=768))
    ... train (MLM or a task loss) with `WidCallback(plan)` ...
    student = convert_to_student(teacher, plan)      # a plain BertModel
"""

from nagner.common.lazy_exports import lazy_exports
from nagner.compression.wid.compactors import CompactedEmbedding, CompactedLinear, MaskedLayerNorm, WidMasks
from nagner.compression.wid.config import WidConfig
from nagner.compression.wid.convert import convert_to_student
from nagner.compression.wid.plan import WidPlan, attach_compactors
from nagner.compression.wid.schedule import masked_counts, squeeze_gradients, update_masks

_LAZY = {  # stand on transformers' Trainer: loaded on first use
    "WidCallback": "nagner.compression.wid.training",
    "squeezed_fraction": "nagner.compression.wid.training",
    "wid_param_groups": "nagner.compression.wid.training",
}
__getattr__ = lazy_exports(__name__, _LAZY)

__all__ = [
    "CompactedEmbedding",
    "CompactedLinear",
    "MaskedLayerNorm",
    "WidCallback",
    "WidConfig",
    "WidMasks",
    "WidPlan",
    "attach_compactors",
    "convert_to_student",
    "masked_counts",
    "squeeze_gradients",
    "squeezed_fraction",
    "update_masks",
    "wid_param_groups",
]

"""`nagner.peft`: plug-and-play adapters for any PyTorch / transformers model.

    attach(model, LoraConfig(r=8, target_modules=["query", "value"]))   # in place, by module names
    ... train ...
    save_adapter(model, "out/adapter")          # adapter_config.json + adapter_model.safetensors
    merge(model); unmerge(model)                # exact round trip
    export_peft_lora(model, "out/lora")         # plain `peft` LoRA folder (peft, vLLM)

This package imports nothing else of the project but its shared helpers (`nagner.common`).
"""

from nagner.common.lazy_exports import lazy_exports
from nagner.peft.adapter import Adapter, AdapterExtras
from nagner.peft.attach import (
    STATE_ATTR,
    active_adapters,
    adapted_layers,
    adapter_config,
    adapter_names,
    adapter_parameters,
    attach,
    auxiliary_loss,
    base_parameter_name,
    base_state_dict,
    detach,
    disable,
    is_adapter_parameter,
    merge,
    merge_and_unload,
    set_active,
    set_trainable,
    unmerge,
)
from nagner.peft.config import AdapterConfig
from nagner.peft.ensemble import (
    cosine_score,
    el2n_score,
    ensemble_init,
    grad_norm_score,
    kl_score,
    load_adapter_bank,
    loss_score,
    parameter_cosine_score,
    softmax_weights,
)
from nagner.peft.layer import AdaptedLayer
from nagner.peft.methods import LoraConfig
from nagner.peft.methods.alora import AloraConfig
from nagner.peft.methods.loretta import LorettaAdpConfig, LorettaRepConfig
from nagner.peft.methods.loretta.tensor_train import TensorTrainLinear
from nagner.peft.methods.milora import MiLoraConfig
from nagner.peft.methods.moslora import MosLoraConfig
from nagner.peft.methods.para import ParaConfig
from nagner.peft.methods.sora import (
    SoraConfig,
    prune_sora,
    soft_threshold,
    sora_param_groups,
    sora_proximal_step,
    sparsity_report,
)
from nagner.peft.mixed_batch import adapter_batch
from nagner.peft.procedures import TrainingContext, training_callbacks
from nagner.peft.prompt import bilevel_parameters, prompt_mask
from nagner.peft.registry import (
    config_class,
    config_from_dict,
    config_from_options,
    load_config,
    method_names,
)
from nagner.peft.serialization import adapter_state_dict, export_peft_lora, load_adapter, save_adapter
from nagner.peft.summary import parameter_counts, summary
from nagner.peft.targets import TargetError, find_targets

# Training-time helpers stand on transformers' Trainer (which pulls in datasets, accelerate, ...):
# they load on first use, so inference with adapters does not pay for those imports.
_LAZY = {
    "AdapterTrainer": "nagner.peft.trainer",
    "AloraCallback": "nagner.peft.methods.alora.allocation",
    "alora_allocation_round": "nagner.peft.methods.alora.allocation",
    "rank_importance": "nagner.peft.methods.alora.allocation",
    "SoraCallback": "nagner.peft.methods.sora.schedule",
    "SparsitySchedule": "nagner.peft.methods.sora.schedule",
}


__getattr__ = lazy_exports(__name__, _LAZY)

__all__ = [
    "active_adapters",
    "adapted_layers",
    "AdaptedLayer",
    "Adapter",
    "adapter_batch",
    "adapter_config",
    "adapter_names",
    "adapter_parameters",
    "adapter_state_dict",
    "AdapterConfig",
    "AdapterExtras",
    "AdapterTrainer",
    "alora_allocation_round",
    "AloraCallback",
    "AloraConfig",
    "attach",
    "auxiliary_loss",
    "base_parameter_name",
    "base_state_dict",
    "bilevel_parameters",
    "config_class",
    "config_from_dict",
    "config_from_options",
    "cosine_score",
    "detach",
    "disable",
    "el2n_score",
    "ensemble_init",
    "export_peft_lora",
    "find_targets",
    "grad_norm_score",
    "is_adapter_parameter",
    "kl_score",
    "load_adapter",
    "load_adapter_bank",
    "load_config",
    "LoraConfig",
    "LorettaAdpConfig",
    "LorettaRepConfig",
    "loss_score",
    "merge",
    "merge_and_unload",
    "method_names",
    "MiLoraConfig",
    "MosLoraConfig",
    "ParaConfig",
    "parameter_cosine_score",
    "parameter_counts",
    "prompt_mask",
    "prune_sora",
    "rank_importance",
    "save_adapter",
    "set_active",
    "set_trainable",
    "soft_threshold",
    "softmax_weights",
    "sora_param_groups",
    "sora_proximal_step",
    "SoraCallback",
    "SoraConfig",
    "sparsity_report",
    "SparsitySchedule",
    "STATE_ATTR",
    "summary",
    "TargetError",
    "TensorTrainLinear",
    "training_callbacks",
    "TrainingContext",
    "unmerge",
]

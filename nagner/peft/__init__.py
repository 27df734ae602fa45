"""`nagner.peft`: plug-and-play adapters for any PyTorch / transformers model.

    attach(model, LoraConfig(r=8, target_modules=["query", "value"]))   # in place, by module names
    ... train ...
    save_adapter(model, "out/adapter")          # adapter_config.json + adapter_model.safetensors
    merge(model); unmerge(model)                # exact round trip
    export_peft_lora(model, "out/lora")         # plain `peft` LoRA folder (peft, vLLM)

This package imports nothing else of the project.
"""

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
    detach,
    disable,
    merge,
    merge_and_unload,
    set_active,
    set_trainable,
    unmerge,
)
from nagner.peft.config import (
    AdapterConfig,
    config_class,
    config_from_dict,
    config_from_options,
    load_config,
    method_names,
)
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
from nagner.peft.prompt import bilevel_parameters, prompt_mask
from nagner.peft.serialization import adapter_state_dict, export_peft_lora, load_adapter, save_adapter
from nagner.peft.summary import parameter_counts, summary
from nagner.peft.targets import TargetError, find_targets
from nagner.peft.tensor_train import TTMatrix

# Training-time helpers stand on transformers' Trainer (which pulls in datasets, accelerate, ...):
# they load on first use, so inference with adapters does not pay for those imports.
_LAZY = {
    "AdapterTrainer": "nagner.peft.trainer",
    "AloraCallback": "nagner.peft.methods.alora_allocation",
    "alora_allocation_round": "nagner.peft.methods.alora_allocation",
    "rank_importance": "nagner.peft.methods.alora_allocation",
    "SoraCallback": "nagner.peft.methods.sora_schedule",
    "SparsitySchedule": "nagner.peft.methods.sora_schedule",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nagner.peft' has no attribute {name!r}")

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
    "TTMatrix",
    "unmerge",
]

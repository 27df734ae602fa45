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
from nagner.peft.config import AdapterConfig, config_class, config_from_dict, load_config, method_names
from nagner.peft.layer import AdaptedLayer
from nagner.peft.methods import LoraConfig
from nagner.peft.mixed_batch import adapter_batch
from nagner.peft.serialization import adapter_state_dict, export_peft_lora, load_adapter, save_adapter
from nagner.peft.summary import parameter_counts, summary
from nagner.peft.targets import TargetError, find_targets

__all__ = [
    "STATE_ATTR",
    "AdaptedLayer",
    "Adapter",
    "AdapterConfig",
    "AdapterExtras",
    "LoraConfig",
    "TargetError",
    "active_adapters",
    "adapted_layers",
    "adapter_batch",
    "adapter_config",
    "adapter_names",
    "adapter_parameters",
    "adapter_state_dict",
    "attach",
    "auxiliary_loss",
    "config_class",
    "config_from_dict",
    "detach",
    "disable",
    "export_peft_lora",
    "find_targets",
    "load_adapter",
    "load_config",
    "merge",
    "merge_and_unload",
    "method_names",
    "parameter_counts",
    "save_adapter",
    "set_active",
    "set_trainable",
    "summary",
    "unmerge",
]

"""Adapter configs: one dataclass per method, saved as ``adapter_config.json``.

Every config names what to adapt (see `nagner.peft.targets`) and how to build its adapter for one
host module. A file written by a newer version may carry keys this version does not know: they are
ignored with a warning instead of failing (a top complaint about `peft`'s configs).
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from torch import nn

    from nagner.peft.adapter import Adapter, AdapterExtras
    from nagner.peft.layer import AdaptedLayer

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"

REGISTERED_METHODS: dict[str, type[AdapterConfig]] = {}


def register_method(config_class: type[AdapterConfig]) -> type[AdapterConfig]:
    """Class decorator: make a config class loadable by its ``method`` name (see
    `nagner.peft.registry`)."""
    REGISTERED_METHODS[config_class.method] = config_class
    return config_class


# peft LoRA options whose set value changes the adapter's computation (DoRA's magnitude vectors,
# extra trained modules, a bias in B, activated LoRA's invocation tokens, Arrow routing, replicated
# layers, block-diagonal LoRA, adapters on parameters, ...): a config that sets one is refused by
# name. Switched off (None, False, empty) they are ordinary keys of every peft file.
UNSUPPORTED_PEFT_OPTIONS = (
    "use_dora", "modules_to_save", "trainable_token_indices", "lora_bias", "use_qalora",
    "alora_invocation_tokens", "arrow_config", "layer_replication", "use_bdlora", "target_parameters",
    "velora_config", "monteclora_config", "kasa_config",
)
# peft keys that do not change what a loaded adapter computes here: bookkeeping, initialisation-only
# settings (the loaded weights replace the init; inits that rewrite base weights are refused through
# init_lora_weights), Megatron parallelism, and fan_in_fan_out (GPT-2 Conv1D layers are handled as
# they are). Only keys outside these, the config's fields and UNSUPPORTED_PEFT_OPTIONS are warned about.
PEFT_INERT_OPTIONS = (
    "auto_mapping", "peft_version", "megatron_config", "megatron_core", "loftq_config", "eva_config",
    "corda_config", "lora_ga_config", "qalora_group_size", "ensure_weight_tying", "fan_in_fan_out",
)


@dataclass
class AdapterConfig:
    """What every adapter config has: where to attach, and the file format.

    Args:
        target_modules: a list (each entry an exact module name or a dotted suffix of one, e.g.
            ``"query"`` or ``"attention.self.query"``), a string (a regular expression that must
            match the whole module name), or ``"all-linear"``. Every list entry must match at least
            one module, or attaching fails with the nearest names.
        exclude_modules: same forms; these are never adapted.
        layers_to_transform: only these layer indices (the number after ``layers_pattern`` in the
            name, e.g. ``encoder.layer.3.…`` → 3); one index may be given as an int.
        layers_pattern: the name part before the layer index (``"layer"``, ``"layers"``, ``"h"``,
            ``"block"``), or a list of such parts; None = the first numbered part of the name.
    """

    method: ClassVar[str] = ""
    peft_type: ClassVar[str] = ""
    peft_native: ClassVar[bool] = False  # `peft` itself reads this method's files (LoRA)
    target_modules: list[str] | str | None = None
    exclude_modules: list[str] | str | None = None
    layers_to_transform: list[int] | int | None = None
    layers_pattern: list[str] | str | None = None

    # ------------------------------------------------------------------ building (per method)
    def build_adapter(self, layer: AdaptedLayer, module_name: str) -> Adapter:
        """The adapter for one host module."""
        raise NotImplementedError

    def build_extras(self, model: nn.Module, layers: dict[str, AdaptedLayer]) -> AdapterExtras | None:
        """Model-level parts shared by the adapters (routers, generators); None for most methods."""
        return None

    # --------------------------------------------------------------------------------- training
    def training_callbacks(self, context: Any, name: str) -> list[Any]:
        """The `TrainerCallback`s this method needs for adapter ``name`` during training, given a
        `nagner.peft.procedures.TrainingContext`; none for most methods."""
        return []

    # ------------------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``peft_type`` (and ``nagner_method`` for methods `peft` lacks), then every field."""
        values = dataclasses.asdict(self)
        if self.peft_native:
            return {"peft_type": self.peft_type, **values}
        return {"peft_type": self.peft_type, "nagner_method": self.method, **values}

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "adapter config") -> AdapterConfig:
        """Build from a dict; keys this version does not know are ignored with a warning."""
        known = {f.name for f in dataclasses.fields(cls) if f.init}
        meta = {"peft_type", "nagner_method", "base_model_name_or_path", "task_type", "revision", "inference_mode"}
        # peft options that change what the weights mean: ignoring them would load a different model.
        changing = [key for key in UNSUPPORTED_PEFT_OPTIONS if values.get(key) and key not in known]
        if changing:
            raise ValueError(
                f"{source}: {', '.join(f'{key}={values[key]!r}' for key in changing)} is not supported by nagner.peft "
                "(the adapter would compute something else than it was trained to)"
            )
        unknown = sorted(set(values) - known - meta - set(PEFT_INERT_OPTIONS) - set(UNSUPPORTED_PEFT_OPTIONS))
        if unknown:
            warnings.warn(
                f"{source}: ignoring keys this version of nagner.peft does not know: {', '.join(unknown)}",
                stacklevel=2,
            )
        return cls(**{k: v for k, v in values.items() if k in known})

    def save(self, directory: str | Path, **extra: Any) -> Path:
        """Write ``adapter_config.json`` into ``directory`` (``extra`` keys are added, e.g. the base model)."""
        path = Path(directory) / CONFIG_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**self.to_dict(), **extra}, indent=2, sort_keys=False) + "\n", encoding="utf-8")
        return path


def dict_field(default: dict | None = None) -> Any:
    """A dataclass field holding a fresh dict."""
    return field(default_factory=lambda: dict(default or {}))

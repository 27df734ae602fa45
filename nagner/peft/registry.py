"""Adapter methods by name: the config class of a method, and configs from saved files, dicts and
command-line options. Importing this module registers the built-in methods."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from nagner.peft import methods  # noqa: F401  (registers the built-in methods)
from nagner.peft.config import CONFIG_FILE, REGISTERED_METHODS, AdapterConfig


def method_names() -> list[str]:
    """Every registered method name (``lora``, ``moslora``, ...)."""
    return sorted(REGISTERED_METHODS)


def config_class(method: str) -> type[AdapterConfig]:
    """The config class of ``method``; ValueError naming the known methods otherwise."""
    if method not in REGISTERED_METHODS:
        raise ValueError(f"unknown adapter method {method!r}; known: {', '.join(sorted(REGISTERED_METHODS))}")
    return REGISTERED_METHODS[method]


def load_config(directory: str | Path) -> AdapterConfig:
    """The config saved in ``directory/adapter_config.json`` (ours, or a plain `peft` LoRA one)."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no adapter config (expected {CONFIG_FILE})")
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error.msg}, line {error.lineno})") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return config_from_dict(values, source=str(path))


def config_from_dict(values: dict[str, Any], source: str = "adapter config") -> AdapterConfig:
    """The config a saved dict describes: ``nagner_method`` names our method; a plain `peft`
    LoRA dict (``peft_type`` "LORA") is a LoRA config."""
    method = values.get("nagner_method")
    if method is None:
        peft_type = values.get("peft_type")
        if peft_type != "LORA":
            raise ValueError(f"{source}: peft_type {peft_type!r} is not supported (LoRA and nagner.peft methods are)")
        method = "lora"
    return config_class(method).from_dict(values, source=source)


def config_from_options(method: str, options: dict[str, Any] | None = None) -> AdapterConfig:
    """The config of ``method`` with ``options`` as given on a command line (``{"r": 16, …}``);
    ``target_modules`` defaults to ``"all-linear"`` where the method has no default of its own.
    ValueError for an unknown method, an unknown field (naming the known ones) or a bad value."""
    cls = config_class(method)
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    options = dict(options or {})
    unknown = sorted(set(options) - fields)
    if unknown:
        raise ValueError(f"{method} has no field {', '.join(unknown)}; fields: {', '.join(sorted(fields))}")
    default_targets = next(f.default for f in dataclasses.fields(cls) if f.name == "target_modules")
    if "target_modules" not in options and default_targets is None:
        options["target_modules"] = "all-linear"
    try:
        return cls(**options)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{method}: {error}") from None

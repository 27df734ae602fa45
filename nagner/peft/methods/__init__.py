"""The built-in adapter methods; importing this package registers them all."""

from nagner.peft.methods import alora, loretta, milora, moslora, para, sora  # noqa: F401  (registration)
from nagner.peft.methods.lora import LoraAdapter, LoraConfig

__all__ = ["LoraAdapter", "LoraConfig"]

"""LoRETTA (Yang et al., NAACL 2024): `adapters` holds the two methods (LoRETTA_rep, LoRETTA_adp)
and their official placements; `tensor_train` the tensor-train linear map they are built from."""

from nagner.peft.methods.loretta.adapters import (
    LorettaAdpAdapter,
    LorettaAdpConfig,
    LorettaRepAdapter,
    LorettaRepConfig,
)
from nagner.peft.methods.loretta.tensor_train import TensorTrainLinear

__all__ = ["LorettaAdpAdapter", "LorettaAdpConfig", "LorettaRepAdapter", "LorettaRepConfig", "TensorTrainLinear"]

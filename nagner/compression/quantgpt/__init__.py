"""QuantGPT (Tao et al., ACL 2022): quantization-aware training of generative models with
module-wise dynamic scaling and token-level contrastive distillation, plus the PACT and min–max
baselines, folding into a plain transformers model, bit accounting, and real int8 CPU inference.

    student, report = quantize_with_qat(teacher, batches, QuantOptions(bits=4))
    fold_quantized(student).save_pretrained("w4")     # a plain model holding 4-bit values
    fast = dynamic_int8(teacher)                      # real int8 linear layers on CPU
"""

from nagner.compression.quantgpt.contrastive import TeacherMemoryBank, token_contrastive_loss
from nagner.compression.quantgpt.int8 import conv1d_as_linear, dynamic_int8
from nagner.compression.quantgpt.modules import (
    QuantizedEmbedding,
    QuantizedLinear,
    fold_quantized,
    quantize_model,
    storage_report,
)
from nagner.compression.quantgpt.quantizers import (
    ActivationQuantizer,
    MinMaxQuantizer,
    ModuleScaledQuantizer,
    PactQuantizer,
    fake_quantize,
    round_ste,
)
from nagner.compression.quantgpt.recipe import QuantOptions, quantize_with_qat

__all__ = [
    "ActivationQuantizer",
    "MinMaxQuantizer",
    "ModuleScaledQuantizer",
    "PactQuantizer",
    "QuantOptions",
    "QuantizedEmbedding",
    "QuantizedLinear",
    "TeacherMemoryBank",
    "conv1d_as_linear",
    "dynamic_int8",
    "fake_quantize",
    "fold_quantized",
    "quantize_model",
    "quantize_with_qat",
    "round_ste",
    "storage_report",
    "token_contrastive_loss",
]

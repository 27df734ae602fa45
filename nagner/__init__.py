"""nagner: NAG-NER, one non-autoregressive model for flat, nested and discontinuous entities.

The top-level names load on first use, so that ``import nagner.peft`` (the adapter library, which
stands on torch and transformers alone) does not load the NER task's data code.
"""

from nagner.common.lazy_exports import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "Entity": "nagner.data.example",
    "Sentence": "nagner.data.example",
    "NagNerInputError": "nagner.errors",
}

__all__ = ["Entity", "Sentence", "NagNerInputError", "__version__"]
__getattr__ = lazy_exports(__name__, _EXPORTS)

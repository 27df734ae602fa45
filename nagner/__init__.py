"""nagner: NAG-NER, one non-autoregressive model for flat, nested and discontinuous entities."""

from nagner.data.example import Entity, Sentence
from nagner.errors import NagNerInputError

__version__ = "0.1.0"

__all__ = ["Entity", "Sentence", "NagNerInputError", "__version__"]

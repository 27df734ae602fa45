"""The NAG-NER model: config, encoder-side detector, slot decoder, set matcher, encoding.

Names load on first use, so that a light part (the torch-only predictor that `nagner.runtime` uses) does not pull in
transformers' modelling stack through this package.
"""

from nagner.common.lazy_exports import lazy_exports

_EXPORTS = {
    "NagNerConfig": "nagner.modeling.configuration",
    "NagNerModel": "nagner.modeling.modeling",
    "NagNerOutput": "nagner.modeling.modeling",
    "NagNerCollator": "nagner.modeling.encoding",
    "encode_sentence": "nagner.modeling.encoding",
    "encode_sentences": "nagner.modeling.encoding",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)

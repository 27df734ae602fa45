"""The NAG-NER model: config, encoder-side detector, slot decoder, set matcher, encoding.

Names load on first use, so that a light part (the exported runtime, `runtime.py`) does not pull in
transformers' modelling stack through this package.
"""

import importlib

_EXPORTS = {
    "NagNerConfig": "nagner.modeling.configuration",
    "NagNerModel": "nagner.modeling.modeling",
    "NagNerOutput": "nagner.modeling.modeling",
    "NagNerCollator": "nagner.modeling.encoding",
    "encode_sentence": "nagner.modeling.encoding",
    "encode_sentences": "nagner.modeling.encoding",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nagner.modeling' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])

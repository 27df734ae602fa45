"""The NAG-NER model: config, encoder-side detector, slot decoder, set matcher, encoding."""

from nagner.modeling.configuration import NagNerConfig
from nagner.modeling.encoding import NagNerCollator, encode_sentence, encode_sentences
from nagner.modeling.modeling import NagNerModel, NagNerOutput

__all__ = ["NagNerConfig", "NagNerModel", "NagNerOutput", "NagNerCollator", "encode_sentence", "encode_sentences"]

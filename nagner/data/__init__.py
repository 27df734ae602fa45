"""Data: the shared sentence/entity representation, readers and writers."""

from nagner.data.brat import read_brat, write_brat
from nagner.data.conll import iter_conll, read_conll, write_conll
from nagner.data.example import Entity, Sentence, entity_kind
from nagner.data.hub import load_hub_dataset, sentences_from_hf_dataset
from nagner.data.jsonl import entity_record, iter_jsonl, read_jsonl, write_jsonl
from nagner.data.loading import read_sentences
from nagner.data.tags import spans_to_tags, tags_to_spans
from nagner.data.text import join_sentences, sentence_from_text, text_sentences, tokenize, with_offsets
from nagner.data.w2ner import iter_w2ner, read_w2ner, write_w2ner

__all__ = [
    "Entity",
    "Sentence",
    "entity_kind",
    "entity_record",
    "iter_conll",
    "iter_jsonl",
    "iter_w2ner",
    "join_sentences",
    "load_hub_dataset",
    "read_brat",
    "read_conll",
    "read_jsonl",
    "read_sentences",
    "read_w2ner",
    "sentence_from_text",
    "sentences_from_hf_dataset",
    "spans_to_tags",
    "tags_to_spans",
    "text_sentences",
    "tokenize",
    "with_offsets",
    "write_brat",
    "write_conll",
    "write_jsonl",
    "write_w2ner",
]

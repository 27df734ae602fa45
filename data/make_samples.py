"""Write the small invented sample corpora of this folder (deterministic: fixed seed).

    PYTHONPATH=. python data/make_samples.py [OUT_DIR]   # or after `pip install -e .`

Every sentence comes from a template filled from short lists of invented or common names,
so entity boundaries are perfectly regular and a tiny model can learn them. See README.md.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from nagner.data import Entity, Sentence, spans_to_tags, write_jsonl, write_w2ner

SEED = 2024
N_SENTENCES = 300
N_JSONL = 50

PEOPLE = ["Anna Berg", "Tom Hale", "Maria Costa", "John Reed", "Lena Vogt", "Omar Haddad", "Kofi Mensah",
          "Yuki Sato", "Elena Petrova", "David Klein", "Sara Lind", "Paul Moreau", "Nina Kowalski", "Ravi Nair"]
CITIES = ["Paris", "Berlin", "Lisbon", "Nairobi", "Toronto", "Osaka", "Oslo", "Madrid", "Dublin", "Lima",
          "Cairo", "Quito", "Vienna", "Perth"]
PLACES = CITIES + ["New York", "Buenos Aires", "Cape Town", "Hong Kong"]
COMPANIES = ["Acme Corp", "Northwind Bank", "Blue River Foods", "Globex", "Union Rail", "Helios Energy",
             "Summit Books", "Red Oak Group", "Vantor Labs", "Kestrel Air"]
NATIONALITIES = ["German", "French", "Japanese", "Brazilian", "Kenyan", "Canadian", "Spanish", "Irish"]
EVENTS = ["World Cup", "Olympic Games", "Nobel Prize", "Tour de France", "Golden Globe"]

SYMPTOMS = ["pain", "stiffness", "swelling", "soreness", "cramps", "numbness"]
SIDED_PARTS = ["knee", "shoulder", "hip", "ankle", "elbow", "wrist", "foot", "hand"]
PARTS = ["legs", "arms", "neck", "back", "shoulders", "hands", "feet", "joints"]
REACTIONS = ["headache", "nausea", "dizziness", "fatigue", "insomnia", "muscle cramps", "dry mouth",
             "blurred vision", "stomach upset", "hair loss", "skin rash", "weight gain"]
DRUGS = ["Zentrax", "Calmorin", "Ostavil", "Neproxa", "Duvalin", "Pirexol"]

POS = {
    "works": "VBZ", "for": "IN", "in": "IN", "visited": "VBD", "on": "IN", "Monday": "NNP", "opened": "VBD",
    "a": "DT", "new": "JJ", "office": "NN", "The": "DT", "the": "DT", "delegation": "NN", "arrived": "VBD",
    "said": "VBD", "will": "MD", "hire": "VB", "more": "JJR", "staff": "NN", "Shares": "NNS", "of": "IN",
    "rose": "VBD", "3": "CD", "percent": "NN", "won": "VBD", "last": "JJ", "year": "NN", "It": "PRP",
    "rained": "VBD", "all": "DT", "day": "NN", "met": "VBD", "fans": "NNS", "celebrated": "VBD",
    "bought": "VBD", "shares": "NNS", ".": ".", ",": ",", "and": "CC",
}
CHUNK = {"NNP": "NP", "NN": "NP", "NNS": "NP", "JJ": "NP", "JJR": "NP", "DT": "NP", "CD": "NP", "PRP": "NP",
         "VBZ": "VP", "VBD": "VP", "VB": "VP", "MD": "VP", "IN": "PP"}

# A template is a list of words and slots; a slot is (TYPE, choices) or, for nested /
# discontinuous templates, a function that returns (words, entities relative to the slot).
FLAT_TEMPLATES = [
    "{PER} works for {ORG} in {LOC} .",
    "{PER} visited {LOC} on Monday .",
    "{ORG} opened a new office in {LOC} .",
    "The {NAT} delegation arrived in {LOC} .",
    "{PER} said {ORG} will hire more staff .",
    "Shares of {ORG} rose 3 percent .",
    "{PER} won the {EVENT} last year .",
    "It rained all day .",
    "{PER} met {PER} in {LOC} .",
    "{NAT} fans celebrated the {EVENT} in {LOC} .",
    "{ORG} bought shares of {ORG} .",
]
FLAT_SLOTS = {"PER": ("PER", PEOPLE), "LOC": ("LOC", PLACES), "ORG": ("ORG", COMPANIES),
              "NAT": ("MISC", NATIONALITIES), "EVENT": ("MISC", EVENTS)}

Example = tuple[list[str], list[tuple[str, tuple[int, ...]]]]  # words, (type, indices)


def fill(template: str, rng: random.Random, slots: dict) -> Example:
    """Words and entities of a template whose ``{SLOT}`` words name ``slots`` entries."""
    words: list[str] = []
    entities: list[tuple[str, tuple[int, ...]]] = []
    for token in template.split():
        if not token.startswith("{"):
            words.append(token)
            continue
        slot = slots[token[1:-1]]
        if callable(slot):
            part_words, part_entities = slot(rng)
        else:
            type_, choices = slot
            part_words = rng.choice(choices).split()
            part_entities = [(type_, tuple(range(len(part_words))))]
        base = len(words)
        words += part_words
        entities += [(type_, tuple(base + i for i in indices)) for type_, indices in part_entities]
    return words, entities


def nested_org(rng: random.Random) -> Example:
    """An organisation with a place or person inside: [ORG University of [LOC Paris]]."""
    city, person = rng.choice(CITIES), rng.choice(PEOPLE).split()
    pattern = rng.randrange(4)
    if pattern == 0:
        return ["University", "of", city], [("ORG", (0, 1, 2)), ("LOC", (2,))]
    if pattern == 1:
        return ["Bank", "of", city], [("ORG", (0, 1, 2)), ("LOC", (2,))]
    if pattern == 2:
        return [city, "City", "Council"], [("ORG", (0, 1, 2)), ("LOC", (0,))]
    return [*person, "Foundation"], [("ORG", (0, 1, 2)), ("PER", (0, 1))]


NESTED_TEMPLATES = [
    "{PER} studied at the {NORG} .",
    "{PER} works for the {NORG} in {LOC} .",
    "The {NORG} announced a new plan .",
    "{PER} moved to {LOC} last year .",
    "A spokesperson for the {NORG} declined to comment .",
    "{ORG} signed a deal with the {NORG} .",
    "The weather was mild .",
]
NESTED_SLOTS = {"PER": ("PER", PEOPLE), "LOC": ("LOC", PLACES), "ORG": ("ORG", COMPANIES), "NORG": nested_org}


def both_sides(rng: random.Random) -> Example:
    """pain in my left and right knee: two overlapping discontinuous ADRs."""
    symptom, part = rng.choice(SYMPTOMS), rng.choice(SIDED_PARTS)
    words = [symptom, "in", "my", "left", "and", "right", part]
    return words, [("ADR", (0, 1, 2, 3, 6)), ("ADR", (0, 1, 2, 5, 6))]


def two_parts(rng: random.Random) -> Example:
    """stiffness in my neck and back: a contiguous ADR and a discontinuous one sharing words."""
    symptom = rng.choice(SYMPTOMS)
    first, second = rng.sample(PARTS, 2)
    return [symptom, "in", "my", first, "and", second], [("ADR", (0, 1, 2, 3)), ("ADR", (0, 1, 2, 5))]


def two_symptoms(rng: random.Random) -> Example:
    """pain and swelling in my feet: a discontinuous ADR and a contiguous one sharing words."""
    first, second = rng.sample(SYMPTOMS, 2)
    part = rng.choice(PARTS)
    return [first, "and", second, "in", "my", part], [("ADR", (0, 3, 4, 5)), ("ADR", (2, 3, 4, 5))]


DISCONTINUOUS_TEMPLATES = [
    "After taking {DRUG} I had {ADR} and {ADR} .",
    "{DRUG} gave me {ADR} .",
    "I had {SIDES} after two weeks on {DRUG} .",
    "Since starting {DRUG} I have {PARTS} .",
    "{SYMPTOMS} began a week after {DRUG} .",
    "{DRUG} works well for me .",
    "No side effects so far with {DRUG} .",
]
DISCONTINUOUS_SLOTS = {"DRUG": (None, DRUGS), "ADR": ("ADR", REACTIONS), "SIDES": both_sides,
                       "PARTS": two_parts, "SYMPTOMS": two_symptoms}


def drop_untyped(example: Example) -> Example:
    words, entities = example
    return words, [(type_, indices) for type_, indices in entities if type_ is not None]


def capitalised(example: Example) -> Example:
    words, entities = example
    return [words[0][:1].upper() + words[0][1:], *words[1:]], entities


def generate(templates: list[str], slots: dict, n: int, rng: random.Random) -> list[Example]:
    """``n`` examples, cycling through the templates so every pattern is well represented."""
    return [capitalised(drop_untyped(fill(templates[i % len(templates)], rng, slots))) for i in range(n)]


def outer_and_inner(entities: list[tuple[str, tuple[int, ...]]]) -> tuple[list, list]:
    """Spans of the entities not inside another one, and of those inside one."""
    spans = [(type_, indices[0], indices[-1] + 1) for type_, indices in entities]
    inner = [s for s in spans if any(o != s and o[1] <= s[1] and s[2] <= o[2] for o in spans)]
    return [s for s in spans if s not in inner], inner


def write_flat_conll(examples: list[Example], path: Path) -> None:
    """CoNLL-2003 layout: word POS chunk NER (IOB2)."""
    blocks = []
    for words, entities in examples:
        spans = [(type_, indices[0], indices[-1] + 1) for type_, indices in entities]
        tags = spans_to_tags(spans, len(words))
        entity_words = {i for _, indices in entities for i in indices}
        pos = [("JJ" if words[i] in NATIONALITIES else "NNP") if i in entity_words else POS[words[i]]
               for i in range(len(words))]
        chunks, previous = [], None
        for p in pos:
            phrase = CHUNK.get(p)
            chunks.append("O" if phrase is None else ("I-" if phrase == previous else "B-") + phrase)
            previous = phrase
        blocks.append("".join(f"{w} {p} {c} {t}\n" for w, p, c, t in zip(words, pos, chunks, tags, strict=True)))
    path.write_text("\n".join(blocks), encoding="utf-8")


def write_nested_iob2(examples: list[Example], path: Path) -> None:
    """GermEval 2014 layout: word<TAB>outer<TAB>inner (IOB2)."""
    blocks = []
    for words, entities in examples:
        outer, inner = outer_and_inner(entities)
        columns = zip(words, spans_to_tags(outer, len(words)), spans_to_tags(inner, len(words)), strict=True)
        blocks.append("".join(f"{w}\t{o}\t{i}\n" for w, o, i in columns))
    path.write_text("\n".join(blocks), encoding="utf-8")


def as_sentence(example: Example) -> Sentence:
    words, entities = example
    return Sentence(words=words, entities=[Entity(type_, indices) for type_, indices in entities])


def with_natural_text(sentence: Sentence) -> Sentence:
    """Text with no space before punctuation, and the matching word offsets."""
    text, offsets = "", []
    for word in sentence.words:
        if text and word not in ".,":
            text += " "
        offsets.append((len(text), len(text) + len(word)))
        text += word
    return Sentence(sentence.words, sentence.entities, text=text, offsets=offsets)


def main(out_dir: Path) -> None:
    """Write the four sample files into ``out_dir``."""
    rng = random.Random(SEED)
    flat = generate(FLAT_TEMPLATES, FLAT_SLOTS, N_SENTENCES, rng)
    nested = generate(NESTED_TEMPLATES, NESTED_SLOTS, N_SENTENCES, rng)
    discontinuous = generate(DISCONTINUOUS_TEMPLATES, DISCONTINUOUS_SLOTS, N_SENTENCES, rng)
    write_flat_conll(flat, out_dir / "sample_flat.conll")
    write_nested_iob2(nested, out_dir / "sample_nested.iob2")
    write_w2ner([as_sentence(e) for e in discontinuous], out_dir / "sample_discontinuous.json")
    mixed = [example for i in range(N_JSONL) for example in [(flat, nested, discontinuous)[i % 3][i]]]
    write_jsonl([with_natural_text(as_sentence(e)) for e in mixed], out_dir / "sample.jsonl")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent)

"""Show prediction records as HTML (notebooks) or plain text (terminals).

A record is what `NagNerModel.predict` returns and ``nagner predict`` writes:
``{"text": ..., "entities": [{"type", "text", "spans": [[start, end], ...], "score"?}]}`` with
character spans; a `Sentence` is first turned into one with :func:`sentence_record`.

Entities are numbered 1, 2, ... in the order of the record. A discontinuous entity (several spans)
is labelled ``TYPE#n`` on every one of its fragments, so fragments that belong together can be told
apart from a second entity of the same type; a contiguous entity is labelled ``TYPE``.

HTML: every fragment is one ``<span class="nagner-entity">`` with a coloured border (one colour per
type), ``data-entity`` (the entity's number), ``data-type`` and ``data-depth`` (how many entity
spans enclose it), nested inside the spans of the entities that contain it. Two fragments that
cross without one containing the other cannot both be one element; the later one is then cut at
the crossing into pieces (the same entity number and colour; only the first piece is labelled).
"""

from __future__ import annotations

import heapq
import html
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nagner.data.example import Sentence
from nagner.data.jsonl import sentence_record

Record = Mapping[str, Any] | Sentence

# Colours that stay readable on light and dark notebook themes; types take them in order of appearance.
PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324", "#808000")


@dataclass
class _Fragment:
    """One character span of an entity (or a piece of one, when cut at a crossing)."""

    start: int
    end: int
    entity: int  # 0-based position of the entity in the record
    first_piece: bool = True
    children: list[_Fragment] = field(default_factory=list)

    def height(self) -> int:
        """Levels of entity spans nested inside this one (0 for a span without nested spans)."""
        return 1 + max((child.height() for child in self.children), default=-1)


def _as_record(record: Record) -> Mapping[str, Any]:
    """The ``{"text", "entities"}`` record of a record or a Sentence; ValueError for a malformed one."""
    if isinstance(record, Sentence):
        record = sentence_record(record)
    if not isinstance(record, Mapping) or not isinstance(record.get("text"), str):
        raise ValueError("a record must be a Sentence or a dict with 'text' (a string) and 'entities'")
    text = record["text"]
    for number, entity in enumerate(record.get("entities", []), start=1):
        spans = entity.get("spans") if isinstance(entity, Mapping) else None
        if not isinstance(entity, Mapping) or not isinstance(entity.get("type"), str) or not spans:
            raise ValueError(f"entity {number} must have a 'type' and a non-empty list of 'spans'")
        for span in spans:
            if len(span) != 2 or not 0 <= span[0] < span[1] <= len(text):
                raise ValueError(
                    f"entity {number}: span {list(span)} must satisfy 0 <= start < end <= {len(text)} (text length)"
                )
    return record


def _as_records(record_or_records: Record | Iterable[Record]) -> list[Mapping[str, Any]]:
    if isinstance(record_or_records, (Mapping, Sentence)):
        return [_as_record(record_or_records)]
    return [_as_record(record) for record in record_or_records]


def entity_label(record: Mapping[str, Any], index: int) -> str:
    """``TYPE`` of a contiguous entity, ``TYPE#n`` (n = its 1-based number in the record) of a discontinuous one."""
    entity = record["entities"][index]
    return f"{entity['type']}#{index + 1}" if len(entity["spans"]) > 1 else entity["type"]


def _fragment_tree(record: Mapping[str, Any]) -> list[_Fragment]:
    """The record's fragments as a forest in which every fragment contains its children.

    Fragments are taken by (start, longest first, record order); a fragment that starts inside
    an open one but ends after it is cut at that end, and the rest is queued as a new piece.
    """
    fragments = [
        _Fragment(start, end, index)
        for index, entity in enumerate(record.get("entities", []))
        for start, end in sorted(entity["spans"])
    ]
    ticket = itertools.count()  # a unique last key, so two _Fragment objects are never compared
    queue = [(f.start, -f.end, f.entity, next(ticket), f) for f in fragments]
    heapq.heapify(queue)
    roots: list[_Fragment] = []
    open_: list[_Fragment] = []  # the chain of fragments enclosing the current position, outermost first
    while queue:
        *_, fragment = heapq.heappop(queue)
        while open_ and open_[-1].end <= fragment.start:
            open_.pop()
        if open_ and open_[-1].end < fragment.end:
            cut = open_[-1].end
            rest = _Fragment(cut, fragment.end, fragment.entity, first_piece=False)
            heapq.heappush(queue, (rest.start, -rest.end, rest.entity, next(ticket), rest))
            fragment.end = cut
        (open_[-1].children if open_ else roots).append(fragment)
        open_.append(fragment)
    return roots


def _type_colours(records: list[Mapping[str, Any]], colours: dict[str, str] | None = None) -> dict[str, str]:
    """Colours of the records' types in order of first appearance; ``colours`` (extended in
    place) holds the types seen before, so a page written record by record stays consistent."""
    colours = {} if colours is None else colours
    for record in records:
        for entity in record.get("entities", []):
            colours.setdefault(entity["type"], PALETTE[len(colours) % len(PALETTE)])
    return colours


def _render_fragment(
    record: Mapping[str, Any], fragment: _Fragment, depth: int, colours: dict[str, str]
) -> str:
    entity = record["entities"][fragment.entity]
    label = entity_label(record, fragment.entity)
    colour = colours[entity["type"]]
    text = record["text"]
    title = f"{label}: " + " … ".join(text[start:end] for start, end in entity["spans"])
    if entity.get("score") is not None:
        title += f" (score {entity['score']:.3f})"
    inner = _render_span(record, fragment.children, fragment.start, fragment.end, depth + 1, colours)
    if fragment.first_piece:
        inner += (
            f'<span class="nagner-label" style="font-size:0.7em;font-weight:bold;color:{colour};'
            f'margin-left:0.25em">{html.escape(label)}</span>'
        )
    pad = 0.15 + 0.25 * fragment.height()  # an enclosing span is taller, so every border shows
    return (
        f'<span class="nagner-entity" data-entity="{fragment.entity + 1}" data-type="{html.escape(entity["type"])}" '
        f'data-depth="{depth}" title="{html.escape(title)}" style="border:2px solid {colour};'
        f'border-radius:0.3em;padding:{pad:.2f}em 0.15em;background:{colour}14">{inner}</span>'
    )


def _render_span(
    record: Mapping[str, Any],
    fragments: list[_Fragment],
    start: int,
    end: int,
    depth: int,
    colours: dict[str, str],
) -> str:
    """Text ``[start, end)`` of the record with ``fragments`` (sorted, disjoint) as entity spans."""
    text = record["text"]
    parts, position = [], start
    for fragment in fragments:
        parts.append(html.escape(text[position : fragment.start]))
        parts.append(_render_fragment(record, fragment, depth, colours))
        position = fragment.end
    parts.append(html.escape(text[position:end]))
    return "".join(parts)


def render_html(record_or_records: Record | Iterable[Record]) -> str:
    """HTML of one record (or Sentence) or several: each record's text with its entities as nested, bordered spans.

    Nested entities show as boxes inside boxes; every fragment of a discontinuous entity carries the
    same colour and ``TYPE#n`` label. Text, types and labels are HTML-escaped. Display it in a
    notebook with ``IPython.display.HTML(render_html(records))``. Raises ValueError for a record
    without text or with a span outside its text.
    """
    records = _as_records(record_or_records)
    colours = _type_colours(records)
    return '<div class="nagner-viz">' + "".join(_record_html(record, colours) for record in records) + "</div>"


def _record_html(record: Mapping[str, Any], colours: dict[str, str]) -> str:
    """One record as a ``<div class="nagner-record">``; ``colours`` must hold every type of it."""
    roots = _fragment_tree(record)
    levels = max((root.height() + 1 for root in roots), default=0)
    body = _render_span(record, roots, 0, len(record["text"]), 0, colours)
    return (
        f'<div class="nagner-record" style="line-height:{1.6 + 0.6 * levels:.1f};margin:0.4em 0;'
        f'white-space:pre-wrap">{body}</div>'
    )


class TextWriter:
    """Records as :func:`render_text` draws them (the text, then ``^^^ TYPE`` under each entity),
    a blank line between records: for reading predictions in a terminal. A text of several
    sentences (a record with ``"sentences"``) is drawn sentence by sentence."""

    def __init__(self, out: Any):
        self.out = out
        self.count = 0

    def write(self, record: Record) -> None:
        """Write one record (a Sentence or a ``{"text", "entities"}`` dict)."""
        record = _as_record(record)
        parts = [record]
        if len(record.get("sentences") or []) > 1:
            parts = [_sentence_part(record, start, end) for start, end in record["sentences"]]
        self.out.write(("\n" if self.count else "") + render_text(parts) + "\n")
        self.count += 1


def _sentence_part(record: Mapping[str, Any], start: int, end: int) -> dict[str, Any]:
    """The part ``[start, end)`` of a record's text with the entities inside it, spans shifted."""
    entities = [
        {**entity, "spans": [[a - start, b - start] for a, b in entity["spans"]]}
        for entity in record.get("entities", [])
        if all(start <= a and b <= end for a, b in entity["spans"])
    ]
    return {"text": record["text"][start:end], "entities": entities}


_PAGE_HEAD = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60em; margin: 2em auto; padding: 0 1em; color: #222; }}
.nagner-record {{ border-bottom: 1px solid #eee; padding: 0.3em 0; }}
.nagner-line {{ color: #999; font-size: 0.75em; margin-top: 0.6em; }}
.nagner-legend span {{ display: inline-block; margin-right: 1em; }}
</style>
</head>
<body>
<h1>{title}</h1>
<p>Nested entities are boxes inside boxes; the fragments of a discontinuous entity share a colour and
a <b>TYPE#n</b> label. Hover over an entity for its text and score.</p>
"""


class HtmlPageWriter:
    """A self-contained HTML page (no scripts, no outside files) of prediction records, written as
    they come: the head at the first record, a ``<div>`` per record, a legend of the entity types
    and the closing tags at :meth:`close`. Types take colours in order of first appearance."""

    def __init__(self, out: Any, title: str = "nagner predictions"):
        self.out = out
        self.title = title
        self.colours: dict[str, str] = {}
        self.count = 0

    def write(self, record: Record) -> None:
        """Write one record (a Sentence or a ``{"text", "entities"}`` dict)."""
        if self.count == 0:
            self.out.write(_PAGE_HEAD.format(title=html.escape(self.title)))
        record = _as_record(record)
        _type_colours([record], self.colours)
        self.count += 1
        self.out.write(f'<div class="nagner-line">{self.count}</div>\n' + _record_html(record, self.colours) + "\n")

    def close(self) -> None:
        """Write the legend and the end of the page (the head too, when no record came)."""
        if self.count == 0:
            self.out.write(_PAGE_HEAD.format(title=html.escape(self.title)))
        legend = "".join(
            f'<span style="border:2px solid {colour};border-radius:0.3em;padding:0 0.3em">{html.escape(type_)}</span>'
            for type_, colour in self.colours.items()
        )
        self.out.write(f'<p class="nagner-legend">{self.count} records. Types: {legend or "none found"}</p>\n')
        self.out.write("</body>\n</html>\n")


def render_text(record_or_records: Record | Iterable[Record]) -> str:
    """Plain text of one record (or Sentence) or several, for terminals.

    The text on one line (newlines and tabs shown as spaces), then one line per entity in record
    order with ``^`` under each character of its fragments, a space and its label. Several records
    are separated by a blank line. Alignment assumes one terminal column per character.
    """
    blocks = []
    for record in _as_records(record_or_records):
        text = record["text"]
        lines = [text.replace("\r", " ").replace("\n", " ").replace("\t", " ")]
        for index, entity in enumerate(record.get("entities", [])):
            marks = [" "] * max(end for _, end in entity["spans"])
            for start, end in entity["spans"]:
                marks[start:end] = "^" * (end - start)
            lines.append("".join(marks) + " " + entity_label(record, index))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)

"""Tag sequences (IOB1 / IOB2 / BIOES) to entity spans and back."""

from __future__ import annotations

SCHEMES = ("auto", "iob1", "iob2", "bioes")
BILOU_PREFIXES = {"L": "E", "U": "S"}


def parse_tag(tag: str) -> tuple[str, str]:
    """Split a tag into ``(prefix, type)``: ``"O"`` → ``("O", "")``, ``"B-PER"`` → ``("B", "PER")``.

    Raises ValueError naming the tag when it is not O / B-X / I-X / E-X / S-X.
    BILOU's L- and U- (spaCy's scheme) read as E- and S-.
    """
    if tag == "O":
        return "O", ""
    prefix, dash, type_ = tag.partition("-")
    prefix = BILOU_PREFIXES.get(prefix, prefix)
    if dash and prefix in ("B", "I", "E", "S") and type_:
        return prefix, type_
    raise ValueError(f"unknown tag {tag!r} (expected O, B-X, I-X, E-X or S-X; L-X and U-X for BILOU)")


def tags_to_spans(tags: list[str], scheme: str = "auto") -> list[tuple[str, int, int]]:
    """Entities of a tag sequence as ``(type, start, end)`` with ``end`` exclusive.

    ``scheme``: "iob1" / "iob2" use one tolerant chunker (an I- after O or after another type
    starts an entity, so both schemes read right); "bioes" also understands E- and S-;
    "auto" picks "bioes" when an E- or S- tag is present. Unknown tags raise ValueError.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown tagging scheme {scheme!r}; expected one of {', '.join(SCHEMES)}")
    parsed = [parse_tag(tag) for tag in tags]
    has_bioes = any(prefix in ("E", "S") for prefix, _ in parsed)
    if scheme in ("iob1", "iob2") and has_bioes:
        bad = next(tag for tag, (prefix, _) in zip(tags, parsed, strict=True) if prefix in ("E", "S"))
        raise ValueError(f"tag {bad!r} is not valid in the {scheme.upper()} scheme")

    spans: list[tuple[str, int, int]] = []
    current: tuple[str, int] | None = None  # (type, start) of the open entity

    def close(end: int) -> None:
        nonlocal current
        if current is not None:
            spans.append((current[0], current[1], end))
            current = None

    for i, (prefix, type_) in enumerate(parsed):
        if prefix == "O":
            close(i)
        elif prefix in ("B", "S"):
            close(i)
            current = (type_, i)
        else:  # I or E: continue an open entity of the same type, else start one (tolerant)
            if current is None or current[0] != type_:
                close(i)
                current = (type_, i)
        if prefix in ("S", "E"):
            close(i + 1)
    close(len(parsed))
    return spans


def spans_to_tags(spans: list[tuple[str, int, int]], n: int, scheme: str = "iob2") -> list[str]:
    """Tags for ``n`` words from non-overlapping ``(type, start, end)`` spans, in "iob2" or "bioes".

    Raises ValueError for overlapping or out-of-range spans.
    """
    if scheme not in ("iob2", "bioes"):
        raise ValueError(f"can only write 'iob2' or 'bioes' tags, not {scheme!r}")
    tags = ["O"] * n
    for type_, start, end in sorted(spans, key=lambda span: (span[1], span[2])):
        if not 0 <= start < end <= n:
            raise ValueError(f"span ({type_!r}, {start}, {end}) is outside a sentence of {n} words")
        if any(tag != "O" for tag in tags[start:end]):
            raise ValueError(f"span ({type_!r}, {start}, {end}) overlaps another span")
        if scheme == "bioes" and end - start == 1:
            tags[start] = f"S-{type_}"
            continue
        tags[start] = f"B-{type_}"
        for i in range(start + 1, end):
            tags[i] = f"I-{type_}"
        if scheme == "bioes":
            tags[end - 1] = f"E-{type_}"
    return tags

"""Where a NAG-NER model loses the gold entities of each kind (contiguous / discontinuous), slot by slot.

    python bench/beam_diagnosis.py MODEL_DIR [--data ../shared/data/cadec/dev.json] [--limit 1000]

Each gold entity the model does not find falls in the first class that applies:
- start not detected: the detector's start probability is at or below the model's threshold;
- not in any beam: no slot opened at its start word has the gold span among its beam sequences;
- in the beam, another sequence chosen: a slot's beam holds it at rank r, the slot took another;
- chosen, then dropped: a slot took it, and it was typed NONE or scored under the threshold.
For gold spans in a beam, the count of those the span terms alone call NONE (P > 0.5) is given
too: the beam choice reads exactly that probability (`NagNerPredictor.decode`). The model's own
decoding settings are used (``--beam`` overrides its beam width). Use dev or train data: this is
a design tool, not a score.
"""

from __future__ import annotations

import argparse
import random
from collections import Counter
from pathlib import Path

import torch

from nagner.checkpoint import load_checkpoint
from nagner.data import read_sentences
from nagner.modeling.inference import encoded_batches
from nagner.modeling.slots import Slots, inference_slot_counts
from nagner.modeling.targets import pointers_to_indices

REPO = Path(__file__).resolve().parents[1]
CLASSES = (
    "found", "start not detected", "not in any beam", "in the beam, another sequence chosen",
    "chosen, then dropped", "in a beam, span terms say NONE",
)


def diagnose(model, sentences, beam_size: int) -> Counter:
    """Counter over (kind, class) of every gold entity of ``sentences`` (first window of each)."""
    c = model.config
    counts: Counter = Counter()
    K = beam_size
    with torch.no_grad():
        for batch in encoded_batches(model, sentences, 64):
            words, word_mask, detection = batch.words, batch.word_mask, batch.detection
            found = model.decode(words, word_mask, detection, beam_size=K)
            slots = Slots.from_counts(inference_slot_counts(detection.start_logits, detection.count_logits, word_mask, c))
            if len(slots):
                pointer_logits, _ = model._run_decoder(words, word_mask, detection, slots)
                candidates, log_prob, span_logits, choice = model.choose_from_beams(
                    words, detection, slots, pointer_logits, word_mask.sum(-1)[slots.batch], K, c.end_bias
                )  # what decode does: (S, K, L), (S, K), (S, K, T + 1) or None, (S,)
                p_none = torch.zeros(log_prob.shape) if span_logits is None else span_logits.softmax(-1)[..., 0]
            slot_at: dict[tuple[int, int], list[int]] = {}
            for s, (b, w) in enumerate(zip(slots.batch.tolist(), slots.word.tolist())):
                slot_at.setdefault((b, w), []).append(s)
            for row, feature in enumerate(batch.features):
                if feature["word_offset"] != 0:
                    continue  # long sentences: their first window only
                got = {indices for _, indices, _ in found[row]}
                n_words = len(feature["word_first"])
                for entity in sentences[feature["sentence_index"]].entities:
                    indices = tuple(entity.indices)
                    if indices[-1] >= n_words:
                        continue
                    kind = "discontinuous" if indices[-1] - indices[0] + 1 > len(indices) else "contiguous"
                    counts[kind, "gold"] += 1
                    if indices in got:
                        counts[kind, "found"] += 1
                        continue
                    if float(detection.start_logits[row, indices[0]].sigmoid()) <= c.start_threshold:
                        counts[kind, "start not detected"] += 1
                        continue
                    where = [
                        (s, k) for s in slot_at.get((row, indices[0]), []) for k in range(K)
                        if torch.isfinite(log_prob[s, k])
                        and pointers_to_indices(indices[0], candidates[s, k].tolist()) == indices
                    ]
                    if not where:
                        counts[kind, "not in any beam"] += 1
                        continue
                    s, k = where[0]
                    counts[kind, "in a beam, span terms say NONE"] += int(p_none[s, k] > 0.5)
                    if int(choice[s]) != k:
                        counts[kind, "in the beam, another sequence chosen"] += 1
                    else:
                        counts[kind, "chosen, then dropped"] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a saved NAG-NER model folder")
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "cadec" / "dev.json"))
    parser.add_argument("--limit", type=int, default=1000, help="a seeded sample of this many sentences (as bench/accuracy.py's dev subset)")
    parser.add_argument("--beam", type=int, default=None, help="beam width (default: the model's)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sentences = read_sentences(args.data)
    if args.limit < len(sentences):
        sentences = random.Random(42).sample(sentences, args.limit)
    model = load_checkpoint(args.model).eval()
    beam = args.beam or model.config.beam_size
    counts = diagnose(model, sentences, beam)
    kinds = [k for k in ("contiguous", "discontinuous") if counts[k, "gold"]]
    print(f"{len(sentences)} sentences of {args.data}; beam {beam}, start threshold {model.config.start_threshold:g}\n")
    print("| gold entity | " + " | ".join(kinds) + " |")
    print("|---|" + "---|" * len(kinds))
    print("| gold | " + " | ".join(str(counts[k, "gold"]) for k in kinds) + " |")
    for name in CLASSES:
        print(f"| {name} | " + " | ".join(str(counts[k, name]) for k in kinds) + " |")


if __name__ == "__main__":
    main()

"""The sentence extractor on StrategyQA's gold evidence: does lexical reranking pick the sentence of
the right step's paragraph more often than the embedding cosine alone?

    python bench/extraction.py --threads 2

For every decomposition step with cited paragraphs (in the derived evidence file), one extraction
request: the gold step as the sub-question, and as passages *all* cited paragraphs of its question
(the other steps' paragraphs are the distractors, as related and as topical as a retriever's). A
request is a hit when the chosen sentence belongs to one of the paragraphs cited for that step;
the token F1 of the chosen sentence against the question's closest gold fact is reported beside it.
The reranking weight λ is chosen on the first ``--train-questions`` questions of train.json (by
hits), then every λ is reported on dev (229 questions), with the paired difference of the chosen λ
against the cosine (McNemar, exact). AddDecomp's hint is not measured: there is no core model here
to write one, and the gold fact would be a leak.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "strategyqa"
WEIGHTS = (0.0, 0.1, 0.2, 0.4, 0.8)
_TOKEN = re.compile(r"[a-z0-9]+")


def token_f1(a: str, b: str) -> float:
    x, y = Counter(_TOKEN.findall(a.lower())), Counter(_TOKEN.findall(b.lower()))
    common = sum((x & y).values())
    if not common:
        return 0.0
    precision, recall = common / sum(x.values()), common / sum(y.values())
    return 2 * precision * recall / (precision + recall)


def requests_of(questions, paragraphs):
    """(request, sentences of the step's own paragraphs, the question's facts) per usable step."""
    from knowledge_qa.corpus import Passage
    from knowledge_qa.extraction import ExtractionRequest, split_sentences
    from knowledge_qa.strategyqa import step_evidence_ids

    out = []
    for question in questions:
        steps = step_evidence_ids(question)
        cited = sorted({pid for ids in steps for pid in ids if pid in paragraphs})
        passages = [Passage(pid, paragraphs[pid]["title"], " ".join(paragraphs[pid]["sentences"])) for pid in cited]
        for text, ids in zip(question.decomposition, steps):
            own = [pid for pid in ids if pid in paragraphs]
            if not own or len(cited) < 2:  # nothing to find, or nothing to confuse it with
                continue
            gold = {s for pid in own for s in split_sentences(" ".join(paragraphs[pid]["sentences"]))}
            out.append((ExtractionRequest(text, "", passages), gold, question.facts))
    return out


class CachedEncoder:
    """The sentence encoder with every text encoded once (the same sentences come back for each
    step of a question and for each λ)."""

    def __init__(self, encoder):
        self.encoder, self.cache = encoder, {}

    def encode(self, texts):
        import numpy as np

        missing = list(dict.fromkeys(t for t in texts if t not in self.cache))
        if missing:
            self.cache.update(zip(missing, self.encoder.encode(missing)))
        return np.stack([self.cache[t] for t in texts])


def score(extractor, requests) -> tuple[list[bool], list[float]]:
    chosen = extractor.extract([r for r, _, _ in requests])
    hits = [fact in gold for fact, (_, gold, _) in zip(chosen, requests)]
    f1 = [max((token_f1(fact, f) for f in facts), default=0.0) for fact, (_, _, facts) in zip(chosen, requests)]
    return hits, f1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-questions", type=int, default=400)
    args = parser.parse_args()
    import torch

    from knowledge_qa.extraction import SentenceExtractor
    from knowledge_qa.retrieval.dense import SentenceEncoder
    from knowledge_qa.significance import paired_comparison, wilson_interval
    from knowledge_qa.strategyqa import read_questions

    torch.set_num_threads(args.threads)
    paragraphs = json.loads((DATA / "derived" / "strategyqa_evidence_sentences.json").read_text(encoding="utf-8"))
    train = requests_of(read_questions(DATA / "train.json")[: args.train_questions], paragraphs)
    dev = requests_of(read_questions(DATA / "dev.json"), paragraphs)
    encoder = CachedEncoder(SentenceEncoder())
    results = {}
    for weight in WEIGHTS:
        extractor = SentenceExtractor(encoder, lexical_weight=weight)
        results[weight] = {"train": score(extractor, train), "dev": score(extractor, dev)}
    chosen = max(WEIGHTS, key=lambda w: (sum(results[w]["train"][0]), -w))
    print(f"{len(train)} train requests (first {args.train_questions} questions), {len(dev)} dev requests; "
          f"λ chosen on train: {chosen:g}\n")
    print("| λ (lexical weight) | train hits | dev hits | dev 95 % CI | dev token F1 to the closest fact | dev: λ − cosine (95 % CI) | McNemar p |")
    print("|---|---|---|---|---|---|---|")
    base = results[0.0]["dev"][0]
    for weight in WEIGHTS:
        (train_hits, _), (dev_hits, dev_f1) = results[weight]["train"], results[weight]["dev"]
        low, high = wilson_interval(sum(dev_hits), len(dev_hits))
        if weight:
            c = paired_comparison(dev_hits, base)
            paired = f"{100 * c.difference:+.2f} ({100 * c.low:+.1f}, {100 * c.high:+.1f}) | {c.p_value:.3f}"
        else:
            paired = "– | –"
        mark = " (chosen)" if weight == chosen else ""
        print(f"| {weight:g}{mark} | {100 * sum(train_hits) / len(train_hits):.2f} | {100 * sum(dev_hits) / len(dev_hits):.2f} | "
              f"{100 * low:.1f}–{100 * high:.1f} | {100 * sum(dev_f1) / len(dev_f1):.2f} | {paired} |")


if __name__ == "__main__":
    main()

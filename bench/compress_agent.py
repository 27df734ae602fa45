"""The GEEK agent's core model compressed with `knowledge-qa compress` (SIMPLE pruning, QuantGPT and
min–max quantization, pruning + quantization), then run in the agent on StrategyQA dev.

    python bench/compress_agent.py            # after bench/knowledge_qa_strategyqa.py trained the models

* Teacher: the core model bench/knowledge_qa_strategyqa.py trained (bench/out/qa/model/core: the
  MiniLM-warm-started encoder-decoder plus its LoRA adapter, merged here).
* Training data: the core model's examples of StrategyQA train (near-duplicates of dev removed, a seeded
  sample of ``--max-examples``), encoded as `knowledge-qa train` encodes them; a tenth (at most 200)
  held out to score the teacher and every compressed model (teacher-forced loss).
* Agent: the recorded CPU set-up — dense index, sentence extractor, the MiniLM yes/no answerer
  (bench/out/qa/answerer/answerer) — with each core model in turn; the rows "GEEK (full)" and the paper's
  path (the core model answers). bench/knowledge_qa_strategyqa.py runs it, one folder per core model
  (corpus and index linked from bench/out/qa, so they are the same files).
* Latency: greedy decoding of AddDecomp plans (48 new tokens) for dev questions, batch 1 and 8,
  2 threads, systems interleaved, median over ``--latency-rounds``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "strategyqa"
QA = (REPO / "bench" / "out" / "qa").resolve()  # a link in a worktree: name the files by their real path


def configs(args):
    return [
        ("SIMPLE 48%", dict(method="simple", reduction=0.48), None),
        ("QuantGPT W4", dict(method="quantgpt", bits=4), None),
        ("min-max W4", dict(method="minmax", bits=4), None),
        ("SIMPLE 48% + QuantGPT W4", dict(method="quantgpt", bits=4), "SIMPLE 48%"),
    ]


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def compress_all(args) -> dict:
    from knowledge_qa.training.compression import CompressionRecipe, compress_agent_model

    reports = {}
    for name, settings, source in configs(args):
        folder = args.out / slug(name)
        if not (folder / "compression.json").is_file():
            model = str(args.out / slug(source)) if source else args.core
            recipe = CompressionRecipe(
                model=model, questions=str(DATA / "train.json"), output=str(folder), steps=args.steps,
                mask_steps=args.mask_steps, batch_size=args.batch_size, max_examples=args.max_examples,
                held_out=[str(DATA / "dev.json")], seed=args.seed, **settings,
            )
            start = time.time()
            compress_agent_model(recipe)
            print(f"{name}: {time.time() - start:.0f}s", flush=True)
        reports[name] = json.loads((folder / "compression.json").read_text())
    return reports


def load_merged(folder: str):
    """The `TransformersModel` of ``folder`` on the CPU, an adapter it carries merged into the weights."""
    from knowledge_qa.models.transformers_model import TransformersModel
    from nagner.peft import merge_and_unload
    from nagner.peft.attach import peft_state

    loaded = TransformersModel.from_pretrained(folder, device="cpu")
    if peft_state(loaded.model) is not None:
        loaded.model = merge_and_unload(loaded.model).eval()
    return loaded


def compression_against_teacher(reports: dict, args) -> dict[str, float]:
    """Each row's compression in bits against the fp32 teacher, embeddings included: 32 bits per
    teacher parameter over the row's bits (a quantized row's `storage_report` count, which already
    holds its own pruning; a pruned row: 32 bits per parameter it keeps). Parameters are counted
    once each, as `storage_report` counts them (tied tables once)."""

    def unique_parameters(folder: str) -> int:
        model = load_merged(folder).model  # the teacher folder holds an adapter: count the merged model
        return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())

    teacher_bits = 32 * unique_parameters(args.core)
    ratios = {}
    for name, report in reports.items():
        bits = report["storage"]["bits"] if "storage" in report else 32 * unique_parameters(str(args.out / slug(name)))
        ratios[name] = teacher_bits / bits
    return ratios


def agent_accuracy(core: str, name: str, args) -> dict:
    folder = args.out / f"agent-{slug(name)}"
    folder.mkdir(parents=True, exist_ok=True)
    for item in ("corpus.jsonl", "index-dense"):
        link = folder / item
        if not link.exists():
            os.symlink(QA / item, link)
    if name == "teacher":  # the recorded run's traces of these two rows: the same computation, resumed
        for trace in QA.glob("traces-geek-full-*.jsonl"):
            copy = folder / trace.name
            if not copy.exists():
                copy.write_text(trace.read_text())
                settings = json.loads(Path(f"{trace}.settings.json").read_text())
                settings["index"] = str(folder / "index-dense")
                Path(f"{copy}.settings.json").write_text(json.dumps(settings, indent=1, sort_keys=True))
    results = folder / "qa-strategyqa.json"
    if not results.is_file():
        command = [sys.executable, str(REPO / "bench" / "knowledge_qa_strategyqa.py"), "--core", core, "--sentence-extractor",
                   "--answerer", str(QA / "answerer" / "answerer"), "--recall-kinds", "", "--out", str(folder),
                   "--variants", "GEEK (full),GEEK (full) with the core model answering (the paper's path)"]
        subprocess.run(command, check=True, cwd=REPO)
    return json.loads(results.read_text())


@torch.no_grad()
def latency(systems: dict, questions: list[str], rounds: int, new_tokens: int = 48) -> dict:
    """Seconds per greedy generate() of exactly ``new_tokens`` tokens (no early stop, so every system
    decodes the same length), batch 1 and 8, systems interleaved."""
    from knowledge_qa.prompts import decompose_prompt, render_state

    torch.set_num_threads(2)
    prompts = [str(decompose_prompt(render_state(" ".join(q.split()), []))) for q in questions]
    times = {(name, size): [] for name in systems for size in (1, 8)}
    for round_index in range(rounds + 1):
        for name, wrapped in systems.items():
            for size in (1, 8):
                inputs = wrapped.encode_prompts(prompts[:size])
                start = time.perf_counter()
                wrapped.model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                                       num_beams=1, pad_token_id=wrapped.tokenizer.pad_token_id)
                if round_index:  # round 0 warms up
                    times[(name, size)].append(time.perf_counter() - start)
    return {f"{name} @ batch {size}": {"median": statistics.median(v), "min": min(v), "max": max(v)}
            for (name, size), v in times.items()}


def measure_latency(args) -> dict:
    from knowledge_qa.models.transformers_model import TransformersModel
    from knowledge_qa.strategyqa import read_questions
    from nagner.compression.quantgpt import dynamic_int8

    teacher = load_merged(args.core)
    pruned = TransformersModel.from_pretrained(str(args.out / slug("SIMPLE 48%")), device="cpu")
    systems = {
        "teacher fp32": teacher,
        "SIMPLE 48%": pruned,
        "teacher int8 (torch.ao)": TransformersModel(dynamic_int8(teacher.model), teacher.tokenizer),
        "SIMPLE 48% int8 (torch.ao)": TransformersModel(dynamic_int8(pruned.model), pruned.tokenizer),
    }
    dev = [q.question for q in read_questions(DATA / "dev.json")[:8]]
    return latency(systems, dev, args.latency_rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--core", default=str(QA / "model" / "core"))
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "qa-compressed")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--mask-steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-examples", type=int, default=2000)
    parser.add_argument("--latency-rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-agent", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--agent-rows", default="teacher,SIMPLE 48%,QuantGPT W4,min-max W4,SIMPLE 48% + QuantGPT W4",
                        help="the core models to run in the agent (comma-separated names)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for compression (latency always uses 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    reports = compress_all(args)
    accuracy = {}
    if not args.skip_agent:
        for name in args.agent_rows.split(","):
            core = args.core if name == "teacher" else str(args.out / slug(name))
            accuracy[name] = agent_accuracy(core, name, args)
    timing = {} if args.skip_latency else measure_latency(args)
    against_teacher = compression_against_teacher(reports, args)
    summary = {"compression": reports, "compression_against_teacher": against_teacher,
               "agent": {k: v["results"] for k, v in accuracy.items()}, "latency": timing}
    name = "results.json" if not (args.skip_agent or args.skip_latency) else "results-partial.json"
    (args.out / name).write_text(json.dumps(summary, indent=1))
    print(json.dumps({"agent": summary["agent"], "latency": timing}, indent=1))
    for name, report in reports.items():
        print(name, f"{against_teacher[name]:.2f}x the fp32 teacher's bits",
              json.dumps({k: report.get(k) for k in ("parameters", "storage", "teacher_loss", "compressed_loss")}))


if __name__ == "__main__":
    main()

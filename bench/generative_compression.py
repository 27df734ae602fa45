"""SIMPLE structured pruning and QuantGPT quantization of a small GPT-2 trained here, or of the
MiniLM-warm-started encoder-decoder, against their baselines, in one run (2-core CPU).

    python bench/generative_compression.py --out bench/out/gencomp                      # causal LM
    python bench/generative_compression.py --model seq2seq --out bench/out/gencomp-seq2seq \
        --teacher-steps 500 --teacher-lr 1e-4 --batch-size 16 --mask-steps 100 --finetune-steps 100 \
        --finetune-lr 1e-4 --finetune-batch-size 8 --score-batches 32 --skip quantization outliers \
        --latency-rounds 3                                                          # seq2seq

``--model gpt2`` (causal LM):
* Data: CoNLL-2003 sentences as plain text (words joined by spaces, one sentence per example, an
  end-of-text token after each). Training: eng.train; every reported perplexity: eng.testb
  (3,453 sentences), never seen in training.
* Tokenizer: byte-level BPE (HF `tokenizers`), ``--vocab`` entries, trained on eng.train.
* Teacher: a small GPT-2 (``--hidden`` 256, ``--layers`` 4, heads of 32, FFN 4×), trained from
  scratch for ``--teacher-steps`` batches of 32 (AdamW, linear decay).

``--model seq2seq`` (entity-list generation):
* Task: a CoNLL-2003 sentence in, its entities out as ``text type ; text type ; …`` in sentence
  order (types spelt out: person, organisation, location, miscellaneous; nothing for a sentence
  without entities). Training: eng.train; perplexity on all of eng.testb, entity F1 (exact text
  and type, micro over entities) of greedy decoding on its first ``--task-sentences``.
* Teacher: the bert2bert model `knowledge_qa` warm-starts from all-MiniLM-L6-v2 (its tokenizer;
  cross-attention new), fine-tuned for ``--teacher-steps`` batches of ``--batch-size``.

Both:
* Pruning, at each ``--reductions`` share of the teacher's parameters (embeddings included), every
  method at the *same* shape (`plan.sizes_for_reduction`, so parameter counts are equal):
  - SIMPLE: masks learned once (``--mask-steps``, weights training with them), extracted at each
    budget (balanced sizes: the same share of the hidden size and the FFN width), fine-tuned ``--finetune-steps`` with CE + KD + key/value + hidden distillation;
  - SIMPLE without its distillation terms (CE + KD only): an ablation row;
  - magnitude, loss-aware (first-order Taylor over ``--score-batches`` batches) and movement
    (accumulated over ``--mask-steps`` fine-tuning steps, the same as SIMPLE's mask learning) pruning
    of the same structures, each fine-tuned ``--finetune-steps`` with CE + KD.
* Quantization of the teacher at W8/W4/W2, A8 (simulated, fake-quant): min–max (post-training),
  PACT (QAT, KD), QuantGPT without the contrastive term, QuantGPT (QAT, KD + token contrastive), all
  ``--qat-steps``; one clip per weight tensor, or per output channel with ``--granularity channel``
  (results file ``…-per-channel.json``). Then SIMPLE at the largest reduction combined with QuantGPT
  (compression in bits).
* Real int8 (`torch.ao` dynamic int8 linear layers): perplexity, bytes, latency.
* Latency: greedy decoding of exactly 32 new tokens after 8-token prompts from eng.testb (seq2seq:
  16 new tokens for whole test sentences), batch 1 and 8, 2 threads, systems interleaved round by round, median and spread over ``--latency-rounds``.
* Outliers: per hidden dimension, the largest |activation| of every layer output over 512 test
  sentences, for this GPT-2 and for the pretrained all-MiniLM-L6-v2.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
import warnings
from collections import Counter
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
)
from transformers.utils import logging as transformers_logging

from nagner.compression.language_modeling import language_model_loss, make_batches, train_steps
from nagner.compression.quantgpt import QuantOptions, dynamic_int8, quantize_with_qat
from nagner.compression.simple import (
    SimpleOptions,
    count_parameters,
    describe,
    distill_finetune,
    extract_pruned,
    hidden_outliers,
    learn_masks,
    loss_aware_scores,
    magnitude_scores,
    movement_scores,
    plan_from_scores,
    sizes_for_reduction,
)
from nagner.compression.simple.recipe import mask_scores
from nagner.data import read_sentences

transformers_logging.disable_progress_bar()
# EncoderDecoderModel warns on every forward with labels that it builds the decoder inputs itself.
warnings.filterwarnings("ignore", message="Version v4.12.0 introduces", category=FutureWarning)

EOS, PAD = "<|endoftext|>", "<pad>"
TYPE_WORDS = {"PER": "person", "ORG": "organisation", "LOC": "location", "MISC": "miscellaneous"}
SEPARATOR = " ; "
# the quantization rows: (name, QuantOptions overrides); the method is the name's first word
QUANT_ARMS = [("minmax", {}), ("pact", {}), ("quantgpt (no contrastive)", {"contrastive_weight": 0.0}), ("quantgpt", {})]


def clip_rates(text: str) -> tuple[str, list[float]]:
    """An argparse type: ``pact=RATE[,RATE…]`` or ``quantgpt=RATE[,RATE…]`` → (method, rates)."""
    method, _, rates = text.partition("=")
    try:
        values = [float(rate) for rate in rates.split(",")] if rates else []
    except ValueError:
        values = []
    if method not in ("pact", "quantgpt") or not values:
        raise argparse.ArgumentTypeError(f"expected pact=RATE,… or quantgpt=RATE,…, got {text!r}")
    return method, values


def conll_sentences(path: str):
    return [s for s in read_sentences(path) if s.words and s.words[0] != "-DOCSTART-"]


def sentences(path: str) -> list[str]:
    return [" ".join(s.words) + EOS for s in conll_sentences(path)]


def entity_pairs(path: str) -> list[tuple[str, str]]:
    """(sentence, its entities as ``text type ; …`` in sentence order) for every sentence of ``path``."""
    pairs = []
    for sentence in conll_sentences(path):
        entities = sorted(sentence.entities, key=lambda e: e.indices)
        target = SEPARATOR.join(" ".join(sentence.words[i] for i in e.indices) + " " + TYPE_WORDS[e.type] for e in entities)
        pairs.append((" ".join(sentence.words), target))
    return pairs


def parse_entities(text: str) -> Counter:
    """The (text, type) multiset of an entity list; an item without a known type word is kept as
    typed ``None`` (it counts as a false positive)."""
    found = Counter()
    for item in text.split(";"):
        words = item.split()
        if words:
            typed = words[-1] in TYPE_WORDS.values()
            found[(" ".join(words[:-1] if typed else words), words[-1] if typed else None)] += 1
    return found


@torch.no_grad()
def entity_f1(model, tokenizer, pairs: list[tuple[str, str]], *, batch_size: int = 64, max_new_tokens: int = 64) -> dict:
    """Micro F1 of greedy-decoded entity lists against the gold ones. The gold list goes through the
    tokenizer and back, so both sides are spelt as the (uncased) tokenizer spells them."""
    model.eval()
    true_positives = predicted = gold = 0
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        inputs = tokenizer([source for source, _ in chunk], padding=True, truncation=True, max_length=128, return_tensors="pt")
        outputs = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1)
        for output, (_, target) in zip(outputs, chunk, strict=True):
            found = parse_entities(tokenizer.decode(output, skip_special_tokens=True))
            expected = parse_entities(tokenizer.decode(tokenizer(target)["input_ids"], skip_special_tokens=True))
            true_positives += sum((found & expected).values())
            predicted += sum(found.values())
            gold += sum(expected.values())
    precision = true_positives / max(predicted, 1)
    recall = true_positives / max(gold, 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    return {"precision": 100 * precision, "recall": 100 * recall, "f1": 100 * f1, "sentences": len(pairs)}


def build_tokenizer(texts: list[str], vocab: int, folder: Path) -> PreTrainedTokenizerFast:
    if not (folder / "tokenizer.json").is_file():
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=[EOS, PAD], initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tokenizer.train_from_iterator([t.removesuffix(EOS) for t in texts], trainer)
        fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOS, bos_token=EOS, pad_token=PAD)
        fast.save_pretrained(folder)
    return PreTrainedTokenizerFast.from_pretrained(folder)


def train_teacher(args, tokenizer, batches, folder: Path, loader):
    """The teacher saved in ``folder`` (loaded with ``loader``); trained there first if it is not: the
    GPT-2 from scratch, the seq2seq model from its warm start in ``folder``/start."""
    if (folder / "config.json").is_file():
        return loader.from_pretrained(folder).eval()
    if args.model == "gpt2":
        torch.manual_seed(args.seed)
        config = GPT2Config(
            vocab_size=len(tokenizer), n_positions=128, n_embd=args.hidden, n_layer=args.layers, n_head=args.hidden // 32,
            n_inner=4 * args.hidden, bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        model = GPT2LMHeadModel(config)
    else:
        model = loader.from_pretrained(folder / "start")
    model.train()
    start = time.time()
    losses = train_steps(list(model.parameters()), batches, lambda b: model(**b).loss, steps=args.teacher_steps,
                         learning_rate=args.teacher_lr, seed=args.seed)
    print(f"teacher: {args.teacher_steps} steps in {time.time() - start:.0f}s, last loss {statistics.mean(losses[-50:]):.3f}", flush=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model.eval()


@torch.no_grad()
def greedy_latency(systems: dict, prompts: list[dict], rounds: int, new_tokens: int, pad_id: int) -> dict:
    """Median and spread (min–max) seconds per generate() call (``prompts``: model inputs), per
    system, interleaved."""
    torch.set_num_threads(2)
    times = {name: [] for name in systems}
    for round_index in range(rounds + 1):
        for name, model in systems.items():
            for prompt in prompts:
                start = time.perf_counter()
                model.generate(**prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                               num_beams=1, pad_token_id=pad_id)
                if round_index:  # round 0 warms up
                    times[name].append(time.perf_counter() - start)
    return {name: {"median": statistics.median(v), "min": min(v), "max": max(v)} for name, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["gpt2", "seq2seq"], default="gpt2",
                        help="a small GPT-2 trained here, or the MiniLM-warm-started encoder-decoder (entity lists)")
    parser.add_argument("--out", default="bench/out/gencomp")
    parser.add_argument("--data", default="../shared/data/conll2003")
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--teacher-steps", type=int, default=1200)
    parser.add_argument("--teacher-lr", type=float, default=6e-4)
    parser.add_argument("--mask-steps", type=int, default=200)
    parser.add_argument("--l1", type=float, default=5e-5)
    parser.add_argument("--score-batches", type=int, default=32)
    parser.add_argument("--finetune-steps", type=int, default=200)
    parser.add_argument("--finetune-lr", type=float, default=3e-4)
    parser.add_argument("--qat-steps", type=int, default=200)
    parser.add_argument("--reductions", type=float, nargs="+", default=[0.26, 0.48, 0.67])
    parser.add_argument("--bits", type=int, nargs="+", default=[8, 4, 2])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--latency-rounds", type=int, default=5)
    parser.add_argument("--latency-prompts", type=int, default=4)
    parser.add_argument("--test-limit", type=int, default=None)
    parser.add_argument("--task-sentences", type=int, default=1000, help="seq2seq: test sentences decoded for entity F1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads for training (latency always uses 2)")
    parser.add_argument("--finetune-batch-size", type=int, default=16, help="batch size of mask learning, fine-tuning and QAT")
    parser.add_argument("--granularity", choices=["tensor", "channel"], default="tensor",
                        help="quantization clips: one per weight tensor (QuantGPT's module-wise) or one per output channel")
    parser.add_argument("--clip-lr", type=clip_rates, nargs="*", default=[], metavar="METHOD=RATE",
                        help="clip learning rate per learned quantizer, e.g. pact=1e-2 quantgpt=3e-2 (chosen on dev by "
                        "bench/quant_clip_lr.py; default QuantOptions' 1e-3 for both)")
    parser.add_argument("--quant-methods", nargs="+", default=[name for name, _ in QUANT_ARMS],
                        choices=[name for name, _ in QUANT_ARMS], metavar="METHOD",
                        help=f"quantization rows to run (default all: {', '.join(name for name, _ in QUANT_ARMS)})")
    parser.add_argument("--skip", nargs="*", default=[], choices=["pruning", "quantization", "combined", "latency", "outliers"],
                        help="phases to skip; combined: the SIMPLE + QuantGPT and real int8 rows of the quantization phase")
    args = parser.parse_args()
    if any(len(rates) != 1 for _, rates in args.clip_lr):
        parser.error("--clip-lr takes one rate per method (METHOD=RATE)")
    clip_rate = {method: rates[0] for method, rates in args.clip_lr}
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {"args": vars(args), "torch": torch.__version__}

    if args.model == "gpt2":
        train_texts = sentences(f"{args.data}/eng.train")
        test_texts = sentences(f"{args.data}/eng.testb")[: args.test_limit]
        tokenizer = build_tokenizer(train_texts, args.vocab, out / "tokenizer")
        loader = AutoModelForCausalLM
    else:
        from knowledge_qa.training.warm_start import build_warm_started_seq2seq

        train_texts = entity_pairs(f"{args.data}/eng.train")
        test_texts = entity_pairs(f"{args.data}/eng.testb")[: args.test_limit]
        if not (out / "teacher" / "start" / "config.json").is_file():
            build_warm_started_seq2seq(None, out / "teacher" / "start", seed=args.seed)
        tokenizer = AutoTokenizer.from_pretrained(out / "teacher" / "start")
        loader = AutoModelForSeq2SeqLM
    train = make_batches(tokenizer, train_texts, batch_size=args.batch_size, max_length=64)
    compress_train = make_batches(tokenizer, train_texts, batch_size=args.finetune_batch_size, max_length=64)
    test = make_batches(tokenizer, test_texts, batch_size=64, max_length=64)
    teacher = train_teacher(args, tokenizer, train, out / "teacher", loader)
    for p in teacher.parameters():
        p.requires_grad_(False)

    def task_metric(model) -> dict:
        """Test perplexity, and for seq2seq the entity F1 of greedy decoding."""
        metric = {"test_perplexity": language_model_loss(model, test)["perplexity"]}
        if args.model == "seq2seq":
            metric["entity"] = entity_f1(model, tokenizer, test_texts[: args.task_sentences])
        return metric

    structure = describe(teacher)
    full_params = count_parameters(teacher, structure)
    teacher_metric = task_metric(teacher)
    results["teacher"] = {"parameters": full_params, "parameters_no_embeddings": count_parameters(teacher, structure, embeddings=False),
                          **teacher_metric}
    print(f"teacher: {full_params} parameters, {json.dumps(teacher_metric)}", flush=True)
    pruned_models: dict[float, torch.nn.Module] = {}

    if "pruning" not in args.skip:
        options = SimpleOptions(mask_steps=args.mask_steps, l1=args.l1, finetune_steps=args.finetune_steps,
                                finetune_learning_rate=args.finetune_lr, seed=args.seed)
        start = time.time()
        masked, masked_structure, masks, _ = learn_masks(teacher, compress_train, options)
        scores = {"simple": mask_scores(masks)}
        print(f"SIMPLE masks: {time.time() - start:.0f}s", flush=True)
        loss_of = lambda model, batch: model(**batch).loss  # noqa: E731
        scores["magnitude"] = magnitude_scores(teacher, structure)
        scores["loss-aware"] = loss_aware_scores(teacher, structure, compress_train[: args.score_batches], loss_of)
        moved = copy.deepcopy(teacher)
        for p in moved.parameters():
            p.requires_grad_(True)
        scores["movement"] = movement_scores(moved, structure, compress_train, loss_of, steps=args.mask_steps,
                                             learning_rate=args.finetune_lr, seed=args.seed)
        sources = {"simple": masked, "simple (CE+KD only)": masked, "magnitude": teacher, "loss-aware": teacher, "movement": moved}
        rows = []
        for reduction in args.reductions:
            sizes = sizes_for_reduction(teacher, structure, reduction)
            kept = count_parameters(teacher, structure, sizes)
            for method, source in sources.items():
                score = scores["simple" if method.startswith("simple") else method]
                plan = plan_from_scores(structure, score, sizes)
                fold = None
                if method.startswith("simple"):
                    fold = copy.deepcopy(masks)
                    fold.keep_only_(plan)
                student = extract_pruned(source, structure, plan, fold)
                for p in student.parameters():
                    p.requires_grad_(True)
                before = language_model_loss(student, test)["perplexity"]
                extra = {} if method == "simple" else {"causal_weight": 0.0, "hidden_weight": 0.0}
                distill_finetune(student, teacher, structure, plan, compress_train, options, **extra)
                rows.append({"method": method, "target_reduction": reduction, "reduction": 1 - kept / full_params,
                             "parameters": kept, "sizes": vars(sizes), "perplexity_before_finetune": before,
                             **task_metric(student)})
                print(json.dumps(rows[-1]), flush=True)
                if method == "simple":
                    pruned_models[reduction] = student.eval()
                    student.save_pretrained(out / f"simple-{round(100 * reduction)}")
        results["pruning"] = rows

    def load_saved_pruned() -> None:
        """Without a pruning phase in this run, the SIMPLE models an earlier run saved."""
        for reduction in args.reductions:
            folder = out / f"simple-{round(100 * reduction)}"
            if reduction not in pruned_models and (folder / "config.json").is_file():
                pruned_models[reduction] = loader.from_pretrained(folder).eval()

    def quant_options(method: str, bits: int, **extra) -> QuantOptions:
        if method in clip_rate:
            extra = {"clip_learning_rate": clip_rate[method], **extra}
        return QuantOptions(method=method, bits=bits, steps=args.qat_steps, granularity=args.granularity, seed=args.seed, **extra)

    if "quantization" not in args.skip:
        load_saved_pruned()
        rows = []
        arms = [(name, extra) for name, extra in QUANT_ARMS if name in args.quant_methods]
        for bits in args.bits:
            for name, extra in arms:
                method = name.split(" ")[0]
                start = time.time()
                student, report = quantize_with_qat(teacher, compress_train, quant_options(method, bits, **extra))
                rows.append({"method": name, "bits": bits, **task_metric(student), "seconds": time.time() - start,
                             "compression": report["storage"]["compression"],
                             "compression_no_embeddings": report["storage"]["compression_no_embeddings"]})
                print(json.dumps(rows[-1]), flush=True)
        if "combined" not in args.skip:
            for reduction, pruned in sorted(pruned_models.items())[-1:]:
                for bits in (4, 2):
                    student, report = quantize_with_qat(pruned, compress_train, quant_options("quantgpt", bits))
                    ratio = 32 * full_params / report["storage"]["bits"]
                    rows.append({"method": f"SIMPLE {reduction:.0%} + quantgpt", "bits": bits, **task_metric(student),
                                 "compression": ratio, "compression_no_embeddings": None})
                    print(json.dumps(rows[-1]), flush=True)
            int8 = dynamic_int8(teacher)
            rows.append({"method": "torch.ao dynamic int8 (real)", "bits": 8, **task_metric(int8),
                         "bytes_fp32": _state_bytes(teacher, out / "fp32.pt"), "bytes_int8": _state_bytes(int8, out / "int8.pt")})
            print(json.dumps(rows[-1]), flush=True)
        results["quantization"] = rows

    if "latency" not in args.skip:
        load_saved_pruned()
        single, batched = latency_prompts(args, tokenizer, test_texts)
        new_tokens = 32 if args.model == "gpt2" else 16
        systems = {"full fp32": teacher, "full int8": dynamic_int8(teacher)}
        for reduction, model in sorted(pruned_models.items()):
            systems[f"SIMPLE {reduction:.0%}"] = model
        if pruned_models:
            last = max(pruned_models)
            systems[f"SIMPLE {last:.0%} int8"] = dynamic_int8(pruned_models[last])
        results["latency"] = {
            "batch 1": greedy_latency(systems, single, args.latency_rounds, new_tokens, tokenizer.pad_token_id),
            "batch 8": greedy_latency(systems, batched, args.latency_rounds, new_tokens, tokenizer.pad_token_id),
        }
        print(json.dumps(results["latency"]), flush=True)

    if "outliers" not in args.skip:
        probe = make_batches(tokenizer, test_texts[:512], batch_size=64, max_length=64)
        name = "gpt2 (trained here)" if args.model == "gpt2" else "MiniLM bert2bert (fine-tuned here)"
        results["outliers"] = {name: hidden_outliers(teacher, probe, structure.layer_outputs)}
        try:
            from nagner.common.encoders import resolve_encoder

            path = resolve_encoder("sentence-transformers/all-MiniLM-L6-v2")
            minilm = AutoModel.from_pretrained(path).eval()
            mtok = AutoTokenizer.from_pretrained(path)
            plain = [t.removesuffix(EOS) if isinstance(t, str) else t[0] for t in test_texts[:512]]
            mprobe = make_batches(mtok, plain, batch_size=64, max_length=64)
            results["outliers"]["all-MiniLM-L6-v2"] = hidden_outliers(minilm, mprobe, describe(minilm).layer_outputs)
        except Exception as error:  # noqa: BLE001 - the packaged encoder is optional here
            print(f"MiniLM outliers skipped: {error}")
        print(json.dumps(results["outliers"]), flush=True)

    name = "results" + (f"-without-{'-'.join(sorted(args.skip))}" if args.skip else "")
    name += "-per-channel" if args.granularity == "channel" else ""
    name += "" if args.bits == [8, 4, 2] else "-w" + "-".join(map(str, args.bits))
    name += "".join(f"-{method}-clip-lr-{rate:g}" for method, rate in sorted(clip_rate.items())) + ".json"
    (out / name).write_text(json.dumps(results, indent=1))
    print(f"results → {out / name}")


def latency_prompts(args, tokenizer, test_texts) -> tuple[list[dict], list[dict]]:
    """``--latency-prompts`` single prompts and half as many batches of 8 (at least one): GPT-2, the
    first 8 tokens of test sentences at least that long; seq2seq, whole test sentences (padded)."""
    count = args.latency_prompts
    if args.model == "seq2seq":
        sources = [source for source, _ in test_texts[: count * 8]]
        single = [tokenizer([source], return_tensors="pt") for source in sources[:count]]
        batched = [tokenizer(sources[i : i + 8], padding=True, return_tensors="pt") for i in range(0, 8 * max(1, count // 2), 8)]
        return single, batched
    prompts = [tokenizer(t, return_tensors="pt")["input_ids"][:, :8] for t in test_texts[: count * 8]]
    prompts = [p for p in prompts if p.shape[1] == 8]
    as_inputs = lambda ids: {"input_ids": ids, "attention_mask": torch.ones_like(ids)}  # noqa: E731
    single = [as_inputs(p) for p in prompts[:count]]
    batched = [as_inputs(torch.cat(prompts[i : i + 8])) for i in range(0, 8 * max(1, count // 2), 8) if len(prompts[i : i + 8]) == 8]
    return single, batched


def _state_bytes(model, path: Path) -> int:
    torch.save(model.state_dict(), path)
    size = path.stat().st_size
    path.unlink()
    return size


if __name__ == "__main__":
    main()

"""WID on all-MiniLM-L6-v2 (384 → 192 hidden, FFN 1536 → 768, 12 heads of 16) against same-size
students made without training, each fine-tuned as a token classifier on CoNLL-2003.

    python bench/wid.py --texts 4000 --steps 200 --w-step 10 --train-limit 3000 --epochs 2
    python bench/wid.py --texts 4000 --steps 200 --w-step 10 --train-limit 3000 --epochs 2 --strategies head --nag

Students (all 6 layers × 192, converted to plain BERT folders):
* WID: `nagner.compression.wid.compress_with_wid` with the MLM loss on CoNLL-2003 *training*
  sentences (one per line, ``--texts`` of them), MLM head fitted first on the frozen teacher;
* truncation: the first 192 hidden dimensions (first 16 of each head), first 768 FFN units;
* norm selection: the dimensions with the largest teacher weight norms, no training.
* logit distillation: the truncated student with an MLM head (transform new, decoder tied to its
  embeddings, the teacher's output bias), trained for the same ``--steps`` on the same batches of
  the same text with KL(teacher ‖ student) at T = 2 on the masked positions plus the MLM loss
  (DistilBERT's pair of losses, equal weights), AdamW at ``--kd-lr``, every weight trainable.
WID and logit distillation start from the same teacher with the same fitted MLM head (saved once).
* with ``--strategies dim,head``, the same four students again with whole heads dropped (WID's
  ``head`` strategy, 12 heads of 32 → 6 heads of 32, hidden 192): truncation keeps the first 6 heads
  and the first 192 hidden dimensions, norm selection the heads (and 32-dimension chunks of the
  hidden stream) with the largest summed teacher norms, WID ranks and squeezes whole heads, and
  logit distillation starts from the head-truncated student.
* with ``--task-wid STEPS/W_STEP/COMPACTOR_LR``, task-specific WID (a labelled deviation: the
  token-classification loss instead of MLM): the teacher fine-tuned as a token classifier exactly
  as in the table below, then compactors, masks and squeezing trained with that loss on the same
  ``--train-limit`` sentences, the classifier at the base lr; the converted student is fine-tuned
  again like every other encoder.
Then the teacher and each student get the same token-classification fine-tuning
(`nagner.token_classification`, ``--train-limit`` training sentences, ``--epochs``) and are scored on
CoNLL-2003 test. With ``--nag``, each also gets NAG-NER fine-tuning with the package's recipe
(`nagner.training`: the same training sentences, epochs and encoder lr, seed 42, head lr 1e-3,
best epoch and decoding settings chosen on the first ``--nag-dev`` sentences of eng.testa) and is
scored on the same test sentences. Latency: encoder forward at batch 1 on test sentences, 1 and 2 threads, the
systems interleaved, median over ``--latency-sentences``. Parameters with and without embeddings.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import (
    AutoModel,
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    DataCollatorForLanguageModeling,
    DataCollatorForTokenClassification,
    Trainer,
    TrainingArguments,
)

from nagner.common.encoders import resolve_encoder
from nagner.compression.wid import (
    WidCallback,
    WidConfig,
    attach_compactors,
    convert_to_student,
    wid_param_groups,
)
from nagner.compression.wid.config import STRATEGIES
from nagner.compression.wid.recipe import WidTraining, compress_with_wid, fit_mlm_head
from nagner.compression.wid.schedule import mask_lowest, mask_lowest_per_head
from nagner.data import read_sentences
from nagner.evaluation import evaluate_entities
from nagner.token_classification import TokenClassificationBaseline, iob2_tags
from nagner.training import TrainingOptions, build_model, train_model

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "conll2003"
TEACHER = "sentence-transformers/all-MiniLM-L6-v2"


@torch.no_grad()
def untrained_student(kind: str, hidden: int, intermediate: int, strategy: str, folder: Path) -> Path:
    """Truncation or norm selection: masks chosen from the teacher, identity compactors."""
    model = AutoModel.from_pretrained(resolve_encoder(TEACHER)).eval()
    plan = attach_compactors(model, WidConfig(target_hidden=hidden, target_intermediate=intermediate, strategy=strategy))
    truncate = kind == "truncation"

    def head_dims(scores: torch.Tensor) -> torch.Tensor:
        """Hidden or attention dimensions: the same number kept in every head ("dim"), or whole
        heads ("head")."""
        if truncate and strategy == "head":  # the first heads
            return torch.arange(scores.numel()) < hidden
        if truncate:  # the first dimensions of each head
            return torch.arange(scores.numel()).remainder(plan.head_size) < hidden // model.config.num_attention_heads
        everything = torch.ones_like(scores, dtype=torch.bool)
        return mask_lowest_per_head(scores, everything, scores.numel() - hidden, plan.head_size, strategy)

    def ffn_units(scores: torch.Tensor) -> torch.Tensor:
        if truncate:
            return torch.arange(scores.numel()) < intermediate
        return mask_lowest(scores, torch.ones_like(scores, dtype=torch.bool), scores.numel() - intermediate)

    plan.masks.set("hidden", head_dims(model.embeddings.word_embeddings.teacher.weight.norm(dim=0)))
    for index, layer in enumerate(model.encoder.layer):
        plan.masks.set(f"attention.{index}", head_dims(layer.attention.output.dense.teacher.weight.norm(dim=0)))
        plan.masks.set(f"ffn.{index}", ffn_units(layer.output.dense.teacher.weight.norm(dim=0)))
    plan.masks.active = plan.masks.hard = True
    student = convert_to_student(model, plan)
    student.save_pretrained(folder)
    AutoTokenizer.from_pretrained(resolve_encoder(TEACHER)).save_pretrained(folder)
    return folder


def distill_logits(teacher: BertForMaskedLM, start: Path, texts, training: WidTraining, lr: float, folder: Path) -> dict:
    """The logit-distillation baseline: the student encoder at ``start`` plus an MLM head, trained
    on ``teacher``'s MLM logits (KL at T = 2, × T²) and the MLM labels, same batches as WID."""
    torch.manual_seed(training.seed)
    tokenizer = AutoTokenizer.from_pretrained(str(start))
    encoder = AutoModel.from_pretrained(str(start))
    student = BertForMaskedLM(BertConfig.from_pretrained(str(start)))
    student.bert.load_state_dict(encoder.state_dict(), strict=False)
    student.bert.pooler = encoder.pooler
    student.tie_weights()
    with torch.no_grad():
        student.cls.predictions.bias.copy_(teacher.cls.predictions.bias)
    teacher.eval()
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=training.mlm_probability)
    encoded = tokenizer(list(texts), truncation=True, max_length=training.max_length, return_special_tokens_mask=True)
    features = [{k: encoded[k][i] for k in encoded} for i in range(len(texts))]
    generator = torch.Generator().manual_seed(training.seed)
    optimizer = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=0.01)
    student.train()
    temperature, losses = 2.0, []
    for step in range(training.steps):
        if step % (len(features) // training.batch_size) == 0:
            order = torch.randperm(len(features), generator=generator).tolist()
        offset = step % (len(features) // training.batch_size) * training.batch_size
        batch = collator([features[i] for i in order[offset : offset + training.batch_size]])
        batch.pop("special_tokens_mask", None)
        masked = batch["labels"] != -100  # (B, T)
        with torch.no_grad():
            target = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[masked]
        output = student(**batch)
        kl = F.kl_div(
            F.log_softmax(output.logits[masked] / temperature, -1), F.log_softmax(target / temperature, -1),
            log_target=True, reduction="batchmean",
        ) * temperature**2
        loss = kl + output.loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    student.bert.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    report = {"steps": training.steps, "lr": lr, "final_loss_mean_last_50": statistics.mean(losses[-50:])}
    (folder / "distillation.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    return report


def task_specific_wid(train, setting: str, epochs: float, lr: float, folder: Path) -> dict:
    """WID with the token-classification loss on ``train`` (see the module docstring)."""
    steps, w_step, compactor_lr = setting.split("/")
    teacher = TokenClassificationBaseline(resolve_encoder(TEACHER))
    teacher.train(train, epochs=epochs, lr=lr, seed=42)
    model = teacher.model.train()
    plan = attach_compactors(model.bert, WidConfig(192, 768, w_step=int(w_step)))
    data = [teacher.encode(s.words, iob2_tags(s)).features for s in train]
    callback = WidCallback(plan)
    args = TrainingArguments(
        output_dir=str(folder.parent / "scratch"), per_device_train_batch_size=32, max_steps=int(steps), seed=0,
        lr_scheduler_type="constant", report_to=[], save_strategy="no", logging_strategy="no", disable_tqdm=True,
        use_cpu=True,
    )
    optimizer = torch.optim.AdamW(wid_param_groups(model, plan, float(compactor_lr), 1e-6))
    loss = Trainer(model=model, args=args, train_dataset=data, data_collator=DataCollatorForTokenClassification(teacher.tokenizer),
                   optimizers=(optimizer, None), callbacks=[callback]).train().training_loss
    from nagner.compression.wid.training import squeezed_fraction

    report = {"setting": setting, "task_loss": loss, "squeezed_fraction": squeezed_fraction(plan)}
    plan.masks.hard = True
    convert_to_student(model.bert, plan).save_pretrained(folder)
    teacher.tokenizer.save_pretrained(folder)
    (folder / "task_wid.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    return report


def fine_tune_nagner(folder: str, train, dev, test, epochs: float, lr: float, runs: Path) -> dict:
    """NAG-NER on the encoder at ``folder`` (the package's recipe, `nagner.training`) → test F1."""
    model = build_model(folder, train, seed=42)
    options = TrainingOptions(output_dir=str(runs), epochs=epochs, learning_rate=lr, seed=42,
                              save_checkpoints=False, progress_bar=False)
    began = time.perf_counter()
    result = train_model(model, train, dev, options)
    seconds = time.perf_counter() - began
    scores = evaluate_entities([s.entities for s in test], result.model.predict_sentences(test, batch_size=64))
    return {"f1": 100 * scores.f1, "train_seconds": round(seconds), "best_dev_f1": 100 * result.best_dev_f1,
            "decoding": result.decoding}


def parameters(folder: str) -> tuple[int, int]:
    model = AutoModel.from_pretrained(folder)
    total = sum(p.numel() for p in model.parameters())
    embeddings = sum(p.numel() for p in model.embeddings.parameters())
    return total, total - embeddings


@torch.no_grad()
def latency(folders: dict[str, str], sentences, threads: int) -> dict[str, float]:
    torch.set_num_threads(threads)
    models = {name: AutoModel.from_pretrained(folder).eval() for name, folder in folders.items()}
    tokenizer = AutoTokenizer.from_pretrained(next(iter(folders.values())))
    batches = [tokenizer(" ".join(s.words), return_tensors="pt") for s in sentences]
    times: dict[str, list[float]] = {name: [] for name in models}
    for model in models.values():
        model(**batches[0])
    for batch in batches:
        for name, model in models.items():
            start = time.perf_counter()
            model(**batch)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) * 1000 for name, values in times.items()}


def strategy_list(text: str) -> str:
    unknown = set(text.split(",")) - set(STRATEGIES)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown strategy {', '.join(sorted(unknown))}; choose from {', '.join(STRATEGIES)}")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=4000)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--w-step", type=int, default=10)
    parser.add_argument("--train-limit", type=int, default=3000)
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--kd-lr", type=float, default=1e-4)
    parser.add_argument("--compactor-lr", type=float, default=5e-5, help="WID's compactor learning rate (official 5e-5)")
    parser.add_argument("--wid-variants", default="", help="more WID students: NAME=STEPS/W_STEP/COMPACTOR_LR, comma-separated")
    parser.add_argument("--task-wid", default="", metavar="STEPS/W_STEP/COMPACTOR_LR", help="also task-specific WID")
    parser.add_argument("--reuse-scores", action="store_true",
                        help="take the F1 of systems already scored in OUT/scores/ (same fine-tuning settings) instead of fine-tuning again")
    parser.add_argument("--head-steps", type=int, default=200)
    parser.add_argument("--strategies", default="dim", type=strategy_list,
                        help="comma-separated WID strategies for the students: dim (12 heads of 16) and/or head (6 heads of 32)")
    parser.add_argument("--nag", action="store_true", help="also fine-tune NAG-NER on every encoder")
    parser.add_argument("--nag-dev", type=int, default=1000, help="eng.testa sentences for NAG-NER's model selection")
    parser.add_argument("--test-limit", type=int, default=None, help="score on the first N test sentences (smoke runs)")
    parser.add_argument("--latency-sentences", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(REPO / "bench" / "out" / "wid"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train = read_sentences(str(DATA / "eng.train"))
    test = read_sentences(str(DATA / "eng.testb"))[: args.test_limit]
    folders = {"teacher (384)": resolve_encoder(TEACHER)}
    texts = [" ".join(s.words) for s in train[: args.texts]]
    training = WidTraining(steps=args.steps, batch_size=32, max_length=64, head_steps=args.head_steps,
                           compactor_lr=args.compactor_lr)
    teacher_mlm = out / "teacher-mlm"
    if not (teacher_mlm / "config.json").exists():
        began = time.perf_counter()
        model, loss = fit_mlm_head(TEACHER, texts, training, out / "scratch")
        model.save_pretrained(teacher_mlm)
        print(json.dumps({"mlm_head_fit_loss": loss, "seconds": round(time.perf_counter() - began)}), flush=True)

    def build_wid_student(folder: Path, config: WidConfig, wid_training: WidTraining) -> None:
        """A WID student in ``folder`` from the teacher with its fitted MLM head, unless one is there."""
        if (folder / "config.json").exists():
            return
        began = time.perf_counter()
        report = compress_with_wid(TEACHER, texts, config, wid_training, folder,
                                   teacher=BertForMaskedLM.from_pretrained(teacher_mlm))
        report.pop("mask_history")
        print(json.dumps({"strategy": config.strategy, **report, "seconds": round(time.perf_counter() - began)}), flush=True)

    for strategy in args.strategies.split(","):
        suffix, size = ("", "192") if strategy == "dim" else (f"-{strategy}", "192, 6 heads")
        for kind in ("truncation", "norm selection"):
            folder = out / f"student-{kind.replace(' ', '-')}{suffix}"
            if not (folder / "config.json").exists():
                untrained_student(kind, 192, 768, strategy, folder)
            folders[f"{kind} ({size})"] = str(folder)
        wid = out / f"student-wid{suffix}"
        build_wid_student(wid, WidConfig(192, 768, strategy=strategy, w_step=args.w_step), training)
        folders[f"WID ({size})"] = str(wid)
        for variant in filter(None, args.wid_variants.split(",")):
            name, _, setting = variant.partition("=")
            steps, w_step, compactor_lr = setting.split("/")
            folder = out / f"student-wid-{name}{suffix}"
            variant_training = WidTraining(steps=int(steps), batch_size=32, max_length=64, head_steps=args.head_steps,
                                           compactor_lr=float(compactor_lr))
            build_wid_student(folder, WidConfig(192, 768, strategy=strategy, w_step=int(w_step)), variant_training)
            folders[f"WID {name}: {steps} steps, w_step {w_step}, compactor lr {compactor_lr} ({size})"] = str(folder)
        distilled = out / f"student-logit-distillation{suffix}"
        if not (distilled / "config.json").exists():
            began = time.perf_counter()
            report = distill_logits(BertForMaskedLM.from_pretrained(teacher_mlm), out / f"student-truncation{suffix}", texts,
                                    training, args.kd_lr, distilled)
            print(json.dumps({"strategy": strategy, **report, "seconds": round(time.perf_counter() - began)}), flush=True)
        folders[f"logit distillation ({size})"] = str(distilled)
    if args.task_wid:
        folder = out / "student-task-wid"
        if not (folder / "config.json").exists():
            began = time.perf_counter()
            report = task_specific_wid(train[: args.train_limit], args.task_wid, args.epochs, args.lr, folder)
            print(json.dumps({**report, "seconds": round(time.perf_counter() - began)}), flush=True)
        steps, w_step, compactor_lr = args.task_wid.split("/")
        folders[f"task-specific WID (NER loss; {steps} steps, w_step {w_step}, compactor lr {compactor_lr}) (192)"] = str(folder)
    results = {}
    setting = {"train_limit": args.train_limit, "epochs": args.epochs, "lr": args.lr, "test_sentences": len(test)}
    for name, folder in folders.items():
        cache = out / "scores" / (Path(folder).name + ".json")
        if args.reuse_scores and cache.exists() and json.loads(cache.read_text())["setting"] == setting:
            results[name] = json.loads(cache.read_text())["result"]
            print(name, "(scores reused)", json.dumps(results[name]), flush=True)
            continue
        baseline = TokenClassificationBaseline(folder)
        began = time.perf_counter()
        baseline.train(train[: args.train_limit], epochs=args.epochs, lr=args.lr, seed=42)
        seconds = time.perf_counter() - began
        scores = evaluate_entities([s.entities for s in test], baseline.predict(test))
        total, without = parameters(folder)
        results[name] = {"f1": 100 * scores.f1, "train_seconds": round(seconds), "parameters": total,
                         "parameters_without_embeddings": without}
        cache.parent.mkdir(exist_ok=True)
        cache.write_text(json.dumps({"setting": setting, "result": results[name]}), encoding="utf-8")
        print(name, json.dumps(results[name]), flush=True)
    if args.nag:
        dev = read_sentences(str(DATA / "eng.testa"))[: args.nag_dev]
        for name, folder in folders.items():
            cache = out / "scores" / (Path(folder).name + "-nagner.json")
            nag_setting = {**setting, "dev_sentences": len(dev)}
            if cache.exists() and json.loads(cache.read_text())["setting"] == nag_setting:
                results[name]["nagner"] = json.loads(cache.read_text())["result"]
            else:
                results[name]["nagner"] = fine_tune_nagner(folder, train[: args.train_limit], dev, test, args.epochs, args.lr,
                                                           out / "scratch" / "nagner")
                cache.write_text(json.dumps({"setting": nag_setting, "result": results[name]["nagner"]}), encoding="utf-8")
            print(name, "NAG-NER", json.dumps(results[name]["nagner"]), flush=True)
    sample = test[: args.latency_sentences]
    for threads in (1, 2):
        for name, ms in latency(folders, sample, threads).items():
            results[name][f"ms_batch1_{threads}t"] = ms
    (out / "results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    teacher = results["teacher (384)"]
    print("| encoder | CoNLL-03 test F1, token classification | NAG-NER | params (without embeddings) "
          "| ms, batch 1, 1 thread | 2 threads | speed-up (2 t) |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        nag = f"{r['nagner']['f1']:.2f}" if "nagner" in r else "–"
        print(f"| {name} | {r['f1']:.2f} | {nag} | {r['parameters'] / 1e6:.1f} M ({r['parameters_without_embeddings'] / 1e6:.1f} M) "
              f"| {r['ms_batch1_1t']:.2f} | {r['ms_batch1_2t']:.2f} | {teacher['ms_batch1_2t'] / r['ms_batch1_2t']:.2f}× |")


if __name__ == "__main__":
    main()

"""Training: train_model (files, best model, loss, overfit, resume), build_model, and `nagner train` end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nagner.cli import main
from nagner.cli.train import read_config
from nagner.data import read_sentences
from nagner.errors import NagNerInputError
from nagner.evaluation import evaluate_entities
from nagner.training import EpochEvaluation, TrainingOptions, build_model, train_model

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"



@pytest.fixture(scope="module")
def mixed():
    """Six sentences of the mixed sample: flat, nested and discontinuous entities."""
    return read_sentences(DATA / "sample.jsonl")[:6]


def quick_options(output_dir: Path, **changes) -> TrainingOptions:
    values = dict(
        output_dir=output_dir, epochs=2, batch_size=3, learning_rate=1e-3, head_learning_rate=1e-2,
        warmup_ratio=0.0, progress_bar=False, logging_steps=1000,
    )
    values.update(changes)
    return TrainingOptions(**values)


def metrics_lines(output_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------------------- build_model
def test_build_model_takes_the_sorted_label_set_of_the_training_data(tiny_encoder, mixed):
    model = build_model(tiny_encoder, mixed, seed=0, decoder_layers=1, max_subwords=64)
    assert model.config.entity_types == ["ADR", "LOC", "MISC", "ORG", "PER"]
    assert (model.config.decoder_layers, model.config.max_subwords) == (1, 64)
    assert model.tokenizer is not None


def test_build_model_refuses_data_without_sentences_or_entities(tiny_encoder, mixed):
    with pytest.raises(NagNerInputError, match="no sentences"):
        build_model(tiny_encoder, [])
    empty = [type(mixed[0])(words=["a", "b"])]
    with pytest.raises(NagNerInputError, match="no entities"):
        build_model(tiny_encoder, empty)


# --------------------------------------------------------------------------------------- train_model
def test_train_model_writes_best_metrics_and_one_checkpoint(tiny_encoder, mixed, tmp_path):
    model = build_model(tiny_encoder, mixed, seed=0)
    result = train_model(model, mixed, mixed, quick_options(tmp_path, epochs=3))

    # 6 sentences, batch 3: 2 steps per epoch
    assert result.global_step == 6
    lines = metrics_lines(tmp_path)
    assert lines == result.history
    assert [(r["epoch"], r["step"]) for r in lines] == [(1.0, 2), (2.0, 4), (3.0, 6)]
    assert set(lines[0]) == {"epoch", "step", "train_loss", "dev_f1", "dev_precision", "dev_recall", "seconds"}
    assert lines[-1]["train_loss"] < lines[0]["train_loss"]
    best = max(lines, key=lambda r: r["dev_f1"])
    assert (result.best_dev_f1, result.best_epoch) == (best["dev_f1"], best["epoch"])

    assert result.best_dir == tmp_path / "best"
    for name in ("config.json", "model.safetensors", "tokenizer_config.json"):
        assert (result.best_dir / name).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best", "checkpoint-6", "metrics.jsonl"]

    # the returned model is best/ reloaded: its dev score is the best epoch's
    predicted = result.model.predict_sentences(mixed)
    assert evaluate_entities([s.entities for s in mixed], predicted).f1 == result.best_dev_f1
    assert not result.model.training


def test_without_dev_the_final_model_is_saved_as_best(tiny_encoder, mixed, tmp_path):
    model = build_model(tiny_encoder, mixed, seed=0)
    result = train_model(model, mixed, None, quick_options(tmp_path, epochs=1, save_checkpoints=False))
    assert (result.best_dev_f1, result.best_epoch) == (None, None)
    assert [(r["step"], r["dev_f1"]) for r in result.history] == [(2, None)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best", "metrics.jsonl"]
    trained, reloaded = weights(model), weights(result.model)
    assert trained.keys() == reloaded.keys()
    assert all(torch.equal(trained[k], reloaded[k]) for k in trained)


def test_unfit_entities_are_counted_not_dropped_silently(tiny_encoder, mixed, tmp_path, caplog):
    model = build_model(tiny_encoder, mixed, seed=0, max_pointers=2)  # one fragment: discontinuous ones do not fit
    discontinuous = sum(e.is_discontinuous for s in mixed for e in set(s.entities))
    assert discontinuous > 0
    result = train_model(model, mixed, None, quick_options(tmp_path, epochs=1, save_checkpoints=False))
    assert result.encoding.too_many_fragments == discontinuous
    assert result.encoding.entities == sum(len(set(s.entities)) for s in mixed)
    assert "cannot be training targets" in caplog.text


def test_a_tiny_model_overfits_ten_nested_and_discontinuous_sentences(tiny_encoder, tmp_path):
    """10 sentences (5 nested, 5 discontinuous, 2 with two entities at one start word) repeated 20x:
    300 steps of batch 10, lr 3e-3 / head 1e-2, no dropout in the heads.

    Measured (one thread, seed 0): dev F1 0.81 after epoch 4, >= 0.9 from epoch 11, 1.0 at epoch 15;
    about 10-15 s. The hardest entities are two discontinuous ones sharing a start word.
    """
    sentences = (
        read_sentences(DATA / "sample_nested.iob2", tag_columns=[1, 2])[:5]
        + read_sentences(DATA / "sample_discontinuous.json")[:5]
    )
    assert any(e.is_discontinuous for s in sentences for e in s.entities)
    assert any(len({e.start for e in s.entities}) < len(s.entities) for s in sentences)
    model = build_model(tiny_encoder, sentences, seed=0, head_dropout=0.0, decoder_dropout=0.0)
    options = quick_options(
        tmp_path, epochs=15, batch_size=10, learning_rate=3e-3, head_learning_rate=1e-2, save_checkpoints=False
    )
    result = train_model(model, sentences * 20, sentences, options)
    assert result.global_step == 300
    assert result.best_dev_f1 >= 0.9, [round(r["dev_f1"], 3) for r in result.history]
    predicted = result.model.predict_sentences(sentences)
    assert evaluate_entities([s.entities for s in sentences], predicted).f1 == result.best_dev_f1


def _stop_after_first_epoch(monkeypatch):
    original = EpochEvaluation.on_epoch_end

    def on_epoch_end(self, args, state, control, **kwargs):
        original(self, args, state, control, **kwargs)
        control.should_training_stop = True  # as if the job were killed after epoch 1's checkpoint

    monkeypatch.setattr(EpochEvaluation, "on_epoch_end", on_epoch_end)


def test_resume_continues_from_the_checkpoint_and_matches_an_uninterrupted_run(
    tiny_encoder, mixed, tmp_path, monkeypatch
):
    uninterrupted = build_model(tiny_encoder, mixed, seed=0)
    whole = train_model(uninterrupted, mixed, mixed, quick_options(tmp_path / "whole"))

    with monkeypatch.context() as patch:
        _stop_after_first_epoch(patch)
        first = train_model(build_model(tiny_encoder, mixed, seed=0), mixed, mixed, quick_options(tmp_path / "cut"))
    assert first.global_step == 2
    assert (tmp_path / "cut" / "checkpoint-2").is_dir()

    model = build_model(tiny_encoder, mixed, seed=0)
    resumed = train_model(model, mixed, mixed, quick_options(tmp_path / "cut", resume_from_checkpoint=True))
    assert resumed.global_step == 4
    assert resumed.history[0] == first.history[0]  # epoch 1 was not trained again
    assert [r["step"] for r in resumed.history] == [2, 4]
    assert sorted(p.name for p in (tmp_path / "cut").iterdir()) == ["best", "checkpoint-4", "metrics.jsonl"]
    state = json.loads((tmp_path / "cut" / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    # same data order, RNG and optimizer state: the same weights as without the interruption
    a, b = weights(uninterrupted), weights(model)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert [r["train_loss"] for r in resumed.history] == pytest.approx([r["train_loss"] for r in whole.history])


def test_resume_needs_a_checkpoint(tiny_encoder, mixed, tmp_path):
    model = build_model(tiny_encoder, mixed, seed=0)
    with pytest.raises(NagNerInputError, match="no checkpoint"):
        train_model(model, mixed, None, quick_options(tmp_path, resume_from_checkpoint=True))
    with pytest.raises(NagNerInputError, match="not a training checkpoint"):
        train_model(model, mixed, None, quick_options(tmp_path, resume_from_checkpoint=tmp_path / "nothing"))


# ---------------------------------------------------------------------------------------------- CLI
def write_jsonl_subset(path: Path, count: int) -> Path:
    lines = (DATA / "sample.jsonl").read_text(encoding="utf-8").splitlines()[:count]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_cli_trains_from_a_config_file_and_flags_override_it(tiny_encoder, tmp_path, capsys):
    write_jsonl_subset(tmp_path / "train.jsonl", 6)
    config = {
        "encoder": str(tiny_encoder), "train": "train.jsonl", "output-dir": "out",  # relative to the config file
        "max_steps": 2, "batch-size": 3, "lr": 1e-3, "no_progress": True, "no_checkpoints": True,
    }
    (tmp_path / "train.json").write_text(json.dumps(config), encoding="utf-8")
    assert main(["train", "--config", str(tmp_path / "train.json"), "--max-steps", "1"]) == 0
    out = capsys.readouterr().out
    lines = metrics_lines(tmp_path / "out")
    assert [(r["step"], r["dev_f1"]) for r in lines] == [(1, None)]  # --max-steps 1 beat the config's 2
    assert (tmp_path / "out" / "best" / "model.safetensors").is_file()
    assert not (tmp_path / "out" / "checkpoint-1").exists()
    assert "no dev set: the final model is kept" in out
    assert "trained 1 steps in" in out and f"model: {tmp_path / 'out' / 'best'}" in out


def test_cli_with_dev_prints_the_best_f1(tiny_encoder, tmp_path, capsys):
    train = write_jsonl_subset(tmp_path / "train.jsonl", 4)
    args = ["train", "--encoder", str(tiny_encoder), "--train", str(train), "--dev", str(train),
            "--output-dir", str(tmp_path / "out"), "--epochs", "1", "--batch-size", "4", "--no-progress"]
    assert main(args) == 0
    (line,) = metrics_lines(tmp_path / "out")
    assert f"best dev F1 {100 * line['dev_f1']:.2f} at epoch 1" in capsys.readouterr().out


def test_read_config_accepts_toml_with_dashed_keys_and_resolves_paths(tmp_path):
    (tmp_path / "c.toml").write_text(
        'encoder = "bert-base-cased"\ntrain = "data/train.conll"\ntag-columns = "1,2"\n'
        'epochs = 2\nhead-lr = 0.002\ndecode_mode = "ar"\nresume = true\n',
        encoding="utf-8",
    )
    assert read_config(tmp_path / "c.toml") == {
        "encoder": "bert-base-cased",  # not a folder next to the config: a hub name
        "train": str(tmp_path / "data" / "train.conll"),
        "tag_columns": [1, 2],
        "epochs": 2,
        "head_lr": 0.002,
        "decode_mode": "ar",
        "resume": True,
    }


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"encoder": "x", "learning_rate": 0.1}', "unknown option 'learning_rate'"),
        ('{"epochs": "three"}', "option 'epochs': expected a positive number, got 'three'"),
        ('{"batch_size": 0}', "option 'batch_size': expected a positive integer, got 0"),
        ('{"decode-mode": "beam"}', "option 'decode_mode': expected one of nag, ar, got 'beam'"),
        ('{"max_steps": 1, "max-steps": 2}', "option 'max-steps' is given twice"),
        ('[1, 2]', "must hold an object"),
    ],
)
def test_cli_rejects_a_bad_config_file_naming_file_and_key(tmp_path, capsys, content, message):
    (tmp_path / "c.json").write_text(content, encoding="utf-8")
    assert main(["train", "--config", str(tmp_path / "c.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"nagner train: error: {tmp_path / 'c.json'}: ")
    assert message in err


def test_cli_reports_a_bad_json_config_with_its_line(tmp_path, capsys):
    (tmp_path / "c.json").write_text('{\n  "epochs": 2,\n  "lr" 1\n}\n', encoding="utf-8")
    assert main(["train", "--config", str(tmp_path / "c.json")]) == 2
    assert f"{tmp_path / 'c.json'}:3: bad JSON" in capsys.readouterr().err


def test_cli_reports_bad_data_with_file_and_line(tiny_encoder, tmp_path, capsys):
    bad = tmp_path / "bad.conll"
    bad.write_text("Anna B-PER\nBerg I-PER\n\nin O\nParis X-LOC\n", encoding="utf-8")
    args = ["train", "--encoder", str(tiny_encoder), "--train", str(bad), "--output-dir", str(tmp_path / "out")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"nagner train: error: {bad}:5: ") and err.count("\n") == 1
    assert "unknown tag 'X-LOC'" in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing written before the data was read


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--train", "t.jsonl", "--output-dir", "out"], "missing --encoder (give it as a flag or in --config)"),
        (["--encoder", "e", "--train", "missing.jsonl", "--output-dir", "out"], "missing.jsonl: no such file"),
        (["--encoder", "e", "--train", "t.jsonl", "--tag-columns", "1", "--output-dir", "out"],
         "--tag-columns is for CoNLL files, but this is jsonl"),
    ],
)
def test_cli_user_mistakes_exit_2_with_one_line(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    write_jsonl_subset(tmp_path / "t.jsonl", 2)
    assert main(["train", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_cli_empty_training_file_is_a_clear_error(tiny_encoder, tmp_path, capsys):
    empty = tmp_path / "empty.conll"
    empty.write_text("\n\n", encoding="utf-8")
    args = ["train", "--encoder", str(tiny_encoder), "--train", str(empty), "--output-dir", str(tmp_path / "out")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"nagner train: error: {empty}") and "Traceback" not in err


def test_cli_unknown_encoder_is_a_user_error(tmp_path, capsys):
    train = write_jsonl_subset(tmp_path / "t.jsonl", 2)
    args = ["train", "--encoder", str(tmp_path / "no-encoder"), "--train", str(train),
            "--output-dir", str(tmp_path / "out")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"cannot load the encoder '{tmp_path / 'no-encoder'}'" in err and "Traceback" not in err


def test_torchrun_two_cpu_processes_train_and_save_the_model(tiny_encoder, tmp_path):
    train = write_jsonl_subset(tmp_path / "t.jsonl", 12)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "nagner", "train",
        "--encoder", str(tiny_encoder), "--train", str(train), "--dev", str(train),
        "--output-dir", str(tmp_path / "out"), "--max-steps", "3", "--batch-size", "2", "--no-progress",
    ]
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = metrics_lines(tmp_path / "out")
    assert (line["step"], line["epoch"]) == (3, 1.0)  # 12 sentences / (2 processes x batch 2) = 3 steps
    assert (tmp_path / "out" / "best" / "model.safetensors").is_file()
    assert done.stdout.count("trained 3 steps in") == 1  # only process zero reports

"""`nagner exits` and the early-exit options of `nagner predict` / `nagner evaluate`, end to end on
a tiny model: a rule that never fires gives exactly the model's scores, one that always fires
exits at layer 1, and every user mistake is one line and exit 2."""

from __future__ import annotations

import json

import pytest
import torch

from nagner.cli import main
from nagner.modeling import NagNerModel
from nagner.modeling.early_exit import ExitBridges
from nagner.testing import build_tiny_encoder

FLAT_CONLL = (
    "Ann B-PER\nLee I-PER\nvisited O\nParis B-LOC\n. O\n\n"
    "Berlin B-LOC\nis O\nbig O\n\n"
    "Bob B-PER\nworks O\nat O\nAcme B-ORG\n"
)


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("exits")
    data = folder / "flat.conll"
    data.write_text(FLAT_CONLL, encoding="utf-8")
    assert main(["exits", "--model", str(tiny_model_dir), "--train", str(data), "--output", str(folder / "exits"),
                 "--epochs", "2", "--batch-size", "2", "--distillation", "1"]) == 0
    return folder, data


def _evaluate(model_dir, data, out, *extra):
    assert main(["evaluate", "--model", str(model_dir), "--data", str(data), "--no-progress", "--output", str(out), *extra]) == 0
    return json.loads(out.read_text(encoding="utf-8"))


def test_exits_writes_bridges_that_load(trained, capsys):
    folder, _ = trained
    bridges = ExitBridges.from_pretrained(folder / "exits")
    assert bridges.layers == 2 and len(bridges.bridges) == 1


def test_evaluate_with_a_rule_that_never_fires_scores_exactly_as_the_model(trained, tiny_model_dir, capsys):
    folder, data = trained
    plain = _evaluate(tiny_model_dir, data, folder / "plain.json")
    late = _evaluate(tiny_model_dir, data, folder / "late.json", "--exits", str(folder / "exits"), "--exit-rule", "agreement:5")
    assert late["metrics"] == plain["metrics"] and plain["early_exit"] is None
    assert late["early_exit"]["mean_exit_layer"] == 2.0
    early = _evaluate(tiny_model_dir, data, folder / "early.json", "--exits", str(folder / "exits"), "--exit-rule", "uncertainty:1")
    assert early["early_exit"]["mean_exit_layer"] == 1.0
    assert "mean exit layer 1.00 of 2 (2.00× fewer encoder layers)" in capsys.readouterr().out


def test_predict_with_exits(trained, tiny_model_dir, capsys):
    folder, _ = trained
    assert main(["predict", "--model", str(tiny_model_dir), "--exits", str(folder / "exits"), "Ann Lee visited Paris ."]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["text"] == "Ann Lee visited Paris ."


def test_mistakes_are_one_line_and_exit_2(trained, tiny_model_dir, tmp_path, capsys):
    folder, data = trained
    assert main(["evaluate", "--model", str(tiny_model_dir), "--data", str(data), "--exit-rule", "agreement:1"]) == 2
    assert "--exit-rule needs --exits DIR" in capsys.readouterr().err
    assert main(["predict", "--model", str(tiny_model_dir), "--exits", str(tmp_path), "text"]) == 2
    assert "not an exit-bridge folder" in capsys.readouterr().err
    encoder = build_tiny_encoder(tmp_path / "three", layers=3)
    torch.manual_seed(0)
    ExitBridges.for_model(NagNerModel.from_encoder(encoder, ["PER", "LOC", "ORG", "ADR"])).save_pretrained(tmp_path / "other")
    assert main(["predict", "--model", str(tiny_model_dir), "--exits", str(tmp_path / "other"), "text"]) == 2
    assert "made for 3 layers of width 32; the model has 2" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["predict", "--model", str(tiny_model_dir), "--exits", str(folder / "exits"), "--exit-rule", "soon", "text"])
    assert exited.value.code == 2
    assert "unknown exit rule 'soon'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["exits", "--model", str(tiny_model_dir), "--train", str(data), "--output", str(tmp_path / "x"), "--distillation", "-1"])
    assert exited.value.code == 2
    assert "expected a number >= 0, got '-1'" in capsys.readouterr().err

"""`nagner leco` (sentence-level LECO) end to end on a tiny encoder: training with the exit search
saves a model with its labels and tokenizer; a rule that fires at once exits at layer 1 and one that
never fires runs every layer, in `evaluate` (recorded exits) and `predict` (real early exit) alike;
user mistakes are one line, exit 2, and leave no model folder. Plus the library's rule parsing and
rule report on hand-made exits."""

from __future__ import annotations

import json
import re

import pytest
import torch

from nagner.cli import main
from nagner.common.errors import InputError
from nagner.compression.leco import ComparisonRule, EntropyRule, MaxProbabilityRule, PatienceRule
from nagner.compression.leco.training import parse_exit_rule, read_labelled_texts, rule_report

CITIES = ["paris", "berlin", "london"]
FILLER = ["the", "of", "a", "is", "was", "at", "on", "for", "with", "from"]


def texts(count: int, seed: int) -> list[dict]:
    rng = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(count):
        words = [FILLER[int(j)] for j in torch.randint(len(FILLER), (5,), generator=rng)]
        if i % 2 == 0:
            words[int(torch.randint(5, (1,), generator=rng))] = CITIES[i % 3]
        rows.append({"text": " ".join(words), "label": "city" if i % 2 == 0 else "other"})
    return rows


def write(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def trained(tiny_encoder, tmp_path_factory):
    folder = tmp_path_factory.mktemp("leco")
    train = write(folder / "train.jsonl", texts(48, 0))
    held_out = write(folder / "held.jsonl", texts(16, 1))
    test = write(folder / "test.jsonl", texts(16, 2))
    code = main(["leco", "train", "--train", train, "--held-out", held_out, "--output", str(folder / "model"),
                 "--encoder", str(tiny_encoder), "--search-steps", "4", "--epochs", "6", "--lr", "3e-3", "--batch-size", "8"])
    assert code == 0
    return folder, test


def test_train_saves_labels_exits_and_tokenizer(trained, capsys):
    folder, _ = trained
    config = json.loads((folder / "model" / "exits.json").read_text(encoding="utf-8"))
    assert config["labels"] == ["city", "other"] and config["classes"] == 2 and len(config["exits"]) == 2
    assert (folder / "model" / "tokenizer.json").is_file() and (folder / "model" / "exits.safetensors").is_file()


def _table(output: str) -> dict[str, list[str]]:
    return {cells[0]: cells[1:] for cells in (
        [c.strip() for c in line.strip("|").split("|")] for line in output.splitlines() if line.startswith("|"))}


def test_evaluate_reports_exits_and_rules_on_the_same_weights(trained, capsys):
    folder, test = trained
    assert main(["leco", "evaluate", "--model", str(folder / "model"), "--data", test,
                 "--rule", "cobee:1", "--rule", "pabee:5", "--rule", "max-probability:1"]) == 0
    table = _table(capsys.readouterr().out)
    first, last = table["accuracy"]
    assert float(last) > 75.0  # the tiny model learned "mentions a city" (16 test texts)
    assert table["cobee:1"] == [first, "1.00", "2.00×"]  # fires at the first exit: its accuracy, 2 of 2 layers saved
    assert table["pabee:5"] == [last, "2.00", "1.00×"]  # never fires: the last exit
    assert table["max-probability:1"][1:] == ["2.00", "1.00×"]


def test_predict_exits_where_the_rule_says(trained, tmp_path):
    folder, test = trained
    for rule, layer in (("cobee:1", 1), ("pabee:5", 2)):
        out = tmp_path / f"{rule}.jsonl"
        assert main(["leco", "predict", "--model", str(folder / "model"), "--data", test, "--rule", rule, "--output", str(out)]) == 0
        rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        assert len(rows) == 16 and {r["exit_layer"] for r in rows} == {layer}
        assert {r["label"] for r in rows} <= {"city", "other"}


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--exits", "search"], "--exits search needs --held-out"),
        (["--exits", "deep_exit"], "--exits: expected 'search' or one of"),
        (["--exits", "mean_linear", "--train-file", "one-label"], "one label only"),
        (["--exits", "mean_linear", "--train-file", "bad-json"], "train.jsonl:2: bad JSON"),
        (["--exits", "mean_linear", "--train-file", "no-text"], "train.jsonl:1: expected a non-empty string \"text\""),
    ],
)
def test_train_mistakes_are_one_line_and_exit_2(tiny_encoder, tmp_path, capsys, arguments, message):
    rows = {"one-label": '{"text": "the paris", "label": "a"}\n{"text": "of berlin", "label": "a"}\n',
            "bad-json": '{"text": "the paris", "label": "a"}\n{"text": oops}\n',
            "no-text": '{"label": "a"}\n'}
    if "--train-file" in arguments:
        kind = arguments[arguments.index("--train-file") + 1]
        arguments = arguments[: arguments.index("--train-file")]
        (tmp_path / "train.jsonl").write_text(rows[kind], encoding="utf-8")
    else:
        write(tmp_path / "train.jsonl", texts(4, 0))
    code = main(["leco", "train", "--train", str(tmp_path / "train.jsonl"), "--output", str(tmp_path / "model"),
                 "--encoder", str(tiny_encoder), *arguments])
    error = capsys.readouterr().err
    assert code == 2 and message in error and "Traceback" not in error and len(error.strip().splitlines()) == 1
    assert not (tmp_path / "model").exists()


def test_evaluate_and_predict_mistakes_exit_2(trained, tmp_path, capsys):
    folder, test = trained
    assert main(["leco", "evaluate", "--model", str(folder / "model"), "--data", test, "--rule", "cobee:0"]) == 2
    assert "expected ≥ 1" in capsys.readouterr().err
    assert main(["leco", "predict", "--model", str(folder / "model"), "--data", test, "--rule", "patience:2"]) == 2
    assert "unknown exit rule 'patience:2'" in capsys.readouterr().err
    assert main(["leco", "evaluate", "--model", str(tmp_path), "--data", test]) == 2
    assert "not a multi-exit model folder" in capsys.readouterr().err
    unknown = write(tmp_path / "unknown.jsonl", [{"text": "the paris", "label": "town"}])
    assert main(["leco", "evaluate", "--model", str(folder / "model"), "--data", unknown]) == 2
    assert "label 'town' is not one the model knows (city, other)" in capsys.readouterr().err


def test_parse_exit_rule_forms():
    assert isinstance(parse_exit_rule("cobee:3"), ComparisonRule) and parse_exit_rule("cobee:3").threshold == 3
    assert isinstance(parse_exit_rule("pabee:2"), PatienceRule) and parse_exit_rule("pabee:2").patience == 2
    assert isinstance(parse_exit_rule("entropy:0.3"), EntropyRule) and parse_exit_rule("entropy:0.3").threshold == 0.3
    assert isinstance(parse_exit_rule(" max-probability:0.9 "), MaxProbabilityRule)
    for bad, message in (("cobee:x", "expected an integer"), ("entropy:2", "0 < threshold ≤ 1"), ("vote:2", "unknown exit rule")):
        with pytest.raises(ValueError, match=re.escape(message)):
            parse_exit_rule(bad)


def test_rule_report_on_hand_made_exits():
    """Three inputs, three exits, two classes. COBEE with 2 votes: input 0 agrees at exit 2 (class 0),
    input 1 flips 1, 0, 1 and gets its second vote for class 1 at exit 3, input 2 agrees at exit 2
    (class 1, wrong): accuracy 2/3, mean exit layer 7/3."""
    p = lambda *classes: torch.tensor([[0.9, 0.1] if c == 0 else [0.2, 0.8] for c in classes])  # noqa: E731
    probabilities = torch.stack([p(0, 0, 0), p(1, 0, 1), p(1, 1, 0)])  # (3, 3, 2)
    report = rule_report(probabilities, torch.tensor([0, 1, 0]), ComparisonRule(2))
    assert report["accuracy"] == pytest.approx(2 / 3)
    assert report["mean_exit_layer"] == pytest.approx(7 / 3) and report["layer_speed_up"] == pytest.approx(9 / 7)


def test_read_labelled_texts_keeps_pairs_and_maps_booleans(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "is paris big", "text_pair": "paris is a city", "label": true}\n\n{"text": "x", "label": 3}\n',
                    encoding="utf-8")
    first, second = read_labelled_texts(path)
    assert (first.text_pair, first.label, second.label) == ("paris is a city", "yes", "3")
    path.write_text('{"text": "x", "label": null}\n', encoding="utf-8")
    with pytest.raises(InputError, match="data.jsonl:1: expected a \"label\""):
        read_labelled_texts(path)

import json

import pytest
import torch

from nagner.cli import main
from nagner.data.example import Entity, entity_kind
from nagner.data.loading import read_sentences
from nagner.evaluation import evaluate_entities, format_report, seqeval_scores
from nagner.modeling import NagNerModel

FLAT_CONLL = (
    "Ann B-PER\nLee I-PER\nvisited O\nParis B-LOC\n. O\n\n"
    "Berlin B-LOC\nis O\nbig O\n\n"
    "Bob B-PER\nworks O\nat O\nAcme B-ORG\n"
)
NESTED_JSONL = (
    '{"text": "John Reed works for the University of Osaka in New York.", "entities": ['
    '{"type": "PER", "spans": [[0, 9]]}, {"type": "ORG", "spans": [[24, 43]]}, {"type": "LOC", "spans": [[38, 43]]},'
    ' {"type": "LOC", "spans": [[47, 55]]}]}\n'
    '{"text": "Zoë Ångström lives in Zürich.", "entities": [{"type": "PER", "spans": [[0, 12]]}]}\n'
    '{"text": "   "}\n'
)
DISCONTINUOUS_W2NER = (
    '[\n{"sentence": ["dry", "mouth", "and", "skin", "rash", "."], '
    '"ner": [{"index": [0, 1], "type": "ADR"}, {"index": [0, 3, 4], "type": "ADR"}]},\n'
    '{"sentence": ["Zentrax", "gave", "me", "dry", "mouth"], "ner": [{"index": [3, 4], "type": "ADR"}, '
    '{"index": [0], "type": "DRUG"}]}\n]\n'
)


@pytest.fixture(scope="module")
def model_dir(tiny_encoder, tmp_path_factory):
    """Random heads (the first seed that works) that predict something on every test file, so
    the numbers compared below mean something."""
    path = tmp_path_factory.mktemp("model")
    files = {"nested.jsonl": NESTED_JSONL, "discontinuous.json": DISCONTINUOUS_W2NER, "flat.conll": FLAT_CONLL}
    data = {}
    for name, text in files.items():
        (path.parent / f"probe-{name}").write_text(text, encoding="utf-8")
        data[name] = read_sentences(path.parent / f"probe-{name}")
    for seed in range(100):
        torch.manual_seed(seed)
        model = NagNerModel.from_encoder(tiny_encoder, ["PER", "LOC", "ORG", "ADR"])
        if all(any(model.predict_sentences(sentences)) for sentences in data.values()):
            model.save_pretrained(path)
            return path
    raise AssertionError("no seed gives an untrained model that predicts on every file")


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name, text", [
    ("nested.jsonl", NESTED_JSONL), ("discontinuous.json", DISCONTINUOUS_W2NER), ("flat.conll", FLAT_CONLL),
])
def test_report_and_metrics_json_equal_evaluate_entities(capsys, tmp_path, model_dir, name, text):
    data = write(tmp_path, name, text)
    out = tmp_path / "metrics.json"
    code, stdout, err = cli(capsys, "evaluate", "--model", model_dir, "--data", data, "--output", out, "--batch-size", 2)
    assert code == 0
    gold = read_sentences(data)
    predicted = NagNerModel.from_pretrained(model_dir).predict_sentences(gold)
    assert any(predicted)  # the untrained model predicts something, so the numbers mean something
    metrics = evaluate_entities([s.entities for s in gold], predicted)
    assert format_report(metrics) in stdout
    for row in ("micro", "kind flat", "kind nested", "kind discontinuous"):
        assert f"\n{row} " in stdout
    report = json.loads(out.read_text())
    assert report["metrics"] == metrics.to_dict()
    assert (report["data"], report["sentences"]) == (str(data), len(gold))
    if name == "flat.conll" and all(entity_kind(e, set(p)) == "flat" for p in predicted for e in p):
        assert report["seqeval"] == seqeval_scores(gold, predicted)
    else:
        assert report["seqeval"] is None
        assert "seqeval: not computed" in stdout
    if name == "discontinuous.json":
        assert err == "nagner evaluate: note: gold types the model does not know (all count as misses): DRUG\n"
    else:
        assert err == ""


def test_seqeval_beside_ours_on_flat_data(capsys, monkeypatch, tmp_path, model_dir):
    data = write(tmp_path, "flat.conll", FLAT_CONLL)
    predictions = [
        [Entity("PER", (0, 1), 0.9), Entity("LOC", (2,), 0.8)],  # right, wrong
        [Entity("LOC", (0,), 0.7)],  # right
        [Entity("PER", (0,), 0.6), Entity("ORG", (2, 3), 0.5)],  # right, wrong span
    ]
    monkeypatch.setattr(NagNerModel, "predict_sentences", lambda self, sentences, **kw: predictions)
    out = tmp_path / "metrics.json"
    code, stdout, _ = cli(capsys, "evaluate", "-m", model_dir, "-d", data, "-o", out)
    assert code == 0
    report = json.loads(out.read_text())
    micro = report["metrics"]["micro"]
    assert (micro["tp_pred"], micro["n_pred"], micro["n_gold"]) == (3, 5, 5)
    assert report["seqeval"] == {
        "precision": pytest.approx(micro["precision"], abs=1e-12),
        "recall": pytest.approx(micro["recall"], abs=1e-12),
        "f1": pytest.approx(micro["f1"], abs=1e-12),
    }
    assert micro["precision"] == 0.6
    assert "seqeval (IOB2)  P  60.00  R  60.00  F1  60.00" in stdout


def test_tag_columns_pick_a_nesting_level(capsys, tmp_path, model_dir):
    data = write(tmp_path, "levels.tsv", "Bank\tB-ORG\tO\nof\tI-ORG\tO\nParis\tI-ORG\tB-LOC\n")
    out = tmp_path / "metrics.json"
    assert cli(capsys, "evaluate", "-m", model_dir, "-d", data, "-o", out)[0] == 0
    assert json.loads(out.read_text())["metrics"]["micro"]["n_gold"] == 2
    assert cli(capsys, "evaluate", "-m", model_dir, "-d", data, "-o", out, "--tag-columns", "2")[0] == 0
    assert json.loads(out.read_text())["metrics"]["per_type"]["LOC"]["n_gold"] == 1
    assert json.loads(out.read_text())["metrics"]["micro"]["n_gold"] == 1


@pytest.mark.parametrize("case, name, text, fmt, extra, line", [
    ("bad json", "bad.jsonl", '{"text": "Ann", "entities": []}\n{"text": "Bob",\n', "auto", [], 2),
    ("column count", "bad.conll", "Ann NNP B-NP B-PER\nLee NNP I-NP I-PER\nvisited VBD O\n", "auto", [], 3),
    ("unknown tag", "bad-tag.conll", "Ann B-PER\nLee X-PER\n\nBob U-PER\n", "conll", [], 2),
    ("span out of range", "range.jsonl", '{"text": "Ann", "entities": [{"type": "PER", "spans": [[0, 9]]}]}\n',
     "jsonl", [], 1),
    ("empty file", "empty.conll", "", "auto", [], None),
    ("empty jsonl", "empty.jsonl", "\n\n", "jsonl", [], None),
    ("missing file", None, None, "auto", [], None),
    ("tag columns on jsonl", "data.jsonl", '{"text": "Ann"}\n', "auto", ["--tag-columns", "1"], None),
    ("tag columns out of range", "data.conll", "Ann B-PER\n", "conll", ["--tag-columns", "3"], 1),
])
def test_bad_data_exit_2_with_path_and_line(capsys, tmp_path, model_dir, case, name, text, fmt, extra, line):
    data = write(tmp_path, name, text) if name else tmp_path / "missing.conll"
    before = sorted(p.name for p in tmp_path.iterdir())
    out = tmp_path / "metrics.json"
    code, stdout, err = cli(capsys, "evaluate", "-m", model_dir, "-d", data, "-f", fmt, "-o", out, *extra)
    assert (code, stdout) == (2, "")
    where = str(data) if line is None else f"{data}:{line}"
    assert err.startswith(f"nagner evaluate: error: {where}: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_bad_model_exit_2_and_no_output(capsys, tmp_path):
    data = write(tmp_path, "flat.conll", FLAT_CONLL)
    out = tmp_path / "metrics.json"
    code, stdout, err = cli(capsys, "evaluate", "-m", tmp_path, "-d", data, "-o", out)
    assert (code, stdout) == (2, "")
    assert err == f"nagner evaluate: error: {tmp_path}: not a nagner checkpoint: no config.json in this folder\n"
    assert not out.exists()

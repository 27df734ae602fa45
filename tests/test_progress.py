"""Progress bars: on stderr for long predict / evaluate runs when stderr is a terminal; never in
pipes or logs, and never with --no-progress. Standard output is the same either way."""

import io

import pytest

from nagner.cli import main


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture()
def files(tmp_path):
    texts = tmp_path / "in.txt"
    texts.write_text("Ann Lee visited Paris. She left.\nBo stayed.\n", encoding="utf-8")
    gold = tmp_path / "gold.conll"
    gold.write_text("Ann B-PER\nin O\nParis B-LOC\n\nBo B-PER\n", encoding="utf-8")
    return {"predict": ["predict", "-i", str(texts)], "evaluate": ["evaluate", "-d", str(gold)]}


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_bar_on_a_terminal_only_and_never_with_no_progress(monkeypatch, capsys, tiny_model_dir, files, command):
    argv = [*files[command], "-m", str(tiny_model_dir)]
    outputs = {}
    for case, stderr, extra in [("terminal", Terminal(), []), ("pipe", io.StringIO(), []),
                                ("off", Terminal(), ["--no-progress"])]:
        monkeypatch.setattr("sys.stderr", stderr)
        assert main([*argv, *extra]) == 0
        outputs[case] = (capsys.readouterr().out, stderr.getvalue())
    assert outputs["terminal"][0] == outputs["pipe"][0] == outputs["off"][0]  # stdout untouched
    assert "sentences" in outputs["terminal"][1]
    if command == "evaluate":
        assert "/2 " in outputs["terminal"][1]  # the bar knows the 2 gold sentences
    assert outputs["pipe"][1] == "" and outputs["off"][1] == ""

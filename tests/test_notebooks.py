"""Every notebook under notebooks/ runs top to bottom, with small settings, in a kernel of this venv.

The notebooks are committed with the outputs of a real run at their default settings (so they can
be read on the repository page without running them); the test checks those outputs are whole,
then clears them and executes a copy with the small settings below.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))

# Read by each notebook's parameters cell: a few dozen steps on a few sentences per corpus.
SMALL_SETTINGS = {
    "NAGNER_NB_EPOCHS": "1",
    "NAGNER_NB_MAX_STEPS": "24",
    "NAGNER_NB_TRAIN_LIMIT": "32",
    "NAGNER_NB_EVAL_LIMIT": "4",
    "NAGNER_NB_BATCH_SIZE": "8",
    # one thread per kernel: the suite shares the machine's cores (as in conftest.py)
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}

# Prepended to the executed copy: prints which interpreter the "python3" kernel runs.
WHICH_PYTHON = "import sys\nprint(sys.executable)"


def outputs_text(cell: dict) -> str:
    """The stdout / stderr text of a code cell's outputs."""
    return "".join(out.get("text", "") for out in cell.get("outputs", []) if out.get("output_type") == "stream")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_committed_with_the_outputs_of_a_whole_run(path: Path):
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    counts = [cell.get("execution_count") for cell in code]
    assert counts == list(range(1, len(code) + 1)), f"{path.name}: run it top to bottom once, then commit it"
    assert not [out for cell in code for out in cell.outputs if out.get("output_type") == "error"]
    printing = [cell for cell in code if re.search(r"^\s*(print|display)\(", cell.source, re.M)
                and not re.search(r"^(def|class) ", cell.source, re.M)]  # a cell that only defines prints nothing
    assert all(cell.outputs for cell in printing)
    if path.name == "01_nagner_walkthrough.ipynb":
        images = [out for cell in code for out in cell.outputs if "image/png" in out.get("data", {})]
        html = [out for cell in code for out in cell.outputs if "text/html" in out.get("data", {})]
        assert images and html  # the dev F1 plot and the entity pictures


def test_there_are_notebooks():
    assert [p.name for p in NOTEBOOKS] == ["01_nagner_walkthrough.ipynb", "02_adapters.ipynb", "03_knowledge_qa.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    for name, value in {**SMALL_SETTINGS, "NAGNER_NB_OUTPUT_DIR": str(tmp_path / "out")}.items():
        monkeypatch.setenv(name, value)  # the kernel process inherits this environment
    notebook.cells.insert(0, nbformat.v4.new_code_cell(WHICH_PYTHON))

    client = nbclient.NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=300,
        resources={"metadata": {"path": str(path.parent)}},  # run in notebooks/, as Jupyter does
    )
    client.execute()  # raises CellExecutionError, with the failing cell and traceback, on any error

    # "python" in the python3 kernel spec must resolve to this venv's interpreter
    assert outputs_text(notebook.cells[0]).strip() == sys.executable
    errors = [out for cell in notebook.cells for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    assert errors == []
    if path.name == "01_nagner_walkthrough.ipynb":
        printed = "\n".join(outputs_text(cell) for cell in notebook.cells if cell.cell_type == "code")
        assert "identical predictions after reload: True" in printed
        assert "=== test: all three corpora" in printed and "kind discontinuous" in printed
        assert (tmp_path / "out" / "saved-model" / "model.safetensors").is_file()
        assert os.path.getsize(tmp_path / "out" / "data" / "train.jsonl") > 0
    if path.name == "03_knowledge_qa.ipynb":
        printed = "\n".join(outputs_text(cell) for cell in notebook.cells if cell.cell_type == "code")
        assert "Q: Did Aristotle use a laptop?\nAnswer: " in printed and "-- branch 1:" in printed
        assert "same accuracy: True" in printed
        assert (tmp_path / "out" / "core" / "adapter_model.safetensors").is_file()
        assert (tmp_path / "out" / "index-bm25" / "retriever.json").is_file()

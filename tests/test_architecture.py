"""The dependency direction of docs/style.md, checked by import-linter against the contracts in
pyproject.toml: CLIs above recipes above models, `knowledge_qa` and the NER task never importing
each other, `nagner.peft` standing on `nagner.common` alone, and `nagner.common` on nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_dependency_contracts_hold():
    # In a child process: import-linter reconfigures logging (disabling the loggers that exist).
    code = (
        "import sys; from importlinter.cli import lint_imports; "
        f"sys.exit(lint_imports(config_filename={str(ROOT / 'pyproject.toml')!r}, no_cache=True, no_logo=True))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ", 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        ("nagner.common", ("nagner.peft", "nagner.data", "nagner.modeling", "nagner.cli", "knowledge_qa")),
        ("nagner.peft", ("nagner.data", "nagner.modeling", "nagner.training", "nagner.cli", "knowledge_qa")),
        ("nagner.compression", ("nagner.peft", "nagner.data", "nagner.modeling", "nagner.cli", "knowledge_qa")),
        ("knowledge_qa", ("nagner.modeling", "nagner.data", "nagner.cli", "nagner.errors", "nagner.training")),
    ],
)
def test_no_import_chain_crosses_a_boundary(importer, imported):
    """The same rules read straight off the import graph, indirect chains included: a contract file
    that stopped naming a package would not weaken this."""
    graph = grimp.build_graph("nagner", "knowledge_qa")
    for target in imported:
        chains = graph.find_shortest_chains(importer=importer, imported=target, as_packages=True)
        assert not chains, f"{importer} reaches {target}: {sorted(chains)[:3]}"

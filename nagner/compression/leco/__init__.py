"""LECO (Zhang, Tan, Dai, Zhu; ACL 2023 SRW): early exiting with searched exit architectures and a
comparison-based exit rule. Built: the exit rules (`exit_rules`), the exit search space
(`exits`), the multi-exit classifier with early-exit inference (`multi_exit`) and the first-order
DARTS search (`search`). Not built yet: the NER application, the CLI and the benchmarks."""

from nagner.compression.leco.exit_rules import (
    ComparisonRule,
    EntropyRule,
    ExitRule,
    MaxProbabilityRule,
    PatienceRule,
    decide,
)
from nagner.compression.leco.exits import EXIT_TYPES, ExitHead, MixedExit
from nagner.compression.leco.multi_exit import MultiExitClassifier
from nagner.compression.leco.search import SearchResult, discretize, search_exits

__all__ = [
    "EXIT_TYPES",
    "ComparisonRule",
    "EntropyRule",
    "ExitHead",
    "ExitRule",
    "MaxProbabilityRule",
    "MixedExit",
    "MultiExitClassifier",
    "PatienceRule",
    "SearchResult",
    "decide",
    "discretize",
    "search_exits",
]

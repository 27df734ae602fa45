"""LECO (Zhang, Tan, Dai, Zhu; ACL 2023 SRW): early exiting with searched exit architectures and a
comparison-based exit rule: the exit rules for class probabilities (`exit_rules`) and for structured
outputs (`structured_rules`), the exit search space (`exits`), the multi-exit classifier with
early-exit inference (`multi_exit`) and the first-order DARTS search (`search`). The NER
application (exit bridges for a trained NAG-NER model) is part of the NER task:
`nagner.modeling.early_exit`, `nagner.exit_training` and `nagner exits`."""

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
from nagner.compression.leco.structured_rules import (
    AgreementRule,
    StructuredExitRule,
    UncertaintyRule,
    VoteRule,
    decide_structured,
    parse_structured_rule,
)

__all__ = [
    "EXIT_TYPES",
    "AgreementRule",
    "StructuredExitRule",
    "UncertaintyRule",
    "VoteRule",
    "decide_structured",
    "parse_structured_rule",
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

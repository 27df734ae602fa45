"""LECO (Zhang, Tan, Dai, Zhu; ACL 2023 SRW): early exiting with searched exit architectures and a
comparison-based exit rule. Built so far: the exit rules (`exit_rules`). Not built yet: multi-exit
training, the exit search, the applications and their benchmarks."""

from nagner.compression.leco.exit_rules import (
    ComparisonRule,
    EntropyRule,
    ExitRule,
    MaxProbabilityRule,
    PatienceRule,
    decide,
)

__all__ = ["ComparisonRule", "EntropyRule", "ExitRule", "MaxProbabilityRule", "PatienceRule", "decide"]

"""SoRA's training procedure for the HF `Trainer`: the proximal step after every optimizer step,
with ξ fixed (the config's) or following the sparsifying schedule of the paper's Algorithm 1.

The schedule traces the sparsity/performance curve: stage 0 trains with ξ₀ (0 in the official
RTE script, a dense start), then every stage raises ξ along one of the official rules, with
``n = stages``:

    linear      ξ_k = linspace(ξ₀, ξ_max, n)[k]
    log_linear  ξ_k = log(linspace(exp ξ₀, exp ξ_max, n))[k]
    exp_linear  ξ_k = exp(linspace(log ξ₀, log ξ_max, n))[k]     (geometric; needs ξ₀ > 0)

In a custom loop, call `sora_proximal_step(model, schedule.threshold_at(step))` after each
``optimizer.step()`` and add `nagner.peft.auxiliary_loss(model)` to the loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from nagner.peft.attach import DEFAULT_NAME, adapter_config
from nagner.peft.methods.sora.sparsity import SparsityReport, sora_proximal_step, sparsity_report

SCHEDULE_MODES = ("linear", "log_linear", "exp_linear")


@dataclass(frozen=True)
class SparsitySchedule:
    """ξ per stage: ``stages`` values from ``start`` to ``end`` (``mode``); stage 0 lasts
    ``first_stage_steps`` optimizer steps, every later one ``stage_steps``; after the last stage
    ξ stays at ``end``. (Official: sparse_lambda_2 → max_lambda over lambda_num stages.)"""

    start: float
    end: float
    stages: int
    first_stage_steps: int
    stage_steps: int
    mode: str = "linear"

    def __post_init__(self) -> None:
        if self.mode not in SCHEDULE_MODES:
            raise ValueError(f"mode must be one of {', '.join(SCHEDULE_MODES)}, got {self.mode!r}")
        if self.stages < 1 or self.first_stage_steps < 0 or self.stage_steps < 1:
            raise ValueError("stages and stage_steps must be >= 1, first_stage_steps >= 0")
        if self.start < 0 or self.end < 0:
            raise ValueError("thresholds must be >= 0")
        if self.mode == "exp_linear" and self.start == 0:
            raise ValueError(
                "exp_linear is geometric: start must be > 0 (use linear for a dense first stage)"
            )

    def thresholds(self) -> list[float]:
        """ξ of every stage."""
        if self.mode == "linear":
            values = np.linspace(self.start, self.end, self.stages)
        elif self.mode == "log_linear":
            values = np.log(np.linspace(np.exp(self.start), np.exp(self.end), self.stages))
        else:
            values = np.exp(np.linspace(np.log(self.start), np.log(self.end), self.stages))
        return [float(v) for v in values]

    def stage_at(self, step: int) -> int:
        """The stage of the optimizer step with 0-based index ``step``."""
        if step < self.first_stage_steps:
            return 0
        return min(1 + (step - self.first_stage_steps) // self.stage_steps, self.stages - 1)

    def threshold_at(self, step: int) -> float:
        """ξ for the optimizer step with 0-based index ``step``."""
        return self.thresholds()[self.stage_at(step)]


@dataclass(frozen=True)
class SparsityStage:
    """The adapter's sparsity at the end of one stage."""

    stage: int
    threshold: float
    end_step: int  # optimizer steps done when the stage ended
    report: SparsityReport


class SoraCallback(TrainerCallback):
    """Runs `sora_proximal_step` on adapter ``name`` after every optimizer step of the `Trainer`
    (``on_optimizer_step``: after ``optimizer.step()``, before the next forward pass), with ξ from
    ``schedule`` or else the config's ``prox_threshold``. ``history`` gets a `SparsityStage` at
    the end of every stage and of training. Use it with `AdapterTrainer`, which adds the L1 term
    to the loss; `sora_param_groups` builds the official optimizer groups (no decay on gates).
    ``adapted_module``: the module the adapter was attached to when that is not the Trainer's
    model itself (e.g. the encoder inside a task model)."""

    def __init__(
        self, name: str = DEFAULT_NAME, schedule: SparsitySchedule | None = None, adapted_module: nn.Module | None = None
    ):
        self.name = name
        self.adapted_module = adapted_module
        self.schedule = schedule
        self.history: list[SparsityStage] = []
        self._stage: tuple[int, float] | None = None  # (stage, ξ) of the last step

    def _threshold(self, model: nn.Module, step: int) -> tuple[int, float]:
        if self.schedule is None:
            return 0, adapter_config(model, self.name).prox_threshold
        return self.schedule.stage_at(step), self.schedule.threshold_at(step)

    def _record(self, model: nn.Module, step: int) -> None:
        if self._stage is not None:
            stage, threshold = self._stage
            self.history.append(SparsityStage(stage, threshold, step, sparsity_report(model, self.name)))

    def on_optimizer_step(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: Any = None,
        **kwargs: Any,
    ) -> None:
        model = self.adapted_module if self.adapted_module is not None else model
        step = state.global_step  # optimizer steps done before this one
        stage = self._threshold(model, step)
        if self._stage is not None and stage[0] != self._stage[0]:
            self._record(model, step)
        self._stage = stage
        sora_proximal_step(model, stage[1], self.name)

    def on_train_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: Any = None,
        **kwargs: Any,
    ) -> None:
        self._record(self.adapted_module if self.adapted_module is not None else model, state.global_step)
        self._stage = None

"""The early-exit options `nagner predict` and `nagner evaluate` share: ``--exits DIR`` (bridges
trained by `nagner exits`) and ``--exit-rule``."""

from __future__ import annotations

import argparse
from typing import Any

from nagner.common.errors import InputError
from nagner.compression.leco.structured_rules import AgreementRule, StructuredExitRule, parse_structured_rule


def exit_rule(text: str) -> StructuredExitRule:
    """argparse type: ``agreement:P``, ``vote:K`` or ``uncertainty:T``."""
    try:
        return parse_structured_rule(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_exit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--exits", metavar="DIR",
        help="exit bridges made by `nagner exits` for this model: predict with early exiting "
        "(one sentence at a time; the layers after a sentence's exit are skipped)",
    )
    parser.add_argument(
        "--exit-rule", type=exit_rule, metavar="RULE",
        help="when a sentence leaves the encoder: agreement:P (the slot signature stayed the same for P "
        "exits in a row), vote:K (K exits agreed), uncertainty:T (every word's start uncertainty <= T, 0-1); "
        "default agreement:1",
    )


def with_exits(model: Any, args: argparse.Namespace) -> Any:
    """``model`` itself, or with ``--exits`` an `EarlyExitPredictor` over it."""
    if args.exits is None:
        if args.exit_rule is not None:
            raise InputError("--exit-rule needs --exits DIR (exit bridges from `nagner exits`)")
        return model
    from nagner.modeling.early_exit import EarlyExitPredictor, ExitBridges

    bridges = ExitBridges.from_pretrained(args.exits)
    try:
        return EarlyExitPredictor(model, bridges, args.exit_rule or AgreementRule(1))
    except ValueError as error:
        raise InputError(str(error), args.exits) from None

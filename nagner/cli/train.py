"""`nagner train`: fine-tune a NAG-NER model on an annotated file.

    nagner train --encoder NAME_OR_PATH --train FILE [--dev FILE] --output-dir DIR [options]
    nagner train --config train.toml [--epochs 5 ...]

``--config FILE.json|FILE.toml`` gives defaults for the same option names (``max_steps`` or
``max-steps``); flags given on the command line override it; an unknown key is an error. Relative
paths in a config file (train, dev, output_dir, resume, and encoder when such a folder exists) are
relative to the config file. The model to use ends up in ``DIR/best`` (see `nagner.training`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nagner.common.cli import key_value, positive_float, positive_int
from nagner.data.example import Sentence
from nagner.data.loading import HUB_PREFIX, READERS, read_annotations
from nagner.errors import NagNerInputError


@dataclass(frozen=True)
class Option:
    """One training option: its kind decides both the flag's parsing and the config value's check."""

    name: str  # snake_case; the flag is --name-with-dashes
    kind: str  # str, path, int, positive_int, float, positive_float, choice, flag, columns, resume
    default: Any
    help: str
    choices: tuple[str, ...] = ()


OPTIONS = (
    Option("encoder", "str", None, "pretrained encoder: hub name or local folder (required)"),
    Option("train", "path", None, "training annotations: CoNLL, W2NER json, nagner jsonl, or a hub dataset hf:NAME[:CONFIG]:SPLIT (required)"),
    Option("dev", "path", None, "dev annotations; the epoch with the best dev F1 is kept"),
    Option("format", "choice", "auto", "format of --train/--dev (default auto)", ("auto", *READERS)),
    Option(
        "tag_columns", "columns", None,
        "CoNLL only: 0-based tag columns, e.g. 1,2 (column 0 is the word; several = nesting levels)",
    ),
    Option("output_dir", "path", None, "folder for best/, metrics.jsonl and checkpoints (required)"),
    Option("epochs", "positive_float", 3.0, "training epochs (default 3)"),
    Option("lr", "positive_float", None, "encoder learning rate (default 5e-5), or the adapter's with --adapter (default 5e-4)"),
    Option("head_lr", "positive_float", 1e-3, "detector/decoder learning rate (default 1e-3)"),
    Option("batch_size", "positive_int", 16, "training windows per batch and process (default 16)"),
    Option("eval_batch_size", "positive_int", 64, "dev sentences per batch (default 64)"),
    Option("warmup_ratio", "float", 0.1, "fraction of steps with linear warmup (default 0.1)"),
    Option("weight_decay", "float", 0.01, "AdamW weight decay (default 0.01)"),
    Option("max_steps", "int", -1, "stop after this many optimizer steps (overrides --epochs; default off)"),
    Option("seed", "int", 42, "random seed (default 42)"),
    Option("logging_steps", "positive_int", 50, "log the training loss every N steps (default 50)"),
    Option(
        "text_language", "str", "en",
        "spaCy language whose rules tokenize raw text: jsonl training text and, later, predict input (default en)",
    ),
    Option("max_subwords", "positive_int", 256, "subwords per encoder window, specials included (default 256)"),
    Option("decode_mode", "choice", "nag", "nag (one pass) or ar (ablation; default nag)", ("nag", "ar")),
    Option("decoder_layers", "positive_int", 2, "slot decoder layers (default 2)"),
    Option("decoder_heads", "positive_int", 4, "slot decoder attention heads (default 4)"),
    Option(
        "max_pointers", "positive_int", None,
        "pointers per entity, END included: 2 per fragment (default: 2 × the training data's most fragments)",
    ),
    Option("max_entities_per_start", "positive_int", 8, "most entities starting at one word (default 8)"),
    Option(
        "resume", "resume", None,
        "resume from CHECKPOINT, or without a value from the newest checkpoint-* in --output-dir",
    ),
    Option(
        "adapter", "str", None,
        "freeze the encoder and train a nagner.peft adapter on it: lora, moslora, sora, alora, milora, para, "
        "loretta_adp, loretta_rep (checkpoints then hold only the adapter and the heads)",
    ),
    Option(
        "adapter_options", "options", None,
        "adapter config fields as KEY=VALUE (JSON values), e.g. r=16 lora_alpha=32 target_modules='[\"query\"]' "
        "(default targets: all-linear)",
    ),
    Option(
        "no_tuning", "flag", False,
        "keep the default decoding settings instead of tuning start threshold, beam, END bias and score "
        "threshold on --dev",
    ),
    Option("no_progress", "flag", False, "no progress bar"),
    Option("no_checkpoints", "flag", False, "do not save resumable checkpoints (best/ is still saved)"),
    Option(
        "train_word_embeddings", "flag", False,
        "also fine-tune the encoder's input word-embedding matrix (frozen by default: on CPU its AdamW "
        "update costs more than the forward and backward passes)",
    ),
)
BY_NAME = {option.name: option for option in OPTIONS}
REQUIRED = ("encoder", "train", "output_dir")
CONFIG_KWARGS = (
    "max_subwords", "text_language", "decode_mode", "decoder_layers", "decoder_heads", "max_pointers", "max_entities_per_start")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _columns(value: str) -> list[int]:
    """argparse type: "1,2" → [1, 2]; tag columns are >= 1 (column 0 is the word)."""
    try:
        columns = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected column numbers like 1,2, got {value!r}") from None
    if not columns or min(columns) < 1:
        raise argparse.ArgumentTypeError(f"expected tag column numbers >= 1 (0 is the word), got {value!r}")
    return columns


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `train`. Every option defaults to None here, so `run` can tell flags given from config values."""
    parser = subparsers.add_parser(
        "train",
        help="fine-tune a model on annotated data",
        description="Fine-tune a NAG-NER model (encoder + mention detector + one-pass slot decoder) on "
        "flat, nested and discontinuous entities. The model to use is saved to OUTPUT_DIR/best.",
    )
    parser.add_argument("--config", metavar="FILE", help="JSON or TOML file with defaults for these options")
    types = {"str": str, "path": str, "int": int, "positive_int": positive_int, "float": float,
             "positive_float": positive_float}
    for option in OPTIONS:
        flag, help = _flag(option.name), option.help
        if option.kind in types:
            parser.add_argument(flag, type=types[option.kind], help=help)
        elif option.kind == "choice":
            parser.add_argument(flag, choices=option.choices, help=help)
        elif option.kind == "flag":
            parser.add_argument(flag, action="store_const", const=True, help=help)
        elif option.kind == "columns":
            parser.add_argument(flag, type=_columns, nargs="+", metavar="N[,N]", help=help)
        elif option.kind == "options":
            parser.add_argument(flag, type=key_value, nargs="+", metavar="KEY=VALUE", help=help)
        elif option.kind == "resume":
            parser.add_argument(flag, nargs="?", const=True, metavar="CHECKPOINT", help=help)
    parser.set_defaults(run=run)


# ------------------------------------------------------------------------------------ config file
def read_config(path: str | Path) -> dict[str, Any]:
    """Options from a ``.json`` or ``.toml`` file, keys in snake_case, values checked and relative
    paths resolved against the file's folder. NagNerInputError (naming file and key) for anything wrong."""
    path = Path(path)
    if not path.is_file():
        raise NagNerInputError("no such config file" if not path.exists() else "not a file", path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise NagNerInputError(f"bad JSON: {error.msg} (column {error.colno})", path, error.lineno) from None
    elif suffix == ".toml":
        try:
            import tomllib  # Python 3.11+
        except ModuleNotFoundError:
            raise NagNerInputError("TOML config files need Python 3.11 or newer; use JSON", path) from None
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as error:
            raise NagNerInputError(f"bad TOML: {error}", path) from None
    else:
        raise NagNerInputError("a config file must be .json or .toml", path)
    if not isinstance(raw, dict):
        raise NagNerInputError("a config file must hold an object of option names and values", path)
    values: dict[str, Any] = {}
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        if name not in BY_NAME:
            raise NagNerInputError(
                f"unknown option {key!r}; known: {', '.join(o.name for o in OPTIONS)}", path
            )
        if name in values:
            raise NagNerInputError(f"option {key!r} is given twice (dashed and snake_case)", path)
        values[name] = _config_value(BY_NAME[name], value, path)
    return values


def _config_value(option: Option, value: Any, path: Path) -> Any:
    """``value`` checked against ``option``'s kind; relative paths made relative to the config file."""
    def bad(expected: str) -> NagNerInputError:
        return NagNerInputError(f"option {option.name!r}: expected {expected}, got {value!r}", path)

    is_int = isinstance(value, int) and not isinstance(value, bool)
    is_number = is_int or isinstance(value, float)
    kind = option.kind
    if kind in ("str", "path", "choice") and not isinstance(value, str):
        raise bad("a string")
    if kind == "choice" and value not in option.choices:
        raise bad(f"one of {', '.join(option.choices)}")
    if kind == "int" and not is_int:
        raise bad("an integer")
    if kind == "positive_int" and not (is_int and value >= 1):
        raise bad("a positive integer")
    if kind == "float" and not is_number:
        raise bad("a number")
    if kind == "positive_float" and not (is_number and value > 0):
        raise bad("a positive number")
    if kind == "flag" and not isinstance(value, bool):
        raise bad("true or false")
    if kind == "columns":
        if is_int:
            value = [value]
        elif isinstance(value, str):
            try:
                value = _columns(value)
            except argparse.ArgumentTypeError:
                raise bad("tag column numbers >= 1") from None
        if not (isinstance(value, list) and value and all(isinstance(c, int) and c >= 1 for c in value)):
            raise bad("tag column numbers >= 1")
    if kind == "resume" and not isinstance(value, (bool, str)):
        raise bad("true, false or a checkpoint folder")
    if kind == "options" and not isinstance(value, dict):
        raise bad("a table of adapter config fields")
    if kind == "float":
        value = float(value)
    relative = isinstance(value, str) and not Path(value).is_absolute() and not value.startswith(HUB_PREFIX)
    if relative and (kind == "path" or kind == "resume" or (option.name == "encoder" and (path.parent / value).exists())):
        value = str(path.parent / value)
    return value


def resolve_options(args: argparse.Namespace) -> dict[str, Any]:
    """Defaults, then the config file, then the flags given: one value per option."""
    values = {option.name: option.default for option in OPTIONS}
    if args.config is not None:
        values.update(read_config(args.config))
    values.update({name: getattr(args, name) for name in BY_NAME if getattr(args, name) is not None})
    if isinstance(values["adapter_options"], list):  # flags: (key, value) pairs
        values["adapter_options"] = dict(values["adapter_options"])
    if values["adapter_options"] and not values["adapter"]:
        raise NagNerInputError("--adapter-options needs --adapter METHOD")
    if values["lr"] is None:
        values["lr"] = 5e-4 if values["adapter"] else 5e-5
    if values["tag_columns"] is not None and values["tag_columns"] and isinstance(values["tag_columns"][0], list):
        values["tag_columns"] = [c for columns in values["tag_columns"] for c in columns]  # flag: lists per word
    missing = [_flag(name) for name in REQUIRED if not values[name]]
    if missing:
        raise NagNerInputError(f"missing {', '.join(missing)} (give it as a flag or in --config)")
    return values


# ------------------------------------------------------------------------------------------- run
def read_training_data(
    path: str, format: str, tag_columns: list[int] | None, language: str = "en"
) -> list[Sentence]:
    """Sentences of ``path`` (see :func:`nagner.data.loading.read_annotations`); an empty set is refused."""
    sentences = read_annotations(path, format, tag_columns, language=language)
    if not sentences:
        raise NagNerInputError("no sentences in this file", path)
    return sentences


def build_adapter_config(method: str, options: dict[str, Any] | None) -> Any:
    """The `nagner.peft` config of ``method`` with ``options`` (targets default to all-linear);
    NagNerInputError for an unknown method or field, or a bad value."""
    from nagner.peft import config_from_options, method_names

    if method not in method_names():
        raise NagNerInputError(f"unknown --adapter {method!r}; known: {', '.join(method_names())}")
    try:
        return config_from_options(method, options)
    except ValueError as error:
        raise NagNerInputError(f"--adapter-options: {error}") from None


def _is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


def run(args: argparse.Namespace) -> int:
    """Read data, build a model on the encoder, train, and print where the best model is."""
    values = resolve_options(args)
    output_dir = Path(values["output_dir"])
    if output_dir.exists() and not output_dir.is_dir():
        raise NagNerInputError("is a file; expected an output folder", output_dir)
    from nagner.data.text import check_language

    check_language(values["text_language"])
    train_sentences = read_training_data(
        values["train"], values["format"], values["tag_columns"], values["text_language"]
    )
    dev_sentences = None
    if values["dev"] is not None:
        dev_sentences = read_training_data(
            values["dev"], values["format"], values["tag_columns"], values["text_language"]
        )
    if _is_main_process():
        logging.basicConfig(format="%(asctime)s %(name)s: %(message)s", level=logging.WARNING)
        logging.getLogger("nagner").setLevel(logging.INFO)

    from nagner.training import TrainingOptions, build_model, train_model  # torch: after the cheap checks

    config_kwargs = {name: values[name] for name in CONFIG_KWARGS if values[name] is not None}
    adapter = build_adapter_config(values["adapter"], values["adapter_options"]) if values["adapter"] else None
    from nagner.checkpoint import quiet_transformers

    try:
        with quiet_transformers():  # no "Loading weights" bar, no notes on the unused pooler
            model = build_model(values["encoder"], train_sentences, seed=values["seed"], **config_kwargs)
    except OSError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise NagNerInputError(f"cannot load the encoder {values['encoder']!r}: {first_line}") from None
    if adapter is not None:
        from nagner.peft import TargetError

        try:
            model.attach_adapter(adapter)
        except TargetError as error:
            raise NagNerInputError(f"--adapter {values['adapter']}: {error}") from None
    options = TrainingOptions(
        output_dir=output_dir,
        epochs=values["epochs"],
        learning_rate=values["lr"],
        head_learning_rate=values["head_lr"],
        batch_size=values["batch_size"],
        eval_batch_size=values["eval_batch_size"],
        warmup_ratio=values["warmup_ratio"],
        weight_decay=values["weight_decay"],
        seed=values["seed"],
        max_steps=values["max_steps"],
        logging_steps=values["logging_steps"],
        save_checkpoints=not values["no_checkpoints"],
        resume_from_checkpoint=values["resume"] or None,
        progress_bar=not values["no_progress"],
        train_word_embeddings=values["train_word_embeddings"],
        tune_decoding=not values["no_tuning"],
    )
    result = train_model(model, train_sentences, dev_sentences, options)
    if _is_main_process():
        if result.encoding.unfit:
            print(f"note: {result.encoding.unfit} of {result.encoding.entities} training entities could not be "
                  "targets (see the warning above)", file=sys.stderr)
        if result.best_dev_f1 is not None:
            print(f"best dev F1 {100 * result.best_dev_f1:.2f} at epoch {result.best_epoch:g}")
            if result.decoding is not None:
                d = result.decoding
                print(f"decoding tuned on dev: start threshold {d['start_threshold']:g}, beam {d['beam_size']}, "
                      f"END bias {d['end_bias']:g}, score threshold {d['score_threshold']:g} "
                      f"(dev F1 {100 * d['dev_f1']:.2f})")
        else:
            print("no dev set: the final model is kept")
        print(f"trained {result.global_step} steps in {result.train_seconds:.1f} s; model: {result.best_dir}")
    return 0

"""Flags shared by `ask` and `evaluate` (models, retrieval, the agent's switches), read into an
`AgentSpec` (`knowledge_qa.assembly` builds the agent)."""

from __future__ import annotations

import argparse

from knowledge_qa.agent import AgentOptions
from knowledge_qa.assembly import AgentSpec
from nagner.common.cli import key_value, positive_int


def non_negative_float(value: str) -> float:
    """argparse type: a float >= 0."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if number < 0 or number != number:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value!r}")
    return number


def add_agent_arguments(parser: argparse.ArgumentParser) -> None:
    """--core/--extractor (local models) or --server (HTTP), --index, and the loop's switches."""
    models = parser.add_argument_group("models (local transformers models, or one OpenAI-compatible server)")
    models.add_argument("--core", metavar="MODEL", help="core model: a transformers model name or folder, or an adapter folder from `knowledge-qa train`")
    models.add_argument("--extractor", metavar="MODEL", help="extractor model (default: the core model)")
    models.add_argument("--answerer", metavar="MODEL", help="a separate model for FinalAnswer (default: the core model)")
    models.add_argument("--sentence-extractor", action="store_true",
                        help="extract by picking the passage sentence closest to the sub-question (MiniLM embeddings) "
                        "instead of generating a fact")
    models.add_argument("--extractor-hint", action="store_true",
                        help="sentence extractor: query with the sub-question and AddDecomp's hint (default: the sub-question)")
    models.add_argument("--extractor-lexical-weight", type=non_negative_float, default=0.0, metavar="W",
                        help="sentence extractor: add W x the IDF-weighted share of the query's words a sentence "
                        "contains to its cosine (default 0: cosine only)")
    models.add_argument("--adapter", metavar="FOLDER", help="a nagner.peft adapter folder to put on the core model")
    models.add_argument("--server", metavar="URL", help="an OpenAI-compatible server (vLLM, TGI, llama.cpp) instead of local models")
    models.add_argument("--server-model", metavar="NAME", help="the model name the server serves (required with --server)")
    models.add_argument("--server-extractor-model", metavar="NAME", help="the server's extractor model (e.g. a LoRA served by vLLM)")
    models.add_argument("--server-answerer-model", metavar="NAME", help="the server's FinalAnswer model (default: --server-model)")
    models.add_argument("--endpoint", choices=("completions", "chat"), default="completions",
                        help="/v1/completions (raw prompts; exact echo scoring) or /v1/chat/completions (the served "
                        "model's chat template; generate scoring)")
    models.add_argument("--score-mode", choices=("echo", "generate"), default=None,
                        help="how the server scores closed options: prompt log-probs (echo; default for completions) or "
                        "matching a greedy generation (generate; default and only choice for chat)")
    models.add_argument("--prompts", default="fine-tuned", metavar="SET",
                        help="fine-tuned (default: the prompts `knowledge-qa train` trains on), few-shot (instructions and "
                        "worked examples for LLMs that were not fine-tuned), or a JSON file overriding tasks "
                        "(`knowledge-qa prompts --write FILE` writes one to start from)")
    models.add_argument("--temperature", type=non_negative_float, default=0.0, help="server sampling temperature (default 0: greedy)")
    models.add_argument("--exploration-temperature", type=non_negative_float, default=None, metavar="T",
                        help="temperature of AddDecomp's n candidate plans only (exploration needs distinct plans; "
                        "at temperature 0 a server returns n identical ones)")
    models.add_argument("--sampling", type=key_value, nargs="+", default=[], metavar="KEY=VALUE",
                        help="extra fields of generation requests, e.g. top_p=0.9 or use_beam_search=true (JSON values)")
    models.add_argument("--timeout", type=float, default=60.0, help="seconds per HTTP request (default 60)")
    models.add_argument("--concurrency", type=positive_int, default=8, help="HTTP requests in flight at most (default 8)")
    models.add_argument("--device", help="cpu, cuda, cuda:1 … (default: cuda when available)")
    models.add_argument("--model-batch-size", type=positive_int, default=16, help="rows per forward pass (default 16)")

    agent = parser.add_argument_group("agent")
    agent.add_argument("--index", metavar="FOLDER", help="a retrieval index from `knowledge-qa index` (required unless --no-retrieval)")
    agent.add_argument("--top-k", type=positive_int, default=3, help="passages given to the extractor (default 3)")
    agent.add_argument("--branches", type=positive_int, default=3, help="exploration: branches per question at most (default 3)")
    agent.add_argument("--max-steps", type=positive_int, default=12, help="actions per branch before FinalAnswer is forced (default 12)")
    agent.add_argument("--no-decomposition", action="store_true", help="ablation: no AddDecomp; the question is the one sub-question")
    agent.add_argument("--no-retrieval", action="store_true", help="ablation: no RetrieveExtract (the model's own knowledge only)")
    agent.add_argument("--no-exploration", action="store_true", help="ablation: one branch per question")


def agent_spec(args: argparse.Namespace) -> AgentSpec:
    """The `AgentSpec` the flags describe."""
    options = AgentOptions(
        decomposition=not args.no_decomposition,
        retrieval=not args.no_retrieval,
        exploration=not args.no_exploration,
        branches=args.branches,
        max_steps=args.max_steps,
        top_k=args.top_k,
    )
    fields = {name: getattr(args, name) for name in AgentSpec.__dataclass_fields__ if name not in ("options", "sampling")}
    fields["sampling"] = dict(args.sampling)
    return AgentSpec(**fields, options=options)


"""Flags shared by `ask` and `evaluate` (models, retrieval, the agent's switches), and building the
agent from them."""

from __future__ import annotations

import argparse

from knowledge_qa.agent import AgentOptions, GeekAgent
from knowledge_qa.errors import QAInputError
from knowledge_qa.extraction import Extractor
from knowledge_qa.models.base import TextModel
from knowledge_qa.retrieval.base import Retriever
from nagner.cli.arguments import positive_int


def add_agent_arguments(parser: argparse.ArgumentParser) -> None:
    """--core/--extractor (local models) or --server (HTTP), --index, and the loop's switches."""
    models = parser.add_argument_group("models (local transformers models, or one OpenAI-compatible server)")
    models.add_argument("--core", metavar="MODEL", help="core model: a transformers model name or folder, or an adapter folder from `knowledge-qa train`")
    models.add_argument("--extractor", metavar="MODEL", help="extractor model (default: the core model)")
    models.add_argument("--answerer", metavar="MODEL", help="a separate model for FinalAnswer (default: the core model)")
    models.add_argument("--sentence-extractor", action="store_true",
                        help="extract by picking the passage sentence closest to the sub-question (MiniLM embeddings) "
                        "instead of generating a fact")
    models.add_argument("--adapter", metavar="FOLDER", help="a nagner.peft adapter folder to put on the core model")
    models.add_argument("--server", metavar="URL", help="an OpenAI-compatible server (vLLM, TGI, llama.cpp) instead of local models")
    models.add_argument("--server-model", metavar="NAME", help="the model name the server serves (required with --server)")
    models.add_argument("--server-extractor-model", metavar="NAME", help="the server's extractor model (e.g. a LoRA served by vLLM)")
    models.add_argument("--score-mode", choices=("echo", "generate"), default="echo",
                        help="how the server scores closed options: prompt log-probs (echo) or matching a greedy generation")
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


def agent_options(args: argparse.Namespace) -> AgentOptions:
    return AgentOptions(
        decomposition=not args.no_decomposition,
        retrieval=not args.no_retrieval,
        exploration=not args.no_exploration,
        branches=args.branches,
        max_steps=args.max_steps,
        top_k=args.top_k,
    )


def build_models(args: argparse.Namespace, retriever: Retriever | None = None) -> tuple[TextModel, TextModel | Extractor]:
    """(core, extractor) from the flags; a dense ``retriever`` lends the sentence extractor its encoder."""
    if args.sentence_extractor and (args.extractor or args.server_extractor_model):
        raise QAInputError("give either --sentence-extractor or an extractor model, not both")
    if args.server:
        from knowledge_qa.models.http_model import OpenAICompatibleModel

        if not args.server_model:
            raise QAInputError("--server needs --server-model NAME (the model the server serves)")
        if args.core or args.extractor:
            raise QAInputError("give either --server or --core/--extractor, not both")

        def remote(name: str) -> TextModel:
            return OpenAICompatibleModel(args.server, name, timeout=args.timeout, max_concurrency=args.concurrency, score_mode=args.score_mode)

        core = remote(args.server_model)
        extractor = remote(args.server_extractor_model) if args.server_extractor_model else core
        return core, sentence_extractor(retriever) if args.sentence_extractor else extractor
    if not args.core:
        raise QAInputError("no model: give --core MODEL (a name, a folder or an adapter folder) or --server URL")
    core = local_model(args, args.core, args.adapter)
    if args.sentence_extractor:
        return core, sentence_extractor(retriever)
    return core, local_model(args, args.extractor) if args.extractor else core


def local_model(args: argparse.Namespace, name: str, adapter: str | None = None) -> TextModel:
    """A local transformers model on ``--device`` with ``--model-batch-size``."""
    from knowledge_qa.models.transformers_model import TransformersModel

    return TransformersModel.from_pretrained(name, adapter=adapter, device=args.device, batch_size=args.model_batch_size)


def sentence_extractor(retriever: Retriever | None = None) -> Extractor:
    """The sentence extractor; it shares a dense retriever's encoder when that is its own default
    (all-MiniLM-L6-v2), instead of loading the same model twice."""
    from knowledge_qa.extraction import SentenceExtractor
    from knowledge_qa.retrieval.dense import DEFAULT_ENCODER

    encoder = getattr(retriever, "encoder", None)
    return SentenceExtractor(encoder if getattr(encoder, "name", None) == DEFAULT_ENCODER else None)


def build_agent(args: argparse.Namespace) -> GeekAgent:
    """The agent the flags describe; the index is loaded unless retrieval is off."""
    options = agent_options(args)
    retriever = None
    if options.retrieval:
        if not args.index:
            raise QAInputError("retrieval needs --index FOLDER (build one with `knowledge-qa index`), or pass --no-retrieval")
        from knowledge_qa.retrieval import load_retriever

        retriever = load_retriever(args.index)
    core, extractor = build_models(args, retriever)
    answerer = None
    if args.answerer:
        if args.server:
            raise QAInputError("--answerer is a local model; with --server, serve it and use --server-model for both")
        answerer = local_model(args, args.answerer)
    return GeekAgent(core, extractor=extractor, retriever=retriever, answerer=answerer, options=options)

"""Building a GEEK agent from a description of its parts: which models (local transformers models
or one OpenAI-compatible server), which extractor, which index, and the loop's switches.

The command line (`knowledge-qa ask`, `evaluate`) and the benchmark describe an agent the same way,
as an `AgentSpec`, and get the same agent:

    agent = build_agent(AgentSpec(core="out/core", index="out/index", sentence_extractor=True))

`load_parts` loads the models and the index once; `assemble` puts an agent together from them, so
that ablations (``AgentOptions``) can share one set of loaded models.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from knowledge_qa.agent import AgentOptions, GeekAgent
from knowledge_qa.errors import QAInputError
from knowledge_qa.extraction import Extractor, sentence_extractor
from knowledge_qa.models.base import TextModel
from knowledge_qa.prompts import FINE_TUNED, PromptSet, load_prompt_set
from knowledge_qa.retrieval.base import Retriever


@dataclass
class AgentSpec:
    """What an agent is made of (each field is the `knowledge-qa ask` flag of the same name; errors
    name the flags).

    Local models: ``core`` (a transformers name or folder, or an adapter folder from
    `knowledge-qa train`), ``extractor`` (default: the core model), ``answerer`` (a separate
    FinalAnswer model; default: the core model), ``adapter`` (a `nagner.peft` folder put on the
    core model), on ``device`` with ``model_batch_size`` rows per forward pass. Or a ``server``
    (OpenAI-compatible) serving ``server_model`` (and ``server_extractor_model``,
    ``server_answerer_model``) over ``endpoint`` ("completions" or "chat"), scored by ``score_mode``
    (None: the endpoint's default), generating at ``temperature`` (AddDecomp's exploration at
    ``exploration_temperature``) with extra ``sampling`` request fields, with ``timeout`` seconds per
    request and ``concurrency`` requests in flight. ``prompts``: "fine-tuned" (the prompts
    `knowledge-qa train` trains on), "few-shot" (`knowledge_qa.few_shot`) or a JSON file overriding
    tasks of the fine-tuned set (`knowledge_qa.prompts.load_prompt_set`).
    ``sentence_extractor``: extract the passage sentence closest to the sub-question instead of
    generating a fact (``extractor_hint``: with AddDecomp's hint in the query;
    ``extractor_lexical_weight``: reranked by word overlap, `knowledge_qa.extraction`). ``index``: a folder from `knowledge-qa index` (needed when retrieval is on).
    """

    core: str | None = None
    extractor: str | None = None
    answerer: str | None = None
    adapter: str | None = None
    sentence_extractor: bool = False
    extractor_hint: bool = False
    extractor_lexical_weight: float = 0.0
    server: str | None = None
    server_model: str | None = None
    server_extractor_model: str | None = None
    server_answerer_model: str | None = None
    endpoint: str = "completions"
    score_mode: str | None = None
    temperature: float = 0.0
    exploration_temperature: float | None = None
    sampling: dict = field(default_factory=dict)
    prompts: str = "fine-tuned"
    timeout: float = 60.0
    concurrency: int = 8
    device: str | None = None
    model_batch_size: int = 16
    index: str | None = None
    options: AgentOptions = field(default_factory=AgentOptions)


@dataclass
class AgentParts:
    """The loaded parts of an agent: models and, when retrieval is on, the retriever."""

    core: TextModel
    extractor: TextModel | Extractor
    answerer: TextModel | None
    retriever: Retriever | None
    prompts: PromptSet = FINE_TUNED


def load_parts(spec: AgentSpec) -> AgentParts:
    """Load what ``spec`` names; QAInputError for a contradictory or incomplete spec."""
    retriever = None
    if spec.options.retrieval:
        if not spec.index:
            raise QAInputError("retrieval needs an index: --index FOLDER (build one with `knowledge-qa index`), or --no-retrieval")
        from knowledge_qa.retrieval import load_retriever

        retriever = load_retriever(spec.index)
    prompts = prompt_set(spec.prompts)
    core, extractor = _models(spec, retriever)
    answerer = None
    if spec.answerer and spec.server_answerer_model:
        raise QAInputError("give either --answerer (local) or --server-answerer-model, not both")
    if spec.answerer:
        answerer = local_model(spec, spec.answerer)
    elif spec.server_answerer_model:
        if not spec.server:
            raise QAInputError("--server-answerer-model needs --server URL")
        answerer = remote_model(spec, spec.server_answerer_model)
    return AgentParts(core, extractor, answerer, retriever, prompts)


def prompt_set(name: str) -> PromptSet:
    """The prompt set ``name`` names: "fine-tuned", "few-shot" or a JSON file (see `AgentSpec`)."""
    if name == "fine-tuned":
        return FINE_TUNED
    if name == "few-shot":
        from knowledge_qa.few_shot import FEW_SHOT

        return FEW_SHOT
    return load_prompt_set(name)


def assemble(parts: AgentParts, options: AgentOptions) -> GeekAgent:
    """An agent over loaded ``parts`` with the loop's switches ``options`` (retrieval off: no retriever)."""
    retriever = parts.retriever if options.retrieval else None
    return GeekAgent(parts.core, extractor=parts.extractor, retriever=retriever, answerer=parts.answerer,
                     options=options, prompts=parts.prompts)


def build_agent(spec: AgentSpec) -> GeekAgent:
    """The agent ``spec`` describes (see `load_parts` and `assemble`)."""
    return assemble(load_parts(spec), spec.options)


def remote_model(spec: AgentSpec, name: str) -> TextModel:
    """``name`` served by ``spec.server``, with the spec's endpoint, scoring and sampling settings."""
    from knowledge_qa.models.http_model import OpenAICompatibleModel

    return OpenAICompatibleModel(
        spec.server, name, timeout=spec.timeout, max_concurrency=spec.concurrency, score_mode=spec.score_mode,
        endpoint=spec.endpoint, temperature=spec.temperature, exploration_temperature=spec.exploration_temperature,
        sampling=spec.sampling,
    )


def _models(spec: AgentSpec, retriever: Retriever | None) -> tuple[TextModel, TextModel | Extractor]:
    """(core, extractor); a dense ``retriever`` lends the sentence extractor its encoder."""
    if spec.sentence_extractor and (spec.extractor or spec.server_extractor_model):
        raise QAInputError("give either --sentence-extractor or an extractor model, not both")
    if not spec.sentence_extractor and (spec.extractor_hint or spec.extractor_lexical_weight):
        raise QAInputError("--extractor-hint and --extractor-lexical-weight apply to --sentence-extractor only")
    sentence_options = {"use_hint": spec.extractor_hint, "lexical_weight": spec.extractor_lexical_weight}
    if spec.server:
        if not spec.server_model:
            raise QAInputError("--server needs --server-model NAME (the model the server serves)")
        if spec.core or spec.extractor:
            raise QAInputError("give either --server or --core/--extractor, not both")

        core = remote_model(spec, spec.server_model)
        extractor = remote_model(spec, spec.server_extractor_model) if spec.server_extractor_model else core
        return core, sentence_extractor(retriever, **sentence_options) if spec.sentence_extractor else extractor
    if not spec.core:
        raise QAInputError("no model: give --core MODEL (a name, a folder or an adapter folder) or --server URL")
    core = local_model(spec, spec.core, spec.adapter)
    if spec.sentence_extractor:
        return core, sentence_extractor(retriever, **sentence_options)
    return core, local_model(spec, spec.extractor) if spec.extractor else core


def local_model(spec: AgentSpec, name: str, adapter: str | None = None) -> TextModel:
    """A local transformers model on ``spec.device`` with ``spec.model_batch_size``: a
    `ClassifierAnswerer` for a sequence-classification folder, else a `TransformersModel`."""
    from knowledge_qa.models.classifier_model import ClassifierAnswerer, is_classifier_folder
    from knowledge_qa.models.transformers_model import TransformersModel

    if adapter is None and is_classifier_folder(name):
        return ClassifierAnswerer.from_pretrained(name, device=spec.device, batch_size=spec.model_batch_size)

    return TransformersModel.from_pretrained(name, adapter=adapter, device=spec.device, batch_size=spec.model_batch_size)

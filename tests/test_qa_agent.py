"""The GEEK loop with scripted models: every action, the trace, exploration and voting, the
ablation switches, fallbacks for unusable output, batching; then real tiny models and the HTTP
backend end to end (their output is noise, so the loop must survive it)."""

from __future__ import annotations

import math
import re

import pytest

from knowledge_qa.agent import AgentOptions, GeekAgent, vote
from knowledge_qa.corpus import Passage
from knowledge_qa.models.base import TextModel
from knowledge_qa.prompts import ACTION_OPTIONS
from knowledge_qa.retrieval.base import Retriever, ScoredPassage
from knowledge_qa.state import Action, QuestionState

PASSAGES = [
    Passage("Aristotle-0", "Aristotle", "Aristotle was a Greek philosopher who died in 322 BC."),
    Passage("Laptop-0", "Laptop", "The first laptops appeared in the 1980s. They are portable computers."),
]


class KeywordRetriever(Retriever):
    """Passages sharing the most words with the query; records every query."""

    kind = "keyword"

    def __init__(self, passages=PASSAGES):
        self.passages = passages
        self.queries: list[str] = []

    def search_batch(self, queries, k):
        self.queries += list(queries)
        results = []
        for query in queries:
            words = set(query.lower().split())
            ranked = sorted(self.passages, key=lambda p: -len(words & set(p.text.lower().split())))
            results.append([ScoredPassage(p, float(len(words & set(p.text.lower().split())))) for p in ranked[:k]])
        return results

    def save(self, directory):
        raise NotImplementedError


class ScriptedModel(TextModel):
    """Answers by rules on the prompt; counts calls and rows to check batching."""

    def __init__(self, plans=None, final="no", fact="Aristotle died in 322 BC.", self_answer="1980s", action_scores=None):
        self.plans = plans if plans is not None else ["Q: When did Aristotle live? A: 4th century BC Q: When was the laptop invented? A: 1980s"]
        self.final = final
        self.fact = fact
        self.self_answer = self_answer
        self.action_scores = action_scores
        self.calls: list[tuple[str, int]] = []

    def generate(self, prompts, *, max_new_tokens=64, num_candidates=1, stop=()):
        self.calls.append(("generate", len(prompts)))
        out = []
        for prompt in prompts:
            if prompt.startswith("Write the remaining"):
                out.append(list(dict.fromkeys(self.plans[:num_candidates])))
            elif prompt.startswith("Extract"):
                out.append([self.fact] if self.fact else [])
            else:
                out.append([self.self_answer])
        return out

    def score(self, prompts, options):
        self.calls.append(("score", len(prompts)))
        rows = []
        for prompt in prompts:
            if self.action_scores is not None:
                rows.append([self.action_scores(prompt, option) for option in options])
            elif "Next action:" in prompt:
                answered = len(re.findall(r"^A\d+:", prompt, re.MULTILINE))
                open_question = len(re.findall(r"^Q\d+:", prompt, re.MULTILINE)) > answered
                if open_question:  # the first sub-question is retrieved, later ones self-answered
                    want = "retrieve" if answered == 0 else "self answer"
                else:
                    want = "decompose" if answered < 2 else "final answer"
                rows.append([0.0 if option == want else -5.0 for option in options])
            else:
                rows.append([-0.1 if option == self.final else -2.0 for option in options])
        return rows


def test_full_loop_trace():
    retriever = KeywordRetriever()
    agent = GeekAgent(ScriptedModel(), retriever=retriever, options=AgentOptions(exploration=False))
    result = agent.answer("Did Aristotle use a laptop?")
    assert result.answer == "no" and result.votes == {"yes": 0, "no": 1}
    (branch,) = result.branches
    assert [s.action for s in branch.steps] == [
        Action.ADD_DECOMP, Action.RETRIEVE_EXTRACT, Action.ADD_DECOMP, Action.SELF_ANSWER, Action.FINAL_ANSWER,
    ]
    decomp, extract, _, self_answer, final = branch.steps
    assert decomp.sub_question == "When did Aristotle live?" and decomp.hint == "4th century BC"
    assert extract.output == "Aristotle died in 322 BC." and extract.hint == "4th century BC"
    assert extract.passages[0]["id"] == "Aristotle-0"
    assert self_answer.output == "1980s"
    assert final.output == "no" and math.isclose(branch.answer_margin, -1.9)
    assert retriever.queries == ["When did Aristotle live?"]
    assert result.action_counts() == {"AddDecomp": 2, "RetrieveExtract": 1, "SelfAnswer": 1, "FinalAnswer": 1}
    assert result.retrieval_calls() == 1 and result.fallbacks() == 0
    trace = result.to_dict()
    assert trace["branches"][0]["steps"][1]["action"] == "RetrieveExtract"
    assert set(decomp.action_scores) == {"AddDecomp", "FinalAnswer"}  # only allowed actions are scored
    assert set(extract.action_scores) == {"RetrieveExtract", "SelfAnswer"}


def test_references_are_resolved_in_retrieval_queries():
    state = QuestionState("q")
    state.steps.append(__import__("knowledge_qa.state").state.Step(Action.SELF_ANSWER, "Who?", "Plato"))
    assert state.resolve_references("Did # 1 write #1 books? #3") == "Did Plato write Plato books? #3"


def test_unusable_plan_falls_back_to_final_answer():
    agent = GeekAgent(ScriptedModel(plans=["no markers here"]), retriever=KeywordRetriever(), options=AgentOptions(exploration=False))
    result = agent.answer("Did Aristotle use a laptop?")
    steps = result.branches[0].steps
    assert [s.action for s in steps] == [Action.ADD_DECOMP, Action.FINAL_ANSWER]
    assert "unusable plan" in steps[0].fallback and steps[0].raw_output == "no markers here"
    assert result.fallbacks() == 2


def test_unusable_action_scores_and_empty_fact_fall_back():
    model = ScriptedModel(fact="", action_scores=lambda prompt, option: -math.inf)
    agent = GeekAgent(model, retriever=KeywordRetriever(), options=AgentOptions(exploration=False, decomposition=False))
    result = agent.answer("Did Aristotle use a laptop?")
    steps = result.branches[0].steps
    assert [s.action for s in steps] == [Action.RETRIEVE_EXTRACT, Action.FINAL_ANSWER]
    # Both reasons are kept, in order: the action choice fell back, then the extractor wrote nothing.
    assert steps[0].fallback == "action scores unusable (all -inf); empty extractor output; used the top passage's first sentence"
    assert steps[0].output == "Aristotle was a Greek philosopher who died in 322 BC."
    assert steps[1].fallback == "yes/no scores unusable (all -inf); answered no"


def test_an_unusable_first_action_and_unusable_answer_scores_are_both_recorded():
    """A served model that matches no option (seen with a random model behind `transformers serve`):
    the first action falls back to FinalAnswer, whose yes/no scores are unusable too."""
    model = ScriptedModel(action_scores=lambda prompt, option: -math.inf)
    steps = GeekAgent(model, retriever=KeywordRetriever(), options=AgentOptions(exploration=False)).answer("q?").branches[0].steps
    assert [s.action for s in steps] == [Action.FINAL_ANSWER]
    assert steps[0].fallback == "action scores unusable (all -inf); yes/no scores unusable (all -inf); answered no"


def test_step_cap_forces_final_answer():
    model = ScriptedModel(action_scores=lambda prompt, option: 0.0 if option in ("decompose", "self answer") else -1.0)
    agent = GeekAgent(model, retriever=KeywordRetriever(), options=AgentOptions(exploration=False, max_steps=3, max_sub_questions=5))
    steps = agent.answer("Did Aristotle use a laptop?").branches[0].steps
    assert len(steps) == 4 and steps[-1].action == Action.FINAL_ANSWER
    assert steps[-1].fallback == "step cap reached"


def test_sub_question_cap_leaves_final_answer():
    model = ScriptedModel(action_scores=lambda prompt, option: 0.0 if option in ("decompose", "self answer") else -1.0)
    agent = GeekAgent(model, retriever=KeywordRetriever(), options=AgentOptions(exploration=False, max_sub_questions=2))
    steps = agent.answer("q?").branches[0].steps
    assert [s.action for s in steps].count(Action.ADD_DECOMP) == 2 and steps[-1].action == Action.FINAL_ANSWER


def test_exploration_branches_and_votes():
    plans = ["Q: first? A: x", "Q: second? A: y", "Q: third? A: w", "Q: fourth? A: v"]

    def scores(prompt, option):
        if "Next action:" not in prompt:  # branch "second?" says yes, the others no
            return {"yes": 0.0, "no": -1.0}[option] if "second?" in prompt else {"yes": -3.0, "no": 0.0}[option]
        answered = "A1:" in prompt
        open_question = "Q1:" in prompt and not answered
        want = "self answer" if open_question else ("final answer" if answered else "decompose")
        return 0.0 if option == want else -1.0

    agent = GeekAgent(ScriptedModel(plans=plans, action_scores=scores), options=AgentOptions(retrieval=False, branches=3))
    result = agent.answer("q?")
    firsts = [b.steps[0].sub_question for b in result.branches]
    assert sorted(firsts) == ["first?", "second?", "third?"]  # one branch per beam candidate, at most 3
    assert result.votes == {"yes": 1, "no": 2} and result.answer == "no"
    duplicates = ["Q: first? A: x", "Q: first? A: z", "Q: second? A: y"]  # same first sub-question: one branch
    agent = GeekAgent(ScriptedModel(plans=duplicates, action_scores=scores), options=AgentOptions(retrieval=False, branches=3))
    assert sorted(b.steps[0].sub_question for b in agent.answer("q?").branches) == ["first?", "second?"]
    single = GeekAgent(ScriptedModel(plans=plans, action_scores=scores), options=AgentOptions(retrieval=False, exploration=False))
    assert len(single.answer("q?").branches) == 1


def test_vote_tie_goes_to_summed_margin():
    a, b = QuestionState("q"), QuestionState("q")
    a.answer, a.answer_margin = "yes", 2.0
    b.answer, b.answer_margin = "no", -0.5
    assert vote([a, b]) == ("yes", {"yes": 1, "no": 1})
    b.answer_margin = -3.0
    assert vote([a, b])[0] == "no"


def test_ablations_remove_actions():
    no_decomposition = GeekAgent(ScriptedModel(), retriever=KeywordRetriever(), options=AgentOptions(decomposition=False))
    steps = no_decomposition.answer("Did Aristotle use a laptop?").branches[0].steps
    assert [s.action for s in steps] == [Action.RETRIEVE_EXTRACT, Action.FINAL_ANSWER]
    assert steps[0].sub_question == "Did Aristotle use a laptop?"
    no_retrieval = GeekAgent(ScriptedModel(), options=AgentOptions(retrieval=False, exploration=False))
    actions = [s.action for s in no_retrieval.answer("Did Aristotle use a laptop?").branches[0].steps]
    assert Action.RETRIEVE_EXTRACT not in actions and actions.count(Action.SELF_ANSWER) == 2
    bare = GeekAgent(ScriptedModel(), options=AgentOptions(retrieval=False, decomposition=False))
    assert [s.action for s in bare.answer("q?").branches[0].steps] == [Action.SELF_ANSWER, Action.FINAL_ANSWER]
    with pytest.raises(ValueError, match="no retriever"):
        GeekAgent(ScriptedModel())


def test_batch_equals_one_by_one_and_calls_are_batched():
    questions = ["Did Aristotle use a laptop?", "Is a laptop portable?", "Was Aristotle Greek?"]
    model = ScriptedModel()
    batched = GeekAgent(model, retriever=KeywordRetriever(), options=AgentOptions(exploration=False)).answer_batch(questions)
    # 5 actions each: 5 rounds of (score actions + run the action), every call serving all 3 questions
    assert [rows for _, rows in model.calls] == [3] * 10
    for question, result in zip(questions, batched):
        alone = GeekAgent(ScriptedModel(), retriever=KeywordRetriever(), options=AgentOptions(exploration=False)).answer(question)
        assert alone.to_dict() | {"seconds": 0} == result.to_dict() | {"seconds": 0}


def test_empty_question_is_refused():
    with pytest.raises(ValueError, match="empty question"):
        GeekAgent(ScriptedModel(), options=AgentOptions(retrieval=False)).answer("   ")


def test_action_options_are_distinct():
    assert len(set(ACTION_OPTIONS.values())) == len(Action)


@pytest.mark.parametrize("kind", ["seq2seq", "causal"])
def test_tiny_real_models_survive_noise(kind, tiny_text_model):
    """Random weights write noise: the loop must still end every branch with yes/no."""
    model = tiny_text_model(kind)
    agent = GeekAgent(model, retriever=KeywordRetriever(), options=AgentOptions(branches=2, max_steps=6))
    results = agent.answer_batch(["Did Aristotle use a laptop?", "Is coffee a drink?"])
    for result in results:
        assert result.answer in ("yes", "no")
        assert all(b.answer in ("yes", "no") for b in result.branches)
        assert all(len(b.steps) <= 6 + 1 for b in result.branches)


def test_http_backend_end_to_end():
    from fake_openai_server import FakeOpenAIServer

    from knowledge_qa.models.http_model import OpenAICompatibleModel

    with FakeOpenAIServer() as server, OpenAICompatibleModel(server.url, "fake", timeout=5) as model:
        agent = GeekAgent(model, retriever=KeywordRetriever(), options=AgentOptions(branches=2))
        result = agent.answer("Did Aristotle use a laptop?")
    # The fake server's completions are reversed words: no plan parses, so the loop falls back.
    assert result.answer in ("yes", "no")
    assert result.fallbacks() >= 1
    assert any(p.get("echo") for p in server.payloads)  # actions and answers were scored by prompt log-probs


def test_sentence_extractor_picks_the_answering_sentence():
    from knowledge_qa.extraction import ExtractionRequest, SentenceExtractor, split_sentences

    # A split needs a capital (or digit, quote) after the stop: "Dr. no" stays whole.
    assert split_sentences("Laptops appeared in 1981. They are portable. Dr. no") == [
        "Laptops appeared in 1981.", "They are portable.", "Dr. no"
    ]
    extractor = SentenceExtractor()
    facts = extractor.extract([
        ExtractionRequest("When did Aristotle die?", "", PASSAGES),
        ExtractionRequest("Are laptops portable computers?", "", PASSAGES),
        ExtractionRequest("anything", "", []),
    ])
    assert facts == ["Aristotle was a Greek philosopher who died in 322 BC.", "They are portable computers.", ""]
    agent = GeekAgent(ScriptedModel(), extractor=extractor, retriever=KeywordRetriever(), options=AgentOptions(exploration=False))
    steps = agent.answer("Did Aristotle use a laptop?").branches[0].steps
    assert steps[1].action == Action.RETRIEVE_EXTRACT and steps[1].output == "Aristotle was a Greek philosopher who died in 322 BC."


def test_lexical_overlap_by_hand():
    """Query words {boiling, point, water}; over 3 sentences idf(boiling) = idf(point) = log 2.5
    (in one sentence), idf(water) = log 2 (in two)."""
    from knowledge_qa.extraction import lexical_overlap

    sentences = ["Water boils at 100 degrees.", "The boiling point of water is 100 C.", "Salt is a mineral."]
    total = 2 * math.log(2.5) + math.log(2)
    found = lexical_overlap("What is the boiling point of #1 water?", sentences)
    assert found == pytest.approx([math.log(2) / total, 1.0, 0.0])
    assert lexical_overlap("What is it?", sentences) == [0.0, 0.0, 0.0]  # no content words


class _FixedEncoder:
    """Unit vectors by text, recording what it was asked to encode."""

    def __init__(self, vectors: dict[str, list[float]]):
        self.vectors, self.seen = vectors, []

    def encode(self, texts):
        import numpy as np

        self.seen.extend(texts)
        rows = np.array([self.vectors[t] for t in texts], dtype=np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_lexical_reranking_and_the_hint_change_the_choice_as_documented():
    from knowledge_qa.corpus import Passage
    from knowledge_qa.extraction import ExtractionRequest, SentenceExtractor

    topical, answering = "Water is wet and clear.", "The boiling point of water is high."
    question, hint = "What is the boiling point of water?", "very high"
    encoder = _FixedEncoder({question: [1.0, 0.0], f"{question} {hint}": [0.0, 1.0], topical: [0.9, 0.436], answering: [0.8, 0.6]})
    request = ExtractionRequest(question, hint, [Passage("p", "Water", f"{topical} {answering}")])
    # cosine alone: 0.90 against 0.80; λ 0.2 adds 0.2 × overlap: the answering sentence has every query word
    assert SentenceExtractor(encoder).extract([request]) == [topical]
    assert SentenceExtractor(encoder, lexical_weight=0.2).extract([request]) == [answering]
    assert SentenceExtractor(encoder, use_hint=True).extract([request]) == [answering]  # the hint's vector points at it
    assert f"{question} {hint}" in encoder.seen
    with pytest.raises(ValueError, match="lexical_weight"):
        SentenceExtractor(encoder, lexical_weight=-1)


def test_a_separate_answerer_gives_the_final_answer():
    core, answerer = ScriptedModel(final="no"), ScriptedModel(final="yes")
    agent = GeekAgent(core, retriever=KeywordRetriever(), answerer=answerer, options=AgentOptions(exploration=False))
    result = agent.answer("Did Aristotle use a laptop?")
    assert result.answer == "yes" and math.isclose(result.branches[0].answer_margin, 1.9)
    assert answerer.calls == [("score", 1)]  # only FinalAnswer went to the answerer


def test_sentence_extractor_shares_a_dense_index_encoder_only_when_it_is_its_own(tiny_encoder):
    from knowledge_qa.extraction import sentence_extractor
    from knowledge_qa.retrieval import DenseRetriever

    minilm = DenseRetriever(PASSAGES)
    assert sentence_extractor(minilm).encoder is minilm.encoder  # one MiniLM, not two
    other = DenseRetriever(PASSAGES, encoder=str(tiny_encoder))
    assert sentence_extractor(other).encoder is not other.encoder
    assert sentence_extractor(KeywordRetriever()).encoder.name == minilm.encoder.name

"""`FEW_SHOT`: prompts for instruction-following LLMs that were never fine-tuned on GEEK's actions
(a 7B chat model on vLLM, say). Each task says what it wants, shows two worked examples in the same
state format the agent writes, and ends on the same cue as `FINE_TUNED`, so the agent parses and scores
the answers exactly as it does for a fine-tuned model. The examples are ours, written for this file.

`knowledge-qa prompts --write FILE` saves this set as JSON to start a set of one's own from; pass the
file with ``--prompts FILE``.
"""

from __future__ import annotations

from knowledge_qa.prompts import PromptSet, PromptTemplate

_STATE_OPEN = "Question: Could a honey bee fly across the Atlantic Ocean?"
_STATE_STEP = (
    "Question: Could a honey bee fly across the Atlantic Ocean?\n"
    "Q1: How far can a honey bee fly without feeding?\n"
    "A1: A honey bee can fly about 10 kilometres on one load of nectar."
)
_STATE_TWO = (
    "Question: Was the printing press invented before Columbus reached America?\n"
    "Q1: When was the printing press invented?\n"
    "A1: Johannes Gutenberg built his printing press around 1440.\n"
    "Q2: When did Columbus reach America?\n"
    "A2: Columbus reached the Americas in 1492."
)

FEW_SHOT = PromptSet(
    "few-shot",
    {
        "action": PromptTemplate(
            "You answer an implicit yes/no question step by step. Given the question and the sub-questions "
            "answered so far, choose the next action, one of: decompose (ask the next sub-question), "
            "retrieve (look the open sub-question up in the knowledge source), self answer (answer the open "
            "sub-question from what you know, for reasoning steps), final answer (enough is known).",
            "Next action:",
            (
                (_STATE_OPEN, "decompose"),
                (_STATE_STEP + "\nQ2: How wide is the Atlantic Ocean?", "retrieve"),
                (_STATE_TWO, "final answer"),
            ),
        ),
        "decompose": PromptTemplate(
            "Break the question into the sub-questions still needed to answer it. Write each as "
            "'Q: <sub-question> A: <your best guess of its answer>' on one line. Refer to the answer of "
            "sub-question k as #k.",
            "Plan:",
            (
                (_STATE_OPEN, "Q: How far can a honey bee fly without feeding? A: a few kilometres "
                              "Q: How wide is the Atlantic Ocean? A: about 5,000 kilometres Q: Is #1 more than #2? A: no"),
                (_STATE_STEP, "Q: How wide is the Atlantic Ocean? A: about 5,000 kilometres Q: Is #1 more than #2? A: no"),
            ),
        ),
        "self_answer": PromptTemplate(
            "Answer the last sub-question in one short sentence, using the answers above.",
            "Answer:",
            (
                (_STATE_STEP + "\nQ2: How wide is the Atlantic Ocean?\nA2: The Atlantic is about 5,000 km wide.\n"
                 "Q3: Is #1 more than #2?", "No, 10 km is much less than 5,000 km."),
                (_STATE_TWO + "\nQ3: Is #1 before #2?", "Yes, 1440 is before 1492."),
            ),
        ),
        "extract": PromptTemplate(
            "Write one short fact from the passages that answers the question. The hint is a guess that may "
            "be wrong; trust the passages.",
            "Fact:",
            (
                ("Question: When was the printing press invented?\nHint: 1500\nPassages:\n"
                 "[Printing press] Around 1440 Johannes Gutenberg introduced a printing press with movable "
                 "metal type in Mainz.", "Johannes Gutenberg built his printing press around 1440."),
                ("Question: How far can a honey bee fly without feeding?\nPassages:\n"
                 "[Honey bee] Foragers usually stay within 3 km of the hive, and a bee can fly about 10 km "
                 "on a single load of nectar.", "A honey bee can fly about 10 kilometres on one load of nectar."),
            ),
        ),
        "final_answer": PromptTemplate(
            "Answer the question with yes or no, using the answers found so far.",
            "Final answer:",
            ((_STATE_TWO, "yes"), (_STATE_STEP + "\nQ2: How wide is the Atlantic Ocean?\n"
                                   "A2: The Atlantic is about 5,000 km wide.", "no")),
        ),
    },
)

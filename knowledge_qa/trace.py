"""A readable rendering of an agent result, for `knowledge-qa ask` and notebooks."""

from __future__ import annotations

from knowledge_qa.agent import AgentResult
from knowledge_qa.state import Action


def format_trace(result: AgentResult) -> str:
    """The answer first, then every branch step by step (fallbacks marked with ``!``)."""
    votes = ", ".join(f"{answer} {count}" for answer, count in result.votes.items())
    lines = [f"Q: {result.question}", f"Answer: {result.answer}   (votes: {votes}; {result.seconds:.2f} s)"]
    for number, branch in enumerate(result.branches, start=1):
        lines.append(f"-- branch {number}: {branch.answer} (log p(yes) - log p(no) = {branch.answer_margin:+.3f})")
        for step in branch.steps:
            if step.action == Action.ADD_DECOMP:
                text = f"sub-question: {step.sub_question}" + (f"   [hint: {step.hint}]" if step.hint else "")
            elif step.action == Action.RETRIEVE_EXTRACT:
                sources = ", ".join(p["id"] for p in step.passages)
                text = f"{step.sub_question} → {step.output}   [from {sources}]"
            elif step.action == Action.SELF_ANSWER:
                text = f"{step.sub_question} → {step.output}"
            else:
                text = step.output
            lines.append(f"   {step.action.value:<16} {text}")
            if step.fallback:
                lines.append(f"   {'':<16} ! {step.fallback}")
    return "\n".join(lines)

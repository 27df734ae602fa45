"""GEEK knowledge-excavation agent for implicit complex questions (see issue: knowledge_qa)."""

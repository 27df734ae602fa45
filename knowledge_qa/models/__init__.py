"""Model backends of the agent: `TextModel` (the interface), `TransformersModel` (local) and
`OpenAICompatibleModel` (HTTP). The backends import lazily: the HTTP client needs no torch model."""

from knowledge_qa.models.base import TextModel

__all__ = ["TextModel"]

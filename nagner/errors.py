"""The NER task's name for bad user input: `nagner.common.errors.InputError` itself."""

from nagner.common.errors import InputError as NagNerInputError

__all__ = ["NagNerInputError"]

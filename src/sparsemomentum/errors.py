"""The one exception type for mistakes a user can fix.

Everything a user can get wrong (an option value, a data file, a model with nothing to
sparsify) raises :class:`UserError` with one sentence that says what is wrong and what to
do. The command line prints that sentence and exits with status 2 instead of a traceback;
library users can catch it like any ``ValueError``.
"""


class UserError(ValueError):
    """A mistake in the input that the user can fix; the message says how."""


def check_choice(option: str, value: str, choices) -> str:
    """Return ``value`` if it is one of ``choices``, else raise a UserError naming them."""
    if value not in choices:
        raise UserError(f"unknown {option} {value!r}; choose one of: {', '.join(sorted(choices))}.")
    return value

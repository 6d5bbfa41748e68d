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


def check_interval(option: str, value: float, interval: str, advice: str = "") -> float:
    """Return ``value`` if it lies in ``interval`` (written "(0, 1]", "[0, 1)", "[1, inf)"),
    else raise a UserError that says where it must lie; NaN lies in no interval."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"{option} must be a number, got {value!r}.")
    low_text, high_text = (part.strip() for part in interval[1:-1].split(","))
    low, high = float(low_text), float(high_text)
    above = value >= low if interval[0] == "[" else value > low
    below = value <= high if interval[-1] == "]" else value < high
    if above and below:
        return value
    if high == float("inf"):
        where = f"at least {low_text}" if interval[0] == "[" else f"above {low_text}"
    else:
        where = f"in {interval}"
    raise UserError(f"{option} must be {where}, got {value}" + (f"; {advice}." if advice else "."))

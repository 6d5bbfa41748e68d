"""Test errors reported in the paper, as data, so the report can put them beside our runs.

Dettmers & Zettlemoyer (2019), "Sparse Networks from Scratch: Faster Training without Losing
Performance". SNIP numbers are the ones the paper quotes from Lee et al. (2019); the DSR and
SET numbers and sparse momentum at 10 % come from the paper's LeNet-300-100 *accuracy* table
and are converted to error here. Dense baselines are stored at density 1.0, as dense runs are.
"""

from __future__ import annotations

CITATION = "Dettmers & Zettlemoyer (2019)"


def _error(accuracy: float) -> float:
    return round(100.0 - accuracy, 3)


# (model, dataset, method) -> {density: test error in %}
TEST_ERROR: dict[tuple[str, str, str], dict[float, float]] = {
    ("lenet300-100", "mnist", "sparse-momentum"): {
        0.01: 2.36,
        0.02: 1.99,
        0.05: 1.53,
        0.08: 1.447,
        0.10: _error(98.67),
    },
    ("lenet300-100", "mnist", "dense"): {1.0: 1.34},
    ("lenet300-100", "mnist", "snip"): {0.02: 2.4, 0.05: 1.6},
    ("lenet300-100", "mnist", "dsr"): {
        0.01: _error(97.54),
        0.05: _error(98.32),
        0.10: _error(98.44),
    },
    ("lenet300-100", "mnist", "set"): {
        0.01: _error(95.80),
        0.05: _error(98.14),
        0.10: _error(98.39),
    },
    ("lenet5-caffe", "mnist", "sparse-momentum"): {
        0.005: 1.144,
        0.01: 0.83,
        0.02: 0.76,
        0.05: 0.69,
        0.08: 0.645,
    },
    ("lenet5-caffe", "mnist", "dense"): {1.0: 0.58},
    ("lenet5-caffe", "mnist", "snip"): {0.01: 1.1, 0.02: 0.8},
}


def paper_error(model: str, dataset: str, method: str, density: float) -> float | None:
    """The paper's test error (%) for this setting, or None where the paper has no number."""
    return TEST_ERROR.get((model, dataset, method), {}).get(round(density, 6))

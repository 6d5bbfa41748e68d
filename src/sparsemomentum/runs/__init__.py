"""Run folders on disk: the bottom layer that training writes and reports and exports read.

``folder`` (config.json, metrics.jsonl, summary.json or diverged.json), ``checkpoint``
(checkpoint files that survive a kill and prove they are intact), ``layout`` (where a sweep
puts each run) and ``locks`` (one process per run) know nothing of models, data or training,
so every layer above can use them without importing another.
"""

from .checkpoint import CHECKPOINT, PREVIOUS, NoCheckpoint, load_checkpoint, save_checkpoint
from .folder import (
    SUMMARY_KEYS,
    RunFolder,
    is_run_file,
    read_divergence,
    read_metrics,
    read_summary,
    write_atomically,
)
from .layout import NOT_RESULT_SETTINGS, arm_from_path, density_folder, run_path

__all__ = [
    "CHECKPOINT", "NOT_RESULT_SETTINGS", "PREVIOUS", "SUMMARY_KEYS", "NoCheckpoint", "RunFolder",
    "arm_from_path", "density_folder", "is_run_file", "load_checkpoint", "read_divergence",
    "read_metrics", "read_summary", "run_path", "save_checkpoint", "write_atomically",
]  # fmt: skip

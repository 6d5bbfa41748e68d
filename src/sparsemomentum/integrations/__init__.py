"""Sparse training inside the trainers people already use.

``integrations.transformers.SparseTrainingCallback`` for Hugging Face's ``Trainer`` and
``integrations.lightning.SparseTrainingCallback`` for ``lightning.pytorch.Trainer``: each
builds a sparsifier from the trainer's model and optimizer, keeps masked weights exactly
zero after every optimizer step the trainer takes (gradient accumulation and clipping
included), updates masks on the method's schedule, and keeps its state in the trainer's
checkpoints. Importing this package imports neither library; each module needs its extra
(``pip install 'sparsemomentum[hf]'`` or ``'sparsemomentum[lightning]'``).
"""

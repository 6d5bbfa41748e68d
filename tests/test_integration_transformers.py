"""The Hugging Face Trainer callback: exact counts after every optimizer step (gradient
accumulation 2, clipping on), mask updates, logs, and a bit-identical resume."""

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments  # noqa: E402

from sparsemomentum.integrations.transformers import SparseTrainingCallback  # noqa: E402


class Characters(torch.utils.data.Dataset):
    """Fixed random 'text': 64 windows of 16 tokens."""

    def __init__(self):
        self.tokens = torch.randint(0, 84, (64, 16), generator=torch.Generator().manual_seed(0))

    def __len__(self):
        return len(self.tokens)

    def __getitem__(self, index):
        return {"input_ids": self.tokens[index], "labels": self.tokens[index]}


class Watch(TrainerCallback):
    """After every optimizer step: are masked weights zero and the count exact?"""

    def __init__(self, sparse: SparseTrainingCallback):
        self.sparse, self.checked = sparse, 0

    def on_step_end(self, args, state, control, **kwargs):
        sparsifier = self.sparse.sparsifier
        assert sparsifier.nonzero_count() == sparsifier.target_nonzero_count()
        for name, weight in sparsifier.weights.items():
            assert torch.all(weight[~sparsifier.masks[name]] == 0), name
        self.checked += 1


def model():
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=84, n_positions=16, n_embd=32, n_layer=2, n_head=2)
    return GPT2LMHeadModel(config)


def arguments(out, steps, **extra):
    return TrainingArguments(
        output_dir=str(out), max_steps=steps, per_device_train_batch_size=4,
        gradient_accumulation_steps=2, max_grad_norm=1.0, learning_rate=1e-3, report_to=[],
        use_cpu=True, logging_steps=5, save_steps=10, seed=0, data_seed=0, disable_tqdm=True,
        **extra,
    )  # fmt: skip


class StopAt(TrainerCallback):
    """Interrupts a run after ``step`` steps (the checkpoint of that step is written first)."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


def train(out, steps=20, resume=None, stop_at=None):
    callback = SparseTrainingCallback(density=0.2, update_interval=5)
    watch = Watch(callback)
    callbacks = [callback, watch] + ([StopAt(stop_at)] if stop_at else [])
    trainer = Trainer(model=model(), args=arguments(out, steps), train_dataset=Characters(),
                      callbacks=callbacks)  # fmt: skip
    trainer.train(resume_from_checkpoint=resume)
    return trainer, callback, watch


def test_masks_stay_exact_through_accumulation_and_clipping_and_updates_happen(tmp_path):
    trainer, callback, watch = train(tmp_path / "run", 20)
    sparsifier = callback.sparsifier
    assert watch.checked == 20 and sparsifier.step_count == 20 and sparsifier.update_count == 3
    assert "transformer.h.0.attn.c_attn.weight" in sparsifier.weights  # GPT-2's Conv1D layers
    assert "transformer.wte.weight" in sparsifier.dense_tensors  # tied to the output layer
    logged = [entry for entry in trainer.state.log_history if "density" in entry]
    assert logged and logged[0]["density"] == pytest.approx(0.2, abs=1e-4)


def test_resuming_from_a_trainer_checkpoint_is_bit_identical(tmp_path):
    whole, whole_callback, _ = train(tmp_path / "whole")
    train(tmp_path / "cut", stop_at=10)  # writes checkpoint-10, sparsemomentum.pt beside it
    resumed, resumed_callback, _ = train(
        tmp_path / "cut", resume=str(tmp_path / "cut" / "checkpoint-10")
    )
    for name, mask in whole_callback.sparsifier.masks.items():
        assert torch.equal(mask, resumed_callback.sparsifier.masks[name])
    for (name, a), (_, b) in zip(whole.model.named_parameters(), resumed.model.named_parameters()):
        assert torch.equal(a, b), name
    assert resumed_callback.sparsifier.update_count == whole_callback.sparsifier.update_count

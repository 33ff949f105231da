"""LongAlign's loss weighting for trainers built on transformers' `Trainer` (TRL, axolotl).

Written by `longctx train --export`. Each line of data/packs.jsonl is one micro-batch for one
GPU: sequences packed one after another (`position_ids` restart at 0 with each sequence, so
transformers' attention keeps them apart) with `labels` (-100: no loss) and, per sequence, the
loss weight of its target tokens (`seq_lens`, `seq_weights`). The weights were computed by
longctx over the whole optimizer step (GPUs x gradient accumulation packs), so a step's loss is

    sum over the step's target tokens of  weight * negative log-likelihood

-- the token mean for `loss = "token-mean"`, LongAlign's mean of per-sequence means for
`loss = "longalign"`. `Trainer` divides a micro-batch's loss by the gradient accumulation steps
and DDP / DeepSpeed average gradients over processes; `LongAlignLossMixin` returns
`sum(w * nll) * num_processes`, times the accumulation steps where `Trainer` will divide by them
(transformers before `Trainer.loss_is_scaled_for_ga`; from it on, the mixin sets it), so a step's
gradient is the gradient of the step's loss and the logged loss is the step's loss. It also keeps
the file's order (longctx shuffled each epoch already).
"""
import torch
import torch.nn.functional as F
from torch.utils.data import SequentialSampler
from transformers import Trainer

# transformers >= 5.25 asks a trainer whether its loss is scaled for gradient accumulation;
# earlier versions divide it by the accumulation steps unless the model takes `num_items_in_batch`
# (`model_accepts_loss_kwargs`, which the mixin turns off so that they always divide).
_ASKS_IF_SCALED = hasattr(Trainer, "loss_is_scaled_for_ga")


def collate_packs(rows):
    """One pack per device and micro-batch (a pack is already a micro-batch of longctx)."""
    if len(rows) != 1:
        raise ValueError(
            f"per_device_train_batch_size must be 1 (got {len(rows)} rows): each line of "
            "data/packs.jsonl is a whole micro-batch, packed by longctx"
        )
    row = rows[0]
    weights = []
    for n, w in zip(row["seq_lens"], row["seq_weights"]):
        weights.extend([w] * n)
    labels = torch.tensor([row["labels"]], dtype=torch.long)
    weights = torch.tensor([weights], dtype=torch.float64)
    weights = torch.where(labels == -100, torch.zeros_like(weights), weights)
    return {
        "input_ids": torch.tensor([row["input_ids"]], dtype=torch.long),
        "position_ids": torch.tensor([row["position_ids"]], dtype=torch.long),
        "labels": labels,
        "weights": weights,
    }


def weighted_nll(model, inputs):
    """`sum(w * nll)` over the pack's target tokens, the LM head run only where a target is
    predicted (the logits of a long prompt are never built)."""
    labels = inputs["labels"]
    weights = inputs["weights"]
    # Position t predicts token t + 1.
    predicts = (labels[0, 1:] != -100).nonzero().squeeze(-1)
    outputs = model(
        input_ids=inputs["input_ids"],
        position_ids=inputs["position_ids"],
        logits_to_keep=predicts,
        use_cache=False,
    )
    logits = outputs.logits[0].float()
    nll = F.cross_entropy(logits, labels[0, predicts + 1], reduction="none")
    w = weights[0, predicts + 1].to(nll.dtype)
    return (nll * w).sum(), outputs


class LongAlignLossMixin:
    """Put before the trainer class: `class T(LongAlignLossMixin, SFTTrainer)`."""

    loss_is_scaled_for_ga = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.model_accepts_loss_kwargs = False

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        return SequentialSampler(dataset)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, outputs = weighted_nll(model, inputs)
        # DDP and DeepSpeed average gradients over processes; the step's loss is their sum.
        loss = loss * self.accelerator.num_processes
        if not _ASKS_IF_SCALED:
            loss = loss * getattr(self, "current_gradient_accumulation_steps", self.args.gradient_accumulation_steps)
        return (loss, outputs) if return_outputs else loss

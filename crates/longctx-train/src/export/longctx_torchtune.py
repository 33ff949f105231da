"""The data, loss weighting and schedules of a longctx job for torchtune's stock recipes.

Written by `longctx train --export --engine torchtune`; config.yaml names these components.
Each line of data/packs.jsonl is one micro-batch for one GPU: sequences packed one after
another (`position_ids` restart at 0 with each; the attention mask is block-causal, built by
torchtune's `packed_block_causal_mask`), `labels` (-100: no loss) and, per sequence, the loss
weight of its target tokens (`seq_lens`, `seq_weights`), computed by longctx over the whole
optimizer step (GPUs x gradient accumulation packs), so that a step's loss is

    sum over the step's target tokens of  weight * negative log-likelihood

-- the token mean for `loss = "token-mean"`, LongAlign's mean of per-sequence means for
`loss = "longalign"`.

The recipes call the loss as `loss_fn(logits, labels)` (no room for weights), multiply it by the
micro-batch's label count and divide the step's gradient by the step's label count (summed over
GPUs). So `collate_packs` keeps the weights of the batch it returns (the data loader runs in the
training process: torchtune's recipes use no loader workers), and `WeightedLoss` returns
`sum(w * nll) * step_labels / batch_labels`, which the recipe turns back into `sum(w * nll)`
for the step. The logged loss is then the step's loss.
"""
import json
import math

import torch
import torch.nn.functional as F
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import Dataset
from torchtune.modules.attention_utils import packed_block_causal_mask

_BATCH = {}


class PretokenizedData:
    """Stands for the tokenizer the recipe instantiates: longctx tokenized the data already."""

    pad_id = 0
    max_seq_len = None


def pretokenized(**_):
    return PretokenizedData()


class Packs(Dataset):
    def __init__(self, path):
        with open(path) as f:
            self.rows = [json.loads(line) for line in f if line.strip()]

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]


def packs(tokenizer=None, path="data/packs.jsonl"):
    return Packs(path)


def collate_packs(rows, padding_idx=0, ignore_idx=-100):
    if len(rows) != 1:
        raise ValueError(
            f"batch_size must be 1 (got {len(rows)} rows): each line of data/packs.jsonl is a whole "
            "micro-batch, packed by longctx"
        )
    row = rows[0]
    labels = torch.tensor([row["labels"]], dtype=torch.long)
    weights = []
    for n, w in zip(row["seq_lens"], row["seq_weights"]):
        weights.extend([w] * n)
    weights = torch.tensor([weights], dtype=torch.float64)
    _BATCH["weights"] = torch.where(labels == ignore_idx, torch.zeros_like(weights), weights)
    _BATCH["step_labels"] = row["step_labels"]
    return {
        "tokens": torch.tensor([row["input_ids"]], dtype=torch.long),
        "labels": labels,
        "input_pos": torch.tensor([row["position_ids"]], dtype=torch.long),
        "mask": packed_block_causal_mask([torch.tensor(row["seq_lens"], dtype=torch.long)]),
    }


class WeightedLoss(torch.nn.Module):
    """`loss_fn(logits, labels)` of the recipes with the weights of the current batch."""

    def __init__(self, ignore_index=-100):
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, logits, labels):
        # The recipe shifted the labels left by one (and flattened both).
        weights = _BATCH["weights"]
        weights = torch.cat([weights[..., 1:], torch.zeros_like(weights[..., :1])], dim=-1).reshape(-1)
        if weights.numel() != labels.numel():
            raise RuntimeError("the weights kept by collate_packs are not those of this batch")
        nll = F.cross_entropy(logits.float(), labels, ignore_index=self.ignore_index, reduction="none")
        n = int((labels != self.ignore_index).sum())
        weighted = (nll * weights.to(device=nll.device, dtype=nll.dtype)).sum()
        return weighted * (_BATCH["step_labels"] / max(n, 1))


def schedule(optimizer, num_warmup_steps, num_training_steps, kind="cosine", last_epoch=-1):
    """Linear warm-up, then cosine / linear decay or constant (transformers' formulas)."""

    def factor(step):
        if step < num_warmup_steps:
            return step / max(1, num_warmup_steps)
        if kind == "constant":
            return 1.0
        progress = (step - num_warmup_steps) / max(1, num_training_steps - num_warmup_steps)
        if kind == "linear":
            return max(0.0, 1.0 - progress)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))

    return LambdaLR(optimizer, factor, last_epoch)

"""An axolotl plugin for a longctx job (written by `longctx train --export --engine axolotl`;
config.yml lists it under `plugins`). It hands axolotl the packs of data/packs.jsonl as they are
(packed, masked and weighted by longctx; axolotl's own tokenization and sample packing are not
used), collates one pack per micro-batch and GPU, and trains with LongAlign's loss weighting:
the trainer is axolotl's own with `LongAlignLossMixin` of longctx_hooks.py in front (its
`compute_loss` and sampler; see that file)."""
from axolotl.common.datasets import TrainDatasetMeta
from axolotl.core.trainers.base import AxolotlTrainer
from axolotl.integrations.base import BasePlugin
from datasets import load_dataset

from longctx_hooks import LongAlignLossMixin, collate_packs

PACKS = "data/packs.jsonl"


class LongAlignAxolotlTrainer(LongAlignLossMixin, AxolotlTrainer):
    pass


class PacksCollator:
    """axolotl builds its collator as `cls(tokenizer, **kwargs)`; the packs need neither."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, rows):
        return collate_packs(rows)


class LongctxPlugin(BasePlugin):
    def load_datasets(self, cfg, preprocess=False):
        train = load_dataset("json", data_files=PACKS, split="train")
        return TrainDatasetMeta(train_dataset=train, eval_dataset=None, total_num_steps=cfg.max_steps)

    def get_trainer_cls(self, cfg):
        return LongAlignAxolotlTrainer

    def get_collator_cls_and_kwargs(self, cfg, is_eval=False):
        return PacksCollator, {}

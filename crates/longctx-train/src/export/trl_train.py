"""Runs the job of config.yaml with TRL's SFTTrainer (written by `longctx train --export
--engine trl`; see README.md). Usage: `python train.py config.yaml`, or ./launch.sh for GPUs."""
import sys

import torch
import yaml
from datasets import load_dataset
from peft import LoraConfig
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

from longctx_hooks import LongAlignLossMixin, collate_packs


class LongAlignSFTTrainer(LongAlignLossMixin, SFTTrainer):
    pass


def load_model(m):
    kwargs = {"dtype": getattr(torch, m["dtype"]), "attn_implementation": m["attn_implementation"]}
    if m.get("rope_scaling"):
        config = AutoConfig.from_pretrained(m["name_or_path"])
        params = dict(config.rope_parameters or {})
        params.update(m["rope_scaling"])
        params.setdefault("original_max_position_embeddings", config.max_position_embeddings)
        config.rope_parameters = params
        kwargs["config"] = config
    if m.get("load_in_4bit"):
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=kwargs["dtype"],
        )
    return AutoModelForCausalLM.from_pretrained(m["name_or_path"], **kwargs)


def main(path):
    with open(path) as f:
        cfg = yaml.safe_load(f)
    model = load_model(cfg["model"])
    tokenizer = AutoTokenizer.from_pretrained(cfg["model"]["name_or_path"])
    dataset = load_dataset("json", data_files=cfg["data"]["packs"], split="train")
    args = SFTConfig(**cfg["training"])
    trainer = LongAlignSFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        data_collator=collate_packs,
        peft_config=LoraConfig(**cfg["lora"]) if cfg.get("lora") else None,
    )
    trainer.train()
    trainer.save_model(args.output_dir)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "config.yaml")

#!/usr/bin/env python3
"""Writes the small long-context fine-tuning set shipped in data/train-sample/ (run by hand;
standard library only; seeded, so the same files come out every time).

Each sample is a synthetic registry document — fictional facility units with their building,
floor, access code and manager, and the managers' offices — of roughly 700-1,000 tokens,
with one question about it: a lookup (the access code, the floor, the manager of a unit), a
reverse lookup (the unit with a given code) or a two-hop question (the city where a unit's
manager works). Nothing is taken from LongBench or any other dataset.

  data/train-sample/train.jsonl           training conversations (LongAlign's chat format):
                                          the user turn is LongBench's multifieldqa_en prompt
                                          filled with the document and question, the
                                          assistant turn the bare answer
  data/train-sample/heldout.jsonl         held-out conversations (other seeds) for `longctx loss`
  data/train-sample/eval/multifieldqa_en.jsonl
                                          the same held-out samples as LongBench records, so
                                          that `longctx run` evaluates them with
                                          multifieldqa_en's prompt and its F1 scorer

    python3 tools/make_train_data.py [--train 100] [--heldout 30]
"""
import argparse
import hashlib
import json
import os
import random

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

# LongBench's multifieldqa_en prompt (config/dataset2prompt.json), which the runner applies
# to the evaluation records: training on the same text teaches the format it is scored in.
PROMPT = (
    "Read the following text and answer briefly.\n\n{context}\n\nNow, answer the following question "
    "based on the above text, only give me the answer and do not output any other words.\n\n"
    "Question: {input}\nAnswer:"
)

SYLLABLES = ["ka", "lo", "mi", "ra", "ven", "tor", "sil", "dun", "mar", "bel", "cor", "fen", "gal", "hes",
             "ist", "jor", "kel", "lum", "nor", "ost", "pra", "quin", "rel", "sor", "tam", "ul", "vor", "wen"]
COLOURS = ["Amber", "Cobalt", "Crimson", "Ivory", "Jade", "Onyx", "Saffron", "Slate", "Teal", "Umber",
           "Violet", "Zinc", "Copper", "Indigo", "Garnet", "Olive", "Pearl", "Russet", "Sable", "Topaz"]
BUILDINGS = ["the North Hall", "the Riverside Annex", "the Old Mill", "the Glasshouse", "the East Tower",
             "the Quarry Building", "the Harbor Depot", "the Lantern Block"]
CITIES = ["Lisbon", "Tampere", "Ghent", "Valparaiso", "Osaka", "Perth", "Quebec City", "Tbilisi", "Bergen",
          "Cordoba", "Leipzig", "Nagpur", "Halifax", "Trieste"]
FIRST = ["Ana", "Bruno", "Chen", "Dalia", "Emeka", "Farah", "Goran", "Hana", "Ivo", "Jonas", "Kaia", "Luca",
         "Mira", "Nils", "Oona", "Pavel", "Rosa", "Sami", "Tomas", "Uma", "Vera", "Wim", "Yara", "Zeno"]
FILLER = [
    "The unit was refurbished after the spring inspection and now meets the storage code.",
    "Deliveries to it are scheduled on weekday mornings only.",
    "Its shelving was replaced with steel racks that carry up to four hundred kilograms each.",
    "Visitors must sign the log at the reception desk before entering.",
    "The ventilation in this part of the building is checked every quarter.",
    "A fire drill is held there twice a year, usually in March and October.",
    "The unit keeps a small archive of shipping manifests from previous seasons.",
    "Lighting was upgraded to sensors that switch off after ten minutes without movement.",
    "Cleaning staff have access only between six and eight in the evening.",
    "The loading ramp next to it is shared with the neighbouring units.",
]


def name(rng):
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()


def code(rng):
    return f"{rng.randint(1000, 9999)}-{rng.choice('ABCDEFGHJKLMNPRSTUVWXYZ')}"


def document(rng):
    """A registry: units with their attributes, then the managers' offices."""
    managers = rng.sample(FIRST, 8)
    managers = [f"{m} {name(rng)}" for m in managers]
    offices = {m: rng.choice(CITIES) for m in managers}
    units = []
    used = set()
    for colour in rng.sample(COLOURS, rng.randint(9, 12)):
        c = code(rng)
        while c in used:
            c = code(rng)
        used.add(c)
        units.append({
            "name": f"{colour} {rng.choice(['wing', 'store', 'room', 'vault', 'bay'])}",
            "building": rng.choice(BUILDINGS),
            "floor": rng.randint(1, 12),
            "code": c,
            "manager": rng.choice(managers),
        })
    paragraphs = [f"Registry of the {name(rng)} logistics site, revision {rng.randint(2, 19)}."]
    for u in units:
        sentences = [
            f"The access code of the {u['name']} is {u['code']}.",
            f"The {u['name']} is managed by {u['manager']}.",
        ]
        sentences += rng.sample(FILLER, 2)
        rng.shuffle(sentences)
        paragraphs.append(" ".join([f"The {u['name']} is in {u['building']}, on floor {u['floor']}."] + sentences))
    staff = [f"{m} works from the {offices[m]} office." for m in managers]
    rng.shuffle(staff)
    paragraphs.append("Managers and their offices: " + " ".join(staff))
    return "\n\n".join(paragraphs), units, offices


def question(rng, units, offices):
    u = rng.choice(units)
    kind = rng.choice(["code", "floor", "manager", "reverse", "city"])
    if kind == "code":
        return f"What is the access code of the {u['name']}?", u["code"]
    if kind == "floor":
        return f"On which floor is the {u['name']}?", f"floor {u['floor']}"
    if kind == "manager":
        return f"Who manages the {u['name']}?", u["manager"]
    if kind == "reverse":
        return f"Which unit has the access code {u['code']}?", f"the {u['name']}"
    return f"In which city is the office of the manager of the {u['name']}?", offices[u["manager"]]


def sample(seed):
    rng = random.Random(seed)
    context, units, offices = document(rng)
    q, a = question(rng, units, offices)
    return context, q, a


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=100)
    ap.add_argument("--heldout", type=int, default=30)
    args = ap.parse_args()
    out = os.path.join(ROOT, "data", "train-sample")
    os.makedirs(os.path.join(out, "eval"), exist_ok=True)
    with open(os.path.join(out, "train.jsonl"), "w", encoding="utf-8") as f:
        for i in range(args.train):
            context, q, a = sample(1_000 + i)
            user = PROMPT.format(context=context, input=q)
            f.write(json.dumps({"messages": [{"role": "user", "content": user},
                                             {"role": "assistant", "content": a}]}, ensure_ascii=False) + "\n")
    with open(os.path.join(out, "heldout.jsonl"), "w", encoding="utf-8") as chats, \
            open(os.path.join(out, "eval", "multifieldqa_en.jsonl"), "w", encoding="utf-8") as records:
        for i in range(args.heldout):
            context, q, a = sample(900_000 + i)
            user = PROMPT.format(context=context, input=q)
            chats.write(json.dumps({"messages": [{"role": "user", "content": user},
                                                 {"role": "assistant", "content": a}]}, ensure_ascii=False) + "\n")
            record = {
                "input": q,
                "context": context,
                "answers": [a],
                "length": len(q.split()) + len(context.split()) + len(a.split()),
                "dataset": "multifieldqa_en",
                "language": "en",
                "all_classes": None,
                "_id": hashlib.sha256(f"longctx-train-sample-{i}".encode()).hexdigest()[:48],
            }
            records.write(json.dumps(record, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()

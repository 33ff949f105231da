"""Helpers shared by the oracle scripts (imported from this directory when a script runs as
`python tools/oracles/<script>.py`). Standard library only at import time: numpy and torch
are imported by the helpers that need them."""
import json
import os


def floats(v):
    """Float32 values as Python floats (shortest repr that round-trips the float32)."""
    import numpy as np

    return [float(x) for x in np.asarray(v, dtype=np.float32)]


def write_fixture(path, head, lists, root, ensure_ascii=False):
    """Writes `head` plus each `(key, rows)` list as JSON, one list element per line, so that
    the fixture diffs readably (`ensure_ascii` escapes non-ASCII text, for fixtures whose
    strings exercise Unicode edge cases); prints what it wrote relative to `root`."""
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(json.dumps(head, ensure_ascii=ensure_ascii)[:-1])
        for key, rows in lists:
            f.write(f', "{key}": [\n')
            f.write(",\n".join(json.dumps(r, ensure_ascii=ensure_ascii) for r in rows))
            f.write("\n]")
        f.write("}\n")
    print(f"wrote {os.path.relpath(path, root)} ({os.path.getsize(path)} bytes, "
          + ", ".join(f"{len(rows)} {key}" for key, rows in lists) + ")")


def f16_random_weights(model, seed, weight_std):
    """Replaces every weight of `model` by a seeded normal draw scaled by
    `weight_std(name, shape)` (layer-norm weights centred on 1), rounded to float16 values;
    returns the model in float16."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    sd = model.state_dict()
    new = {}
    for name in sorted(sd):
        t = sd[name]
        draw = torch.randn(t.shape, generator=gen, dtype=torch.float32) * weight_std(name, t.shape)
        if "LayerNorm" in name and name.endswith("weight"):
            draw = draw + 1.0
        new[name] = draw.to(torch.float16).to(torch.float32)  # exactly representable in f16
    model.load_state_dict(new)
    return model.half()

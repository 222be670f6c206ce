"""Held-out loss per corpus source, for comparing seeds (diagnostic; not part of `make train-seeds`).

For each source, its held-out documents (sorted by id) are joined with EOS and cut into rows as in training;
the first min(24, available) rows are scored with the loss of train.LOSS_DEFINITION from the saved F16 weights.

    /usr/bin/python3 tools/train-seeds/eval_by_source.py gpt2 0,1,2,3
"""
import collections
import gzip
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bpe import ByteLevelBPE  # noqa: E402
from models import build_model  # noqa: E402
from safetensors_io import read_safetensors  # noqa: E402
from train import FAMILIES, ROW_TOKENS, mean_loss, rows_from_stream  # noqa: E402

ROWS_PER_SOURCE = 24


def main():
    family, seeds = sys.argv[1], sys.argv[2].split(",")
    root = sys.argv[3] if len(sys.argv) > 3 else "data"
    torch.set_num_threads(1)
    tok = ByteLevelBPE(json.load(open(os.path.join(root, "models", family, "tokenizer.json"), encoding="utf-8")))
    eos = FAMILIES[family]["eos_token_id"]
    docs = collections.defaultdict(list)
    with gzip.open(os.path.join(root, "corpus", "corpus.jsonl.gz"), "rt", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            if d["split"] == "heldout":
                docs[d["source"]].append((d["id"], d["text"]))
    rows = {}
    for source, items in sorted(docs.items()):
        ids = [tok.encode(text) for _, text in sorted(items)]
        rows[source] = rows_from_stream(ids, eos, min(ROWS_PER_SOURCE, sum(len(x) + 1 for x in ids) // ROW_TOKENS))
    print("| model | " + " | ".join(f"{s} ({r.shape[0]} rows)" for s, r in rows.items()) + " |")
    print("|---|" + "---:|" * len(rows))
    for seed in seeds:
        model = build_model(FAMILIES[family]).eval()
        path = os.path.join(root, "models", f"{family}-s{seed}", "model.safetensors")
        model.load_state_dict({k: v.float() for k, v in read_safetensors(path).items()}, strict=True)
        print(f"| {family}-s{seed} | " + " | ".join(f"{mean_loss(model, r):.3f}" for r in rows.values()) + " |", flush=True)


if __name__ == "__main__":
    main()

"""Checks models.py against Hugging Face's own outputs in /work/shared/golden.

Loads each golden model.safetensors into our modules (strict: every name must match, nothing missing or
extra besides GPT-2's tied lm_head), runs `input_ids` in float32 and compares with HF's `logits`.
Exit status 1 if any max |diff| >= 1e-4.

    /usr/bin/python3 tools/train-seeds/check_golden.py [GOLDEN_DIR]
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models import build_model  # noqa: E402
from safetensors_io import read_safetensors  # noqa: E402

TOLERANCE = 1e-4
CASES = ["gpt2-tiny", "neox-tiny", "neox-tiny-seq", "pythia-tiny-f16"]


def check(case_dir):
    cfg = json.load(open(os.path.join(case_dir, "config.json")))
    model = build_model(cfg).eval()
    weights = {k: v.float() for k, v in read_safetensors(os.path.join(case_dir, "model.safetensors")).items()}
    model.load_state_dict(weights, strict=True)
    golden = read_safetensors(os.path.join(case_dir, "golden.safetensors"))
    with torch.no_grad():
        logits = model(golden["input_ids"].long())
    return (logits - golden["logits"]).abs().max().item()


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "/work/shared/golden"
    torch.set_num_threads(1)
    ok = True
    for case in CASES:
        diff = check(os.path.join(root, case))
        passed = diff < TOLERANCE
        ok &= passed
        print(f"{case:18s} max |logits - HF| = {diff:.2e}  {'ok' if passed else 'FAIL'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

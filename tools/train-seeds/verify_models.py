"""Re-checks the committed models from their files alone: safetensors layout (header padded to 8, F16,
contiguous offsets, no lm_head for GPT-2), HF tensor names (strict load), and the held-out loss recomputed in
float32 from heldout-rows.json against training.json (|diff| < 1e-4 expected; seedscope's test allows 1e-3).

    /usr/bin/python3 tools/train-seeds/verify_models.py [data/models]
"""
import glob
import json
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models import build_model  # noqa: E402
from safetensors_io import read_safetensors  # noqa: E402
from train import mean_loss  # noqa: E402


def check_layout(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    assert (8 + n) % 8 == 0 and list(header)[0] == "__metadata__" and header["__metadata__"] == {"format": "pt"}
    end = 0
    for name, info in sorted(((k, v) for k, v in header.items() if k != "__metadata__"), key=lambda kv: kv[1]["data_offsets"]):
        assert info["dtype"] == "F16" and info["data_offsets"][0] == end, name
        end = info["data_offsets"][1]
    assert 8 + n + end == len(raw), "trailing bytes"
    return header


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "data/models"
    torch.set_num_threads(1)
    total, ok = 0, True
    for d in sorted(glob.glob(os.path.join(root, "*-s*"))):
        cfg = json.load(open(os.path.join(d, "config.json")))
        rec = json.load(open(os.path.join(d, "training.json")))
        header = check_layout(os.path.join(d, "model.safetensors"))
        assert "lm_head.weight" not in header
        model = build_model(cfg).eval()
        model.load_state_dict({k: v.float() for k, v in read_safetensors(os.path.join(d, "model.safetensors")).items()}, strict=True)
        rows = torch.tensor(json.load(open(os.path.join(root, rec["family"], "heldout-rows.json"))), dtype=torch.long)
        loss = mean_loss(model, rows)
        diff = abs(loss - rec["heldout_loss"])
        ok &= diff < 1e-4
        size = os.path.getsize(os.path.join(d, "model.safetensors"))
        total += size
        print(f"{os.path.basename(d):10s} held-out loss {loss:.5f} (training.json {rec['heldout_loss']:.5f}, diff {diff:.1e}); {size:,} B")
    print(f"total model.safetensors: {total / 1e6:.1f} MB")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

"""Prints the per-seed results table (markdown) from data/models/*/training.json.

    /usr/bin/python3 tools/train-seeds/summarize.py [data/models]
"""
import glob
import json
import os
import sys


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "data/models"
    print("| model | seed | tokens | final train loss | held-out loss (F16 weights) | wall time | model.safetensors |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for path in sorted(glob.glob(os.path.join(root, "*-s*", "training.json"))):
        t = json.load(open(path))
        size = os.path.getsize(os.path.join(os.path.dirname(path), "model.safetensors"))
        print(f"| {t['model']} | {t['seed']} | {t['training']['tokens']:,} | {t['final_train_loss']:.4f} | "
              f"{t['heldout_loss']:.4f} | "
              f"{t['training']['wall_seconds'] / 60:.1f} min | {size:,} B |")


if __name__ == "__main__":
    main()

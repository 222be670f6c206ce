"""Builds data/corpus/corpus.jsonl.gz from /work/shared/corpus/*.jsonl with a document-level held-out split.

Every document is kept with its `id`, `source` and `text`, plus `split` ("train" or "heldout").
The held-out set is HELDOUT_FRACTION of the documents of each `source` (at least one), drawn with
random.Random(f"{HELDOUT_SEED}:{source}") from that source's documents in file order. Output order is
the input order (files sorted by name, lines in file order); gzip mtime is 0, so reruns give the same bytes.

    /usr/bin/python3 tools/train-seeds/build_corpus.py [--src /work/shared/corpus] [--out data/corpus]
"""
import argparse
import collections
import glob
import gzip
import json
import os
import random

HELDOUT_SEED = 20240611
HELDOUT_FRACTION = 0.05


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", default="/work/shared/corpus")
    ap.add_argument("--out", default="data/corpus")
    args = ap.parse_args()

    docs = []
    for path in sorted(glob.glob(os.path.join(args.src, "*.jsonl"))):
        with open(path, encoding="utf-8") as f:
            docs += [json.loads(line) for line in f if line.strip()]
    assert len({d["id"] for d in docs}) == len(docs), "ids must be unique"

    by_source = collections.defaultdict(list)
    for d in docs:
        by_source[d["source"]].append(d["id"])
    heldout = set()
    for source in sorted(by_source):
        ids = by_source[source]
        k = max(1, round(HELDOUT_FRACTION * len(ids)))
        heldout.update(random.Random(f"{HELDOUT_SEED}:{source}").sample(ids, k))

    os.makedirs(args.out, exist_ok=True)
    stats = collections.defaultdict(lambda: [0, 0])
    tmp = os.path.join(args.out, "corpus.jsonl.gz.tmp")
    with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz:
        for d in docs:
            split = "heldout" if d["id"] in heldout else "train"
            row = {"id": d["id"], "source": d["source"], "text": d["text"], "split": split}
            gz.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
            stats[(d["source"], split)][0] += 1
            stats[(d["source"], split)][1] += len(d["text"])
    os.replace(tmp, os.path.join(args.out, "corpus.jsonl.gz"))

    print("| source | train docs | train chars | heldout docs | heldout chars |")
    print("|---|---:|---:|---:|---:|")
    tot = [0, 0, 0, 0]
    for source in sorted(by_source):
        tr, ho = stats[(source, "train")], stats[(source, "heldout")]
        tot = [a + b for a, b in zip(tot, tr + ho)]
        print(f"| {source} | {tr[0]:,} | {tr[1]:,} | {ho[0]:,} | {ho[1]:,} |")
    print(f"| **total** | **{tot[0]:,}** | **{tot[1]:,}** | **{tot[2]:,}** | **{tot[3]:,}** |")
    print(f"size: {os.path.getsize(os.path.join(args.out, 'corpus.jsonl.gz')):,} bytes")


if __name__ == "__main__":
    main()

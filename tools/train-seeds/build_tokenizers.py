"""Cuts the GPT-2 and GPT-NeoX-20B tokenizers down to ~4k tokens with ids unchanged, and writes a check file.

    /usr/bin/python3 tools/train-seeds/build_tokenizers.py [--shared /work/shared] [--out data/models]

Writes data/models/<family>/tokenizer.json and data/models/<family>/tokenizer-check.json: for a fixed set
of held-out documents (text cut to CHECK_CHARS characters) and a few hand-made edge cases, the ids this
Python encoder produces, so the TypeScript tokenizer can be tested against them.
"""
import argparse
import collections
import gzip
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bpe import ByteLevelBPE, cut_tokenizer  # noqa: E402

# GPT-2: 256 byte tokens (ids 0..255) + 3839 merges (ids 256..4094) + <|endoftext|> moved from 50256 to 4095.
GPT2_MERGES = 3839
GPT2_EOS = 4095
# NeoX: <|endoftext|> 0, <|padding|> 1, 243 byte tokens (2..244) + 3755 merges (245..3999) = 4000 tokens,
# deliberately not a multiple of 128; the models pad vocab_size to 4096 as Pythia pads 50277 to 50304.
# The 23 space-run added tokens (ids 50254..50276, "  " to 24 spaces) are dropped: they lie outside the kept
# id range, and HF matches added tokens before BPE, so keeping them would need new ids and change encodings.
NEOX_MERGES = 3755

CHECK_DOCS = 50
CHECK_CHARS = 2000
EDGE_CASES = [
    "Hello world",
    " the  quick\tbrown\n\n\nfox   jumps   ",
    "Cafe\u0301 cr\u00e8me bru\u0302le\u0301e",  # decomposed accents: NFC changes them for NeoX only
    "Hello<|endoftext|>world<|padding|>!",
    "emoji \U0001F642 and CJK \u6f22\u5b57, digits 1234567 3.14159",
    "def f(x):\r\n    return x  # tab\tend\n",
    "it's we're they've I'm you'll he'd 'S",
]


def check_documents(corpus_path):
    """CHECK_DOCS held-out documents, spread over sources: per source (sorted), the first ids in sorted order."""
    held = collections.defaultdict(list)
    with gzip.open(corpus_path, "rt", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            if d["split"] == "heldout":
                held[d["source"]].append(d)
    sources = sorted(held)
    picked, i = [], 0
    while len(picked) < CHECK_DOCS:
        for s in sources:
            if i < len(held[s]) and len(picked) < CHECK_DOCS:
                picked.append(sorted(held[s], key=lambda d: d["id"])[i])
        i += 1
    return picked


def write_check(tok, docs, path, name):
    cases = [{"id": d["id"], "text": d["text"][:CHECK_CHARS]} for d in docs]
    cases += [{"id": f"edge/{i}", "text": t} for i, t in enumerate(EDGE_CASES)]
    for c in cases:
        c["ids"] = tok.encode(c["text"])
    out = {"tokenizer": name, "note": "ids from tools/train-seeds/bpe.py (no BOS/EOS added); text is the document cut to "
           f"{CHECK_CHARS} characters", "cases": cases}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default="/work/shared")
    ap.add_argument("--out", default="data/models")
    ap.add_argument("--corpus", default="data/corpus/corpus.jsonl.gz")
    args = ap.parse_args()

    gpt2_full = json.load(open(os.path.join(args.shared, "tokenizers/gpt2/tokenizer.json"), encoding="utf-8"))
    neox_full = json.load(open(os.path.join(args.shared, "tokenizers/neox/tokenizer.json"), encoding="utf-8"))
    # sanity checks of the full tokenizers against well-known encodings
    assert ByteLevelBPE(gpt2_full).encode("Hello world") == [15496, 995]
    assert ByteLevelBPE(neox_full).encode("Hello world") == [12092, 1533]

    families = {
        "gpt2": cut_tokenizer(gpt2_full, GPT2_MERGES, keep_added=(), eos_id=GPT2_EOS),
        "pythia": cut_tokenizer(neox_full, NEOX_MERGES, keep_added=("<|endoftext|>", "<|padding|>")),
    }
    full_tok = {"gpt2": ByteLevelBPE(gpt2_full), "pythia": ByteLevelBPE(neox_full)}
    docs = check_documents(args.corpus)
    for family, tj in families.items():
        os.makedirs(os.path.join(args.out, family), exist_ok=True)
        with open(os.path.join(args.out, family, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(tj, f, ensure_ascii=False, indent=2)
        tok = ByteLevelBPE(tj)
        # every id the cut tokenizer emits must mean the same string in the full tokenizer
        full_inv = {i: t for t, i in full_tok[family].vocab.items()}
        assert all(full_inv.get(i) == t for t, i in tok.vocab.items() if t != "<|endoftext|>")
        for d in docs[:10]:
            assert tok.decode(tok.encode(d["text"])) == (d["text"] if family == "gpt2" else __import__("unicodedata").normalize("NFC", d["text"]))
        write_check(tok, docs, os.path.join(args.out, family, "tokenizer-check.json"), f"{family} (cut)")
        print(f"{family}: {len(tj['model']['vocab'])} vocab entries, {len(tj['model']['merges'])} merges, "
              f"added {[(t['content'], t['id']) for t in tj['added_tokens']]}")


if __name__ == "__main__":
    main()

"""Byte-level BPE (GPT-2 / GPT-NeoX) in Python: cutting a tokenizer.json down, and encoding text with it.

Cutting keeps the special tokens, the byte tokens and the FIRST n merges, so every kept token has the same
id as in the full tokenizer (GPT-2: bytes are 0..255 and merge k makes 256+k; NeoX: specials 0..1, bytes
2..244, merge k makes 245+k). `cut_tokenizer` checks that layout and the closure of the kept merges.

Encoding follows HF `tokenizers` for these files: split out added tokens, NFC normalisation (NeoX),
GPT-2's pre-tokenizer regex, bytes → unicode symbols, then merges by lowest rank. Results are cached per
pre-token, which is what makes pure Python fast enough here.
"""
import copy
import unicodedata

import regex

PRETOKENIZE = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


def bytes_to_unicode():
    """GPT-2's reversible byte → printable-unicode-character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def _merge_pair(merge):
    return tuple(merge.split(" ")) if isinstance(merge, str) else tuple(merge)


def cut_tokenizer(full, n_merges, keep_added, eos_content="<|endoftext|>", eos_id=None):
    """Returns a new tokenizer.json dict with the first `n_merges` merges.

    keep_added: contents of added tokens to keep at their original ids (NeoX: <|endoftext|>, <|padding|>).
    eos_id: when given, `eos_content` is (re)placed at this id (GPT-2: its 50256 is out of the cut range).
    """
    model = full["model"]
    vocab, merges = model["vocab"], [_merge_pair(m) for m in model["merges"]]
    byte_symbols = set(bytes_to_unicode().values())
    first_merge_id = vocab["".join(merges[0])]
    for k, (a, b) in enumerate(merges[:n_merges]):
        assert vocab[a + b] == first_merge_id + k, f"merge {k} ({a} {b}) makes id {vocab[a + b]}, not {first_merge_id + k}"
    kept = {tok: i for tok, i in vocab.items() if i < first_merge_id + n_merges}
    assert all(i < first_merge_id for tok, i in kept.items() if tok in byte_symbols or len(tok) == 1)
    for a, b in merges[:n_merges]:  # closure: both parts and the result are kept tokens
        assert a in kept and b in kept and a + b in kept, f"merge {a} {b} is not closed"
    added = [t for t in full["added_tokens"] if t["content"] in keep_added]
    if eos_id is not None:
        eos = next(t for t in full["added_tokens"] if t["content"] == eos_content)
        kept.pop(eos_content, None)
        kept[eos_content] = eos_id
        added = [t for t in added if t["content"] != eos_content] + [dict(eos, id=eos_id)]
    ids = sorted(kept.values())
    assert ids == list(range(len(ids))), "kept ids must be contiguous from 0"
    out = copy.deepcopy({k: v for k, v in full.items() if k != "model"})
    out["added_tokens"] = sorted(added, key=lambda t: t["id"])
    out["model"] = dict(copy.deepcopy({k: v for k, v in model.items() if k not in ("vocab", "merges")}),
                        vocab=dict(sorted(kept.items(), key=lambda kv: kv[1])),
                        merges=[" ".join(m) for m in merges[:n_merges]])
    return out


class ByteLevelBPE:
    def __init__(self, tokenizer_json):
        model = tokenizer_json["model"]
        self.vocab = model["vocab"]
        self.ranks = {_merge_pair(m): r for r, m in enumerate(model["merges"])}
        self.nfc = (tokenizer_json.get("normalizer") or {}).get("type") == "NFC"
        self.added = {t["content"]: t["id"] for t in tokenizer_json["added_tokens"]}
        self.added_re = regex.compile("|".join(regex.escape(c) for c in sorted(self.added, key=len, reverse=True)))
        self.byte_symbol = bytes_to_unicode()
        self.cache = {}

    def _bpe(self, word):
        symbols = [self.byte_symbol[b] for b in word.encode("utf-8")]
        while len(symbols) > 1:
            pairs = [(self.ranks.get((a, b), 1 << 60), i) for i, (a, b) in enumerate(zip(symbols, symbols[1:]))]
            rank, i = min(pairs)
            if rank == 1 << 60:
                break
            a, b = symbols[i], symbols[i + 1]
            merged, j = [], 0
            while j < len(symbols):  # merge every occurrence of (a, b), left to right
                if j < len(symbols) - 1 and symbols[j] == a and symbols[j + 1] == b:
                    merged.append(a + b)
                    j += 2
                else:
                    merged.append(symbols[j])
                    j += 1
            symbols = merged
        return [self.vocab[s] for s in symbols]

    def _encode_plain(self, text, out):
        if self.nfc:
            text = unicodedata.normalize("NFC", text)
        for word in PRETOKENIZE.findall(text):
            ids = self.cache.get(word)
            if ids is None:
                ids = self.cache[word] = self._bpe(word)
            out.extend(ids)

    def encode(self, text):
        """Token ids of `text` (no BOS/EOS added). Added tokens found in the text are matched first, as HF does."""
        out, start = [], 0
        for m in self.added_re.finditer(text):
            self._encode_plain(text[start:m.start()], out)
            out.append(self.added[m.group()])
            start = m.end()
        self._encode_plain(text[start:], out)
        return out

    def decode(self, ids):
        inv = {i: t for t, i in self.vocab.items()}
        inv.update({i: t for t, i in self.added.items()})
        back = {c: b for b, c in self.byte_symbol.items()}
        data = bytearray()
        for i in ids:
            tok = inv[i]
            data.extend(tok.encode() if tok in self.added else bytes(back[c] for c in tok))
        return data.decode("utf-8", errors="replace")

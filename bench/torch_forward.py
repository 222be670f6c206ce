"""PyTorch eager peer for the forward benchmark: GPT-2 with forward hooks capturing every MLP activation.

Reads the same config.json + model.safetensors the seedscope benchmark wrote, runs the same batches with the
same thread count, and prints one JSON line: {"tokens_per_s": ..., "seconds": ...}.
Usage: /usr/bin/python3 bench/torch_forward.py MODEL_DIR BATCH POS THREADS REPEATS
"""
import json
import math
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    dtypes = {"F32": np.float32, "F16": np.float16}
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        arr = np.frombuffer(data[a:b], dtype=dtypes[info["dtype"]]).reshape(info["shape"])
        out[name] = torch.from_numpy(arr.astype(np.float32))
    return out


class Block(torch.nn.Module):
    def __init__(self, w, i, n_head, eps):
        super().__init__()
        p = f"transformer.h.{i}."
        self.w = {k[len(p):]: v for k, v in w.items() if k.startswith(p)}
        self.n_head, self.eps = n_head, eps
        self.act = torch.nn.GELU(approximate="tanh")

    def forward(self, x):
        w, B, T, D = self.w, *x.shape
        h = F.layer_norm(x, (D,), w["ln_1.weight"], w["ln_1.bias"], self.eps)
        q, k, v = (h @ w["attn.c_attn.weight"] + w["attn.c_attn.bias"]).split(D, dim=2)
        heads = lambda t: t.view(B, T, self.n_head, D // self.n_head).transpose(1, 2)
        q, k, v = heads(q), heads(k), heads(v)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(D // self.n_head)
        att = att.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), torch.finfo(torch.float32).min)
        z = (att.softmax(-1) @ v).transpose(1, 2).reshape(B, T, D)
        x = x + z @ w["attn.c_proj.weight"] + w["attn.c_proj.bias"]
        h = F.layer_norm(x, (D,), w["ln_2.weight"], w["ln_2.bias"], self.eps)
        a = self.act(h @ w["mlp.c_fc.weight"] + w["mlp.c_fc.bias"])
        return x + a @ w["mlp.c_proj.weight"] + w["mlp.c_proj.bias"]


def main():
    model_dir, batch, pos, threads, repeats = sys.argv[1], *map(int, sys.argv[2:6])
    torch.set_num_threads(threads)
    cfg = json.load(open(f"{model_dir}/config.json"))
    w = read_safetensors(f"{model_dir}/model.safetensors")
    blocks = [Block(w, i, cfg["n_head"], cfg["layer_norm_epsilon"]) for i in range(cfg["n_layer"])]
    captured = []
    for b in blocks:
        b.act.register_forward_hook(lambda m, i, o: captured.append(o))
    ids = torch.randint(0, cfg["vocab_size"], (batch, pos), generator=torch.Generator().manual_seed(0))

    def forward():
        captured.clear()
        x = w["transformer.wte.weight"][ids] + w["transformer.wpe.weight"][:pos]
        for b in blocks:
            x = b(x)
        return [c.numpy() for c in captured]  # the activations leave torch, as ours leave onnxruntime

    with torch.inference_mode():
        forward()
        start = time.perf_counter()
        for _ in range(repeats):
            forward()
        seconds = time.perf_counter() - start
    print(json.dumps({"tokens_per_s": repeats * batch * pos / seconds, "seconds": seconds}))


if __name__ == "__main__":
    main()

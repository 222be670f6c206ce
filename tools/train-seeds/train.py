"""Trains the bundled seed families: tiny GPT-2 (gpt2-s0..s3) and tiny Pythia/GPT-NeoX (pythia-s0..s2).

Seeds of a family differ only in the seed s, which sets both the initialisation (torch.Generator seeded
with s) and the order of the training documents (random.Random(s).shuffle). Everything else is the same:
config, optimiser, schedule, and the training documents themselves (a fixed pool, see `training_pool`).

    OPENBLAS_NUM_THREADS=1 /usr/bin/python3 tools/train-seeds/train.py [--runs gpt2:0,pythia:0,...] [--steps N]

Each finished seed is written atomically to data/models/<family>-s<seed>/ (model.safetensors in F16,
config.json, tokenizer.json, training.json). The held-out loss in training.json is computed in float32
from the fp16-rounded weights as saved, by reloading model.safetensors.
"""
import argparse
import gzip
import json
import math
import os
import random
import shutil
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bpe import ByteLevelBPE  # noqa: E402
from models import build_model  # noqa: E402
from safetensors_io import read_safetensors, write_safetensors  # noqa: E402

CTX = 256                # model context; a row is BOS + CTX-1 stream tokens (SPEC §2)
ROW_TOKENS = CTX - 1
BATCH_ROWS = 16          # rows per optimiser step (16 · 255 = 4,080 stream tokens)
STEPS = 680              # 680 · 16 · 255 = 2,774,400 training tokens per seed: ~10 min per seed at ~4.7k tok/s on 1 thread
LR = 2e-3
WARMUP_STEPS = 40
MIN_LR_RATIO = 0.1       # cosine decays to LR · 0.1
BETAS = (0.9, 0.95)
WEIGHT_DECAY = 0.1       # on matrices and embeddings (dim ≥ 2); not on biases or LayerNorm
GRAD_CLIP = 1.0
POOL_SEED = 1234         # fixes which training documents form the pool (the same for every seed)
HELDOUT_ROWS = 64        # held-out eval: 64 rows spread evenly over the whole held-out stream, the same for every seed
HELDOUT_ORDER_SEED = 4321
LOG_EVERY = 10           # loss curve: mean batch loss of each block of 10 steps

GPT2_CONFIG = {
    "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"],
    "vocab_size": 4096, "n_embd": 128, "n_head": 4, "n_layer": 4, "n_inner": None,
    "n_positions": CTX, "n_ctx": CTX, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
    "initializer_range": 0.02, "bos_token_id": 4095, "eos_token_id": 4095,
    "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False,
    "attn_pdrop": 0.0, "embd_pdrop": 0.0, "resid_pdrop": 0.0,
    "tie_word_embeddings": True, "use_cache": True, "torch_dtype": "float16",
}
PYTHIA_CONFIG = {
    "model_type": "gpt_neox", "architectures": ["GPTNeoXForCausalLM"],
    "vocab_size": 4096,  # the tokenizer has 4,000 tokens; padded to the next multiple of 128 as Pythia does
    "hidden_size": 128, "num_attention_heads": 4, "num_hidden_layers": 4, "intermediate_size": 512,
    "max_position_embeddings": CTX, "rotary_pct": 0.25, "rotary_emb_base": 10000, "rope_scaling": None,
    "use_parallel_residual": True, "hidden_act": "gelu", "layer_norm_eps": 1e-5, "initializer_range": 0.02,
    "bos_token_id": 0, "eos_token_id": 0, "tie_word_embeddings": False, "attention_bias": True,
    "attention_dropout": 0.0, "hidden_dropout": 0.0, "use_cache": True, "torch_dtype": "float16",
}
FAMILIES = {"gpt2": GPT2_CONFIG, "pythia": PYTHIA_CONFIG}
DEFAULT_RUNS = "gpt2:0,pythia:0,gpt2:1,pythia:1,gpt2:2,pythia:2,gpt2:3"  # interleaved: both families progress together

LOSS_DEFINITION = ("mean over all rows r and positions t = 0..T-2 (T = 256) of -log softmax(logits[r, t])[ids[r, t+1]], "
                   "float32 logits over the full (padded) vocab_size, i.e. F.cross_entropy(logits[:, :-1], ids[:, 1:]) "
                   "with mean reduction")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def load_corpus(path):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        docs = [json.loads(line) for line in f]
    train = sorted((d for d in docs if d["split"] == "train"), key=lambda d: d["id"])
    heldout = sorted((d for d in docs if d["split"] == "heldout"), key=lambda d: d["id"])
    return train, heldout


def rows_from_stream(docs_ids, eos, n_rows):
    """Joins documents with EOS (after each document), cuts rows of CTX-1 tokens, prepends BOS (= EOS id)."""
    stream = []
    for ids in docs_ids:
        stream.extend(ids)
        stream.append(eos)
        if len(stream) >= n_rows * ROW_TOKENS:
            break
    assert len(stream) >= n_rows * ROW_TOKENS, f"need {n_rows * ROW_TOKENS} tokens, have {len(stream)}"
    t = torch.tensor(stream[:n_rows * ROW_TOKENS], dtype=torch.long).view(n_rows, ROW_TOKENS)
    return torch.cat([torch.full((n_rows, 1), eos, dtype=torch.long), t], dim=1)  # [n_rows, CTX]


def training_pool(train_docs, tok, n_tokens):
    """The training documents every seed sees: train docs sorted by id, shuffled with POOL_SEED, taken until the
    EOS-joined stream holds n_tokens + 20,000. Each seed then reorders this pool and trains on the first n_tokens of
    its own ordering, so the ~20k tokens it leaves out (< 1% of the pool) differ between seeds."""
    order = list(range(len(train_docs)))
    random.Random(POOL_SEED).shuffle(order)
    pool, total = [], 0
    for i in order:
        ids = tok.encode(train_docs[i]["text"])
        pool.append((train_docs[i]["id"], ids))
        total += len(ids) + 1
        if total >= n_tokens + 20000:  # a margin (the total does not depend on the order, so it is not strictly needed)
            break
    assert total >= n_tokens + 20000, "corpus too small for the token budget"
    return pool


def heldout_rows(heldout_docs, tok, eos):
    """All held-out documents (sorted by id, shuffled with HELDOUT_ORDER_SEED) joined with EOS and cut into rows as
    in training; of those n rows, rows i·(n // HELDOUT_ROWS) for i < HELDOUT_ROWS are kept. Spreading the rows over
    the whole stream makes the eval set span many documents and every source, in proportion to their tokens."""
    order = list(range(len(heldout_docs)))
    random.Random(HELDOUT_ORDER_SEED).shuffle(order)
    ids = [tok.encode(heldout_docs[i]["text"]) for i in order]
    n_rows = sum(len(x) + 1 for x in ids) // ROW_TOKENS
    every = rows_from_stream(ids, eos, n_rows)
    stride = n_rows // HELDOUT_ROWS
    picked = [i * stride for i in range(HELDOUT_ROWS)]
    meta = {"stream_rows": n_rows, "stride": stride, "picked_rows": picked,
            "documents_in_stream_order": [heldout_docs[i]["id"] for i in order]}
    return every[picked], meta


def write_heldout_rows(family, held, meta, models_root):
    eos = FAMILIES[family]["eos_token_id"]
    with open(os.path.join(models_root, family, "heldout-rows.json"), "w") as f:
        json.dump(held.tolist(), f, separators=(",", ":"))
    with open(os.path.join(models_root, family, "heldout-rows.meta.json"), "w") as f:
        json.dump({"rows": held.shape[0], "tokens_per_row": held.shape[1], "bos_eos_id": eos, "order_seed": HELDOUT_ORDER_SEED,
                   "construction": "all held-out docs sorted by id, shuffled with random.Random(order_seed), joined with EOS "
                                   "after each, cut into rows of 255 stream tokens with BOS prepended (stream_rows rows); "
                                   "rows i*stride (picked_rows) are kept, stride = stream_rows // rows",
                   "loss_definition": LOSS_DEFINITION, **meta}, f, indent=1)


def evaluate_saved(model_dir, family, held):
    """Held-out loss of model_dir/model.safetensors (F16 → float32), written into model_dir/training.json."""
    cfg = FAMILIES[family]
    model = build_model(cfg).eval()
    model.load_state_dict({k: v.float() for k, v in read_safetensors(os.path.join(model_dir, "model.safetensors")).items()},
                          strict=True)
    loss = mean_loss(model, held)
    path = os.path.join(model_dir, "training.json")
    record = json.load(open(path))
    record["heldout_loss"] = loss
    record.pop("heldout_loss_fp32_master_weights", None)  # written by the first run against other rows; now only logged
    record["heldout_loss_definition"] = (LOSS_DEFINITION + f"; rows: ../{family}/heldout-rows.json ({held.shape[0]} rows x "
                                         f"{held.shape[1]} ids); weights: model.safetensors (F16) upcast to float32")
    with open(path + ".tmp", "w") as f:
        json.dump(record, f, indent=2)
    os.replace(path + ".tmp", path)
    return loss


def mean_loss(model, rows, batch=16):
    """LOSS_DEFINITION, in float32."""
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, rows.shape[0], batch):
            x = rows[i:i + batch]
            logits = model(x).float()
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="sum")
            total += loss.item()
            count += x[:, 1:].numel()
    return total / count


def lr_at(step, steps):
    if step < WARMUP_STEPS:
        return LR * (step + 1) / WARMUP_STEPS
    progress = (step - WARMUP_STEPS) / max(1, steps - WARMUP_STEPS)
    return LR * (MIN_LR_RATIO + (1 - MIN_LR_RATIO) * 0.5 * (1 + math.cos(math.pi * progress)))


def train_seed(family, seed, pool, held, steps, out_root, tokenizer_path):
    cfg = FAMILIES[family]
    eos = cfg["eos_token_id"]
    n_rows = steps * BATCH_ROWS
    order = list(range(len(pool)))
    random.Random(seed).shuffle(order)                      # data order: seed s
    rows = rows_from_stream((pool[i][1] for i in order), eos, n_rows)

    torch.manual_seed(seed)
    model = build_model(cfg)
    model.init_weights(torch.Generator().manual_seed(seed))  # initialisation: seed s
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=LR, betas=BETAS, eps=1e-8)
    curve, block, t0 = [], [], time.time()
    model.train()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps)
        x = rows[step * BATCH_ROWS:(step + 1) * BATCH_ROWS]       # [BATCH_ROWS, CTX]
        logits = model(x)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        opt.step()
        block.append(loss.item())
        if len(block) == LOG_EVERY or step == steps - 1:
            curve.append({"step": step + 1, "loss": sum(block) / len(block)})
            block = []
            if len(curve) % 5 == 0 or step == steps - 1:
                el = time.time() - t0
                tps = (step + 1) * BATCH_ROWS * ROW_TOKENS / el
                log(f"{family}-s{seed} step {step + 1}/{steps} loss {curve[-1]['loss']:.4f} "
                    f"lr {lr_at(step, steps):.2e} {tps:.0f} tok/s, eta {(steps - step - 1) * el / (step + 1):.0f}s")
    wall = time.time() - t0
    model.eval()

    name = f"{family}-s{seed}"
    final_dir = os.path.join(out_root, name)
    tmp_dir = os.path.join(out_root, f".{name}.tmp")
    shutil.rmtree(tmp_dir, ignore_errors=True)
    os.makedirs(tmp_dir)
    write_safetensors(os.path.join(tmp_dir, "model.safetensors"), model.state_dict(), dtype="F16")
    with open(os.path.join(tmp_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    shutil.copyfile(tokenizer_path, os.path.join(tmp_dir, "tokenizer.json"))

    held_loss_master = mean_loss(model, held)  # logged only, to show what the F16 rounding costs
    final_train = sum(c["loss"] for c in curve[-5:]) / len(curve[-5:])
    record = {
        "model": name, "family": family, "seed": seed,
        "seeds": {"init": f"torch.Generator().manual_seed({seed}) drawing every parameter in named_parameters() order",
                  "data_order": f"random.Random({seed}).shuffle over the training pool (documents)",
                  "pool": f"random.Random({POOL_SEED}).shuffle of train documents sorted by id; same pool for every seed"},
        "config": cfg,
        "training": {"ctx": CTX, "row": f"BOS (= EOS id {eos}) + {ROW_TOKENS} stream tokens; documents joined with EOS after each",
                     "batch_rows": BATCH_ROWS, "steps": steps, "tokens": steps * BATCH_ROWS * ROW_TOKENS,
                     "tokens_note": "stream tokens (EOS separators included, prepended BOS excluded)",
                     "optimizer": {"type": "AdamW", "lr": LR, "betas": list(BETAS), "eps": 1e-8,
                                   "weight_decay": WEIGHT_DECAY, "weight_decay_on": "parameters with dim >= 2",
                                   "grad_clip_norm": GRAD_CLIP},
                     "schedule": f"linear warmup over {WARMUP_STEPS} steps to {LR}, then cosine to {LR * MIN_LR_RATIO}",
                     "dropout": 0.0, "dtype": "float32 training, weights saved as float16",
                     "init": "N(0, 0.02); residual output projections N(0, 0.02/sqrt(2*n_layer)); biases 0; LayerNorm 1/0",
                     "threads": torch.get_num_threads(), "wall_seconds": round(wall, 1),
                     "pool_documents": len(pool)},
        "loss_curve": {"every_steps": LOG_EVERY, "value": "mean training batch loss over each block of steps", "points": curve},
        "final_train_loss": final_train,
        "final_train_loss_definition": f"mean of the last {min(5, len(curve))} loss_curve points (last ~{5 * LOG_EVERY} steps)",
        "torch_version": torch.__version__,
    }
    with open(os.path.join(tmp_dir, "training.json"), "w") as f:
        json.dump(record, f, indent=2)
    held_loss = evaluate_saved(tmp_dir, family, held)  # from the weights as saved, F16 upcast to float32
    if os.path.exists(final_dir):
        shutil.rmtree(final_dir)
    os.rename(tmp_dir, final_dir)
    log(f"{name} done in {wall:.0f}s: final train loss {final_train:.4f}, held-out loss {held_loss:.4f} "
        f"(fp32 master {held_loss_master:.4f}) -> {final_dir}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", default=DEFAULT_RUNS, help="comma-separated family:seed list, trained in this order")
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--corpus", default="data/corpus/corpus.jsonl.gz")
    ap.add_argument("--models", default="data/models")
    ap.add_argument("--eval-only", action="store_true",
                    help="rewrite the held-out rows and recompute heldout_loss of the already saved models; no training")
    args = ap.parse_args()
    torch.set_num_threads(1)  # one core: the machine is shared

    runs = [(r.split(":")[0], int(r.split(":")[1])) for r in args.runs.split(",")]
    train_docs, heldout_docs = load_corpus(args.corpus)
    log(f"corpus: {len(train_docs)} train docs, {len(heldout_docs)} held-out docs; {args.steps} steps x {BATCH_ROWS} rows")
    data = {}
    for family in sorted({f for f, _ in runs}):
        tok_path = os.path.join(args.models, family, "tokenizer.json")
        tok = ByteLevelBPE(json.load(open(tok_path, encoding="utf-8")))
        eos = FAMILIES[family]["eos_token_id"]
        held, meta = heldout_rows(heldout_docs, tok, eos)
        write_heldout_rows(family, held, meta, args.models)
        if args.eval_only:
            data[family] = (None, held, tok_path)
            continue
        t0 = time.time()
        pool = training_pool(train_docs, tok, args.steps * BATCH_ROWS * ROW_TOKENS)
        log(f"{family}: pool of {len(pool)} docs / {sum(len(p[1]) + 1 for p in pool)} tokens "
            f"tokenized in {time.time() - t0:.0f}s; held-out rows {tuple(held.shape)}")
        data[family] = (pool, held, tok_path)
    for family, seed in runs:
        pool, held, tok_path = data[family]
        if args.eval_only:
            loss = evaluate_saved(os.path.join(args.models, f"{family}-s{seed}"), family, held)
            log(f"{family}-s{seed}: held-out loss {loss:.4f}")
            continue
        train_seed(family, seed, pool, held, args.steps, args.models, tok_path)
    log("all runs done")


if __name__ == "__main__":
    main()

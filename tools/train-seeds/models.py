"""GPT-2 and GPT-NeoX (Pythia) in plain torch, with Hugging Face's math and parameter names.

The state_dict of each model has exactly the tensor names of transformers' GPT2LMHeadModel /
GPTNeoXForCausalLM (4.40), so a checkpoint written from it loads with `from_pretrained` and, more to
the point, with seedscope's importer. check_golden.py proves the math against HF's own outputs.

Layout footguns (see /work/shared/research/golden.md):
- GPT-2 uses Conv1D: weights are [in, out] and y = x @ W + b (no transpose).
- GPT-2's fused c_attn output is [Q(all heads) | K(all heads) | V(all heads)].
- NeoX uses nn.Linear: weights are [out, in]; query_key_value's output is interleaved PER HEAD:
  [n_head, (q, k, v), d_head].
- NeoX rotary is rotate-half on the first int(d_head * rotary_pct) dims of q and k only.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def causal_softmax(scores):
    """scores: [batch, head, q, k] float32. HF masks with finfo(float32).min, not -inf."""
    t = scores.shape[-1]
    mask = torch.ones(t, t, dtype=torch.bool, device=scores.device).tril()
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return F.softmax(scores, dim=-1)


# ---------------------------------------------------------------- GPT-2

def gelu_new(x):
    """GPT-2's tanh-approximated GELU (`gelu_new`)."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class Conv1D(nn.Module):
    """HF's Conv1D: a linear layer whose weight is stored [in, out]."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))  # [in, out]
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x):
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).view(*x.shape[:-1], -1)


class GPT2Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["n_embd"]
        self.n_head = cfg["n_head"]
        self.c_attn = Conv1D(d, 3 * d)
        self.c_proj = Conv1D(d, d)

    def forward(self, x):
        b, t, d = x.shape
        hd = d // self.n_head
        q, k, v = self.c_attn(x).split(d, dim=2)                 # each [b, t, d]: Q | K | V
        q, k, v = (z.view(b, t, self.n_head, hd).transpose(1, 2) for z in (q, k, v))  # [b, head, t, hd]
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(hd)       # scale_attn_weights=True
        y = causal_softmax(scores) @ v                           # [b, head, t, hd]
        y = y.transpose(1, 2).reshape(b, t, d)
        return self.c_proj(y)


class GPT2MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d_mlp = cfg["n_inner"] or 4 * cfg["n_embd"]
        self.c_fc = Conv1D(cfg["n_embd"], d_mlp)
        self.c_proj = Conv1D(d_mlp, cfg["n_embd"])

    def forward(self, x):
        return self.c_proj(gelu_new(self.c_fc(x)))


class GPT2Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, eps = cfg["n_embd"], cfg["layer_norm_epsilon"]
        self.ln_1 = nn.LayerNorm(d, eps=eps)
        self.attn = GPT2Attention(cfg)
        self.ln_2 = nn.LayerNorm(d, eps=eps)
        self.mlp = GPT2MLP(cfg)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))  # sequential pre-LN residual
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT2Body(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.wte = nn.Embedding(cfg["vocab_size"], cfg["n_embd"])
        self.wpe = nn.Embedding(cfg["n_positions"], cfg["n_embd"])
        self.h = nn.ModuleList(GPT2Block(cfg) for _ in range(cfg["n_layer"]))
        self.ln_f = nn.LayerNorm(cfg["n_embd"], eps=cfg["layer_norm_epsilon"])


class GPT2LMHeadModel(nn.Module):
    """Tied head: logits = ln_f(x) @ wte.T. There is no separate lm_head parameter."""

    def __init__(self, cfg):
        super().__init__()
        for key in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
            assert not cfg.get(key, False), f"{key} is not implemented here"
        self.cfg = cfg
        self.transformer = GPT2Body(cfg)

    def forward(self, ids):                                      # ids [b, t]
        tr = self.transformer
        pos = torch.arange(ids.shape[1], device=ids.device)
        x = tr.wte(ids) + tr.wpe(pos)                            # [b, t, d]
        for block in tr.h:
            x = block(x)
        return tr.ln_f(x) @ tr.wte.weight.T                      # [b, t, vocab]

    def init_weights(self, generator):
        """HF GPT-2 init: N(0, 0.02) everywhere, c_proj weights N(0, 0.02/sqrt(2·n_layer)), biases 0, LN 1/0."""
        std = self.cfg.get("initializer_range", 0.02)
        resid_std = std / math.sqrt(2 * self.cfg["n_layer"])
        for name, p in self.named_parameters():
            with torch.no_grad():
                if ".ln_" in name or name.startswith("transformer.ln_f"):
                    p.fill_(1.0 if name.endswith("weight") else 0.0)
                elif name.endswith("bias"):
                    p.zero_()
                elif name.endswith("c_proj.weight"):
                    p.normal_(0.0, resid_std, generator=generator)
                else:
                    p.normal_(0.0, std, generator=generator)


# ---------------------------------------------------------------- GPT-NeoX

class RotaryEmbedding(nn.Module):
    def __init__(self, rotary_ndims, base):
        super().__init__()
        # inv_freq[j] = base^(-2j / rotary_ndims): the exponent uses rotary_ndims, not d_head
        inv_freq = 1.0 / (base ** (torch.arange(0, rotary_ndims, 2, dtype=torch.int64).float() / rotary_ndims))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def cos_sin(self, t):
        pos = torch.arange(t, dtype=torch.int64).float()
        freqs = torch.outer(pos, self.inv_freq)                  # [t, rot/2]
        emb = torch.cat((freqs, freqs), dim=-1)                  # [t, rot]
        return emb.cos(), emb.sin()


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class GPTNeoXAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg["hidden_size"]
        self.n_head = cfg["num_attention_heads"]
        self.head_dim = d // self.n_head
        self.rotary_ndims = int(self.head_dim * cfg["rotary_pct"])
        self.rotary_emb = RotaryEmbedding(self.rotary_ndims, cfg["rotary_emb_base"])
        bias = cfg.get("attention_bias", True)
        self.query_key_value = nn.Linear(d, 3 * d, bias=bias)
        self.dense = nn.Linear(d, d, bias=bias)

    def forward(self, x):
        b, t, d = x.shape
        hd, r = self.head_dim, self.rotary_ndims
        qkv = self.query_key_value(x).view(b, t, self.n_head, 3 * hd)  # per head: [q | k | v]
        qkv = qkv.permute(0, 2, 1, 3)                            # [b, head, t, 3·hd]
        q, k, v = qkv[..., :hd], qkv[..., hd:2 * hd], qkv[..., 2 * hd:]
        cos, sin = self.rotary_emb.cos_sin(t)                    # [t, r]
        q = torch.cat((q[..., :r] * cos + rotate_half(q[..., :r]) * sin, q[..., r:]), dim=-1)
        k = torch.cat((k[..., :r] * cos + rotate_half(k[..., :r]) * sin, k[..., r:]), dim=-1)
        scores = (q @ k.transpose(-1, -2)) * (hd ** -0.5)
        y = causal_softmax(scores) @ v                           # [b, head, t, hd]
        y = y.transpose(1, 2).reshape(b, t, d)
        return self.dense(y)


class GPTNeoXMLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.dense_h_to_4h = nn.Linear(cfg["hidden_size"], cfg["intermediate_size"])
        self.dense_4h_to_h = nn.Linear(cfg["intermediate_size"], cfg["hidden_size"])

    def forward(self, x):
        return self.dense_4h_to_h(F.gelu(self.dense_h_to_4h(x)))  # exact erf GELU


class GPTNeoXLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, eps = cfg["hidden_size"], cfg["layer_norm_eps"]
        self.parallel = cfg["use_parallel_residual"]
        self.input_layernorm = nn.LayerNorm(d, eps=eps)
        self.post_attention_layernorm = nn.LayerNorm(d, eps=eps)
        self.attention = GPTNeoXAttention(cfg)
        self.mlp = GPTNeoXMLP(cfg)

    def forward(self, x):
        if self.parallel:  # both LayerNorms read the same x
            return x + self.attention(self.input_layernorm(x)) + self.mlp(self.post_attention_layernorm(x))
        x = x + self.attention(self.input_layernorm(x))
        return x + self.mlp(self.post_attention_layernorm(x))


class GPTNeoXBody(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embed_in = nn.Embedding(cfg["vocab_size"], cfg["hidden_size"])
        self.layers = nn.ModuleList(GPTNeoXLayer(cfg) for _ in range(cfg["num_hidden_layers"]))
        self.final_layer_norm = nn.LayerNorm(cfg["hidden_size"], eps=cfg["layer_norm_eps"])


class GPTNeoXForCausalLM(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.gpt_neox = GPTNeoXBody(cfg)
        self.embed_out = nn.Linear(cfg["hidden_size"], cfg["vocab_size"], bias=False)  # untied

    def forward(self, ids):
        x = self.gpt_neox.embed_in(ids)                          # [b, t, d]; no position embedding
        for layer in self.gpt_neox.layers:
            x = layer(x)
        return self.embed_out(self.gpt_neox.final_layer_norm(x))  # [b, t, vocab_padded]

    def init_weights(self, generator):
        """N(0, 0.02) as HF does, plus GPT-2's 1/sqrt(2·n_layer) on the two residual output projections
        (attention.dense, mlp.dense_4h_to_h); HF's own NeoX init leaves those at 0.02. Biases 0, LN 1/0."""
        std = self.cfg.get("initializer_range", 0.02)
        resid_std = std / math.sqrt(2 * self.cfg["num_hidden_layers"])
        for name, p in self.named_parameters():
            with torch.no_grad():
                if "layernorm" in name or "layer_norm" in name:
                    p.fill_(1.0 if name.endswith("weight") else 0.0)
                elif name.endswith("bias"):
                    p.zero_()
                elif name.endswith("attention.dense.weight") or name.endswith("dense_4h_to_h.weight"):
                    p.normal_(0.0, resid_std, generator=generator)
                else:
                    p.normal_(0.0, std, generator=generator)


def build_model(cfg):
    if cfg["model_type"] == "gpt2":
        return GPT2LMHeadModel(cfg)
    if cfg["model_type"] == "gpt_neox":
        return GPTNeoXForCausalLM(cfg)
    raise ValueError(f"unsupported model_type {cfg['model_type']!r}")

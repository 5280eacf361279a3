#!/usr/bin/python3
"""Train the two bundled skipless demo models on the King James Bible.

    /usr/bin/python3 examples/train/prepare_corpus.py build/kjv
    /usr/bin/python3 examples/train/train.py [--corpus build/kjv] [--models serial,parallel]

CPU only (Debian's python3-torch), 2 threads, fixed seeds, deterministic
data order.  Steps:

1. Train the byte-level BPE tokenizer (bpe.py) on train.txt -> tokenizer.json.
2. For each model: build the skipless network, initialise it for signal
   propagation (He & Hofmann, "Simplifying Transformer Blocks", 2023), train
   with AdamW + warmup + cosine decay + gradient clipping, evaluate on
   valid.txt, and export to examples/models/kjv-<name>/ in libskipless's
   format (config.json, model.safetensors, tokenizer.json) plus a fixture:
   the PyTorch logits of a fixed prompt and 200 greedy continuation ids.

The PyTorch forward is exactly the function libskipless computes
(docs/model-format.md): no skip connections, no norms inside the stack,
Hugging Face rotate-half RoPE, GQA with query head h reading KV head
h // (H/KV), scores / sqrt(head_dim), SwiGLU FFN, final RMSNorm, tied head.
  serial:   x <- down(silu(gate o) * up o),  o = o_proj(attn(q_proj x, k_proj x, v_proj x))
  parallel: x <- attn(x, k_proj x, v_proj x) + down(silu(gate x) * up x)
            (q_proj and o_proj absent = identity: attention reads the stream)
"""
import argparse
import json
import math
import os
import shutil
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bpe  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(HERE))
PROMPT = "In the beginning God created the heaven and the earth.\nAnd the earth was"
N_GREEDY = 200

# name -> shape and schedule.  d = H * head_dim so q_proj/o_proj are square
# (removable by the merge); the tied embedding keeps the files under 8 MB.
MODELS = {
    "serial": dict(block="serial", d=128, L=2, H=4, KV=2, f=512, steps=600, lr=2e-3, seed=1),
    "parallel": dict(block="parallel", d=128, L=3, H=4, KV=2, f=512, steps=400, lr=2e-3, seed=2),
}
SEQ, BATCH = 256, 16
# Serial q_proj starts as QK_GAIN x (its group's k_proj): a position's score
# for its own key is about QK_GAIN * |k|^2 / sqrt(head_dim), so attention
# starts close to the identity (He & Hofmann's identity-like attention at
# init) rather than a causal average that would erase the token; 2.5 keeps
# the own share high also for positions whose keys have a small norm.
QK_GAIN = 2.5
THETA, EPS = 10000.0, 1e-6


# ---------------------------------------------------------------------------
# model
# ---------------------------------------------------------------------------

def rope_tables(n, hd, theta):
    """cos/sin [n, hd] in float64 rounded to float32, as libskipless does."""
    half = hd // 2
    inv = 1.0 / theta ** (np.arange(half, dtype=np.float64) * 2.0 / hd)
    ang = np.arange(n, dtype=np.float64)[:, None] * inv[None, :]
    cos = np.concatenate([np.cos(ang), np.cos(ang)], axis=1).astype(np.float32)
    sin = np.concatenate([np.sin(ang), np.sin(ang)], axis=1).astype(np.float32)
    return torch.from_numpy(cos), torch.from_numpy(sin)


def rope(x, cos, sin):
    """x [B, T, heads, hd]; rotate-half."""
    half = x.shape[-1] // 2
    rot = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos[None, :, None, :] + rot * sin[None, :, None, :]


class Skipless(torch.nn.Module):
    def __init__(self, V, d, L, H, KV, f, block, max_pos=1024):
        super().__init__()
        self.V, self.d, self.L, self.H, self.KV, self.f, self.block = V, d, L, H, KV, f, block
        self.hd = d // H
        lin = lambda o, i: torch.nn.Parameter(torch.empty(o, i))  # noqa: E731  [out, in]
        self.embed = torch.nn.Parameter(torch.empty(V, d))
        self.layers = torch.nn.ModuleList()
        for _ in range(L):
            p = torch.nn.ParameterDict()
            if block == "serial":
                p["q_proj"] = lin(d, d)
                p["o_proj"] = lin(d, d)
            p["k_proj"] = lin(KV * self.hd, d)
            p["v_proj"] = lin(KV * self.hd, d)
            p["gate_proj"] = lin(f, d)
            p["up_proj"] = lin(f, d)
            p["down_proj"] = lin(d, f)
            self.layers.append(p)
        self.norm = torch.nn.Parameter(torch.ones(d))
        cos, sin = rope_tables(max_pos, self.hd, THETA)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def attention(self, p, x):
        """x [B, T, d] -> concatenated heads [B, T, H*hd] (before o_proj)."""
        B, T, _ = x.shape
        H, KV, hd = self.H, self.KV, self.hd
        q = x @ p["q_proj"].t() if "q_proj" in p else x
        k = x @ p["k_proj"].t()
        v = x @ p["v_proj"].t()
        cos, sin = self.cos[:T], self.sin[:T]
        q = rope(q.view(B, T, H, hd), cos, sin)
        k = rope(k.view(B, T, KV, hd), cos, sin)
        v = v.view(B, T, KV, hd)
        g = H // KV
        k = k.repeat_interleave(g, dim=2)          # head h reads KV head h // g
        v = v.repeat_interleave(g, dim=2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))   # [B, H, T, hd]
        s = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        mask = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
        s = s.masked_fill(mask, float("-inf"))
        a = torch.softmax(s, dim=-1) @ v          # [B, H, T, hd]
        return a.transpose(1, 2).reshape(B, T, H * hd)

    def ffn(self, p, u):
        return (F.silu(u @ p["gate_proj"].t()) * (u @ p["up_proj"].t())) @ p["down_proj"].t()

    def block_forward(self, p, x):
        if self.block == "serial":
            return self.ffn(p, self.attention(p, x) @ p["o_proj"].t())
        return self.attention(p, x) + self.ffn(p, x)

    def hidden(self, ids):
        x = self.embed[ids]
        for p in self.layers:
            x = self.block_forward(p, x)
        return x

    def forward(self, ids):
        x = self.hidden(ids)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * self.norm
        return x @ self.embed.t()


def orthogonal(o, i, gen):
    """A random [o, i] matrix with orthonormal rows (o <= i) or columns."""
    a = torch.randn(max(o, i), min(o, i), generator=gen)
    qm, r = torch.linalg.qr(a)
    qm = qm * torch.sign(torch.diagonal(r))[None, :]
    return qm.t().contiguous() if o <= i else qm


@torch.no_grad()
def init_model(m, gen, calib):
    """Signal-propagation init (see the model cards for the reasoning).

    Embedding N(0, 1) (unit-variance stream), final norm weight 1/sqrt(d) so
    the tied head starts with logits of about unit scale.  Per block: v_proj
    with orthonormal rows and o_proj orthogonal (isometries: the value path
    starts as a rotation of the stream, the analogue of He & Hofmann's
    identity init of value/projection weights); k_proj orthonormal rows;
    each q_proj (serial) head starts as its group's k_proj rows (plus, for
    all but the group's first head, a distinct part of an orthonormal basis
    of the rest of the space), so query heads start attending to keys like
    their own (the current token and earlier occurrences of it) instead of
    averaging the context away, while q_proj stays well conditioned for the
    Q removal of the merge.  In the
    parallel blocks the query is the stream itself, so k_proj starts at
    0.1 x orthonormal: near-uniform causal attention, with the FFN(x) branch
    carrying the token.  gate/up N(0, 1/d); down_proj and (serial) o_proj are
    then rescaled on a calibration batch so every branch output has unit RMS.
    """
    d, hd, g = m.d, m.hd, m.H // m.KV
    m.embed.normal_(0.0, 1.0, generator=gen)
    m.norm.fill_(1.0 / math.sqrt(d))
    for p in m.layers:
        p["k_proj"].copy_(orthogonal(m.KV * hd, d, gen))
        p["v_proj"].copy_(orthogonal(m.KV * hd, d, gen))
        if m.block == "serial":
            # Head j of group r: k_r, plus (j > 0) a distinct block of an
            # orthonormal basis of the complement of k_proj's row space
            # (it has exactly d - KV*hd = (g-1)*KV*hd dims): Q = T U with U
            # orthogonal and T unit block-triangular, so cond(Q) stays small.
            basis = orthogonal(d, d, gen)
            kq = p["k_proj"].view(m.KV, hd, d)
            comp = basis - (basis @ p["k_proj"].t()) @ p["k_proj"]     # project out span(K)
            comp = torch.linalg.svd(comp)[2][: d - m.KV * hd]           # orthonormal rows
            q, c = [], iter(comp.view(-1, hd, d))
            for r in range(m.KV):
                for j in range(g):
                    q.append(kq[r] if j == 0 else kq[r] + next(c))
            p["q_proj"].copy_(QK_GAIN * torch.cat(q))
            p["o_proj"].copy_(orthogonal(d, d, gen))
        else:
            p["k_proj"].mul_(0.1)
        p["gate_proj"].normal_(0.0, 1.0 / math.sqrt(d), generator=gen)
        p["up_proj"].normal_(0.0, 1.0 / math.sqrt(d), generator=gen)
        p["down_proj"].normal_(0.0, 1.0 / math.sqrt(m.f), generator=gen)
    rms = lambda t: t.pow(2).mean().sqrt()  # noqa: E731
    x = m.embed[calib]
    for p in m.layers:
        if m.block == "serial":
            a = m.attention(p, x) @ p["o_proj"].t()
            p["o_proj"].div_(rms(a))
            a = a / rms(a)
            y = m.ffn(p, a)
            p["down_proj"].div_(rms(y))
            x = y / rms(y)
        else:
            # The attention branch averages unit-variance values (RMS <= 1);
            # scale the FFN branch to unit RMS, the sum follows.
            y = m.ffn(p, x)
            p["down_proj"].div_(rms(y))
            x = m.block_forward(p, x)
            x = x / rms(x)


# ---------------------------------------------------------------------------
# data, training, evaluation
# ---------------------------------------------------------------------------

def load_ids(path, tok):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return torch.tensor(tok.encode(text), dtype=torch.long), len(text.encode("utf-8"))


@torch.no_grad()
def evaluate(m, ids, seq=SEQ, batch=16):
    """Mean next-token loss (nats) over non-overlapping windows of seq+1 tokens."""
    m.eval()
    n = (len(ids) - 1) // seq
    windows = torch.stack([ids[i * seq:i * seq + seq + 1] for i in range(n)])
    total, count = 0.0, 0
    for b in range(0, n, batch):
        w = windows[b:b + batch]
        logits = m(w[:, :-1])
        total += F.cross_entropy(logits.reshape(-1, m.V), w[:, 1:].reshape(-1), reduction="sum").item()
        count += w[:, 1:].numel()
    m.train()
    return total / count


def train_model(name, spec, tok, train_ids, valid_ids, bytes_per_token):
    torch.manual_seed(spec["seed"])
    gen = torch.Generator().manual_seed(spec["seed"])
    m = Skipless(tok.vocab_size, spec["d"], spec["L"], spec["H"], spec["KV"], spec["f"], spec["block"])
    rng = np.random.default_rng(spec["seed"])
    calib_starts = rng.integers(0, len(train_ids) - SEQ - 1, size=8)
    calib = torch.stack([train_ids[s:s + SEQ] for s in calib_starts])
    init_model(m, gen, calib)
    n_params = sum(p.numel() for p in m.parameters())
    print(f"[{name}] {spec} params {n_params}", flush=True)

    decay = [p for n_, p in m.named_parameters() if n_.startswith("layers.")]
    no_decay = [m.embed, m.norm]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=spec["lr"], betas=(0.9, 0.95), eps=1e-8)
    steps = spec["steps"]
    warmup = max(1, min(100, steps // 10))

    def lr_at(step):
        if step < warmup:
            return spec["lr"] * (step + 1) / warmup
        t = (step - warmup) / max(1, steps - warmup)
        return spec["lr"] * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * t)))

    # Deterministic data order: a seeded permutation of window starts.
    starts = torch.from_numpy(rng.permutation(len(train_ids) - SEQ - 1)[: steps * BATCH].copy())
    t0 = time.time()
    run = None
    for step in range(steps):
        for gparam in opt.param_groups:
            gparam["lr"] = lr_at(step)
        s = starts[step * BATCH:(step + 1) * BATCH]
        w = torch.stack([train_ids[i:i + SEQ + 1] for i in s.tolist()])
        logits = m(w[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, m.V), w[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        run = loss.item() if run is None else 0.98 * run + 0.02 * loss.item()
        if step % 25 == 0 or step == steps - 1:
            el = time.time() - t0
            print(f"[{name}] step {step:5d} loss {loss.item():.4f} (avg {run:.4f}) gnorm {gnorm:.2f} "
                  f"lr {lr_at(step):.2e} {el:.0f}s {BATCH * SEQ * (step + 1) / el:.0f} tok/s", flush=True)
    train_seconds = time.time() - t0
    val = evaluate(m, valid_ids)
    tr = evaluate(m, train_ids[: len(valid_ids)])
    bpb = val / math.log(2) / bytes_per_token
    print(f"[{name}] trained {steps} steps in {train_seconds:.0f}s; train loss {tr:.4f}, "
          f"val loss {val:.4f} nats/token = {bpb:.4f} bits/byte", flush=True)
    return m, dict(train_seconds=round(train_seconds, 1), steps=steps, batch=BATCH, seq=SEQ,
                   tokens_seen=steps * BATCH * SEQ, train_loss=round(tr, 4), val_loss=round(val, 4),
                   val_bits_per_byte=round(bpb, 4), params=n_params)


# ---------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------

def save_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, a in tensors.items():
        raw = np.ascontiguousarray(a, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def export(m, name, spec, tok, tok_path, stats, out_dir, t_model):
    os.makedirs(out_dir, exist_ok=True)
    t = {"model.embed_tokens.weight": m.embed}
    for i, p in enumerate(m.layers):
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            if proj in p:
                t[f"model.layers.{i}.self_attn.{proj}.weight"] = p[proj]
        for proj in ("gate_proj", "up_proj", "down_proj"):
            t[f"model.layers.{i}.mlp.{proj}.weight"] = p[proj]
    t["model.norm.weight"] = m.norm
    save_safetensors(os.path.join(out_dir, "model.safetensors"),
                     {k: v.detach().float().numpy() for k, v in t.items()})
    config = {"architectures": ["SkiplessForCausalLM"], "model_type": "skipless",
              "hidden_size": m.d, "num_hidden_layers": m.L, "num_attention_heads": m.H,
              "num_key_value_heads": m.KV, "head_dim": m.hd, "intermediate_size": m.f,
              "vocab_size": m.V, "max_position_embeddings": 1024, "hidden_act": "silu",
              "block_type": spec["block"], "ffn_type": "glu", "position_embedding": "rope",
              "rope_theta": THETA, "rms_norm_eps": EPS, "tie_word_embeddings": True,
              "bos_token_id": tok.special_id, "eos_token_id": tok.special_id,
              "torch_dtype": "float32"}
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    shutil.copyfile(tok_path, os.path.join(out_dir, "tokenizer.json"))

    # Fixture: logits of the fixed prompt and the greedy continuation.
    m.eval()
    ids = tok.encode(PROMPT)
    with torch.no_grad():
        logits = m(torch.tensor([ids]))[0].numpy().astype(np.float32)
        seq = list(ids)
        for _ in range(N_GREEDY):
            seq.append(int(m(torch.tensor([seq]))[0, -1].argmax()))
    greedy = seq[len(ids):]
    stats["model_wall_seconds"] = round(time.time() - t_model, 1)   # init, training, eval, export
    np.save(os.path.join(out_dir, "fixture_logits.npy"), logits)
    fixture = {"prompt": PROMPT, "prompt_ids": ids, "logits": "fixture_logits.npy",
               "greedy_ids": greedy, "greedy_text": tok.decode(greedy), "training": stats}
    with open(os.path.join(out_dir, "fixture.json"), "w") as f:
        json.dump(fixture, f, indent=1)
        f.write("\n")
    print(f"[{name}] exported to {out_dir}; sample:\n{PROMPT}{tok.decode(greedy)}\n", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", default=os.path.join(ROOT, "build", "kjv"))
    ap.add_argument("--models", default="serial,parallel")
    ap.add_argument("--out", default=os.path.join(ROOT, "examples", "models"))
    ap.add_argument("--steps", type=int, help="override the step count (quick experiments)")
    ap.add_argument("--vocab-size", type=int, default=2048)
    a = ap.parse_args()
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    t_start = time.time()
    with open(os.path.join(a.corpus, "train.txt"), encoding="utf-8") as f:
        tok = bpe.Tokenizer(bpe.train(f.read(), a.vocab_size))
    tok_path = os.path.join(a.corpus, "tokenizer.json")
    tok.save(tok_path)
    train_ids, _ = load_ids(os.path.join(a.corpus, "train.txt"), tok)
    valid_ids, valid_bytes = load_ids(os.path.join(a.corpus, "valid.txt"), tok)
    print(f"tokenizer: {tok.vocab_size} tokens; train {len(train_ids)} tokens, valid {len(valid_ids)} "
          f"tokens ({valid_bytes / len(valid_ids):.3f} bytes/token); {time.time() - t_start:.0f}s", flush=True)
    corpus = dict(train_tokens=len(train_ids), valid_tokens=len(valid_ids), valid_bytes=valid_bytes,
                  vocab_size=tok.vocab_size, merges=len(tok.merges))
    for name in a.models.split(","):
        t_model = time.time()
        spec = dict(MODELS[name])
        if a.steps:
            spec["steps"] = a.steps
        m, stats = train_model(name, spec, tok, train_ids, valid_ids, valid_bytes / len(valid_ids))
        stats.update(corpus, lr=spec["lr"], seed=spec["seed"],
                     command=" ".join(["/usr/bin/python3 examples/train/train.py"] + sys.argv[1:]))
        export(m, name, spec, tok, tok_path, stats, os.path.join(a.out, f"kjv-{name}"),
               t_model)
    print(f"total wall time {time.time() - t_start:.0f}s", flush=True)


if __name__ == "__main__":
    main()

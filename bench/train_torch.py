#!/usr/bin/env python3
"""Plain PyTorch training of a CPM-Bee-architecture model, for speed comparison
with `bee train` (bench/train-vs-torch.sh runs both).

The model follows src/train/backward.c (same shapes and FLOPs, not bit-identical):
  h = E[x] / sqrt(d)                                  (subscript 0: no rotation)
  per layer, attention block:  a = RMSNorm(h)
      q, k, v = a Wq^T / sqrt(d), a Wk^T / sqrt(d), a Wv^T / sqrt(d)
      p = softmax(q k^T / sqrt(dh) + bias[bucket(k_pos - q_pos), head], causal)
      h = (h + (p v) Wo^T / sqrt(A)) / 1.05
  FFN block: a = RMSNorm(h); z = gelu(a Wg^T / sqrt(d)) * (a Wu^T / sqrt(d))
      h = (h + z Wd^T / sqrt(F)) / 1.05
  logits = RMSNorm(h) E^T / sqrt(d)                   (tied output)
  loss = cross-entropy over next tokens; AdamW (beta 0.9/0.95, eps 1e-8),
  warmup + cosine learning rate, global-norm clipping as `bee train`.
Weights are N(0, 1), norms 1 + 0.1 N(0, 1), position bias 0.1 N(0, 1) (as `bee init`).

Data: a bee token shard (`bee data ... -o FILE.bin`, format in docs/TRAINING.md);
its instances are concatenated and cut into rows of --ctx tokens (one causal
sequence per row, where bee packs each instance as its own span). Without
--shard the tokens are random (speed only).

Prints one line per --log-every steps and, at the end, one JSON line:
{"impl": "torch", "tok_s": ..., "first_loss": ..., "last_loss": ..., ...}
"""
import argparse
import json
import math
import struct
import sys
import time

import torch
import torch.nn.functional as F


def position_bucket(rel, n_buckets, max_distance):
    """bee_position_bucket (src/model/forward.c), vectorised."""
    half = n_buckets // 2
    exact = half // 2
    base = torch.where(rel > 0, torch.full_like(rel, half), torch.zeros_like(rel))
    a = rel.abs()
    large = exact + (torch.log(a.clamp(min=1).double() / exact) / math.log(max_distance / exact)
                     * (half - exact)).long()
    large = large.clamp(max=half - 1)
    return base + torch.where(a < exact, a, large)


class RMSNorm(torch.nn.Module):
    def __init__(self, d, eps=1e-6):
        super().__init__()
        self.w = torch.nn.Parameter(1 + 0.1 * torch.randn(d))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.w


class Block(torch.nn.Module):
    def __init__(self, d, heads, dh, ff):
        super().__init__()
        A = heads * dh
        self.heads, self.dh, self.d, self.A, self.ff = heads, dh, d, A, ff
        self.att_norm = RMSNorm(d)
        self.wq = torch.nn.Parameter(torch.randn(A, d))
        self.wk = torch.nn.Parameter(torch.randn(A, d))
        self.wv = torch.nn.Parameter(torch.randn(A, d))
        self.wo = torch.nn.Parameter(torch.randn(d, A))
        self.ffn_norm = RMSNorm(d)
        self.w_gate = torch.nn.Parameter(torch.randn(ff, d))
        self.w_up = torch.nn.Parameter(torch.randn(ff, d))
        self.w_down = torch.nn.Parameter(torch.randn(d, ff))

    def forward(self, h, bias):
        B, L, d = h.shape
        sd = math.sqrt(d)
        a = self.att_norm(h)
        q = (a @ self.wq.t() / sd).view(B, L, self.heads, self.dh).transpose(1, 2)
        k = (a @ self.wk.t() / sd).view(B, L, self.heads, self.dh).transpose(1, 2)
        v = (a @ self.wv.t() / sd).view(B, L, self.heads, self.dh).transpose(1, 2)
        s = q @ k.transpose(-1, -2) / math.sqrt(self.dh) + bias  # bias: (H, L, L), -inf where masked
        o = (torch.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(B, L, self.A)
        h = (h + o @ self.wo.t() / math.sqrt(self.A)) / 1.05
        a = self.ffn_norm(h)
        z = F.gelu(a @ self.w_gate.t() / sd) * (a @ self.w_up.t() / sd)
        return (h + z @ self.w_down.t() / math.sqrt(self.ff)) / 1.05


class CPMBee(torch.nn.Module):
    def __init__(self, vocab, d, layers, heads, dh, ff, n_buckets, max_distance, ctx):
        super().__init__()
        self.d = d
        self.emb = torch.nn.Parameter(torch.randn(vocab, d))
        self.pos_bias = torch.nn.Parameter(0.1 * torch.randn(n_buckets, heads))
        self.blocks = torch.nn.ModuleList([Block(d, heads, dh, ff) for _ in range(layers)])
        self.out_norm = RMSNorm(d)
        pos = torch.arange(ctx)
        self.register_buffer("bucket", position_bucket(pos[None, :] - pos[:, None], n_buckets, max_distance))
        self.register_buffer("causal", torch.ones(ctx, ctx, dtype=torch.bool).tril())

    def forward(self, x, y):
        sd = math.sqrt(self.d)
        h = self.emb[x] / sd
        bias = self.pos_bias[self.bucket].permute(2, 0, 1)  # (H, L, L)
        bias = bias.masked_fill(~self.causal, float("-inf"))
        for blk in self.blocks:
            h = blk(h, bias)
        logits = self.out_norm(h) @ self.emb.t() / sd
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def read_shard(path):
    """Token ids of every instance of a bee shard, concatenated; and n_vocab."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"BEESHARD":
        sys.exit(f"{path}: not a bee token shard")
    _ver, n_vocab = struct.unpack_from("<II", data, 8)
    n_inst, = struct.unpack_from("<Q", data, 24)
    off, out = 40, []
    for _ in range(n_inst):
        n, n_seg = struct.unpack_from("<II", data, off)
        off += 8
        out.append(torch.frombuffer(bytearray(data[off:off + 4 * n]), dtype=torch.int32))  # little-endian hosts
        off += 4 * n * 3 + n + 4 * n_seg * n_seg
    return torch.cat(out).long(), n_vocab


def lr_at(step, lr_max, lr_min, warmup, total):
    """bee_lr_at (src/train/adamw.c)."""
    if step < warmup:
        return lr_max * (step + 1) / warmup
    if step >= total:
        return lr_min
    t = (step - warmup) / max(1, total - warmup)
    return lr_min + 0.5 * (lr_max - lr_min) * (1 + math.cos(math.pi * t))


def blas_library():
    """The BLAS the process loaded (Debian's torch uses the system libblas.so.3:
    the reference BLAS unless OpenBLAS or another alternative is installed)."""
    try:
        with open("/proc/self/maps") as f:
            libs = {line.split()[-1] for line in f if "blas" in line.lower() and "/" in line}
        return sorted(libs)[0] if libs else "unknown"
    except OSError:
        return "unknown"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shard", help="bee token shard (bee data); random tokens without it")
    p.add_argument("--vocab-size", type=int, default=8000, help="only without --shard")
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--dim-head", type=int, default=64)
    p.add_argument("--ff", type=int, default=768)
    p.add_argument("--n-buckets", type=int, default=256)
    p.add_argument("--max-distance", type=int, default=2048)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--ctx", type=int, default=256)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--min-lr", type=float, default=1e-4)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--wd", type=float, default=0.1)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--log-every", type=int, default=1)
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    if a.shard:
        stream, vocab = read_shard(a.shard)
    else:
        vocab = a.vocab_size
        stream = torch.randint(0, vocab, (a.batch * a.ctx * a.steps + a.batch,), generator=torch.Generator().manual_seed(a.seed))
    need = a.batch * (a.ctx + 1)
    if len(stream) < need:
        sys.exit(f"{a.shard}: {len(stream)} tokens, one batch needs {need}")
    model = CPMBee(vocab, a.dim, a.layers, a.heads, a.dim_head, a.ff, a.n_buckets, a.max_distance, a.ctx)
    n_params = sum(t.numel() for t in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=a.wd)
    print(f"torch {torch.__version__}: {n_params} parameters, {a.batch} x {a.ctx} tokens per batch, "
          f"{a.threads} threads, {len(stream)} tokens of data", file=sys.stderr)

    cursor, tokens, losses = 0, 0, []
    t0 = time.perf_counter()
    for step in range(a.steps):
        if cursor + need > len(stream):
            cursor = 0
        rows = stream[cursor:cursor + need].view(a.batch, a.ctx + 1)
        cursor += a.batch * a.ctx
        x, y = rows[:, :-1], rows[:, 1:]
        lr = lr_at(step, a.lr, a.min_lr, a.warmup, a.steps)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss = model(x, y)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip if a.clip > 0 else float("inf"))
        opt.step()
        tokens += a.batch * a.ctx
        losses.append(loss.item())
        el = time.perf_counter() - t0
        if (step + 1) % a.log_every == 0 or step + 1 == a.steps:
            print(f"step {step + 1}/{a.steps}  loss {losses[-1]:.4f}  lr {lr:.3e}  gnorm {float(gnorm):.3f}  "
                  f"tok/s {tokens / el:.0f}", file=sys.stderr)
    el = time.perf_counter() - t0
    print(json.dumps({"impl": "torch", "torch": torch.__version__, "blas": blas_library(), "threads": a.threads, "steps": a.steps,
                      "batch": a.batch, "ctx": a.ctx, "params": n_params, "seconds": round(el, 3),
                      "tok_s": round(tokens / el, 1), "first_loss": round(losses[0], 4),
                      "last_loss": round(losses[-1], 4), "losses": [round(v, 4) for v in losses]}))


if __name__ == "__main__":
    main()

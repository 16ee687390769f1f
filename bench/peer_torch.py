#!/usr/bin/env python3
"""PyTorch CPU peer for `npm run bench -- --peer` (not part of CI; run with Debian's python3-torch), and the CUDA fp32
peer of the GPU device check (`--device cuda`: TF32 off, timings synchronised, peak CUDA memory reported).

A timm-style ViT written in plain torch (pre-norm blocks, fused qkv, exact-erf GELU, LayerNorm eps 1e-6, CLS pooling,
linear head), timed on the same configurations as bench/run.ts. One JSON line per measurement on stdout:
  {"kind": "peer", "config": ..., "model": ..., "batch": ..., "threads": ..., "msPerIter": ..., "imgPerSec": ...,
   "cpuMsPerIter": ..., "imgPerCpuSec": ..., "bestMsPerIter": ..., "bestImgPerSec": ...}
(process CPU time and the best iteration are less sensitive to other load on a shared machine)

Configurations (--config):
  forward   inference (eval, no_grad) of the model
  full      full fine-tune train step: CE loss on a 10-class head, AdamW over every parameter
  explora   ExPLoRA-style step: last block unfrozen, every LayerNorm, the CLS token and the head train; LoRA rank r
            (scale 1/r) on Q and V of the qkv projection of every other block; everything else frozen; AdamW
"""
import argparse
import json
import math
import os
import sys
import time

# Pin OpenMP/MKL to the requested thread count before torch loads: with torch.set_num_threads(1) alone, PyTorch 1.13
# still ran part of the forward on a second OpenMP thread here (process CPU time = 2 × wall time).
_threads = sys.argv[sys.argv.index('--threads') + 1] if '--threads' in sys.argv else '1'
for _v in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS'):
    os.environ[_v] = _threads

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

SIZES = {
    'vit_tiny_patch16_224': dict(dim=192, depth=12, heads=3),
    'vit_small_patch16_224': dict(dim=384, depth=12, heads=6),
    'vit_base_patch16_224': dict(dim=768, depth=12, heads=12),
}


class LoRAQV(nn.Module):
    """LoRA on the Q and V slices of a fused qkv projection: y += s·[x·A_q·B_q, 0, x·A_v·B_v]."""

    def __init__(self, dim, rank):
        super().__init__()
        self.scale = 1.0 / rank
        self.a_q = nn.Parameter(torch.randn(rank, dim) * (1 / math.sqrt(dim)))
        self.b_q = nn.Parameter(torch.zeros(dim, rank))
        self.a_v = nn.Parameter(torch.randn(rank, dim) * (1 / math.sqrt(dim)))
        self.b_v = nn.Parameter(torch.zeros(dim, rank))

    def forward(self, x, y):
        dq = F.linear(F.linear(x, self.a_q), self.b_q) * self.scale
        dv = F.linear(F.linear(x, self.a_v), self.b_v) * self.scale
        return y + torch.cat([dq, torch.zeros_like(dq), dv], dim=-1)


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.lora = None

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x)
        if self.lora is not None:
            qkv = self.lora(x, qkv)
        qkv = qkv.reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj(x)


class Block(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class ViT(nn.Module):
    def __init__(self, dim, depth, heads, num_classes=10, img=224, patch=16):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        n = (img // patch) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, n + 1, dim) * 0.02)
        self.blocks = nn.ModuleList([Block(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for b in self.blocks:
            x = b(x)
        return self.head(self.norm(x)[:, 0])


def build(model, config, rank):
    m = ViT(**SIZES[model])
    if config == 'explora':
        for p in m.parameters():
            p.requires_grad_(False)
        last = len(m.blocks) - 1
        for p in m.blocks[last].parameters():
            p.requires_grad_(True)
        for name, p in m.named_parameters():
            if 'norm' in name or name.startswith('head') or name == 'cls_token':
                p.requires_grad_(True)
        dim = SIZES[model]['dim']
        for i, b in enumerate(m.blocks):
            if i != last:
                b.attn.lora = LoRAQV(dim, rank)
    return m


def timeit(fn, warmup, iters, sync=lambda: None):
    """(mean wall ms, mean process-CPU ms, best wall ms) per iteration."""
    for _ in range(warmup):
        fn()
    sync()
    walls = []
    c0 = time.process_time()
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        sync()
        walls.append((time.perf_counter() - t0) * 1000)
    cpu = (time.process_time() - c0) * 1000 / iters
    return sum(walls) / iters, cpu, min(walls)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--model', default='vit_tiny_patch16_224', choices=sorted(SIZES))
    ap.add_argument('--config', default='forward', choices=['forward', 'full', 'explora'])
    ap.add_argument('--batch', type=int, default=16)
    ap.add_argument('--iters', type=int, default=3)
    ap.add_argument('--warmup', type=int, default=1)
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--rank', type=int, default=64)
    ap.add_argument('--device', default='cpu', help="'cpu' or 'cuda' (fp32: TF32 matmul / cuDNN off)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dev = torch.device(a.device)
    cuda = dev.type == 'cuda'
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    m = build(a.model, a.config, a.rank).to(dev)
    x = (torch.rand(a.batch, 3, 224, 224) * 2 - 1).to(dev)
    y = (torch.arange(a.batch) % 10).to(dev)
    if a.config == 'forward':
        m.eval()

        def step():
            with torch.no_grad():
                m(x)
    else:
        m.train()
        params = [p for p in m.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.05)

        def step():
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(m(x), y)
            loss.backward()
            opt.step()

    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    ms, cpu_ms, best_ms = timeit(step, a.warmup, a.iters, (lambda: torch.cuda.synchronize(dev)) if cuda else (lambda: None))
    trainable = sum(p.numel() for p in m.parameters() if p.requires_grad)
    print(json.dumps({
        'kind': 'peer', 'device': str(dev), 'gpu': torch.cuda.get_device_name(dev) if cuda else None,
        'peakCudaMiB': torch.cuda.max_memory_allocated(dev) / 2**20 if cuda else None,
        'config': a.config, 'model': a.model, 'batch': a.batch, 'threads': torch.get_num_threads(),
        'torch': torch.__version__, 'iters': a.iters, 'msPerIter': ms, 'imgPerSec': 1000 * a.batch / ms,
        'cpuMsPerIter': cpu_ms, 'imgPerCpuSec': 1000 * a.batch / cpu_ms,
        'bestMsPerIter': best_ms, 'bestImgPerSec': 1000 * a.batch / best_ms,
        'trainableParams': trainable,
    }))


if __name__ == '__main__':
    main()

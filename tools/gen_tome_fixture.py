"""Generate test/fixtures/tome_golden.json: ToMe bipartite matching / size-weighted merge / source tracking and the
PYRA re-activation computed with PyTorch (float64), following the released algorithms (ToMe `tome/merge.py`, PYRA `model/adaptive_merge.py`).

Run: /usr/bin/python3 tools/gen_tome_fixture.py   (python3-torch 1.13; CI only reads the committed JSON)
"""
import json
import math
import os

import torch

torch.manual_seed(0)
DT = torch.float64


def matching(metric, r, cls, dist):
    """Indices of one bipartite soft matching step (no gradient)."""
    protect = int(cls) + int(dist)
    n = metric.shape[1]
    r = min(r, (n - protect) // 2)
    k = metric / metric.norm(dim=-1, keepdim=True)
    ka, kb = k[:, 0::2], k[:, 1::2]
    s = ka @ kb.transpose(1, 2)
    if cls:
        s[:, 0, :] = -math.inf
    if dist:
        s[:, :, 0] = -math.inf
    best, best_j = s.max(dim=-1)
    order = best.argsort(dim=-1, descending=True)
    src = order[:, :r]
    unm = order[:, r:]
    if cls:
        unm = unm.sort(dim=1).values
    dst = best_j.gather(1, src)
    return r, src, dst, unm


def merge_sum(idx, y, dist, modulate=None, amax=False):
    r, src, dst, unm = idx
    ya, yb = y[:, 0::2], y[:, 1::2]
    c = y.shape[-1]
    u = ya.gather(1, unm[..., None].expand(-1, -1, c))
    s = ya.gather(1, src[..., None].expand(-1, -1, c))
    if modulate is not None:
        s = modulate(s, yb.gather(1, dst[..., None].expand(-1, -1, c)))
    d = yb.scatter_reduce(1, dst[..., None].expand(-1, -1, c), s, reduce='amax' if amax else 'sum')
    if dist:
        return torch.cat([u[:, :1], d[:, :1], u[:, 1:], d[:, 1:]], 1)
    return torch.cat([u, d], 1)


def pyra_mod(a, b, gamma, beta):
    def f(p, q):
        m = torch.nn.functional.layer_norm(p + q, (p.shape[-1],), gamma, beta, eps=1e-5)
        c = 2 * torch.sigmoid(a.transpose(0, 1) @ m)  # [B,1,D]
        g = 2 * torch.sigmoid(m @ b.transpose(0, 1)) - 1  # [B,r,1]
        return p + (p * c) * g
    return f


def case(name, B, N, C, D, rs, cls=True, dist=False, pyra=False):
    x = torch.randn(B, N, D, dtype=DT)
    size = None
    source = torch.eye(N, dtype=DT)[None].expand(B, N, N)
    steps = []
    for r in rs:
        n = x.shape[1]
        metric = torch.randn(B, n, C, dtype=DT)
        idx = matching(metric, r, cls, dist)
        rr = idx[0]
        s = torch.ones(B, n, 1, dtype=DT) if size is None else size
        step = {
            'metric': metric.flatten().tolist(), 'n': n, 'r': r, 'rEff': rr,
            'xIn': x.flatten().tolist(), 'sizeIn': s.flatten().tolist(),
            'src': idx[1].flatten().tolist(), 'dst': idx[2].flatten().tolist(), 'unm': idx[3].flatten().tolist(),
        }
        mod = None
        if pyra:
            a = torch.rand(rr, 1, dtype=DT) * 2 - 1
            b = torch.randn(1, D, dtype=DT) * 0.5
            gamma = 1 + 0.1 * torch.randn(D, dtype=DT)
            beta = 0.1 * torch.randn(D, dtype=DT)
            mod = pyra_mod(a, b, gamma, beta)
            step['pyra'] = {'a': a.flatten().tolist(), 'b': b.flatten().tolist(),
                            'gamma': gamma.tolist(), 'beta': beta.tolist()}
        source = merge_sum(idx, source, dist, amax=True)
        xm = merge_sum(idx, x * s, dist, modulate=mod)
        size = merge_sum(idx, s, dist)
        x = xm / size
        step['xOut'] = x.flatten().tolist()
        step['sizeOut'] = size.flatten().tolist()
        step['sourceOut'] = source.flatten().tolist()
        steps.append(step)
    return {'name': name, 'B': B, 'N': N, 'C': C, 'D': D, 'cls': cls, 'dist': dist, 'pyra': pyra, 'steps': steps}


cases = [
    case('tome_cls_odd', 2, 13, 8, 6, [4, 3, 2]),
    case('tome_cls_even_capped', 2, 10, 5, 4, [3, 9]),
    case('tome_distill', 2, 12, 6, 5, [4, 2], dist=True),
    case('tome_no_cls', 1, 9, 4, 3, [3], cls=False),
    case('pyra_cls', 2, 13, 8, 6, [4, 3], pyra=True),
]
out = os.path.join(os.path.dirname(__file__), '..', 'test', 'fixtures', 'tome_golden.json')
with open(out, 'w') as fh:
    json.dump({'generator': 'tools/gen_tome_fixture.py', 'torch': torch.__version__, 'cases': cases}, fh)
print('wrote', out, os.path.getsize(out), 'bytes')

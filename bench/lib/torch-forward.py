"""P9's PyTorch peer: the same frozen ViT forward (patch conv, pre-norm blocks with exact GELU,
mean-pooled patch tokens, final LayerNorm) with random weights, 1 thread, no autograd.
Prints one JSON object: images per CPU-second (process time) per round.

usage: python3 torch-forward.py WIDTH DEPTH HEADS IMAGE PATCH BATCH ROUNDS MIN_CPU_S
"""
import json
import sys
import time

import torch
import torch.nn.functional as F

width, depth, heads, image, patch, batch, rounds = (int(x) for x in sys.argv[1:8])
min_cpu = float(sys.argv[8])
torch.set_num_threads(1)
torch.manual_seed(0)
d, m, g = width, 4 * width, image // patch
t = g * g + 1


def lin(i, o):
    return torch.randn(o, i) / i ** 0.5, torch.randn(o) * 0.02


blocks = [dict(ln1=(torch.ones(d), torch.zeros(d)), qkv=lin(d, 3 * d), proj=lin(d, d),
               ln2=(torch.ones(d), torch.zeros(d)), fc1=lin(d, m), fc2=lin(m, d)) for _ in range(depth)]
conv_w, conv_b = torch.randn(d, 3, patch, patch) * 0.02, torch.zeros(d)
cls, pos = torch.randn(1, 1, d) * 0.02, torch.randn(1, t, d) * 0.02
norm = (torch.ones(d), torch.zeros(d))
dh = d // heads


def forward(x):
    n = x.shape[0]
    x = F.conv2d(x, conv_w, conv_b, stride=patch).flatten(2).transpose(1, 2)
    x = torch.cat([cls.expand(n, -1, -1), x], 1) + pos
    for b in blocks:
        y = F.layer_norm(x, (d,), *b['ln1'], 1e-6)
        q, k, v = F.linear(y, *b['qkv']).reshape(n, t, 3, heads, dh).permute(2, 0, 3, 1, 4)
        a = torch.softmax((q @ k.transpose(-2, -1)) * dh ** -0.5, -1) @ v
        x = x + F.linear(a.transpose(1, 2).reshape(n, t, d), *b['proj'])
        y = F.layer_norm(x, (d,), *b['ln2'], 1e-6)
        x = x + F.linear(F.gelu(F.linear(y, *b['fc1'])), *b['fc2'])
    return F.layer_norm(x[:, 1:].mean(1), (d,), *norm, 1e-6)


pixels = torch.randn(batch, 3, image, image)
out = []
with torch.no_grad():
    forward(pixels)  # warm-up
    for _ in range(rounds):
        c0, n = time.process_time(), 0
        while True:
            forward(pixels)
            n += batch
            if time.process_time() - c0 >= min_cpu:
                break
        out.append(n / (time.process_time() - c0))
print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "imagesPerCpuSecond": out}))

"""P10's PyTorch peer: one DTL training step on cached prefix activations, 1 thread.

The same work as the service's trainStep on a filled prefix cache: the CSN's reads of the cached
prefix block inputs, the frozen suffix blocks (pre-norm, exact GELU) with the CSN's reads and
additions between them, mean-pooled patch tokens through the frozen final LayerNorm, the head,
cross-entropy, backward into the CSN and head only, and an AdamW update (weight decay 0.05, none on
the head bias). Random weights: the cost does not depend on their values.
Prints one JSON object: milliseconds of process CPU time per step, per round.

usage: python3 torch-train-step.py WIDTH DEPTH HEADS TOKENS SPLIT RANK CLASSES BATCH ROUNDS MIN_CPU_S
  reads before every block, additions after blocks DEPTH//2 .. DEPTH-1; SPLIT = DEPTH//2 + 1.
"""
import json
import sys
import time

import torch
import torch.nn.functional as F

width, depth, heads, tokens, split, rank, classes, batch, rounds = (int(x) for x in sys.argv[1:10])
min_cpu = float(sys.argv[10])
torch.set_num_threads(1)
torch.manual_seed(0)
d, m, t = width, 4 * width, tokens
dh = d // heads
first_add = depth // 2


def lin(i, o):
    return torch.randn(o, i) / i ** 0.5, torch.randn(o) * 0.02


blocks = [dict(ln1=(torch.ones(d), torch.zeros(d)), qkv=lin(d, 3 * d), proj=lin(d, d),
               ln2=(torch.ones(d), torch.zeros(d)), fc1=lin(d, m), fc2=lin(m, d)) for _ in range(depth)]
norm = (torch.ones(d), torch.zeros(d))

A = [torch.nn.Parameter((torch.rand(rank, d) * 2 - 1) / d ** 0.5) for _ in range(depth)]
B = [torch.nn.Parameter(torch.randn(d, rank) * 0.01) for _ in range(depth)]
head = torch.nn.Linear(d, classes)
opt = torch.optim.AdamW([{"params": A + B + [head.weight], "weight_decay": 0.05},
                         {"params": [head.bias], "weight_decay": 0.0}], lr=1e-3)


def block(x, b):
    n = x.shape[0]
    y = F.layer_norm(x, (d,), *b['ln1'], 1e-6)
    q, k, v = F.linear(y, *b['qkv']).reshape(n, t, 3, heads, dh).permute(2, 0, 3, 1, 4)
    a = torch.softmax((q @ k.transpose(-2, -1)) * dh ** -0.5, -1) @ v
    x = x + F.linear(a.transpose(1, 2).reshape(n, t, d), *b['proj'])
    y = F.layer_norm(x, (d,), *b['ln2'], 1e-6)
    return x + F.linear(F.gelu(F.linear(y, *b['fc1'])), *b['fc2'])


# The cache: the prefix blocks' inputs (read by the CSN) and the prefix's output.
cached_inputs = [torch.randn(batch, t, d) for _ in range(split)]
cached_x = torch.randn(batch, t, d)
labels = torch.arange(batch) % classes


def step():
    h = torch.zeros(batch, t, d)
    for i in range(split):
        h = h + (cached_inputs[i] @ A[i].t()) @ B[i].t()
    x = cached_x  # block split-1's output; its addition comes first
    if split - 1 >= first_add:
        x = x + h * torch.sigmoid(100 * h)
    for i in range(split, depth):
        h = h + (x @ A[i].t()) @ B[i].t()
        x = block(x, blocks[i])
        if i >= first_add:
            x = x + h * torch.sigmoid(100 * h)
    pooled = F.layer_norm(x[:, 1:].mean(1), (d,), *norm, 1e-6)
    loss = F.cross_entropy(head(pooled), labels)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


step()  # warm-up
out = []
for _ in range(rounds):
    c0, n = time.process_time(), 0
    while True:
        step()
        n += 1
        if time.process_time() - c0 >= min_cpu:
            break
    out.append((time.process_time() - c0) * 1000 / n)
print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "msPerStep": out}))

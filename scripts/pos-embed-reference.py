"""Reference position-embedding resizes for test/model/pos-embed.test.ts.

Runs Hugging Face's ViTEmbeddings.interpolate_pos_encoding (transformers >= 4.44, copied below:
bicubic, align_corners=False, to an explicit size) and timm's resample_abs_pos_embed (bicubic,
antialias=True) on seeded random embeddings with PyTorch, and writes the inputs and outputs to
test/fixtures/pos-embed-bicubic.json. Run: /usr/bin/python3 scripts/pos-embed-reference.py
(needs Debian's python3-torch).
"""
import json
import os

import torch
import torch.nn.functional as F


def hf_interpolate(pos, new_grid):
    # transformers/models/vit/modeling_vit.py, ViTEmbeddings.interpolate_pos_encoding
    cls, patch = pos[:, :1], pos[:, 1:]
    dim = pos.shape[-1]
    g = int((pos.shape[1] - 1) ** 0.5)
    patch = patch.reshape(1, g, g, dim).permute(0, 3, 1, 2)
    patch = F.interpolate(patch, size=(new_grid, new_grid), mode="bicubic", align_corners=False)
    patch = patch.permute(0, 2, 3, 1).view(1, -1, dim)
    return torch.cat((cls, patch), dim=1)


def timm_resample(pos, new_grid):
    # timm/layers/pos_embed.py, resample_abs_pos_embed (num_prefix_tokens=1, bicubic, antialias)
    cls, patch = pos[:, :1], pos[:, 1:]
    dim = pos.shape[-1]
    g = int((pos.shape[1] - 1) ** 0.5)
    patch = patch.reshape(1, g, g, dim).permute(0, 3, 1, 2)
    patch = F.interpolate(patch, size=(new_grid, new_grid), mode="bicubic", antialias=True, align_corners=False)
    patch = patch.permute(0, 2, 3, 1).reshape(1, -1, dim)
    return torch.cat((cls, patch), dim=1)


torch.manual_seed(0)
cases = []
for grid, dim, targets in [(4, 3, [2, 3, 6, 8]), (7, 2, [5, 14])]:
    pos = torch.randn(1, 1 + grid * grid, dim, dtype=torch.float64)
    for t in targets:
        cases.append({
            "grid": grid,
            "dim": dim,
            "target": t,
            "input": pos.flatten().tolist(),
            "hf": hf_interpolate(pos, t).flatten().tolist(),
            "timm": timm_resample(pos, t).flatten().tolist(),
        })
out = os.path.join(os.path.dirname(__file__), "..", "test", "fixtures", "pos-embed-bicubic.json")
with open(out, "w") as f:
    json.dump({"torch": torch.__version__, "cases": cases}, f)
print(f"wrote {len(cases)} cases to {out}")

/** backbones/<name>/TRAINING.md: how the committed backbone was made, with its log and test accuracy. */
import os from 'node:os';
import type { BackboneConfig } from '../../src/model/backbone-config.js';
import { FASHION_LABELS, HELD_OUT_CLASSES, PRETRAIN_CLASSES } from '../fashion-mnist.js';
import type { RunOptions, RunSummary } from './run.js';

const pct = (v: number) => `${(v * 100).toFixed(2)}%`;

export function trainingMarkdown(s: RunSummary, o: RunOptions, c: BackboneConfig): string {
  const names = (ids: readonly number[]) => ids.map((i) => FASHION_LABELS[i]).join(', ');
  const rows = s.epochs
    .map((e) => `| ${e.epoch} | ${e.lr.toExponential(2)} | ${e.loss.toFixed(4)} | ${pct(e.trainAcc)} | ${pct(e.valAcc)} | ${e.imgPerSec.toFixed(1)} | ${e.seconds.toFixed(0)} |`)
    .join('\n');
  const trainSeconds = s.epochs.reduce((a, e) => a + e.seconds, 0);
  return `# Default backbone: ViT-${c.width}/${c.patchSize} (depth ${c.depth}) pretrained on six Fashion-MNIST classes

Made by:

\`\`\`
${o.command}
\`\`\`

Machine: ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${os.cpus().length} vCPU (shared with other jobs while it ran),
Node ${process.version}, TensorFlow.js wasm backend (1 thread). Date: ${new Date().toISOString().slice(0, 10)}.

## What it is

A plain pre-norm ViT in the Hugging Face layout (\`model.safetensors\` F32, \`config.json\` with
\`model_type: vit\`, \`preprocessor_config.json\` with the grey mean/std), loadable by
\`loadBackboneFromDir\` and by \`transformers.ViTModel\`.

| | |
|---|---|
| input | ${c.imageSize}×${c.imageSize}×3 (grey replicated to 3 channels), normalised with mean ${s.mean}, std ${s.std} |
| patches | ${c.patchSize}×${c.patchSize} → ${c.gridSize}×${c.gridSize} grid, ${c.tokens} tokens with the cls token |
| width / depth / heads / MLP | ${c.width} / ${c.depth} / ${c.heads} / ${c.mlpDim} |
| parameters | ${s.params.toLocaleString('en-US')} (${(s.modelBytes / 1024).toFixed(0)} KiB file) |
| LayerNorm eps | ${c.eps} |

Pretraining classes: ${names(PRETRAIN_CLASSES)}. **Never seen** (kept for the transfer study):
${names(HELD_OUT_CLASSES)}.

The classifier used during pretraining is linear on exactly DTL's pooled feature (mean of the
patch tokens, then the final LayerNorm; the cls token is not used), so that this feature — the
one every adapter's head reads — is the one pretraining made linearly useful. The classifier is
not part of the checkpoint.

## Recipe

AdamW (weight decay ${o.weightDecay} on matrices; none on biases, LayerNorm, cls and position embeddings),
batch ${o.batchSize}, peak lr ${o.lr}, linear warm-up over ${o.warmupEpochs} epoch(s), cosine to ${o.minLr} per step,
${o.epochs} epochs, label smoothing ${o.labelSmoothing}, random shift ±${o.shift} px${o.flip ? ' and horizontal flip' : ''}, seed ${o.seed}.
Initialisation as timm (truncated normal 0.02 for linears and embeddings, LayerNorm 1/0, biases 0).
Training images: ${s.trainImages.toLocaleString('en-US')} (Fashion-MNIST train split, the six classes, minus
${s.valImages.toLocaleString('en-US')} held out for the per-epoch validation column).

## Log

| epoch | lr (end) | loss (smoothed CE) | train acc (augmented) | val acc | img/s | seconds |
|---|---|---|---|---|---|---|
${rows}

Training time ${(trainSeconds / 60).toFixed(1)} min; whole run ${(s.wallSeconds / 60).toFixed(1)} min wall.

## Result

**Test accuracy on the held-in classes: ${pct(s.testAcc)}** (${s.testImages.toLocaleString('en-US')} images of the Fashion-MNIST test split,
six-way, no augmentation).

Reloaded through the service's loader (\`loadBackboneFromDir\`), the folder reproduces the trained
model's pooled features to ${s.reloadMaxDiff.toExponential(1)} (max absolute difference on 16 test images).
`;
}

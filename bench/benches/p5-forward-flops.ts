/**
 * P5 — how close the backbone forward runs to the backend's matMul speed: forward GFLOP/s ÷ the
 * GFLOP/s of a large 2-D matMul on the same backend, measured back to back in one process.
 *
 * FLOPs counted (multiply and add = 2), per image:
 *   patch embedding   2 · P · (p²·3) · d                       (P patches, p patch size)
 *   per block         2 · t · (4·d² + 2·d·m)                    (q, k, v, output; MLP d→m→d)
 *                   + 2 · 2 · t² · d                            (QKᵀ and PV over all heads)
 * (t tokens, d width, m MLP width). LayerNorm, GELU, softmax, residual adds, pooling and the
 * final norm count as 0 FLOPs: they are the overhead this ratio exposes.
 * Forward = backboneFeatures: embedding, every block, final LayerNorm of the pooled tokens.
 * Peak = the best of two large 2-D matMuls ([1024, 1024]×[1024, 1024] and [788, 768]×[768, 3072]: ViT-B
 * MLP-sized).
 * Times are process CPU time (single-threaded wasm); each round runs one forward and the matMuls
 * back to back (order flipped every round) and the figure is the median of the per-round ratios.
 * Two backbones: ViT-B/16 at 224 (the paper's; quick mode runs 2 of its 12 blocks — the ratio is
 * per block) and the 12-block width-192 ViT at 65 tokens of P1–P4.
 */
import * as tf from '@tensorflow/tfjs';
import { backboneFeatures, initBackend, installWasmKernelFixes, uninstallWasmKernelFixes, type Backbone } from '../../src/model/index.js';
import { tinyBackbone } from '../../test/helpers/tiny-backbone.js';
import { images as makeImages } from '../lib/synthetic.js';
import type { Bench } from '../lib/types.js';
import { fmt, median, result, timed } from '../lib/util.js';

interface Case {
  label: string;
  width: number;
  depth: number;
  heads: number;
  imageSize: number;
  patchSize: number;
  batch: number;
}

function forwardFlops(c: Case): number {
  const d = c.width;
  const m = 4 * d;
  const patches = (c.imageSize / c.patchSize) ** 2;
  const t = patches + 1;
  const block = 2 * t * (4 * d * d + 2 * d * m) + 2 * 2 * t * t * d;
  return c.batch * (2 * patches * c.patchSize ** 2 * 3 * d + c.depth * block);
}

const MATMULS: Array<[number, number, number]> = [
  [1024, 1024, 1024],
  [788, 768, 3072],
];

const bench: Bench = {
  id: 'P5',
  title: 'backbone forward GFLOP/s ÷ large 2-D matMul GFLOP/s',
  async run({ quick, log }) {
    await initBackend('wasm');
    const cases: Case[] = [
      { label: 'ViT-B/16 @224', width: 768, depth: quick ? 2 : 12, heads: 12, imageSize: 224, patchSize: 16, batch: quick ? 1 : 2 },
      { label: 'ViT width 192 @65 tokens', width: 192, depth: 12, heads: 3, imageSize: 32, patchSize: 4, batch: quick ? 8 : 32 },
    ];
    const reps = quick ? 5 : 9;
    const mats = MATMULS.map(([m, k, n]) => ({ m, k, n, a: tf.randomNormal([m, k]) as tf.Tensor2D, b: tf.randomNormal([k, n]) as tf.Tensor2D }));
    /** Best matMul GFLOP/s of one round (each shape once). */
    const matmulRound = async () => {
      let best = 0;
      for (const x of mats) {
        // Not returned from a tidy: tidy walks a returned typed array element by element.
        const t = await timed(() => {
          const y = tf.matMul(x.a, x.b);
          y.dataSync();
          y.dispose();
        });
        best = Math.max(best, (2 * x.m * x.k * x.n) / t.cpuMs / 1e6);
      }
      return best;
    };
    const rows = [];
    try {
      await matmulRound(); // warm-up (XNNPACK operators, JIT)
      for (const c of cases) {
        log(`P5: ${c.label}: building a synthetic backbone`);
        const backbone: Backbone = tinyBackbone({ width: c.width, depth: c.depth, heads: c.heads, mlpDim: 4 * c.width, patchSize: c.patchSize, imageSize: c.imageSize, seed: 1 });
        const s = c.imageSize;
        const pixels = tf.tensor4d(Float32Array.from(makeImages(c.batch, backbone.config, 2).flatMap((a) => Array.from(a))), [c.batch, s, s, 3]);
        const flops = forwardFlops(c);
        const forward = () =>
          timed(() => {
            const y = backboneFeatures(backbone, pixels);
            y.dataSync();
            y.dispose();
          });
        try {
          /** Rounds of (forward, matMuls) back to back, order flipped every round; per-round ratios. */
          const measure = async (n: number) => {
            await forward(); // warm-up
            const fwd: number[] = [];
            const mm: number[] = [];
            const ratios: number[] = [];
            for (let r = 0; r < n; r++) {
              let f = 0;
              let m = 0;
              for (const o of r % 2 === 0 ? ['f', 'm'] : ['m', 'f']) {
                if (o === 'f') f = flops / (await forward()).cpuMs / 1e6;
                else m = await matmulRound();
              }
              fwd.push(f);
              mm.push(m);
              ratios.push(f / m);
            }
            return { fwd: median(fwd), mm: median(mm), ratio: median(ratios), spread: `${fmt(Math.min(...ratios))}–${fmt(Math.max(...ratios))}` };
          };
          log(`P5: ${c.label}: ${reps} interleaved forward / matMul rounds`);
          const ours = await measure(reps);
          // The same forward on tfjs's stock wasm kernels (full mode only: it is slow).
          let stock = '';
          if (!quick) {
            uninstallWasmKernelFixes();
            try {
              const st = await measure(2);
              stock = ` On stock tfjs-backend-wasm kernels the same forward ran at ${fmt(st.fwd)} GFLOP/s = ${fmt(st.ratio)} of the matMul peak.`;
            } finally {
              installWasmKernelFixes();
            }
          }
          const t = (c.imageSize / c.patchSize) ** 2 + 1;
          rows.push(
            result(
              `P5 backbone forward ÷ 2-D matMul GFLOP/s, ${c.label}`,
              ours.ratio,
              { op: '>=', value: 0.7 },
              `median of ${reps} per-round ratios (range ${ours.spread}; each round one forward and the matMuls back to back, CPU time); ` +
                `forward ${fmt(ours.fwd)} GFLOP/s vs matMul ${fmt(ours.mm)} GFLOP/s (best of ${MATMULS.map((x) => x.join('×')).join(', ')}), medians; ratio of the medians ${fmt(ours.fwd / ours.mm)}. ` +
                `${c.label}: width ${c.width}, ${c.depth} blocks, ${c.heads} heads, MLP ${4 * c.width}, ${t} tokens, batch ${c.batch}; ` +
                `${fmt(flops / 1e9)} GFLOP per forward counted as 2·t·(4d²+2dm) + 4·t²·d per block + patch embedding (normalisation, GELU, softmax, adds: 0).` +
                stock,
            ),
          );
        } finally {
          pixels.dispose();
          backbone.dispose();
        }
      }
      return rows;
    } finally {
      for (const x of mats) {
        x.a.dispose();
        x.b.dispose();
      }
    }
  },
};

export default bench;

/**
 * The vector–Jacobian product of one frozen ViT block as an ONNX graph: (x_i, dy) → dx_i with
 * dx_i = (∂Block_i/∂x_i)ᵀ · dy, the block's forward recomputed inside (activation checkpointing:
 * nothing of the forward is kept between the training step's passes). Only the input gradient —
 * the block's weights are frozen, so no weight gradient is ever formed. The maths is layers.ts's
 * block (pre-norm, 1/√dh folded into q, exact erf GELU), differentiated by hand:
 *
 *   LayerNorm   dx = rstd · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ ⊙ x̂)),  dx̂ = dout ⊙ γ
 *   GELU        d/dz [z·Φ(z)] = Φ(z) + z·φ(z)
 *   softmax     dS = P ⊙ (dP − Σ_j dP ⊙ P)
 *   x·W         dx = dout · Wᵀ (Gemm with transB: the [in, out] weight is read as it is, no
 *               transposed copy)
 *
 * test/model/native-vjp.test.ts checks it against tfjs's own gradient of vitBlock.
 */
import type { Backbone } from '../backbone.js';
import { preparedBlock } from '../backbone-residency.js';
import { valueInfo } from './onnx-proto.js';
import { GraphBuilder, qkvWeights } from './vit-graph.js';
import type { WeightFiles } from './weight-files.js';

/** Block i's VJP: inputs x, dy [N, tokens, d]; output dx [N, tokens, d]. */
export function blockVjpModel(backbone: Backbone, i: number, files?: WeightFiles): Uint8Array {
  const cfg = backbone.config;
  const { width: d, tokens: T, heads: H, eps, mlpDim: m } = cfg;
  const dh = d / H;
  const w = preparedBlock(backbone, i);
  const b = new GraphBuilder(files);
  // Keyed as the forward graphs key them (vit-graph.ts addBlock): both map the same files.
  const W = (name: string, t: { data: Float32Array; shape: number[] }) => b.weight(name, t.shape, () => t.data, `b${i}_${name}`);
  const mean = (x: string) => b.op('ReduceMean', [x], { axes: [-1], keepdims: 1 });
  const one = b.scalar('one', 1);
  const half = b.scalar('half', 0.5);

  /** LayerNorm's normalised input and 1/σ, kept for its backward. */
  const normalise = (x: string) => {
    const centred = b.op('Sub', [x, mean(x)]);
    const rstd = b.op('Reciprocal', [b.op('Sqrt', [b.op('Add', [mean(b.op('Mul', [centred, centred])), b.scalar(`eps${b.nodes.length}`, eps)])])]);
    return { xh: b.op('Mul', [centred, rstd]), rstd };
  };
  const affine = (xh: string, g: string, beta: string) => b.op('Add', [b.op('Mul', [xh, g]), beta]);
  const normBack = (dout: string, g: string, n: { xh: string; rstd: string }) => {
    const dxh = b.op('Mul', [dout, g]);
    const inner = b.op('Sub', [b.op('Sub', [dxh, mean(dxh)]), b.op('Mul', [n.xh, mean(b.op('Mul', [dxh, n.xh]))])]);
    return b.op('Mul', [inner, n.rstd]);
  };
  /** dout [N, T, out] · Wᵀ for W [in, out] → [N, T, in]. */
  const backLinear = (dout: string, wName: string, out: number, inn: number) => {
    const flat = b.op('Reshape', [dout, b.ints(`flat${out}_${b.nodes.length}`, [-1, out])]);
    return b.op('Reshape', [b.op('Gemm', [flat, wName], { transB: 1 }), b.ints(`rows${inn}_${b.nodes.length}`, [-1, T, inn])]);
  };
  const heads = b.ints('heads_shape', [0, 0, H, dh]);
  const merged = b.ints('merged_shape', [0, 0, d]);
  const split = (y: string) => b.op('Transpose', [b.op('Reshape', [y, heads])], { perm: [0, 2, 1, 3] });
  const merge = (y: string) => b.op('Reshape', [b.op('Transpose', [y], { perm: [0, 2, 1, 3] }), merged]);
  const swapLast = (y: string) => b.op('Transpose', [y], { perm: [0, 1, 3, 2] });

  // Forward, recomputed.
  const ln1g = W('ln1g', w.ln1g);
  const ln2g = W('ln2g', w.ln2g);
  const wo = W('wo', w.wo);
  const w1 = W('w1', w.w1);
  const w2 = W('w2', w.w2);
  const n1 = normalise('x');
  const xn = affine(n1.xh, ln1g, W('ln1b', w.ln1b));
  // q, k, v as one product with the forward's [d, 3d] weight (one file for both graphs), split.
  const [wqkv, bqkv] = qkvWeights(b, w, i, d);
  const [q, k, v] = b.opN('Split', [b.linear(xn, wqkv, bqkv), b.ints('qkv_split', [d, d, d])], 3, { axis: -1 }).map(split);
  const probs = b.op('Softmax', [b.op('MatMul', [q, swapLast(k)])], { axis: -1 });
  const attn = merge(b.op('MatMul', [probs, v]));
  const x3 = b.op('Add', ['x', b.linear(attn, wo, W('bo', w.bo))]);
  const n2 = normalise(x3);
  const hidden = b.linear(affine(n2.xh, ln2g, W('ln2b', w.ln2b)), w1, W('b1', w.b1));

  // Backward from dy. The MLP branch: y = x3 + GELU(hidden)·W2 + b2.
  const dGelu = backLinear('dy', w2, d, m);
  const cdf = b.op('Mul', [b.op('Add', [b.op('Erf', [b.op('Div', [hidden, b.scalar('sqrt2', Math.SQRT2)])]), one]), half]);
  const pdf = b.op('Mul', [b.op('Exp', [b.op('Mul', [b.op('Mul', [hidden, hidden]), b.scalar('minusHalf', -0.5)])]), b.scalar('invSqrt2Pi', 1 / Math.sqrt(2 * Math.PI))]);
  const dHidden = b.op('Mul', [dGelu, b.op('Add', [cdf, b.op('Mul', [hidden, pdf])])]);
  const dX3 = b.op('Add', ['dy', normBack(backLinear(dHidden, w1, m, d), ln2g, n2)]);
  // The attention branch: x3 = x + merge(softmax(q·kᵀ)·v)·Wo + bo.
  const dO = split(backLinear(dX3, wo, d, d));
  const dProbs = b.op('MatMul', [dO, swapLast(v)]);
  const dV = b.op('MatMul', [swapLast(probs), dO]);
  const dScores = b.op('Mul', [probs, b.op('Sub', [dProbs, b.op('ReduceSum', [b.op('Mul', [dProbs, probs]), b.ints('last_axis', [-1])], { keepdims: 1 })])]);
  const dQ = b.op('MatMul', [dScores, k]);
  const dK = b.op('MatMul', [swapLast(dScores), q]);
  const dXn = backLinear(b.op('Concat', [merge(dQ), merge(dK), merge(dV)], { axis: -1 }), wqkv, 3 * d, d);
  b.op('Add', [dX3, normBack(dXn, ln1g, n1)]);
  return b.model(`block${i}_vjp`, [valueInfo('x', ['N', T, d]), valueInfo('dy', ['N', T, d])], 'dx', ['N', T, d]);
}

/**
 * ONNX graphs of the frozen ViT, generated from the loaded backbone (no export step): the patch
 * embedding (pixels → x_0) and one graph per block (x_i → x_{i+1}), each with a symbolic batch.
 * A prefix or a suffix is a chain of these, so every weight lives in exactly one session however
 * many splits the adapters ask for. The arithmetic is layers.ts's: [in, out] weights with 1/√dh
 * folded into q, pre-norm blocks, exact GELU (erf) — which onnxruntime fuses into its own
 * LayerNorm / Gelu / attention kernels.
 */
import type { Backbone } from '../backbone.js';
import { preparedBlock, preparedEmbed } from '../backbone-residency.js';
import { modelBytes, tensor, valueInfo, type AttrValue, type Msg, type NodeSpec } from './onnx-proto.js';

/** LayerNormalization is in the default domain from opset 17. */
const OPSET = 17;

/** Nodes and initializers of one graph; shared by the forward graphs here and the VJP graphs (vit-vjp-graph.ts). */
export class GraphBuilder {
  readonly nodes: NodeSpec[] = [];
  readonly initializers: Msg[] = [];
  private next = 0;

  op(op: string, inputs: string[], attrs?: Record<string, AttrValue>): string {
    const out = `t${this.next++}`;
    this.nodes.push({ op, inputs, outputs: [out], attrs });
    return out;
  }

  weight(name: string, dims: number[], data: Float32Array): string {
    this.initializers.push(tensor(name, dims, data));
    return name;
  }

  ints(name: string, values: number[]): string {
    this.initializers.push(tensor(name, [values.length], BigInt64Array.from(values, (v) => BigInt(v))));
    return name;
  }

  scalar(name: string, v: number): string {
    this.initializers.push(tensor(name, [], Float32Array.of(v)));
    return name;
  }

  /** x·w + b with w [in, out]. */
  linear(x: string, w: string, b: string): string {
    return this.op('Add', [this.op('MatMul', [x, w]), b]);
  }

  model(name: string, input: Msg | Msg[], outputName: string, outputDims: Array<number | string>): Uint8Array {
    // The last node's output is renamed to the graph output.
    this.nodes[this.nodes.length - 1].outputs = [outputName];
    return modelBytes(
      { name, nodes: this.nodes, initializers: this.initializers, inputs: Array.isArray(input) ? input : [input], outputs: [valueInfo(outputName, outputDims)] },
      OPSET,
    );
  }
}

/** pixels [N, S, S, 3] (NHWC, normalised) → x_0 [N, tokens, d]. The patch conv is a MatMul over flattened patches. */
export function embedModel(backbone: Backbone): Uint8Array {
  const { patchSize: p, gridSize: g, numPatches: P, width: d, tokens: T, imageSize: S } = backbone.config;
  const b = new GraphBuilder();
  const e = preparedEmbed(backbone);
  // tfjs's conv filter [p, p, 3, d] is, flattened, the [p·p·3, d] matrix of a patch laid out (y, x, c).
  const filter = b.weight('patch_w', [p * p * 3, d], e.patchFilter.data);
  const bias = b.weight('patch_b', [d], e.patchBias.data);
  // Row 0 of x_0 is cls + pos_0: the patches are padded with a zero row and one constant adds both.
  const posCls = Float32Array.from(e.pos.data);
  const cls = e.cls.data;
  for (let c = 0; c < d; c++) posCls[c] += cls[c];
  const pos = b.weight('pos_cls', [1, T, d], posCls);
  const grid = b.op('Reshape', ['pixels', b.ints('grid_shape', [-1, g, p, g, p, 3])]);
  const patches = b.op('Reshape', [b.op('Transpose', [grid], { perm: [0, 1, 3, 2, 4, 5] }), b.ints('patch_shape', [-1, P, p * p * 3])]);
  const embedded = b.linear(patches, filter, bias);
  const padded = b.op('Pad', [embedded, b.ints('cls_pad', [0, 1, 0, 0, 0, 0])]);
  b.op('Add', [padded, pos]);
  return b.model('embed', valueInfo('pixels', ['N', S, S, 3]), 'x', ['N', T, d]);
}

/** Block i: x_i [N, tokens, d] → x_{i+1}. */
export function blockModel(backbone: Backbone, i: number): Uint8Array {
  const cfg = backbone.config;
  const { width: d, tokens: T, heads: H, eps } = cfg;
  const w = preparedBlock(backbone, i);
  const b = new GraphBuilder();
  const W = (name: string, t: { data: Float32Array; shape: number[] }) => b.weight(name, t.shape, t.data);
  const norm = (x: string, gamma: string, beta: string) => b.op('LayerNormalization', [x, gamma, beta], { axis: -1, epsilon: { float: eps } });
  const heads = b.ints('heads_shape', [0, 0, H, d / H]);
  const merged = b.ints('merged_shape', [0, 0, d]);
  const split = (y: string, perm: number[]) => b.op('Transpose', [b.op('Reshape', [y, heads])], { perm });

  const xn = norm('x', W('ln1g', w.ln1g), W('ln1b', w.ln1b));
  const q = split(b.linear(xn, W('wq', w.wq), W('bq', w.bq)), [0, 2, 1, 3]);
  const kT = split(b.linear(xn, W('wk', w.wk), W('bk', w.bk)), [0, 2, 3, 1]);
  const v = split(b.linear(xn, W('wv', w.wv), W('bv', w.bv)), [0, 2, 1, 3]);
  const probs = b.op('Softmax', [b.op('MatMul', [q, kT])], { axis: -1 });
  const attn = b.op('Reshape', [b.op('Transpose', [b.op('MatMul', [probs, v])], { perm: [0, 2, 1, 3] }), merged]);
  const x3 = b.op('Add', ['x', b.linear(attn, W('wo', w.wo), W('bo', w.bo))]);
  const hidden = b.linear(norm(x3, W('ln2g', w.ln2g), W('ln2b', w.ln2b)), W('w1', w.w1), W('b1', w.b1));
  // Exact GELU spelled as onnxruntime's GeluFusion expects: x·0.5·(1 + erf(x/√2)).
  const erf = b.op('Erf', [b.op('Div', [hidden, b.scalar('sqrt2', Math.SQRT2)])]);
  const gelu = b.op('Mul', [b.op('Mul', [hidden, b.op('Add', [erf, b.scalar('one', 1)])]), b.scalar('half', 0.5)]);
  b.op('Add', [x3, b.linear(gelu, W('w2', w.w2), W('b2', w.b2))]);
  return b.model(`block${i}`, valueInfo('x', ['N', T, d]), 'y', ['N', T, d]);
}

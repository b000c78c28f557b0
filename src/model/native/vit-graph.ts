/**
 * The ONNX graph of the frozen ViT, generated from the loaded backbone (no export step): the patch
 * embedding (pixels → x_0) and every block (x_i → x_{i+1}) behind If gates, symbolic batch, so a
 * prefix of any split, one suffix block or a run of them is one session run, and every weight
 * lives in exactly one session. The arithmetic is layers.ts's: [in, out] weights with 1/√dh
 * folded into q, pre-norm blocks, exact GELU (erf) — which onnxruntime fuses into its own
 * LayerNorm / Gelu / attention kernels.
 */
import type { Backbone } from '../backbone.js';
import { preparedBlock, preparedEmbed, type PreparedBlock } from '../backbone-residency.js';
import type { WeightFiles } from './weight-files.js';
import { BOOL, modelBytes, tensor, valueInfo, type AttrValue, type Msg, type NodeSpec, type SubgraphSpec } from './onnx-proto.js';

/** LayerNormalization is in the default domain from opset 17. */
const OPSET = 17;

/** Nodes and initializers of one graph; shared by the forward graphs here and the VJP graphs (vit-vjp-graph.ts). */
export class GraphBuilder {
  readonly nodes: NodeSpec[] = [];
  /** Where large weights go as memory-mapped files (weight-files.ts); without it they are inline. */
  constructor(private readonly files?: WeightFiles) {}

  readonly initializers: Msg[] = [];
  private next = 0;

  /** A node with `n` outputs (domain: '' = ONNX, 'com.microsoft' = onnxruntime's contrib ops). */
  opN(op: string, inputs: string[], n: number, attrs?: Record<string, AttrValue>, domain?: string): string[] {
    const outputs = Array.from({ length: n }, () => `t${this.next++}`);
    this.nodes.push({ op, inputs, outputs, attrs, domain });
    return outputs;
  }

  op(op: string, inputs: string[], attrs?: Record<string, AttrValue>): string {
    const out = `t${this.next++}`;
    this.nodes.push({ op, inputs, outputs: [out], attrs });
    return out;
  }

  /**
   * A float32 weight named `name` in this graph; `key` names the backbone tensor it is (its file),
   * the same in every graph. `data` may be a function: with weight files already written it is
   * never called, so a restart reads and transposes no checkpoint tensor.
   */
  weight(name: string, dims: number[], data: Float32Array | (() => Float32Array), key = name): string {
    const values = typeof data === 'function' ? data : () => data;
    this.initializers.push(this.files ? this.files.initializer(name, key, dims, values) : tensor(name, dims, values()));
    return name;
  }

  ints(name: string, values: number[]): string {
    this.initializers.push(tensor(name, [values.length], BigInt64Array.from(values, (v) => BigInt(v))));
    return name;
  }

  private readonly made = new Map<string, string>();

  /** A constant made once per graph, however many blocks use it. */
  shared(key: string, make: () => string): string {
    let name = this.made.get(key);
    if (name === undefined) this.made.set(key, (name = make()));
    return name;
  }

  /** An int64 scalar. */
  int64(name: string, v: number): string {
    this.initializers.push(tensor(name, [], BigInt64Array.of(BigInt(v))));
    return name;
  }

  scalar(name: string, v: number): string {
    this.initializers.push(tensor(name, [], Float32Array.of(v)));
    return name;
  }

  /** Nodes that `build` adds go into a branch (If) whose one output is `build`'s result, renamed `output`. */
  branch(name: string, output: string, outputDims: Array<number | string>, build: () => string): SubgraphSpec {
    const outer = this.nodes.splice(0);
    try {
      const last = build();
      if (this.nodes.length === 0) this.nodes.push({ op: 'Identity', inputs: [last], outputs: [output] });
      else this.nodes[this.nodes.length - 1].outputs = [output];
      return { name, nodes: this.nodes.splice(0), outputs: [valueInfo(output, outputDims)] };
    } finally {
      this.nodes.push(...outer);
    }
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

/**
 * Appends the patch embedding: `pixels` [N, S, S, 3] (NHWC, normalised) → x_0 [N, tokens, d].
 * The patch conv is a MatMul over flattened patches.
 */
function addEmbed(b: GraphBuilder, backbone: Backbone, pixels: string): string {
  const { patchSize: p, gridSize: g, numPatches: P, width: d, tokens: T } = backbone.config;
  const e = preparedEmbed(backbone);
  // tfjs's conv filter [p, p, 3, d] is, flattened, the [p·p·3, d] matrix of a patch laid out (y, x, c).
  const filter = b.weight('patch_w', [p * p * 3, d], () => e.patchFilter.data);
  const bias = b.weight('patch_b', [d], () => e.patchBias.data);
  // Row 0 of x_0 is cls + pos_0: the patches are padded with a zero row and one constant adds both.
  const pos = b.weight('pos_cls', [1, T, d], () => {
    const posCls = Float32Array.from(e.pos.data);
    const cls = e.cls.data;
    for (let c = 0; c < d; c++) posCls[c] += cls[c];
    return posCls;
  });
  const grid = b.op('Reshape', [pixels, b.ints('grid_shape', [-1, g, p, g, p, 3])]);
  const patches = b.op('Reshape', [b.op('Transpose', [grid], { perm: [0, 1, 3, 2, 4, 5] }), b.ints('patch_shape', [-1, P, p * p * 3])]);
  const embedded = b.linear(patches, filter, bias);
  const padded = b.op('Pad', [embedded, b.ints('cls_pad', [0, 1, 0, 0, 0, 0])]);
  return b.op('Add', [padded, pos]);
}

/**
 * Block i's q, k and v as one [d, 3d] weight and [3d] bias (their products side by side), keyed
 * `b{i}_wqkv` / `b{i}_bqkv` in every graph that uses them (the forward and the VJP share the files).
 */
export function qkvWeights(b: GraphBuilder, w: PreparedBlock, i: number, d: number): [string, string] {
  return [
    b.weight(`b${i}_wqkv`, [d, 3 * d], () => interleave(d, [w.wq.data, w.wk.data, w.wv.data])),
    b.weight(`b${i}_bqkv`, [3 * d], () => concat([w.bq.data, w.bk.data, w.bv.data])),
  ];
}

/** [rows, d] matrices side by side: [rows, d·parts]. */
function interleave(d: number, parts: Float32Array[]): Float32Array {
  const rows = parts[0].length / d;
  const out = new Float32Array(rows * d * parts.length);
  for (let r = 0; r < rows; r++) parts.forEach((p, j) => out.set(p.subarray(r * d, (r + 1) * d), (r * parts.length + j) * d));
  return out;
}

function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** Appends block i: x_i [N, tokens, d] → x_{i+1}. Its weights are named `b{i}_…`; shape constants are shared. */
function addBlock(b: GraphBuilder, backbone: Backbone, i: number, x: string): string {
  const cfg = backbone.config;
  const { width: d, heads: H, eps } = cfg;
  const w = preparedBlock(backbone, i);
  const W = (name: string, t: { data: Float32Array; shape: number[] }) => b.weight(`b${i}_${name}`, t.shape, () => t.data);
  const norm = (y: string, gamma: string, beta: string) => b.op('LayerNormalization', [y, gamma, beta], { axis: -1, epsilon: { float: eps } });
  const xn = norm(x, W('ln1g', w.ln1g), W('ln1b', w.ln1b));
  // q, k, v as one [d, 3d] product, then onnxruntime's MultiHeadAttention (scale 1: 1/√dh is in
  // q already): one node instead of the 11 reshapes, transposes, products and softmax per block,
  // which cost the bundled backbone (17 tokens × width 64) a quarter of its forward in per-node
  // overhead. Its softmax and sums match the plain spelling to ~1e-6.
  const qkv = b.linear(xn, ...qkvWeights(b, w, i, d));
  const [q, k, v] = b.opN('Split', [qkv], 3, { axis: -1 });
  const attn = b.opN('MultiHeadAttention', [q, k, v], 1, { num_heads: H, scale: { float: 1 } }, 'com.microsoft')[0];
  const x3 = b.op('Add', [x, b.linear(attn, W('wo', w.wo), W('bo', w.bo))]);
  const hidden = b.linear(norm(x3, W('ln2g', w.ln2g), W('ln2b', w.ln2b)), W('w1', w.w1), W('b1', w.b1));
  // Exact GELU spelled as onnxruntime's GeluFusion expects: x·0.5·(1 + erf(x/√2)).
  const sqrt2 = b.shared('sqrt2', () => b.scalar('sqrt2', Math.SQRT2));
  const one = b.shared('one', () => b.scalar('one', 1));
  const half = b.shared('half', () => b.scalar('half', 0.5));
  const erf = b.op('Erf', [b.op('Div', [hidden, sqrt2])]);
  const gelu = b.op('Mul', [b.op('Mul', [hidden, b.op('Add', [erf, one])]), half]);
  return b.op('Add', [x3, b.linear(gelu, W('w2', w.w2), W('b2', w.b2))]);
}

/** Block i alone, x [N, tokens, d] → y: a training step's forward of one block (training-blocks.ts). */
export function blockModel(backbone: Backbone, i: number, files?: WeightFiles): Uint8Array {
  const { width: d, tokens: T } = backbone.config;
  const b = new GraphBuilder(files);
  addBlock(b, backbone, i, 'x');
  return b.model(`block${i}`, valueInfo('x', ['N', T, d]), 'y', ['N', T, d]);
}

/** A segment of the backbone: blocks from..to−1, with the patch embedding in front when `embed`. */
export interface Segment {
  embed: boolean;
  from: number;
  to: number;
}

/**
 * One segment as one graph, any contiguous range of it in one run. Inputs: `x` [M, tokens, d]
 * (x_from), `gates` (bool [to − from]: block from + j runs, else its input passes through) and,
 * for the first segment, `pixels` [N, S, S, 3] and `embed` (bool scalar: x_0 = the patch embedding
 * of `pixels`, else `x`). Outputs: `y` (x_to) and `x{i}` for from < i < to (and x_0 when it embeds):
 * the block inputs, computed anyway, fetched only when wanted. Each block sits in an If's
 * then-branch reading its weights from the outer graph, so gating copies no weight, and
 * onnxruntime applies its fusions inside the branches as in a plain graph (same bits as one graph
 * per block).
 */
export function segmentModel(backbone: Backbone, seg: Segment, files?: WeightFiles): Uint8Array {
  const { width: d, tokens: T, imageSize: S } = backbone.config;
  const b = new GraphBuilder(files);
  const dims = ['B', T, d];
  const outputs: Msg[] = [];
  let x = 'x';
  if (seg.embed) {
    x = `x${seg.from}`;
    b.nodes.push({
      op: 'If',
      inputs: ['embed'],
      outputs: [x],
      attrs: {
        then_branch: { graph: b.branch('embed_then', 'x_embedded', dims, () => addEmbed(b, backbone, 'pixels')) },
        else_branch: { graph: b.branch('embed_else', 'x_given', dims, () => 'x') },
      },
    });
    outputs.push(valueInfo(x, ['N', T, d]));
  }
  for (let i = seg.from; i < seg.to; i++) {
    const next = i + 1 === seg.to ? 'y' : `x${i + 1}`;
    const gate = b.op('Gather', ['gates', b.int64(`gate${i}`, i - seg.from)]);
    const input = x;
    b.nodes.push({
      op: 'If',
      inputs: [gate],
      outputs: [next],
      attrs: {
        then_branch: { graph: b.branch(`block${i}_run`, `x${i + 1}_run`, dims, () => addBlock(b, backbone, i, input)) },
        else_branch: { graph: b.branch(`block${i}_pass`, `x${i + 1}_passed`, dims, () => input) },
      },
    });
    if (next !== 'y') outputs.push(valueInfo(next, ['N', T, d]));
    x = next;
  }
  const inputs = [valueInfo('x', ['M', T, d]), valueInfo('gates', [seg.to - seg.from], BOOL)];
  if (seg.embed) inputs.push(valueInfo('pixels', ['N', S, S, 3]), valueInfo('embed', [], BOOL));
  return modelBytes(
    { name: `blocks${seg.from}_${seg.to}`, nodes: b.nodes, initializers: b.initializers, inputs, outputs: [valueInfo('y', ['N', T, d]), ...outputs] },
    OPSET,
  );
}

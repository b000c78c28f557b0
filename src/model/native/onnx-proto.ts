/**
 * Protocol-buffer encoding of the part of ONNX's ModelProto that the graph builder uses (onnx.proto
 * field numbers, IR version 8). A small writer instead of protobufjs + a vendored onnx.proto: the
 * weights go in as raw_data by reference and are copied exactly once, into the final buffer
 * (protobufjs's Writer copies them into its own chunks first, then again on finish()), and the
 * maintained ONNX-specific packages on npm (onnx-proto) still pin protobufjs 6.
 */

type Part = Uint8Array;

/** One message being encoded: its fields' bytes as parts, weights kept as references until flatten(). */
export class Msg {
  readonly parts: Part[] = [];
  length = 0;

  private push(p: Part): void {
    this.parts.push(p);
    this.length += p.length;
  }

  private key(field: number, wire: number): void {
    this.push(varint(BigInt((field << 3) | wire)));
  }

  int(field: number, v: number | bigint): this {
    this.key(field, 0);
    // int64 negatives are ten-byte two's complement varints.
    this.push(varint(BigInt.asUintN(64, BigInt(v))));
    return this;
  }

  float(field: number, v: number): this {
    this.key(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.push(b);
    return this;
  }

  bytes(field: number, data: Uint8Array): this {
    this.key(field, 2);
    this.push(varint(BigInt(data.length)));
    this.push(data);
    return this;
  }

  string(field: number, s: string): this {
    return this.bytes(field, new TextEncoder().encode(s));
  }

  msg(field: number, m: Msg): this {
    this.key(field, 2);
    this.push(varint(BigInt(m.length)));
    for (const p of m.parts) this.parts.push(p);
    this.length += m.length;
    return this;
  }

  /** The encoded message as one buffer. */
  flatten(): Uint8Array {
    const out = new Uint8Array(this.length);
    let off = 0;
    for (const p of this.parts) {
      out.set(p, off);
      off += p.length;
    }
    return out;
  }
}

function varint(v: bigint): Uint8Array {
  const bytes: number[] = [];
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    bytes.push(b);
  } while (v > 0n);
  return Uint8Array.from(bytes);
}

/** TensorProto.DataType */
export const FLOAT = 1;
export const INT64 = 7;
export const BOOL = 9;

export type AttrValue = number | number[] | string | { float: number } | { graph: SubgraphSpec };

/** A control-flow branch (If): nodes reading the enclosing graph's values, no inputs or initializers of its own. */
export interface SubgraphSpec {
  name: string;
  nodes: NodeSpec[];
  outputs: Msg[];
}

/** AttributeProto: integers as INT/INTS, `{ float }` as FLOAT, strings as STRING, `{ graph }` as GRAPH. */
function attribute(name: string, v: AttrValue): Msg {
  const a = new Msg().string(1, name);
  if (typeof v === 'object' && 'graph' in v) return a.msg(6, graphMsg({ ...v.graph, initializers: [], inputs: [] })).int(20, 5);
  if (typeof v === 'string') return a.bytes(4, new TextEncoder().encode(v)).int(20, 3);
  if (typeof v === 'number') return a.int(3, v).int(20, 2);
  if (Array.isArray(v)) {
    for (const x of v) a.int(8, x);
    return a.int(20, 7);
  }
  return a.float(2, (v as { float: number }).float).int(20, 1);
}

export interface NodeSpec {
  op: string;
  inputs: string[];
  outputs: string[];
  attrs?: Record<string, AttrValue>;
  /** Operator domain; default the ONNX one ('' ); 'com.microsoft' for onnxruntime's contrib ops. */
  domain?: string;
}

export function node(spec: NodeSpec, name: string): Msg {
  const n = new Msg();
  for (const i of spec.inputs) n.string(1, i);
  for (const o of spec.outputs) n.string(2, o);
  n.string(3, name).string(4, spec.op);
  if (spec.domain) n.string(7, spec.domain);
  for (const [k, v] of Object.entries(spec.attrs ?? {})) n.msg(5, attribute(k, v));
  return n;
}

/** A float32 or int64 initializer; the data's bytes are referenced, not copied, until flatten(). */
export function tensor(name: string, dims: number[], data: Float32Array | BigInt64Array): Msg {
  const t = new Msg();
  for (const d of dims) t.int(1, d);
  t.int(2, data instanceof Float32Array ? FLOAT : INT64).string(8, name);
  return t.bytes(9, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
}

/** ValueInfoProto of a tensor (float32 unless told); a string dimension is symbolic (e.g. the batch). */
export function valueInfo(name: string, dims: Array<number | string>, elemType: number = FLOAT): Msg {
  const shape = new Msg();
  for (const d of dims) shape.msg(1, typeof d === 'number' ? new Msg().int(1, d) : new Msg().string(2, d));
  const tensorType = new Msg().int(1, elemType).msg(2, shape);
  return new Msg().string(1, name).msg(2, new Msg().msg(1, tensorType));
}

export interface GraphSpec {
  name: string;
  nodes: NodeSpec[];
  initializers: Msg[];
  inputs: Msg[];
  outputs: Msg[];
}

function graphMsg(g: GraphSpec): Msg {
  const graph = new Msg();
  // Node names are unique per graph; a branch's are prefixed with its graph's name.
  g.nodes.forEach((n, i) => graph.msg(1, node(n, `${g.name}_n${i}`)));
  graph.string(2, g.name);
  for (const t of g.initializers) graph.msg(5, t);
  for (const v of g.inputs) graph.msg(11, v);
  for (const v of g.outputs) graph.msg(12, v);
  return graph;
}

/** ModelProto bytes: IR version 8, default-domain opset `opset`. */
export function modelBytes(g: GraphSpec, opset: number): Uint8Array {
  const graph = graphMsg(g);
  const model = new Msg()
    .int(1, 8)
    .string(2, 'dtl-host')
    .msg(7, graph)
    .msg(8, new Msg().string(1, '').int(2, opset))
    .msg(8, new Msg().string(1, 'com.microsoft').int(2, 1));
  return model.flatten();
}

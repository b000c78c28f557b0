/**
 * A minimal WebAssembly encoder for the project's hand-assembled SIMD loops (wasm-simd.ts's GELU,
 * wasm-gemm.ts's small products): LEB128, sections, the few opcodes they use, and one way to
 * instantiate such a module on the tfjs wasm backend's own heap. No toolchain at build time.
 */

export const uleb = (n: number): number[] => {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
};
const sleb = (n: number): number[] => {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) return [...out, b];
    out.push(b | 0x80);
  }
};
export const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
const section = (id: number, body: number[]): number[] => [id, ...uleb(body.length), ...body];
const name = (s: string): number[] => [...uleb(s.length), ...Array.from(Buffer.from(s, 'utf8'))];

export const I32 = 0x7f;
export const V128 = 0x7b;
const simd = (code: number) => [0xfd, ...uleb(code)];
export const op = {
  localGet: (i: number) => [0x20, ...uleb(i)],
  localSet: (i: number) => [0x21, ...uleb(i)],
  localTee: (i: number) => [0x22, ...uleb(i)],
  i32Const: (v: number) => [0x41, ...sleb(v)],
  i32Add: [0x6a],
  i32Sub: [0x6b],
  i32And: [0x71],
  i32Shl: [0x74],
  i32Eqz: [0x45],
  i32GtU: [0x4b],
  i32GeU: [0x4f],
  block: [0x02, 0x40],
  loop: [0x03, 0x40],
  br: (d: number) => [0x0c, ...uleb(d)],
  brIf: (d: number) => [0x0d, ...uleb(d)],
  end: [0x0b],
  /** f32.load, memarg align 2^2, the given byte offset. */
  f32Load: (offset = 0) => [0x2a, 0x02, ...uleb(offset)],
  // SIMD (prefix 0xfd, then the opcode as LEB128); memarg: align 2^0 (a hint), then the offset
  v128Load: [...simd(0x00), 0x00, 0x00],
  v128Store: [...simd(0x0b), 0x00, 0x00],
  v128LoadAt: (offset: number) => [...simd(0x00), 0x00, ...uleb(offset)],
  v128StoreAt: (offset: number) => [...simd(0x0b), 0x00, ...uleb(offset)],
  f32x4Const: (v: number) => {
    const b = Buffer.alloc(16);
    for (let i = 0; i < 4; i++) b.writeFloatLE(v, i * 4);
    return [...simd(0x0c), ...Array.from(b)];
  },
  i32x4Const: (v: number) => {
    const b = Buffer.alloc(16);
    for (let i = 0; i < 4; i++) b.writeInt32LE(v, i * 4);
    return [...simd(0x0c), ...Array.from(b)];
  },
  f32x4Splat: simd(0x13),
  f32x4Nearest: simd(0x6a),
  i32x4TruncSatF32x4S: simd(0xf8),
  i32x4Add: simd(0xae),
  i32x4Shl: simd(0xab),
  f32x4Sub: simd(0xe5),
  f32x4Add: simd(0xe4),
  f32x4Mul: simd(0xe6),
  f32x4Div: simd(0xe7),
  f32x4Min: simd(0xe8),
  f32x4Max: simd(0xe9),
  f32x4Ge: simd(0x46),
  v128And: simd(0x4e),
};

/** `while (!exit) body`: a block around a loop that leaves when `exit` (an i32 on the stack) is true. */
export const loopUntil = (exit: number[], body: number[]): number[] => [...op.block, ...op.loop, ...exit, ...op.brIf(1), ...body, ...op.br(0), ...op.end, ...op.end];

/** A function body: its locals as [count, type] runs, then the code (which ends with op.end). */
export function funcBody(locals: Array<[number, number]>, code: number[]): number[] {
  const body = [...vec(locals.map(([count, type]) => [...uleb(count), type])), ...code];
  return [...uleb(body.length), ...body];
}

/** A module importing env.memory (up to 4 GiB, what tfjs allows) that exports `funcs`, each (i32 × params) → (). */
export function heapModule(funcs: Array<{ name: string; params: number; body: number[] }>): Uint8Array {
  const arities = [...new Set(funcs.map((f) => f.params))];
  const type = vec(arities.map((p) => [0x60, ...vec(Array.from({ length: p }, () => [I32])), ...vec([])]));
  const imports = vec([[...name('env'), ...name('memory'), 0x02, 0x01, ...uleb(1), ...uleb(65536)]]);
  const decl = vec(funcs.map((f) => uleb(arities.indexOf(f.params))));
  const exports = vec(funcs.map((f, i) => [...name(f.name), 0x00, ...uleb(i)]));
  const code = vec(funcs.map((f) => f.body));
  // prettier-ignore
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, type), ...section(2, imports), ...section(3, decl), ...section(7, exports), ...section(10, code),
  ]);
}

/** A WebAssembly.Memory (this project's TypeScript lib settings carry no WebAssembly typings). */
export type WasmMemory = object;
interface WebAssemblyApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
}
const WA = (globalThis as unknown as { WebAssembly: WebAssemblyApi }).WebAssembly;

/**
 * `bytes()` instantiated on `memory`, once per (cache, memory); null where the engine refuses the
 * module (no SIMD), and the callers fall back.
 */
export function onHeap<T>(cache: WeakMap<WasmMemory, T | null>, memory: WasmMemory, bytes: () => Uint8Array): T | null {
  if (cache.has(memory)) return cache.get(memory)!;
  let exports: T | null = null;
  try {
    exports = new WA.Instance(new WA.Module(bytes()), { env: { memory } }).exports as unknown as T;
  } catch {
    exports = null;
  }
  cache.set(memory, exports);
  return exports;
}

/**
 * Two elementwise loops as a tiny WebAssembly module with 128-bit SIMD, run directly on the tfjs
 * wasm backend's heap (the module imports the backend's WebAssembly.Memory): GELU and the standard
 * normal CDF Φ, four floats per instruction, ≈4× faster than the same maths in a JS loop.
 *
 * The module is assembled here from bytes (no toolchain at build time): one function per loop,
 * (src, dst, n) → (), processing n − n mod 4 floats; the caller finishes the remainder. Maths:
 * erf(c) ≈ c·P(c²)/Q(c²) with c = x/√2 clamped to [−4, 4] (XLA's and Eigen's float32 erf, within
 * 1e-7 of libm), Φ = 0.5 + 0.5·erf, GELU = x·Φ — the same formula gelu-kernel.ts evaluates in JS.
 * If the engine refuses the module (no SIMD), `simdKernels` returns null and callers use JS.
 */
export const ERF_P = [-2.72614225801306e-10, 2.77068142495902e-8, -2.10102402082508e-6, -5.69250639462346e-5, -7.34990630326855e-4, -2.95459980854025e-3, -1.60960333262415e-2];
export const ERF_Q = [-1.45660718464996e-5, -2.13374055278905e-4, -1.68282697438203e-3, -7.37332916720468e-3, -1.42647390514189e-2];

export interface SimdKernels {
  /** dst[i] = GELU(src[i]) for i < n − n mod 4 (byte offsets into the heap). */
  gelu(src: number, dst: number, n: number): void;
  /** dst[i] = Φ(src[i]) for i < n − n mod 4. */
  normCdf(src: number, dst: number, n: number): void;
}

// --- a minimal WebAssembly encoder -------------------------------------------------------------

const uleb = (n: number): number[] => {
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
const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
const section = (id: number, body: number[]): number[] => [id, ...uleb(body.length), ...body];
const name = (s: string): number[] => [...uleb(s.length), ...Array.from(Buffer.from(s, 'utf8'))];

const I32 = 0x7f;
const V128 = 0x7b;
const op = {
  localGet: (i: number) => [0x20, ...uleb(i)],
  localSet: (i: number) => [0x21, ...uleb(i)],
  localTee: (i: number) => [0x22, ...uleb(i)],
  i32Const: (v: number) => [0x41, ...sleb(v)],
  i32Add: [0x6a],
  i32And: [0x71],
  i32Shl: [0x74],
  i32GeU: [0x4f],
  block: [0x02, 0x40],
  loop: [0x03, 0x40],
  br: (d: number) => [0x0c, ...uleb(d)],
  brIf: (d: number) => [0x0d, ...uleb(d)],
  end: [0x0b],
  // SIMD (prefix 0xfd, then the opcode as LEB128)
  v128Load: [0xfd, ...uleb(0x00), 0x00, 0x00], // memarg: align 2^0 (a hint), offset 0
  v128Store: [0xfd, ...uleb(0x0b), 0x00, 0x00],
  f32x4Const: (v: number) => {
    const b = Buffer.alloc(16);
    for (let i = 0; i < 4; i++) b.writeFloatLE(v, i * 4);
    return [0xfd, ...uleb(0x0c), ...Array.from(b)];
  },
  f32x4Add: [0xfd, ...uleb(0xe4)],
  f32x4Mul: [0xfd, ...uleb(0xe6)],
  f32x4Div: [0xfd, ...uleb(0xe7)],
  f32x4Min: [0xfd, ...uleb(0xe8)],
  f32x4Max: [0xfd, ...uleb(0xe9)],
};

/** Body of (src, dst, n): for each 4 floats, x → Φ(x) (or x·Φ(x) when `timesX`). */
function loopBody(timesX: boolean): number[] {
  // params 0 src, 1 dst, 2 n; locals 3 end (i32), 4 x, 5 c, 6 c², 7 P (v128)
  const [SRC, DST, N, END, X, C, C2, P] = [0, 1, 2, 3, 4, 5, 6, 7];
  const horner = (coefs: number[]) => [
    ...op.f32x4Const(coefs[0]),
    ...coefs.slice(1).flatMap((a) => [...op.localGet(C2), ...op.f32x4Mul, ...op.f32x4Const(a), ...op.f32x4Add]),
  ];
  const code = [
    // end = src + (n & ~3)·4
    ...op.localGet(SRC), ...op.localGet(N), ...op.i32Const(-4), ...op.i32And, ...op.i32Const(2), ...op.i32Shl, ...op.i32Add, ...op.localSet(END),
    ...op.block,
    ...op.loop,
    ...op.localGet(SRC), ...op.localGet(END), ...op.i32GeU, ...op.brIf(1),
    ...op.localGet(SRC), ...op.v128Load, ...op.localSet(X),
    // c = clamp(x/√2, −4, 4); c² 
    ...op.localGet(X), ...op.f32x4Const(Math.SQRT1_2), ...op.f32x4Mul, ...op.f32x4Const(-4), ...op.f32x4Max, ...op.f32x4Const(4), ...op.f32x4Min, ...op.localTee(C),
    ...op.localGet(C), ...op.f32x4Mul, ...op.localSet(C2),
    ...horner(ERF_P), ...op.localSet(P),
    // store address, then Φ = 0.5 + 0.5·c·P/Q (, × x)
    ...op.localGet(DST),
    ...op.localGet(C), ...op.localGet(P), ...op.f32x4Mul, ...horner(ERF_Q), ...op.f32x4Div,
    ...op.f32x4Const(0.5), ...op.f32x4Mul, ...op.f32x4Const(0.5), ...op.f32x4Add,
    ...(timesX ? [...op.localGet(X), ...op.f32x4Mul] : []),
    ...op.v128Store,
    ...op.localGet(SRC), ...op.i32Const(16), ...op.i32Add, ...op.localSet(SRC),
    ...op.localGet(DST), ...op.i32Const(16), ...op.i32Add, ...op.localSet(DST),
    ...op.br(0),
    ...op.end,
    ...op.end,
    ...op.end,
  ];
  const locals = vec([
    [...uleb(1), I32],
    [...uleb(4), V128],
  ]);
  const body = [...locals, ...code];
  return [...uleb(body.length), ...body];
}

function moduleBytes(): Uint8Array {
  const type = vec([[0x60, ...vec([[I32], [I32], [I32]]), ...vec([])]]);
  // memory import: flags 1 (has max), min 1 page, max 65536 pages (4 GiB, what tfjs allows)
  const imports = vec([[...name('env'), ...name('memory'), 0x02, 0x01, ...uleb(1), ...uleb(65536)]]);
  const funcs = vec([uleb(0), uleb(0)]);
  const exports = vec([
    [...name('gelu'), 0x00, ...uleb(0)],
    [...name('normCdf'), 0x00, ...uleb(1)],
  ]);
  const code = vec([loopBody(true), loopBody(false)]);
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, type),
    ...section(2, imports),
    ...section(3, funcs),
    ...section(7, exports),
    ...section(10, code),
  ]);
}

/** A WebAssembly.Memory (this project's TypeScript lib settings carry no WebAssembly typings). */
export type WasmMemory = object;
interface WebAssemblyApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
}
const WA = (globalThis as unknown as { WebAssembly: WebAssemblyApi }).WebAssembly;

const instances = new WeakMap<WasmMemory, SimdKernels | null>();

/** The SIMD loops bound to this heap, or null where the engine cannot run them. */
export function simdKernels(memory: WasmMemory): SimdKernels | null {
  if (instances.has(memory)) return instances.get(memory)!;
  let kernels: SimdKernels | null = null;
  try {
    const mod = new WA.Module(moduleBytes());
    const inst = new WA.Instance(mod, { env: { memory } });
    kernels = inst.exports as unknown as SimdKernels;
  } catch {
    kernels = null;
  }
  instances.set(memory, kernels);
  return kernels;
}

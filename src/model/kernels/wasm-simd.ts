/**
 * Elementwise loops as a tiny WebAssembly module with 128-bit SIMD, run directly on the tfjs wasm
 * backend's heap (the module imports the backend's WebAssembly.Memory): GELU and its gradient,
 * four floats per instruction, ≈4× faster than the same maths in JS.
 *
 * The module is assembled from bytes (wasm-encoder.ts; no toolchain at build time): one function per loop,
 * (src, dst, n) → (), processing n − n mod 4 floats; the caller finishes the remainder. Maths:
 * erf(c) ≈ c·P(c²)/Q(c²) with c = x/√2 clamped to [−4, 4] (XLA's and Eigen's float32 erf, within
 * 1e-7 of libm), Φ = 0.5 + 0.5·erf, GELU = x·Φ, GELU' = Φ + x·φ with φ's exp as Cephes' expf
 * (0 below −87, where expf underflows) — the same float32 operations, in the same order, that
 * gelu-kernel.ts evaluates in JS, so both give the same bits.
 * If the engine refuses the module (no SIMD), `simdKernels` returns null and callers use JS.
 */
import { funcBody, heapModule, I32, onHeap, op, V128, type WasmMemory } from './wasm-encoder.js';

export const ERF_P = [-2.72614225801306e-10, 2.77068142495902e-8, -2.10102402082508e-6, -5.69250639462346e-5, -7.34990630326855e-4, -2.95459980854025e-3, -1.60960333262415e-2];
export const ERF_Q = [-1.45660718464996e-5, -2.13374055278905e-4, -1.68282697438203e-3, -7.37332916720468e-3, -1.42647390514189e-2];

export interface SimdKernels {
  /** dst[i] = GELU(src[i]) for i < n − n mod 4 (byte offsets into the heap). */
  gelu(src: number, dst: number, n: number): void;
  /** dst[i] = dy[i]·(Φ(x[i]) + x[i]·φ(x[i])), GELU's gradient, for i < n − n mod 4. */
  geluGrad(x: number, dy: number, dst: number, n: number): void;
}

/** exp on [−87, 0] as Cephes' expf: n = round(y·log₂e), r = y − n·ln2 (two parts), e^r by a degree-6 polynomial, × 2ⁿ. */
export const EXP_LN2_HI = 0.693359375;
export const EXP_LN2_LO = -2.12194440e-4;
export const EXP_P = [1.98756915e-4, 1.39819995e-3, 8.33345191e-3, 4.16657959e-2, 1.66666655e-1, 5.00000012e-1];
export const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

/** Body of (src, dst, n): for each 4 floats, x → x·Φ(x). */
function geluBody(): number[] {
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
    ...op.localGet(X), ...op.f32x4Mul,
    ...op.v128Store,
    ...op.localGet(SRC), ...op.i32Const(16), ...op.i32Add, ...op.localSet(SRC),
    ...op.localGet(DST), ...op.i32Const(16), ...op.i32Add, ...op.localSet(DST),
    ...op.br(0),
    ...op.end,
    ...op.end,
    ...op.end,
  ];
  return funcBody([[1, I32], [4, V128]], code);
}

/** Body of (x, dy, dst, n): dy·(Φ(x) + x·φ(x)) for each 4 floats. */
function gradBody(): number[] {
  // params 0 x, 1 dy, 2 dst, 3 n; locals 4 end (i32), 5 x, 6 c, 7 c², 8 P, 9 y/r, 10 k (v128)
  const [XP, DY, DST, N, END, X, C, C2, P, Y, K] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
  const hornerOn = (v: number, coefs: number[]) => [
    ...op.f32x4Const(coefs[0]),
    ...coefs.slice(1).flatMap((a) => [...op.localGet(v), ...op.f32x4Mul, ...op.f32x4Const(a), ...op.f32x4Add]),
  ];
  const code = [
    ...op.localGet(XP), ...op.localGet(N), ...op.i32Const(-4), ...op.i32And, ...op.i32Const(2), ...op.i32Shl, ...op.i32Add, ...op.localSet(END),
    ...op.block,
    ...op.loop,
    ...op.localGet(XP), ...op.localGet(END), ...op.i32GeU, ...op.brIf(1),
    ...op.localGet(XP), ...op.v128Load, ...op.localSet(X),
    ...op.localGet(DST),
    // x·φ(x): y = max(−x²/2, −87); k = round(y·log₂e); r = y − k·ln2; e^r·2^k·x/√(2π)
    ...op.localGet(X), ...op.localGet(X), ...op.f32x4Mul, ...op.f32x4Const(-0.5), ...op.f32x4Mul, ...op.f32x4Const(-87), ...op.f32x4Max, ...op.localTee(Y),
    ...op.f32x4Const(Math.LOG2E), ...op.f32x4Mul, ...op.f32x4Nearest, ...op.localSet(K),
    ...op.localGet(Y), ...op.localGet(K), ...op.f32x4Const(EXP_LN2_HI), ...op.f32x4Mul, ...op.f32x4Sub,
    ...op.localGet(K), ...op.f32x4Const(EXP_LN2_LO), ...op.f32x4Mul, ...op.f32x4Sub, ...op.localSet(Y),
    // e^r = 1 + r + r²·P(r)
    ...hornerOn(Y, EXP_P), ...op.localGet(Y), ...op.f32x4Mul, ...op.localGet(Y), ...op.f32x4Mul,
    ...op.localGet(Y), ...op.f32x4Add, ...op.f32x4Const(1), ...op.f32x4Add,
    // × 2^k: the float with exponent bits k + 127
    ...op.localGet(K), ...op.i32x4TruncSatF32x4S, ...op.i32x4Const(127), ...op.i32x4Add, ...op.i32Const(23), ...op.i32x4Shl, ...op.f32x4Mul,
    // 0 where −x²/2 < −87, as exp underflows: the clamp above keeps 2^k a normal float, but left
    // alone it made φ ≥ 1.6e-38, so x·φ(x) grew with |x| (≈ −2 at x = −3e38, ±Inf at ±Inf).
    ...op.localGet(X), ...op.localGet(X), ...op.f32x4Mul, ...op.f32x4Const(-0.5), ...op.f32x4Mul, ...op.f32x4Const(-87), ...op.f32x4Ge, ...op.v128And,
    ...op.f32x4Const(INV_SQRT_2PI), ...op.f32x4Mul, ...op.localGet(X), ...op.f32x4Mul,
    // + Φ(x)
    ...op.localGet(X), ...op.f32x4Const(Math.SQRT1_2), ...op.f32x4Mul, ...op.f32x4Const(-4), ...op.f32x4Max, ...op.f32x4Const(4), ...op.f32x4Min, ...op.localTee(C),
    ...op.localGet(C), ...op.f32x4Mul, ...op.localSet(C2),
    ...hornerOn(C2, ERF_P), ...op.localSet(P),
    ...op.localGet(C), ...op.localGet(P), ...op.f32x4Mul, ...hornerOn(C2, ERF_Q), ...op.f32x4Div,
    ...op.f32x4Const(0.5), ...op.f32x4Mul, ...op.f32x4Const(0.5), ...op.f32x4Add,
    ...op.f32x4Add,
    // × dy
    ...op.localGet(DY), ...op.v128Load, ...op.f32x4Mul,
    ...op.v128Store,
    ...[XP, DY, DST].flatMap((v) => [...op.localGet(v), ...op.i32Const(16), ...op.i32Add, ...op.localSet(v)]),
    ...op.br(0),
    ...op.end,
    ...op.end,
    ...op.end,
  ];
  return funcBody([[1, I32], [6, V128]], code);
}

const moduleBytes = () =>
  heapModule([
    { name: 'gelu', params: 3, body: geluBody() },
    { name: 'geluGrad', params: 4, body: gradBody() },
  ]);

const instances = new WeakMap<WasmMemory, SimdKernels | null>();

/** The SIMD loops bound to this heap, or null where the engine cannot run them. */
export function simdKernels(memory: WasmMemory): SimdKernels | null {
  return onHeap(instances, memory, moduleBytes);
}

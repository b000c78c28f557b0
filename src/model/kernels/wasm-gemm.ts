/**
 * Small matrix products as 128-bit SIMD WebAssembly on the tfjs wasm backend's heap
 * (wasm-matmul.ts sends them here).
 *
 * Why: XNNPACK's fully-connected operator, which every other product goes through, is created
 * and its right operand packed on each call. For the adapters' products — a grouped training
 * step's 256 DTL+ conv products of [32, 16] × [16, 16], the CSN's weight gradients
 * [64, 544] × [544, 16] — that set-up costs more than the arithmetic: ≈ 0.1–0.2 ms per product,
 * 1–5 GFLOP/s. This loop has no set-up: it reads the operands where they lie.
 *
 * out[i, j] = Σ_p A(i, p) · B[p, j], B row-major [k, n] with n a multiple of 4, A(i, p) at
 * a + i·sai + p·sap bytes (so a transposed left operand needs no copy), out row-major [m, n].
 * Columns go 16 at a time (four f32x4 accumulators), then 4 at a time; each accumulator sums its
 * k terms in order p = 0, 1, … in float32 (wasm SIMD has no fused multiply-add here).
 */
import { funcBody, heapModule, I32, loopUntil, onHeap, op, V128, type WasmMemory } from './wasm-encoder.js';

export interface GemmKernel {
  /** Byte offsets and strides; n a multiple of 4. */
  gemm(a: number, b: number, out: number, m: number, k: number, n: number, sai: number, sap: number): void;
}

function gemmBody(): number[] {
  // params 0 a, 1 b, 2 out, 3 m, 4 k, 5 n, 6 sai, 7 sap; locals 8 nb (row bytes), 9 jb, 10 pa,
  // 11 pb, 12 p (i32); 13 s, 14–17 acc (v128)
  const [A, B, OUT, M, K, N, SAI, SAP, NB, JB, PA, PB, P, S] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13];
  const ACC = [14, 15, 16, 17];
  const g = op.localGet;
  const set = op.localSet;
  const addTo = (v: number, by: number[]) => [...g(v), ...by, ...op.i32Add, ...set(v)];
  const decrement = (v: number) => [...g(v), ...op.i32Const(1), ...op.i32Sub, ...set(v)];
  /** Column blocks of `lanes` vectors while they fit: acc = Σ_p splat(A(i,p))·B[p, jb…], stored at out + jb. */
  const columns = (lanes: number) => {
    const accs = ACC.slice(0, lanes);
    // prettier-ignore
    const sumOverP = loopUntil([...g(P), ...op.i32Eqz], [
      ...g(PA), ...op.f32Load(), ...op.f32x4Splat, ...set(S),
      ...accs.flatMap((acc, l) => [...g(acc), ...g(S), ...g(PB), ...op.v128LoadAt(16 * l), ...op.f32x4Mul, ...op.f32x4Add, ...set(acc)]),
      ...addTo(PA, g(SAP)),
      ...addTo(PB, g(NB)),
      ...decrement(P),
    ]);
    // prettier-ignore
    return loopUntil([...g(JB), ...op.i32Const(16 * lanes), ...op.i32Add, ...g(NB), ...op.i32GtU], [
      ...accs.flatMap((acc) => [...op.f32x4Const(0), ...set(acc)]),
      ...g(A), ...set(PA),
      ...g(B), ...g(JB), ...op.i32Add, ...set(PB),
      ...g(K), ...set(P),
      ...sumOverP,
      ...accs.flatMap((acc, l) => [...g(OUT), ...g(JB), ...op.i32Add, ...g(acc), ...op.v128StoreAt(16 * l)]),
      ...addTo(JB, op.i32Const(16 * lanes)),
    ]);
  };
  // prettier-ignore
  const code = [
    ...g(N), ...op.i32Const(2), ...op.i32Shl, ...set(NB),
    ...loopUntil([...g(M), ...op.i32Eqz], [
      ...op.i32Const(0), ...set(JB),
      ...columns(4),
      ...columns(1),
      ...addTo(A, g(SAI)),
      ...addTo(OUT, g(NB)),
      ...decrement(M),
    ]),
    ...op.end,
  ];
  return funcBody([[5, I32], [5, V128]], code);
}

const instances = new WeakMap<WasmMemory, GemmKernel | null>();

/** The product loop bound to this heap, or null where the engine cannot run SIMD WebAssembly. */
export function gemmKernel(memory: WasmMemory): GemmKernel | null {
  return onHeap(instances, memory, () => heapModule([{ name: 'gemm', params: 8, body: gemmBody() }]));
}

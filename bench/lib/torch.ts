/**
 * Running a PyTorch peer script (bench/lib/*.py) with Debian's python3-torch, 1 thread: the
 * BLAS Debian's torch calls is whatever libblas.so.3 points to (the reference BLAS unless an
 * optimised one such as libopenblas0-pthread is installed — a 10× difference on the backward), so
 * every row names it. Without torch the caller gets a plain sentence instead of a number.
 */
import { execFile } from 'node:child_process';
import { realpathSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const here = path.dirname(fileURLToPath(import.meta.url));
const run = promisify(execFile);

/** Which BLAS Debian's libblas.so.3 alternative resolves to. */
export function blasInUse(): string {
  try {
    const target = realpathSync('/usr/lib/x86_64-linux-gnu/libblas.so.3');
    if (/openblas/.test(target)) return 'OpenBLAS';
    if (/blis/.test(target)) return 'BLIS';
    if (/mkl/.test(target)) return 'MKL';
    return 'the reference BLAS (install libopenblas0-pthread for a fair comparison)';
  } catch {
    return 'unknown BLAS';
  }
}

/** Runs `script` from bench/lib with /usr/bin/python3; its stdout parsed as JSON, or why not. */
export async function runTorchPeer<T>(script: string, args: Array<string | number>): Promise<{ out: T; note: string } | string> {
  try {
    const { stdout } = await run('/usr/bin/python3', [path.join(here, script), ...args.map(String)], {
      timeout: 600_000,
      env: { ...process.env, OMP_NUM_THREADS: '1', OPENBLAS_NUM_THREADS: '1', MKL_NUM_THREADS: '1' },
    });
    return { out: JSON.parse(stdout) as T, note: `BLAS: ${blasInUse()}` };
  } catch (err) {
    const msg = String((err as { stderr?: string }).stderr || (err as Error).message);
    return /No module named 'torch'|ENOENT/.test(msg)
      ? 'PyTorch not measured: Debian python3-torch is not installed (/usr/bin/python3 cannot import torch)'
      : `PyTorch run failed: ${msg.split('\n').filter(Boolean).pop()}`;
  }
}

/**
 * Giving memory back after a burst of large temporaries (building a backbone's sessions, writing
 * its weight files).
 *
 * Two things keep such memory in the process long after the work is done. V8 frees an
 * ArrayBuffer's bytes only when a garbage collection finds it dead, and it collects for external
 * memory only after tens of MB have piled up. And glibc's malloc keeps what it is given back: its
 * mmap threshold rises to the largest block freed so far (up to 32 MB), so after the first large
 * free every block of a ViT-B weight's size comes from the heap and stays there when freed. P11
 * measured both on a first start with ViT-B/16: peak 1.35 × the weights above the base, 1.22 with
 * a collection and a trim after each segment. Fixing the threshold for the whole process instead
 * (MALLOC_MMAP_THRESHOLD_) made every activation a fresh mmap and forwards 1.5–4× slower.
 *
 * `reclaimMemory()` runs a full collection and then glibc's `malloc_trim(0)`, which returns free
 * pages from inside its heaps as well as at their top. Both are best-effort: without glibc (musl,
 * macOS) or where koffi cannot load, only the collection runs. Both block the calling thread —
 * 50–150 ms for a collection of a ViT-B executor's heap, 70–130 ms for a trim after its traffic,
 * measured under load: call this at load time or when a job ends, never per request.
 */
import { createRequire } from 'node:module';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

type Trim = ((pad: number) => number) & { async(pad: number, done: (err: unknown, result: number) => void): void };

let collect: (() => void) | null | undefined;
let trim: Trim | null | undefined;

function collector(): (() => void) | null {
  if (collect !== undefined) return collect;
  try {
    const exposed = (globalThis as { gc?: () => void }).gc;
    if (typeof exposed === 'function') return (collect = exposed);
    // The flag only takes effect for contexts made after it is set: a fresh one hands out `gc`.
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as unknown;
    collect = typeof gc === 'function' ? (gc as () => void) : null;
  } catch {
    collect = null;
  }
  return collect;
}

function trimmer(): Trim | null {
  if (trim !== undefined) return trim;
  trim = null;
  const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined;
  if (process.platform !== 'linux' || report?.header?.glibcVersionRuntime === undefined) return trim;
  try {
    const koffi = createRequire(import.meta.url)('koffi') as { load(name: string): { func(signature: string): Trim } };
    trim = koffi.load('libc.so.6').func('int malloc_trim(size_t pad)');
  } catch {
    // koffi's prebuilt binary does not load here: collections only
  }
  return trim;
}

/**
 * glibc's malloc_trim alone, on libuv's thread pool (koffi's asynchronous call), so the calling
 * thread's event loop goes on while it walks the heaps (70–130 ms after a burst of ViT-B batch-8
 * forwards, measured under load). No collection: what the native side freed (onnxruntime's
 * activations) is what this returns. Resolves false where there is nothing to call.
 */
export function trimHeapsInBackground(): Promise<boolean> {
  const t = trimmer();
  if (t === null) return Promise.resolve(false);
  return new Promise((resolve) => t.async(0, (err) => resolve(err === null || err === undefined)));
}

/** What the last call could do: whether a collection ran and whether malloc_trim did. */
export interface Reclaimed {
  collected: boolean;
  trimmed: boolean;
}

export function reclaimMemory(): Reclaimed {
  const gc = collector();
  gc?.();
  const t = trimmer();
  t?.(0);
  return { collected: gc !== null, trimmed: t !== null };
}

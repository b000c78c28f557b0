/**
 * One session's changes to the engine's onnxruntime options (engine.ts holds the base: threads,
 * provider, no arena, no prepacking, sleeping pool threads). Apart from engine.ts so the
 * synchronous sessions (sync-session.ts) share it without an import cycle.
 */
import type * as Ort from 'onnxruntime-node';

/** What one session changes of the engine's options. */
export interface PerSession {
  /** Folder of the model's external data (weight-files.ts). */
  weightsDir?: string;
  /**
   * onnxruntime's CPU arena and memory pattern: a run reuses one planned buffer instead of a
   * malloc per operator (≈ 8 % of a batch-1 forward on the bundled backbone), but each session
   * keeps its largest run's activations for good — only for sessions whose activations are small.
   */
  arena?: boolean;
}

/** The engine's session options with one session's changes. */
export function sessionOptions(base: Ort.InferenceSession.SessionOptions, per: PerSession = {}): Ort.InferenceSession.SessionOptions {
  const extra = (base.extra ?? {}) as { session?: Record<string, unknown> };
  const out: Ort.InferenceSession.SessionOptions = per.arena ? { ...base, enableCpuMemArena: true, enableMemPattern: true } : { ...base };
  if (per.weightsDir !== undefined) out.extra = { ...extra, session: { ...extra.session, model_external_initializers_file_folder_path: per.weightsDir } };
  return out;
}

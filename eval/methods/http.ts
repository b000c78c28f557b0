/**
 * "Service over HTTP (defaults)": what a tenant gets end to end, not just what the trainer does.
 * Starts the real service (eval/service-client.ts), uploads the task's training images (only
 * those) as PNG files in a zip of class folders, trains with an empty hyperparameter object,
 * follows the job, then classifies every test image over HTTP (PNG file parts, batches of the
 * most classify takes per request). The data set's ingest (decode, resize, grey → RGB), the job,
 * the adapter store and classify's preprocessing all sit between the pixels and the number, so
 * this row next to the trainer-direct "service defaults" row catches any drift between them.
 *
 * Validation accuracy is what the published version's metrics say; test accuracy is counted
 * here from classify's top label. Like "service defaults", it ignores --epochs and --seed.
 */
import sharp from 'sharp';
import { adapterSpecSchema } from '../../src/model/index.js';
import { MAX_IMAGES_PER_REQUEST } from '../../src/services/classify.js';
import type { HyperparametersInput } from '../../src/train/hyperparameters.js';
import { makeZip } from '../../test/helpers/datasets.js';
import type { LabelledSet } from '../../scripts/pretrain/train.js';
import { classifyPngs, createTenantKey, startService, waitForJob, type JobView, type RunningService, type VersionView } from '../service-client.js';
import { serviceDefaults } from './dtl.js';
import type { Method, RunOutcome, StudyTask } from './types.js';

/** Classify requests in flight at once: enough to keep the server's batcher fed, not a load test. */
const CLASSIFY_CONCURRENCY = 2;

/** One PNG per image of the set, grey (one channel), at the set's size. */
export async function setToPngs(set: LabelledSet): Promise<Buffer[]> {
  const per = set.side * set.side;
  const out: Buffer[] = [];
  for (let i = 0; i < set.labels.length; i += 64) {
    const end = Math.min(set.labels.length, i + 64);
    const chunk = Array.from({ length: end - i }, (_, k) =>
      sharp(Buffer.from(set.pixels.subarray((i + k) * per, (i + k + 1) * per)), { raw: { width: set.side, height: set.side, channels: 1 } })
        .toColourspace('b-w')
        .png()
        .toBuffer(),
    );
    out.push(...(await Promise.all(chunk)));
  }
  return out;
}

/**
 * The training images as a tenant would zip them: `<label>/<n>.png`, in the task's order (the
 * service keeps the archive's order, so its split and batches see the rows as the trainer-direct
 * row does, up to label ids, which the service sorts).
 */
export async function trainingZip(labels: readonly string[], set: LabelledSet, pngs: Buffer[]): Promise<Buffer> {
  return makeZip(pngs.map((data, i) => ({ name: `${labels[set.labels[i]]}/${String(i).padStart(5, '0')}.png`, data })));
}

async function classifyAll(svc: RunningService, token: string, adapter: string, pngs: Buffer[]): Promise<string[]> {
  const batches: number[] = [];
  for (let i = 0; i < pngs.length; i += MAX_IMAGES_PER_REQUEST) batches.push(i);
  const top: string[] = new Array<string>(pngs.length);
  let next = 0;
  const worker = async () => {
    while (next < batches.length) {
      const at = batches[next++];
      const results = await classifyPngs(svc, token, adapter, pngs.slice(at, at + MAX_IMAGES_PER_REQUEST));
      results.forEach((r, k) => (top[at + k] = r.predictions[0]?.label ?? ''));
    }
  };
  await Promise.all(Array.from({ length: CLASSIFY_CONCURRENCY }, worker));
  return top;
}

interface VersionMetrics {
  bestValAccuracy: number | null;
  evaluation: { accuracy: number; split: string };
  lossCurve: { trainLoss: number; lr: number }[];
  trainableParams: number;
  bestEpoch: number;
  epochsRun: number;
  stoppedEarly: boolean;
}

const seconds = (job: JobView) => (Date.parse(job.finishedAt ?? '') - Date.parse(job.startedAt ?? '')) / 1000;

/**
 * The whole round trip for one task against a fresh service on `backboneDir`. The study's row
 * passes no hyperparameters; a test may pass a short explicit recipe to keep the run small, and
 * settings for the service (`env`, e.g. the backbone engine the trainer-direct row uses).
 */
export async function runOverHttp(backboneDir: string, t: StudyTask, hyperparameters: HyperparametersInput = {}, env?: Record<string, string>): Promise<RunOutcome> {
  const { task } = t;
  const [trainPngs, testPngs] = [await setToPngs(task.train), await setToPngs(task.test)];
  const zip = await trainingZip(task.labels, task.train, trainPngs);
  const svc = await startService(backboneDir, { env });
  try {
    const token = await createTenantKey(svc, 'eval');
    const ds = await svc.call<{ id: string; imageCount: number; problemCount: number }>('POST', `/v1/datasets?name=${encodeURIComponent(task.id)}`, {
      token,
      body: zip,
      headers: { 'content-type': 'application/zip' },
    });
    if (ds.imageCount !== task.train.labels.length) {
      throw new Error(`the service kept ${ds.imageCount} of ${task.train.labels.length} training images (${ds.problemCount} problems)`);
    }
    const started = await svc.call<{ job: { id: string } }>('POST', '/v1/adapters', { token, json: { name: task.id, datasetId: ds.id, hyperparameters } });
    const job = await waitForJob(svc, token, started.job.id);
    const version = await svc.call<VersionView>('GET', `/v1/adapters/${encodeURIComponent(task.id)}/versions/${job.result?.version ?? 'latest'}`, { token });
    const m = version.metrics as unknown as VersionMetrics;
    const c0 = performance.now();
    const top = await classifyAll(svc, token, task.id, testPngs);
    const classifySeconds = (performance.now() - c0) / 1000;
    let correct = 0;
    top.forEach((label, i) => (correct += label === task.labels[task.test.labels[i]] ? 1 : 0));
    const lr = Number(Math.max(...m.lossCurve.map((p) => p.lr)).toPrecision(3));
    const k = version.spec.fusionKernel ?? 0;
    return {
      valAcc: m.bestValAccuracy ?? m.evaluation.accuracy,
      testAcc: correct / top.length,
      trainableParams: m.trainableParams,
      losses: m.lossCurve.map((p) => p.trainLoss),
      seconds: seconds(job),
      lr,
      spec: adapterSpecSchema.parse({ ...version.spec, labels: version.labels }),
      note:
        `${k > 0 ? `dtl+ (k=${k})` : 'dtl'}, lr ${lr}, best epoch ${m.bestEpoch}/${m.epochsRun}${m.stoppedEarly ? ' (stopped early)' : ''}; ` +
        `classified ${top.length} PNGs over HTTP in ${classifySeconds.toFixed(1)} s`,
    };
  } finally {
    await svc.stop();
  }
}

/** The row for `npm run eval -- --methods http` (the service runs on the study's backbone folder). */
export function serviceOverHttp(backboneDir: string): Method {
  return {
    id: 'http',
    label: 'Service over HTTP (defaults)',
    lrGrid: [],
    run: (t) => runOverHttp(backboneDir, t),
    // The same spec trains the same step: the trainer-direct row's measurement, on this version's spec.
    stepPeakBytes: (args) => serviceDefaults.stepPeakBytes(args),
  };
}

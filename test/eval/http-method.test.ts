/**
 * The study's "Service over HTTP" row against its trainer-direct twin on one tiny task: the real
 * service (its own process, default configuration) gets the training images as a zip of PNG class
 * folders, trains with no hyperparameters and classifies the test PNGs; `trainAdapter` gets the
 * same pixels directly. Any drift between ingest's decoding, the job and classify's preprocessing
 * shows up as a gap between the two rows.
 */
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend, loadBackboneFromDir, type Backbone } from '../../src/model/index.js';
import { runOverHttp, setToPngs } from '../../eval/methods/http.js';
import { trainThroughService } from '../../eval/methods/dtl.js';
import { DEFAULT_RECIPE } from '../../eval/recipe.js';
import { studyTask } from '../../eval/study-task.js';
import { buildTask, type Task } from '../../eval/tasks.js';

/** The bundled backbone: a random tiny one learns too little from a few images to tell a drift from noise. */
const BACKBONE_DIR = fileURLToPath(new URL('../../backbones/default', import.meta.url));
/**
 * One explicit recipe for both rows (an lr and a variant skip the search; the study's row passes
 * none): the test is about the path from pixels to answers, not the defaults, and stays short.
 */
const RECIPE = { variant: 'dtl', lr: 0.03, epochs: 10, warmupEpochs: 0 } as const;

describe("eval's http method", () => {
  let backbone: Backbone;
  let task: Task;
  beforeAll(async () => {
    await initBackend('wasm');
    backbone = await loadBackboneFromDir(BACKBONE_DIR);
    // Labels '1'…'4' already sort in class order, as the service sorts them: the same label ids
    // keep the two rows' runs alike (same split, same head rows), so that only the path differs.
    task = buildTask('count', { train: 80, test: 120 }, 9);
  });
  afterAll(() => backbone?.dispose());

  it('PNGs are grey and carry the exact pixels of the task', async () => {
    const grey = task.test.pixels.subarray(0, 28 * 28);
    const [png] = await setToPngs({ side: 28, pixels: grey, labels: Int32Array.of(0) });
    expect((await sharp(png).metadata()).channels).toBe(1);
    const { data } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    expect(Array.from({ length: grey.length }, (_, i) => data[i * 3])).toEqual(Array.from(grey));
  });

  it('over HTTP scores what the trainer scores directly on the same pixels and recipe', async () => {
    const t = studyTask(backbone, task, DEFAULT_RECIPE);
    const direct = await trainThroughService(t, RECIPE);
    // The trainer-direct row fills its prefix on tfjs; the service would use onnxruntime (≈1e-6
    // apart, enough to move a loss in the 5th decimal): same engine, so only the HTTP path differs.
    const http = await runOverHttp(BACKBONE_DIR, t, RECIPE, { BACKBONE_ENGINE: 'tfjs' });
    const chance = 1 / task.labels.length;
    expect(direct.testAcc).toBeGreaterThan(chance + 0.2);
    expect(http.testAcc).toBeGreaterThan(chance + 0.2);
    // The service decoded the zip's PNGs to the pixels the trainer got directly, split and
    // batched them alike: the same loss curve (up to float noise) …
    expect(http.losses).toHaveLength(direct.losses.length);
    http.losses.forEach((l, i) => expect(l).toBeCloseTo(direct.losses[i], 4));
    expect(http.valAcc).toBeCloseTo(direct.valAcc, 6);
    // … and classify's preprocessing feeds the adapter what the trainer's evaluation did
    // (120 test images: 2.5 points is three images).
    expect(Math.abs(http.testAcc - direct.testAcc)).toBeLessThanOrEqual(0.025);
    expect(http.trainableParams).toBe(direct.trainableParams);
    expect(http.spec?.labels).toEqual(task.labels);
  }, 300_000);
});

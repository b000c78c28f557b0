/**
 * Classify over HTTP applies the adapter's calibrated temperature: probabilities are
 * softmax(logits / T) for a file that carries T, and exactly the reference softmax for one that
 * does not (the golden fixture).
 */
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadAdapter, loadBackboneFromDir, saveAdapter } from '../../src/model/index.js';
import { FIXTURE_BACKBONE, fixturePath, startHarness, type Harness } from './harness.js';

interface Case {
  image: string;
  logits: number[];
  probabilities: number[];
}

const LABELS = ['cat', 'dog', 'fox'];
const T = 2.5;
let h: Harness;
let token: string;
let cases: Case[];

beforeAll(async () => {
  // float32 residents: this holds the golden probabilities to 5e-5, tighter than float16's bar (src/model/README.md).
  h = await startHarness({ env: { SERVE_PRECISION: 'float32' } });
  token = (await h.tenant('calibrated-co')).token;
  cases = (JSON.parse(await readFile(fixturePath('expected.json'), 'utf8')) as { cases: Case[] }).cases;
  const bytes = await readFile(fixturePath('adapter.safetensors'));
  const backbone = await loadBackboneFromDir(FIXTURE_BACKBONE);
  const { adapter, meta } = loadAdapter(bytes, backbone.config);
  adapter.temperature = T;
  const hot = saveAdapter(adapter, meta);
  adapter.dispose();
  backbone.dispose();
  for (const [name, body] of [['plain', bytes], ['hot', hot]] as const) {
    const r = await h.call('POST', `/v1/adapters/import?name=${name}`, { token, body, headers: { 'content-type': 'application/octet-stream' } });
    expect(r.status).toBe(201);
  }
});
afterAll(async () => {
  await h?.close();
});

const softmax = (z: number[], t: number) => {
  const e = z.map((v) => Math.exp(v / t));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
};

it('probabilities are softmax(logits / T) for a calibrated adapter and unchanged for the golden one', async () => {
  const images = await Promise.all(cases.map((c) => readFile(fixturePath(c.image))));
  for (const [name, t] of [['plain', 1], ['hot', T]] as const) {
    const r = await h.call('POST', `/v1/adapters/${name}/classify`, { token, body: { images: images.map((b) => b.toString('base64')), topK: 3 } });
    expect(r.status).toBe(200);
    r.body.results.forEach((res: { predictions: Array<{ label: string; probability: number }> }, i: number) => {
      const want = t === 1 ? cases[i].probabilities : softmax(cases[i].logits, t);
      LABELS.forEach((l, k) => expect(res.predictions.find((p) => p.label === l)!.probability, `${name} ${l}`).toBeCloseTo(want[k], 4));
    });
  }
  // The threshold now reads the calibrated probabilities: dog's 0.95 at T = 1 is ≈ 0.8 at T = 2.5.
  const one = images[0].toString('base64');
  const hot = await h.call('POST', '/v1/adapters/hot/classify', { token, body: { images: [one], threshold: 0.9 } });
  const plain = await h.call('POST', '/v1/adapters/plain/classify', { token, body: { images: [one], threshold: 0.9 } });
  expect(plain.body.results[0].predictions.map((p: { label: string }) => p.label)).toEqual(['dog']);
  expect(hot.body.results[0].predictions).toEqual([]);
});

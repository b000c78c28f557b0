/** Temperature scaling on synthetic logits: it recovers a known over-confidence, deterministically. */
import { describe, expect, it } from 'vitest';
import { calibrationQuality, fitTemperature } from '../../src/train/calibrate.js';
import { rng } from '../helpers/datasets.js';

/** n rows of calibrated logits z over `classes`, each label drawn from softmax(z); logits returned × `scale`. */
function synthetic(n: number, classes: number, scale: number, seed: number): { logits: Float32Array; labels: Int32Array } {
  const rand = rng(seed);
  const logits = new Float32Array(n * classes);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const z = Array.from({ length: classes }, () => (rand() - 0.5) * 4);
    const e = z.map(Math.exp);
    const sum = e.reduce((a, b) => a + b, 0);
    let u = rand() * sum;
    let y = 0;
    while (y < classes - 1 && (u -= e[y]) > 0) y++;
    labels[i] = y;
    z.forEach((v, c) => (logits[i * classes + c] = v * scale));
  }
  return { logits, labels };
}

describe('fitTemperature', () => {
  it('recovers T ≈ 3 from logits three times too sharp; ECE and NLL go down', () => {
    const { logits, labels } = synthetic(4000, 4, 3, 7);
    const c = fitTemperature(logits, labels, 4);
    expect(c.temperature).toBeGreaterThan(2.7);
    expect(c.temperature).toBeLessThan(3.3);
    expect(c.after.nll).toBeLessThan(c.before.nll);
    expect(c.after.ece).toBeLessThan(c.before.ece / 3);
    expect(c).toMatchObject({ fittedOn: 'val', count: 4000 });
    // Deterministic: the same input gives the same T, to the bit.
    expect(fitTemperature(logits, labels, 4)).toEqual(c);
  });

  it('leaves calibrated logits near T = 1 and sharpens under-confident ones (T < 1)', () => {
    const ok = synthetic(4000, 3, 1, 8);
    expect(Math.abs(fitTemperature(ok.logits, ok.labels, 3).temperature - 1)).toBeLessThan(0.1);
    const soft = synthetic(4000, 3, 0.5, 9);
    const t = fitTemperature(soft.logits, soft.labels, 3).temperature;
    expect(t).toBeGreaterThan(0.4);
    expect(t).toBeLessThan(0.6);
  });

  it('a tiny validation set with every image right gets a finite T, not the search bound', () => {
    const logits = Float32Array.from([2, 0, 0, 2, 2, 0, 0, 2]);
    const labels = Int32Array.from([0, 1, 0, 1]);
    const c = fitTemperature(logits, labels, 2);
    expect(c.temperature).toBeGreaterThan(0.1);
    expect(c.temperature).toBeLessThan(1);
  });

  it('calibrationQuality: NLL and 10-bin ECE by hand', () => {
    // Two rows, both predicting class 0 with p = e²/(e²+1) ≈ 0.881; one right, one wrong.
    const q = calibrationQuality(Float32Array.from([2, 0, 2, 0]), Int32Array.from([0, 1]), 2);
    const p = Math.exp(2) / (Math.exp(2) + 1);
    expect(q.nll).toBeCloseTo((-Math.log(p) - Math.log(1 - p)) / 2, 10);
    expect(q.ece).toBeCloseTo(Math.abs(0.5 - p), 10);
  });
});

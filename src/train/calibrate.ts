/**
 * Temperature scaling (Guo et al. 2017): after training, one scalar T is fitted on the validation
 * split so that softmax(logits / T) minimises the negative log-likelihood there. Accuracy never
 * changes (argmax is the same for any T > 0); what changes is that a probability of 0.9 means
 * "right about 90 % of the time", which is what classify's `threshold` assumes.
 *
 * The fit minimises the validation NLL summed over its images plus ½·(log T)²: a weak log-normal
 * prior on T, worth about one image. A validation set of a few thousand images is fitted as by
 * plain NLL; a tiny one where every image is right (whose NLL falls for ever as T → 0) gets a
 * finite sharpening instead of T at the search bound. 1-D golden-section search over log T in
 * [1/20, 20], a fixed number of steps, plain float64 arithmetic: deterministic.
 */

export interface CalibrationQuality {
  /** Mean negative log-likelihood of the true class. */
  nll: number;
  /** Expected calibration error: Σ over confidence bins of |accuracy − mean confidence| × share of rows. */
  ece: number;
}

export interface Calibration {
  temperature: number;
  /** Where T was fitted, and on how many images. */
  fittedOn: 'val';
  count: number;
  before: CalibrationQuality;
  after: CalibrationQuality;
  /** The same on the test split, when the data set has one (the honest check: T was not fitted there). */
  test?: { before: CalibrationQuality; after: CalibrationQuality };
}

/** Why no temperature was fitted (T stays 1). */
export interface NoCalibration {
  temperature: 1;
  fittedOn: 'none';
  reason: string;
}

export const ECE_BINS = 10;
const LOG_T_MIN = Math.log(1 / 20);
const LOG_T_MAX = Math.log(20);
const STEPS = 60;

/** log-softmax of row i of `logits` [n, classes] at temperature t, into `out`. */
function logSoftmaxRow(logits: ArrayLike<number>, classes: number, i: number, t: number, out: Float64Array): void {
  let max = -Infinity;
  for (let c = 0; c < classes; c++) max = Math.max(max, logits[i * classes + c] / t);
  let sum = 0;
  for (let c = 0; c < classes; c++) sum += Math.exp(logits[i * classes + c] / t - max);
  const lse = max + Math.log(sum);
  for (let c = 0; c < classes; c++) out[c] = logits[i * classes + c] / t - lse;
}

/** NLL and ECE of softmax(logits / t) against `labels`. */
export function calibrationQuality(logits: ArrayLike<number>, labels: ArrayLike<number>, classes: number, t = 1): CalibrationQuality {
  const n = labels.length;
  if (n === 0) return { nll: 0, ece: 0 };
  const row = new Float64Array(classes);
  const binConf = new Float64Array(ECE_BINS);
  const binCorrect = new Float64Array(ECE_BINS);
  const binCount = new Float64Array(ECE_BINS);
  let nll = 0;
  for (let i = 0; i < n; i++) {
    logSoftmaxRow(logits, classes, i, t, row);
    nll -= row[labels[i]];
    let best = 0;
    for (let c = 1; c < classes; c++) if (row[c] > row[best]) best = c;
    const conf = Math.exp(row[best]);
    const b = Math.min(ECE_BINS - 1, Math.floor(conf * ECE_BINS));
    binConf[b] += conf;
    binCorrect[b] += best === labels[i] ? 1 : 0;
    binCount[b] += 1;
  }
  let ece = 0;
  for (let b = 0; b < ECE_BINS; b++) if (binCount[b] > 0) ece += Math.abs(binCorrect[b] - binConf[b]) / n;
  return { nll: nll / n, ece };
}

function meanNll(logits: ArrayLike<number>, labels: ArrayLike<number>, classes: number, t: number): number {
  const row = new Float64Array(classes);
  let nll = 0;
  for (let i = 0; i < labels.length; i++) {
    logSoftmaxRow(logits, classes, i, t, row);
    nll -= row[labels[i]];
  }
  return nll / labels.length;
}

/**
 * Fits T on (logits [n, classes] row-major, labels). Returns T rounded to 4 significant digits
 * (what the file stores) with the NLL / ECE at T = 1 and at the fitted T.
 */
export function fitTemperature(logits: ArrayLike<number>, labels: ArrayLike<number>, classes: number): Calibration {
  const n = labels.length;
  const objective = (logT: number) => n * meanNll(logits, labels, classes, Math.exp(logT)) + 0.5 * logT * logT;
  const f = objective;
  const g = (Math.sqrt(5) - 1) / 2;
  let a = LOG_T_MIN;
  let b = LOG_T_MAX;
  let x1 = b - g * (b - a);
  let x2 = a + g * (b - a);
  let f1 = f(x1);
  let f2 = f(x2);
  for (let k = 0; k < STEPS; k++) {
    if (f1 <= f2) {
      b = x2;
      x2 = x1;
      f2 = f1;
      x1 = b - g * (b - a);
      f1 = f(x1);
    } else {
      a = x1;
      x1 = x2;
      f1 = f2;
      x2 = a + g * (b - a);
      f2 = f(x2);
    }
  }
  let t = Number(Math.exp((a + b) / 2).toPrecision(4));
  // Never worse than leaving the softmax alone (a flat or degenerate set).
  if (!(objective(Math.log(t)) < objective(0))) t = 1;
  return {
    temperature: t,
    fittedOn: 'val',
    count: labels.length,
    before: calibrationQuality(logits, labels, classes, 1),
    after: calibrationQuality(logits, labels, classes, t),
  };
}

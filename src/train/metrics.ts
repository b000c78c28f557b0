/** Classification metrics from predictions: accuracy, confusion matrix, per-class precision/recall/F1. */

export interface ClassMetrics {
  label: string;
  precision: number;
  recall: number;
  f1: number;
  /** True examples of this class. */
  support: number;
}

export interface Evaluation {
  /**
   * Which split these numbers come from: 'train' only when the data set had neither a test split
   * nor enough images for validation — then they are training accuracy, not an estimate.
   */
  split: 'test' | 'val' | 'train';
  count: number;
  accuracy: number;
  /** Mean cross-entropy. */
  loss: number;
  macroF1: number;
  perClass: ClassMetrics[];
  /** confusionMatrix[true][predicted], in label order. */
  confusionMatrix: number[][];
}

export function confusionMatrix(truth: ArrayLike<number>, predicted: ArrayLike<number>, classes: number): number[][] {
  const m = Array.from({ length: classes }, () => new Array<number>(classes).fill(0));
  for (let i = 0; i < truth.length; i++) m[truth[i]][predicted[i]] += 1;
  return m;
}

/** Per-class scores; a class never predicted (or absent) scores 0 rather than NaN. */
export function evaluate(
  split: Evaluation['split'],
  labels: string[],
  truth: ArrayLike<number>,
  predicted: ArrayLike<number>,
  loss: number,
): Evaluation {
  const m = confusionMatrix(truth, predicted, labels.length);
  let correct = 0;
  const perClass = labels.map((label, c) => {
    const tp = m[c][c];
    correct += tp;
    const support = m[c].reduce((a, b) => a + b, 0);
    const predictedAs = m.reduce((a, row) => a + row[c], 0);
    const precision = predictedAs === 0 ? 0 : tp / predictedAs;
    const recall = support === 0 ? 0 : tp / support;
    const f1 = precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall);
    return { label, precision, recall, f1, support };
  });
  const present = perClass.filter((c) => c.support > 0);
  return {
    split,
    count: truth.length,
    accuracy: truth.length === 0 ? 0 : correct / truth.length,
    loss,
    macroF1: present.length === 0 ? 0 : present.reduce((a, c) => a + c.f1, 0) / present.length,
    perClass,
    confusionMatrix: m,
  };
}

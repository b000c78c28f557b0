/**
 * A task as the service's trainer sees it. The training images become unassigned examples and
 * the test images the 'test' split of one PreparedDataset (grey replicated to RGB, as ingestion
 * does for a grey PNG); the train/val split is the trainer's own (`planSplits` with the seed the
 * trainer derives from the hyperparameters' seed), so every method — the trainer-backed ones and
 * the baselines — trains and validates on exactly the same images.
 */
import type { Backbone } from '../src/model/index.js';
import { planSplits } from '../src/train/examples.js';
import { parseHyperparameters } from '../src/train/hyperparameters.js';
import { SPLITS, countExamples, type PreparedDataset } from '../src/train/ingest/index.js';
import { subSeed } from '../src/train/schedule.js';
import type { StudyTask } from './methods/types.js';
import type { Recipe } from './recipe.js';
import type { Task } from './tasks.js';

export function toPrepared(task: Task): PreparedDataset {
  const { train, test } = task;
  const side = train.side;
  const per = side * side;
  const n = train.labels.length + test.labels.length;
  const pixels = new Uint8Array(n * per * 3);
  const grey = [train, test];
  let at = 0;
  for (const set of grey) {
    for (let i = 0; i < set.labels.length; i++, at++) {
      for (let k = 0; k < per; k++) pixels.fill(set.pixels[i * per + k], (at * per + k) * 3, (at * per + k) * 3 + 3);
    }
  }
  const labelIds = Int32Array.from([...train.labels, ...test.labels]);
  const splits = new Uint8Array(n);
  splits.fill(SPLITS.indexOf('test'), train.labels.length);
  return {
    imageSize: side,
    labels: [...task.labels],
    counts: countExamples(task.labels.length, labelIds, splits),
    sources: [...Array.from(train.labels, (_, i) => `train ${i}`), ...Array.from(test.labels, (_, i) => `test ${i}`)],
    pixels,
    labelIds,
    splits,
  };
}

export function studyTask(backbone: Backbone, task: Task, recipe: Recipe): StudyTask {
  const dataset = toPrepared(task);
  // Exactly the trainer's call (trainer.ts): planSplits(ds, h.valFraction, subSeed(h.seed, 1)).
  const h = parseHyperparameters({ seed: recipe.seed });
  const plan = planSplits(dataset, h.valFraction, subSeed(h.seed, 1));
  return { backbone, task, dataset, plan, recipe };
}

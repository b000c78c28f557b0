/**
 * `npm run pretrain` as a function: load Fashion-MNIST, keep the six pretraining classes, train,
 * measure held-in test accuracy, write the backbone folder (Hugging Face ViT layout) and its
 * TRAINING.md, then reload the folder with the service's own loader and check it reproduces the
 * trained model's features.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { backboneFeatures, loadBackboneFromDir } from '../../src/model/index.js';
import { FASHION_LABELS, HELD_OUT_CLASSES, PRETRAIN_CLASSES, indicesOfClasses, loadFashionMnist, type LabelledImages } from '../fashion-mnist.js';
import { grayBatch, grayStats } from './pixels.js';
import { trainingMarkdown } from './report.js';
import { accuracy, pretrain, prng, shuffled, type EpochLog, type LabelledSet, type PretrainOptions } from './train.js';

export interface RunOptions extends Omit<PretrainOptions, 'mean' | 'std' | 'classes' | 'log'> {
  out: string;
  dataDir?: string;
  /** Images of the pretraining classes held out from training for per-epoch validation. */
  valSize: number;
  /** Cap on training images (after the validation split); 0 = all. */
  limit: number;
  /** Cap on test images; 0 = all 6,000 held-in test images. */
  testLimit: number;
  command: string;
  log?: (line: string) => void;
}

export interface RunSummary {
  out: string;
  trainImages: number;
  valImages: number;
  testImages: number;
  testAcc: number;
  epochs: EpochLog[];
  wallSeconds: number;
  mean: number;
  std: number;
  params: number;
  modelBytes: number;
  /** Max |feature difference| between the trained model and the reloaded folder. */
  reloadMaxDiff: number;
}

/** Images at `ids` as a compact set with class indices remapped through `classOf`. */
export function subset(src: LabelledImages, ids: readonly number[], classOf: (label: number) => number): LabelledSet {
  const per = src.rows * src.cols;
  const pixels = new Uint8Array(ids.length * per);
  ids.forEach((i, j) => pixels.set(src.pixels.subarray(i * per, (i + 1) * per), j * per));
  return { side: src.rows, pixels, labels: Int32Array.from(ids, (i) => classOf(src.labels[i])) };
}

export async function runPretrain(o: RunOptions): Promise<RunSummary> {
  const log = o.log ?? (() => {});
  const t0 = Date.now();
  const [train, test] = await Promise.all([loadFashionMnist('train', o.dataDir), loadFashionMnist('t10k', o.dataDir)]);
  const classOf = (l: number) => (PRETRAIN_CLASSES as readonly number[]).indexOf(l);
  const rand = prng(o.seed);
  const heldIn = indicesOfClasses(train.labels, PRETRAIN_CLASSES);
  const order = shuffled(heldIn.length, rand).map((i) => heldIn[i]);
  const valIds = order.slice(0, o.valSize);
  let trainIds = order.slice(o.valSize);
  if (o.limit > 0) trainIds = trainIds.slice(0, o.limit);
  let testIds = indicesOfClasses(test.labels, PRETRAIN_CLASSES);
  if (o.testLimit > 0) testIds = testIds.slice(0, o.testLimit);
  const trainSet = subset(train, trainIds, classOf);
  const valSet = subset(train, valIds, classOf);
  const testSet = subset(test, testIds, classOf);
  const stats = grayStats(trainSet, [...trainIds.keys()]);
  const mean = Number(stats.mean.toFixed(4));
  const std = Number(stats.std.toFixed(4));
  log(`pretraining on ${trainIds.length} images of ${PRETRAIN_CLASSES.map((c) => FASHION_LABELS[c]).join(', ')}; ` +
    `validation ${valIds.length}, test ${testIds.length}; held out for transfer: ${HELD_OUT_CLASSES.map((c) => FASHION_LABELS[c]).join(', ')}`);
  log(`grey mean ${mean}, std ${std}`);

  const result = pretrain(trainSet, valSet, { ...o, mean, std, classes: PRETRAIN_CLASSES.length, log });
  const { vit, headW, headB } = result;
  try {
    const norm = { mean: [mean, mean, mean], std: [std, std, std] };
    const testAcc = accuracy(vit, headW, headB, testSet, norm);
    log(`test accuracy (held-in classes, ${testIds.length} images): ${(testAcc * 100).toFixed(2)}%`);
    const params = vit.variables().reduce((s, v) => s + v.size, 0);
    const files = vit.toHfFiles({
      dtl_host_pretrain: JSON.stringify({
        data: 'Fashion-MNIST (Debian dataset-fashion-mnist)',
        classes: PRETRAIN_CLASSES.map((c) => FASHION_LABELS[c]),
        heldOut: HELD_OUT_CLASSES.map((c) => FASHION_LABELS[c]),
        testAccuracy: testAcc,
        seed: o.seed,
      }),
    });
    await mkdir(o.out, { recursive: true });
    await writeFile(path.join(o.out, 'model.safetensors'), files.model);
    await writeFile(path.join(o.out, 'config.json'), files.config);
    await writeFile(path.join(o.out, 'preprocessor_config.json'), files.preprocessor);

    // The folder must load through the service's loader and give the same pooled features.
    const probe = [...Array(Math.min(16, testIds.length)).keys()];
    const reloaded = await loadBackboneFromDir(o.out);
    let reloadMaxDiff: number;
    try {
      const x = grayBatch(testSet, probe, norm);
      const ref = backboneFeatures(reloaded, x); // a kept tensor: freed explicitly
      reloadMaxDiff = tf.tidy(() => tf.max(tf.abs(tf.sub(vit.features(x), ref))).dataSync()[0]);
      tf.dispose([x, ref]);
    } finally {
      reloaded.dispose();
    }
    log(`reloaded with loadBackboneFromDir: max |feature difference| ${reloadMaxDiff.toExponential(2)}`);
    const summary: RunSummary = {
      out: o.out,
      trainImages: trainIds.length,
      valImages: valIds.length,
      testImages: testIds.length,
      testAcc,
      epochs: result.epochs,
      wallSeconds: (Date.now() - t0) / 1000,
      mean,
      std,
      params,
      modelBytes: files.model.length,
      reloadMaxDiff,
    };
    await writeFile(path.join(o.out, 'TRAINING.md'), trainingMarkdown(summary, o, vit.config));
    return summary;
  } finally {
    vit.dispose();
    headW.dispose();
    headB.dispose();
  }
}

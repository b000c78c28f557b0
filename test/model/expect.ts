/** Shared assertions for the model tests. */
import * as tf from '@tensorflow/tfjs';
import { expect } from 'vitest';
import { AppError, type ErrorCode } from '../../src/errors.js';

/** Runs fn, expects one AppError with the code (and message pattern), and no tensor left behind. */
export async function expectAppError(fn: () => unknown, code: ErrorCode, message?: RegExp): Promise<AppError> {
  const before = tf.memory().numTensors;
  let caught: unknown;
  try {
    await fn();
  } catch (err) {
    caught = err;
  }
  expect(caught, 'expected an AppError').toBeInstanceOf(AppError);
  const err = caught as AppError;
  expect(err.code, err.message).toBe(code);
  if (message) expect(err.message).toMatch(message);
  expect(err.message).not.toContain('\n');
  expect(tf.memory().numTensors).toBe(before);
  return err;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** int12 blocks' error bound: half a step, the block's largest |value| rounded up to a float16 (≤ 2^-10 relative, or 2^-24 below its normal range) / 4094. */
export const halfStep = (absmax: number) => (absmax * (1 + 2 ** -10) + 2 ** -24) / 4094;

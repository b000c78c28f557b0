/**
 * Grayscale uint8 images (28×28, Fashion-MNIST style) → the backbone's NHWC float input: the grey
 * value replicated to 3 channels and normalised with the backbone's mean/std, exactly what the
 * service's preprocess does to a grayscale PNG (sharp turns it into sRGB by copying the channel).
 * Optional light augmentation for training: a random shift of up to `shift` pixels (zero fill,
 * i.e. background) and a random horizontal flip.
 */
import * as tf from '@tensorflow/tfjs';

export interface GrayImages {
  /** Side length in pixels (square images). */
  side: number;
  /** count × side × side bytes. */
  pixels: Uint8Array;
}

export interface Augment {
  shift: number;
  flip: boolean;
  rand: () => number;
}

/** Builds one batch [n, side, side, 3] from the images at `indices`. */
export function grayBatch(
  images: GrayImages,
  indices: readonly number[],
  norm: { mean: readonly number[]; std: readonly number[] },
  augment?: Augment,
): tf.Tensor4D {
  const s = images.side;
  const per = s * s;
  const out = new Float32Array(indices.length * per * 3);
  const scale = norm.std.map((v) => 1 / (255 * v));
  const shift = norm.mean.map((m, c) => m / norm.std[c]);
  // Background (grey 0) after normalisation, per channel: what a shifted-in border becomes.
  const zero = shift.map((v) => -v);
  indices.forEach((idx, n) => {
    const src = idx * per;
    const dx = augment ? Math.floor(augment.rand() * (2 * augment.shift + 1)) - augment.shift : 0;
    const dy = augment ? Math.floor(augment.rand() * (2 * augment.shift + 1)) - augment.shift : 0;
    const flip = augment ? augment.flip && augment.rand() < 0.5 : false;
    const base = n * per * 3;
    for (let y = 0; y < s; y++) {
      const sy = y - dy;
      for (let x = 0; x < s; x++) {
        const sx0 = x - dx;
        const sx = flip ? s - 1 - sx0 : sx0;
        const o = base + (y * s + x) * 3;
        if (sy < 0 || sy >= s || sx < 0 || sx >= s) {
          out[o] = zero[0];
          out[o + 1] = zero[1];
          out[o + 2] = zero[2];
          continue;
        }
        const v = images.pixels[src + sy * s + sx];
        out[o] = v * scale[0] - shift[0];
        out[o + 1] = v * scale[1] - shift[1];
        out[o + 2] = v * scale[2] - shift[2];
      }
    }
  });
  return tf.tensor4d(out, [indices.length, s, s, 3]);
}

/** Mean and std of the grey values (0..1) over the images at `indices`. */
export function grayStats(images: GrayImages, indices: readonly number[]): { mean: number; std: number } {
  const per = images.side * images.side;
  let sum = 0;
  let sq = 0;
  for (const i of indices) {
    for (let j = i * per; j < (i + 1) * per; j++) {
      const v = images.pixels[j] / 255;
      sum += v;
      sq += v * v;
    }
  }
  const n = indices.length * per;
  const mean = sum / n;
  return { mean, std: Math.sqrt(Math.max(sq / n - mean * mean, 1e-12)) };
}

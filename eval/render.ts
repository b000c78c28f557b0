/**
 * Synthetic 28×28 grey images drawn in code, for transfer tasks that need no download and that
 * the Fashion-MNIST backbone has never seen: filled/outlined geometric shapes with clutter and
 * noise (a natural-ish "which object" task) and counting blobs (a structured task, in the spirit
 * of VTAB's CLEVR-count). Each image is rendered at 4× resolution and box-filtered down, so
 * edges are anti-aliased like a photographed or scanned image rather than hard 0/255 steps.
 */

export const SIDE = 28;
const SS = 4;

/** Canvas at SS× resolution holding coverage 0..1 of the foreground. */
class Canvas {
  readonly n = SIDE * SS;
  readonly a = new Float32Array(this.n * this.n);

  /** Marks every sub-pixel whose centre (in output-pixel units) satisfies `inside`. */
  fill(inside: (x: number, y: number) => boolean, value = 1): void {
    for (let y = 0; y < this.n; y++) {
      const fy = (y + 0.5) / SS;
      for (let x = 0; x < this.n; x++) {
        if (inside((x + 0.5) / SS, fy)) this.a[y * this.n + x] = value;
      }
    }
  }

  /** Box-filters down to SIDE×SIDE coverage values. */
  downsample(): Float32Array {
    const out = new Float32Array(SIDE * SIDE);
    for (let y = 0; y < SIDE; y++) {
      for (let x = 0; x < SIDE; x++) {
        let s = 0;
        for (let dy = 0; dy < SS; dy++) for (let dx = 0; dx < SS; dx++) s += this.a[(y * SS + dy) * this.n + x * SS + dx];
        out[y * SIDE + x] = s / (SS * SS);
      }
    }
    return out;
  }
}

/** Composites coverage (foreground intensity fg) over a noisy background into bytes. */
function compose(cov: Float32Array, fg: number, bg: number, noise: number, rand: () => number, out: Uint8Array, offset: number): void {
  for (let i = 0; i < cov.length; i++) {
    const v = bg + (fg - bg) * cov[i] + (rand() * 2 - 1) * noise;
    out[offset + i] = Math.max(0, Math.min(255, Math.round(v)));
  }
}

type Inside = (x: number, y: number) => boolean;

/** Rotates a point about (cx, cy) by −θ, i.e. tests the shape as if drawn rotated by θ. */
const rot = (f: (u: number, v: number) => boolean, cx: number, cy: number, th: number): Inside => {
  const c = Math.cos(th);
  const s = Math.sin(th);
  return (x, y) => {
    const dx = x - cx;
    const dy = y - cy;
    return f(c * dx + s * dy, -s * dx + c * dy);
  };
};

export const SHAPES = ['circle', 'square', 'triangle', 'plus', 'ring', 'hourglass'] as const;

function shapeInside(kind: (typeof SHAPES)[number], cx: number, cy: number, r: number, th: number): Inside {
  switch (kind) {
    case 'circle':
      return (x, y) => (x - cx) ** 2 + (y - cy) ** 2 <= r * r;
    case 'ring': {
      const inner = r * 0.55;
      return (x, y) => {
        const d2 = (x - cx) ** 2 + (y - cy) ** 2;
        return d2 <= r * r && d2 >= inner * inner;
      };
    }
    case 'square': {
      const h = r * 0.8;
      return rot((u, v) => Math.abs(u) <= h && Math.abs(v) <= h, cx, cy, th);
    }
    case 'triangle':
      // Equilateral, circumradius r: inside the three half-planes.
      return rot((u, v) => {
        for (let k = 0; k < 3; k++) {
          const a = (2 * Math.PI * k) / 3 + Math.PI / 2;
          if (u * Math.cos(a) + v * Math.sin(a) > r / 2) return false;
        }
        return true;
      }, cx, cy, th);
    case 'plus': {
      const w = r * 0.32;
      return rot((u, v) => (Math.abs(u) <= w && Math.abs(v) <= r) || (Math.abs(v) <= w && Math.abs(u) <= r), cx, cy, th);
    }
    case 'hourglass':
      return rot((u, v) => Math.abs(v) <= r * 0.9 && Math.abs(u) <= Math.abs(v) * 0.9 + 0.3, cx, cy, th);
  }
}

export interface RenderedSet {
  side: number;
  pixels: Uint8Array;
  labels: Int32Array;
}

/**
 * `count` shape images, labels balanced (round-robin then shuffled by the caller's order):
 * random centre, size (radius 5–10 px), rotation, intensity and background; plus 0–2 thin line
 * distractors and pixel noise, so the class is the silhouette and nothing simpler.
 */
export function renderShapes(count: number, rand: () => number): RenderedSet {
  const pixels = new Uint8Array(count * SIDE * SIDE);
  const labels = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    const label = i % SHAPES.length;
    labels[i] = label;
    const r = 5 + rand() * 5;
    const margin = r * 0.9;
    const cx = margin + rand() * (SIDE - 2 * margin);
    const cy = margin + rand() * (SIDE - 2 * margin);
    const canvas = new Canvas();
    canvas.fill(shapeInside(SHAPES[label], cx, cy, r, rand() * Math.PI * 2));
    const lines = Math.floor(rand() * 3);
    for (let l = 0; l < lines; l++) {
      const x0 = rand() * SIDE;
      const y0 = rand() * SIDE;
      const th = rand() * Math.PI;
      const len = 4 + rand() * 8;
      canvas.fill(rot((u, v) => Math.abs(u) <= len / 2 && Math.abs(v) <= 0.45, x0, y0, th), 0.7);
    }
    const bg = rand() * 60;
    const fg = 150 + rand() * 105;
    compose(canvas.downsample(), fg, bg, 20, rand, pixels, i * SIDE * SIDE);
  }
  return { side: SIDE, pixels, labels };
}

export const COUNT_LABELS = ['1', '2', '3', '4'] as const;

/**
 * Counting: 1–4 soft blobs (radius 2–4.5 px, random intensity) at random positions that do not
 * touch one another; label = number of blobs − 1. Sizes vary so that total brightness alone does
 * not give the count away.
 */
export function renderCounts(count: number, rand: () => number): RenderedSet {
  const pixels = new Uint8Array(count * SIDE * SIDE);
  const labels = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    const label = i % COUNT_LABELS.length;
    labels[i] = label;
    const blobs: Array<{ x: number; y: number; r: number }> = [];
    while (blobs.length < label + 1) {
      const r = 2 + rand() * 2.5;
      const x = r + 1 + rand() * (SIDE - 2 * r - 2);
      const y = r + 1 + rand() * (SIDE - 2 * r - 2);
      if (blobs.every((b) => Math.hypot(b.x - x, b.y - y) > b.r + r + 1.5)) blobs.push({ x, y, r });
    }
    const canvas = new Canvas();
    for (const b of blobs) canvas.fill((x, y) => (x - b.x) ** 2 + (y - b.y) ** 2 <= b.r * b.r);
    compose(canvas.downsample(), 140 + rand() * 115, rand() * 50, 18, rand, pixels, i * SIDE * SIDE);
  }
  return { side: SIDE, pixels, labels };
}

/** Rotates a side×side grey image by k·90° counter-clockwise into `out` at `offset`. */
export function rotate90(src: Uint8Array, srcOffset: number, side: number, k: number, out: Uint8Array, offset: number): void {
  for (let y = 0; y < side; y++) {
    for (let x = 0; x < side; x++) {
      let sx = x;
      let sy = y;
      for (let t = 0; t < ((k % 4) + 4) % 4; t++) [sx, sy] = [side - 1 - sy, sx];
      out[offset + y * side + x] = src[srcOffset + sy * side + sx];
    }
  }
}

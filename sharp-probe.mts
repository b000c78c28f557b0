import sharp from 'sharp';
import { performance } from 'node:perf_hooks';
const s = 28; const raw = Buffer.alloc(s*s*3, 0).map((_, i) => (i * 37) % 256);
const png = await sharp(raw, { raw: { width: s, height: s, channels: 3 } }).png().toBuffer();
const med = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1];
for (const variant of ['full', 'minimal', 'nocache']) {
  if (variant === 'nocache') sharp.cache(false);
  const t: number[] = [];
  for (let i = 0; i < 400; i++) {
    const t0 = performance.now();
    if (variant === 'minimal') await sharp(png).raw().toBuffer();
    else await sharp(png, { limitInputPixels: 4e7, failOn: 'truncated' }).rotate().removeAlpha().toColourspace('srgb').resize(s, s, { fit: 'fill', kernel: 'lanczos3' }).raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    t.push(performance.now() - t0);
  }
  console.log(variant, med(t.slice(50)).toFixed(3), 'concurrency', sharp.concurrency());
}

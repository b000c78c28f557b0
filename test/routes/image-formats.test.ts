/**
 * Classify takes the image formats data set uploads take, checked by content on every path (JSON
 * base64, data: URL, multipart, fan-out), and a data: URL must declare one of their media types
 * (issue 11: SVG was rendered, `data:text/html;base64,<png>` answered 200).
 */
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acceptedSamples, refusedSamples } from '../helpers/image-samples.js';
import { fixturePath, startHarness, type Harness, type Reply } from './harness.js';

let h: Harness;
let t: { token: string };
let png: Buffer;

beforeAll(async () => {
  h = await startHarness();
  t = await h.tenant('formats');
  const adapter = await readFile(fixturePath('adapter.safetensors'));
  const r = await h.call('POST', '/v1/adapters/import?name=golden', { token: t.token, body: adapter, headers: { 'content-type': 'application/octet-stream' } });
  expect(r.status).toBe(201);
  png = await readFile(fixturePath('input-0.png'));
});
afterAll(async () => {
  await h?.close();
});

const classify = (body: unknown) => h.call('POST', '/v1/adapters/golden/classify', { token: t.token, body: body as never });
const fanOut = (body: unknown) => h.call('POST', '/v1/classify/fan-out', { token: t.token, body: body as never });
const err = (r: Reply) => [r.status, r.body?.error?.code];
const part = (bytes: Buffer, field = 'images') => {
  const form = new FormData();
  form.append(field, new Blob([bytes], { type: 'image/png' }), 'picture.png');
  return form;
};

describe('image formats on classify', () => {
  it('accepts every listed format, as JSON base64 and as multipart', async () => {
    for (const [format, bytes] of Object.entries(await acceptedSamples())) {
      const json = await classify({ images: [bytes.toString('base64')] });
      expect([format, json.status], json.text).toEqual([format, 200]);
      const form = await classify(part(bytes));
      expect([format, form.status], form.text).toEqual([format, 200]);
    }
  });

  it('refuses SVG, PDF, HEIC and text on every path with invalid_image', async () => {
    for (const [what, bytes] of Object.entries(await refusedSamples())) {
      const b64 = bytes.toString('base64');
      const f = part(bytes, 'image');
      f.append('adapters', 'golden');
      const answers = [
        await classify({ images: [b64] }),
        await classify({ images: [`data:image/png;base64,${b64}`] }),
        await classify(part(bytes)),
        await fanOut({ image: b64, adapters: ['golden'] }),
        await fanOut(f),
      ];
      expect([what, ...answers.map(err)]).toEqual([what, ...answers.map(() => [400, 'invalid_image'])]);
    }
  });
});

describe('data: URLs', () => {
  it('must declare an accepted image media type and be base64; bare base64 stays allowed', async () => {
    const b64 = png.toString('base64');
    expect((await classify({ images: [b64] })).status).toBe(200);
    expect((await classify({ images: [`data:image/png;base64,${b64}`] })).status).toBe(200);
    expect((await classify({ images: [`DATA:IMAGE/JPEG;BASE64,${b64}`] })).status).toBe(200);
    const html = await classify({ images: [`data:text/html;base64,${b64}`] });
    expect(err(html)).toEqual([400, 'invalid_image']);
    expect(html.body.error.message).toContain("'text/html'");
    expect(err(await classify({ images: [`data:image/svg+xml;base64,${b64}`] }))).toEqual([400, 'invalid_image']);
    expect(err(await classify({ images: [`data:;base64,${b64}`] }))).toEqual([400, 'invalid_image']);
    expect(err(await fanOut({ image: `data:text/plain;base64,${b64}`, adapters: ['golden'] }))).toEqual([400, 'invalid_image']);
    const plain = await classify({ images: [`data:image/png,${encodeURIComponent(png.toString('latin1'))}`] });
    expect(err(plain)).toEqual([400, 'validation_failed']);
    expect(plain.body.error.message).toContain('base64');
  });
});

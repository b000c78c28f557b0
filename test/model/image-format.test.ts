/**
 * One list of image formats (src/model/image-format.ts) for classify and data set ingestion
 * (issue 11: classify rendered SVG that uploads refused), and the text forms images come in.
 */
import { describe, expect, it } from 'vitest';
import { ImageTextError, decodeImageText, preprocessImage, sniffImageFormat } from '../../src/model/index.js';
import { decodeToRgb } from '../../src/train/ingest/index.js';
import { acceptedSamples, refusedSamples } from '../helpers/image-samples.js';

const cfg = { imageSize: 8, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] } as never;
const outcome = (p: Promise<unknown>) => p.then(() => 'ok', () => 'refused');

describe('accepted image formats', () => {
  it('classify preprocessing and ingestion accept exactly the same formats, by content', async () => {
    for (const [format, bytes] of Object.entries(await acceptedSamples())) {
      expect(sniffImageFormat(bytes), format).toBe(format);
      expect([format, await outcome(preprocessImage(bytes, cfg)), await outcome(decodeToRgb(bytes, { imageSize: 8, maxPixels: 1e6 }))]).toEqual([format, 'ok', 'ok']);
    }
    for (const [what, bytes] of Object.entries(await refusedSamples())) {
      expect(sniffImageFormat(bytes), what).toBeUndefined();
      expect([what, await outcome(preprocessImage(bytes, cfg)), await outcome(decodeToRgb(bytes, { imageSize: 8, maxPixels: 1e6 }))]).toEqual([what, 'refused', 'refused']);
    }
    await expect(preprocessImage((await refusedSamples()).svg, cfg)).rejects.toMatchObject({ code: 'invalid_image', message: expect.stringContaining('JPEG, PNG') });
  });
});

describe('images as text', () => {
  const png = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3]);
  const b64 = png.toString('base64');
  const reason = (text: string) => {
    try {
      decodeImageText(text);
      return 'ok';
    } catch (err) {
      expect(err).toBeInstanceOf(ImageTextError);
      return (err as ImageTextError).reason;
    }
  };

  it('takes bare base64 (standard or URL-safe) and base64 data: URLs of an accepted image type', () => {
    expect(decodeImageText(b64)).toEqual(png);
    expect(decodeImageText(png.toString('base64url'))).toEqual(png);
    expect(decodeImageText(`data:image/png;base64,${b64}`)).toEqual(png);
    expect(decodeImageText(`DATA:Image/JPEG;charset=x;BASE64,${b64}`)).toEqual(png);
  });

  it('refuses data: URLs that declare another media type or are not base64', () => {
    expect(reason(`data:text/html;base64,${b64}`)).toBe('media_type');
    expect(reason(`data:image/svg+xml;base64,${b64}`)).toBe('media_type');
    expect(reason(`data:;base64,${b64}`)).toBe('media_type');
    expect(reason(`data:image/png,${encodeURIComponent(png.toString('latin1'))}`)).toBe('encoding');
    expect(reason(`data:image/png;base64${b64}`)).toBe('encoding');
    expect(reason('***')).toBe('encoding');
    expect(reason('')).toBe('encoding');
  });
});

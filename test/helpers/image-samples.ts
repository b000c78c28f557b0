/**
 * One small picture in every accepted format, and look-alikes the service must refuse (SVG, PDF,
 * HEIC, text), for the tests that keep classify and data set ingestion on the same list.
 */
import sharp from 'sharp';

export const SVG = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16"><rect width="16" height="16" fill="red"/></svg>');

/** The accepted formats, each encoding the same 16×16 picture. */
export async function acceptedSamples(): Promise<Record<'jpeg' | 'png' | 'gif' | 'webp' | 'tiff' | 'avif', Buffer>> {
  const base = () => sharp({ create: { width: 16, height: 16, channels: 3, background: { r: 200, g: 60, b: 30 } } });
  return {
    jpeg: await base().jpeg().toBuffer(),
    png: await base().png().toBuffer(),
    gif: await base().gif().toBuffer(),
    webp: await base().webp().toBuffer(),
    tiff: await base().tiff().toBuffer(),
    avif: await base().avif().toBuffer(),
  };
}

/** Things sharp might open, or that are no image at all: every one is refused. */
export async function refusedSamples(): Promise<Record<string, Buffer>> {
  const avif = (await acceptedSamples()).avif;
  // The same HEIF container under the 'heic' brand: HEIF other than AVIF is not on the list.
  const heic = Buffer.from(avif);
  heic.write('heic', 8, 'latin1');
  return {
    svg: SVG,
    'svg with an XML declaration': Buffer.concat([Buffer.from('<?xml version="1.0"?>\n'), SVG]),
    pdf: Buffer.from('%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n'),
    heic,
    text: Buffer.from('just some text, not an image'),
  };
}

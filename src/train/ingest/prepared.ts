/**
 * The preprocessed data set the trainer reads from the blob store: every image already at the
 * backbone's size as uint8 RGB, so training never touches the raw upload again.
 *
 * Layout (little-endian):
 *   0   8 bytes  magic "DTLPREP" + format version byte (1)
 *   8   u32      header length H (bytes of UTF-8 JSON, padded with spaces to a multiple of 8)
 *   12  H bytes  header JSON: { imageSize, channels: 3, count, labels, counts, splits, sources }
 *   …   count×4  label ids (int32, index into `labels`)
 *   …   count    split ids (uint8, index into SPLITS)
 *   …   pad to a multiple of 8
 *   …   count×imageSize²×3  pixels, row-major HWC RGB, example after example
 */
import { z } from 'zod';
import { AppError } from '../../errors.js';
import { emptyCounts, SPLITS, splitCountsSchema, type SplitCounts } from './types.js';

export const PREPARED_MAGIC = 'DTLPREP';
export const PREPARED_VERSION = 1;

export interface PreparedDataset {
  imageSize: number;
  /** Sorted, unique; label id = index. */
  labels: string[];
  /** Per label (aligned with `labels`): examples in each split. */
  counts: SplitCounts[];
  /** Where each example came from (zip path or `line N`), for reports on misclassified images. */
  sources: string[];
  /** count × imageSize × imageSize × 3 bytes. */
  pixels: Uint8Array;
  labelIds: Int32Array;
  /** Index into SPLITS: 0 unassigned, 1 train, 2 val, 3 test. */
  splits: Uint8Array;
}

const headerSchema = z.object({
  imageSize: z.number().int().min(1).max(4096),
  channels: z.literal(3),
  count: z.number().int().min(0),
  labels: z.array(z.string().min(1)),
  counts: z.array(splitCountsSchema),
  splits: z.array(z.string()),
  sources: z.array(z.string()),
});

export function preparedCount(ds: PreparedDataset): number {
  return ds.labelIds.length;
}

/** Per-label split counts recomputed from the example arrays. */
export function countExamples(labelCount: number, labelIds: Int32Array, splits: Uint8Array): SplitCounts[] {
  const counts = Array.from({ length: labelCount }, emptyCounts);
  for (let i = 0; i < labelIds.length; i++) {
    const c = counts[labelIds[i]];
    c[SPLITS[splits[i]]] += 1;
    c.total += 1;
  }
  return counts;
}

function pad8(n: number): number {
  return (8 - (n % 8)) % 8;
}

/** The encoded form as parts (no copy of the pixels), for streaming into a blob store. */
export function encodePreparedParts(ds: PreparedDataset): Buffer[] {
  const count = preparedCount(ds);
  const imageBytes = ds.imageSize * ds.imageSize * 3;
  if (ds.splits.length !== count || ds.sources.length !== count || ds.pixels.length !== count * imageBytes) {
    throw new AppError('internal', 'prepared data set arrays disagree on the example count');
  }
  const json = JSON.stringify({
    imageSize: ds.imageSize,
    channels: 3,
    count,
    labels: ds.labels,
    counts: ds.counts,
    splits: SPLITS,
    sources: ds.sources,
  });
  const jsonBytes = Buffer.from(json, 'utf8');
  const header = Buffer.alloc(12 + jsonBytes.length + pad8(jsonBytes.length), 0x20);
  header.write(PREPARED_MAGIC, 0, 'latin1');
  header[7] = PREPARED_VERSION;
  header.writeUInt32LE(jsonBytes.length + pad8(jsonBytes.length), 8);
  jsonBytes.copy(header, 12);
  const ids = Buffer.alloc(count * 4 + count + pad8(count * 5));
  for (let i = 0; i < count; i++) ids.writeInt32LE(ds.labelIds[i], i * 4);
  Buffer.from(ds.splits.buffer, ds.splits.byteOffset, count).copy(ids, count * 4);
  return [header, ids, Buffer.from(ds.pixels.buffer, ds.pixels.byteOffset, ds.pixels.length)];
}

export function encodePrepared(ds: PreparedDataset): Buffer {
  return Buffer.concat(encodePreparedParts(ds));
}

function corrupt(reason: string): AppError {
  return new AppError('invalid_dataset', `prepared data set is corrupt: ${reason}`);
}

/** Parses and validates an encoded data set. The pixels are a view into `buf` (no copy). */
export function decodePrepared(buf: Uint8Array): PreparedDataset {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b.length < 12 || b.toString('latin1', 0, 7) !== PREPARED_MAGIC) throw corrupt('bad magic');
  if (b[7] !== PREPARED_VERSION) throw corrupt(`unsupported version ${b[7]} (this build reads ${PREPARED_VERSION})`);
  const headerLen = b.readUInt32LE(8);
  if (headerLen % 8 !== 0 || 12 + headerLen > b.length) throw corrupt('header length out of range');
  let raw: unknown;
  try {
    raw = JSON.parse(b.toString('utf8', 12, 12 + headerLen));
  } catch {
    throw corrupt('header is not JSON');
  }
  const parsed = headerSchema.safeParse(raw);
  if (!parsed.success) throw corrupt(`bad header: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
  const h = parsed.data;
  if (h.splits.join(',') !== SPLITS.join(',')) throw corrupt('unknown split names');
  if (h.counts.length !== h.labels.length || h.sources.length !== h.count) throw corrupt('header arrays disagree');
  for (let i = 1; i < h.labels.length; i++) {
    if (!(h.labels[i - 1] < h.labels[i])) throw corrupt('labels are not sorted and unique');
  }
  const imageBytes = h.imageSize * h.imageSize * 3;
  const idsStart = 12 + headerLen;
  const splitsStart = idsStart + h.count * 4;
  const pixelsStart = splitsStart + h.count + pad8(h.count * 5);
  const expected = pixelsStart + h.count * imageBytes;
  if (b.length !== expected) throw corrupt(`length is ${b.length} bytes, expected ${expected}`);
  const labelIds = new Int32Array(h.count);
  for (let i = 0; i < h.count; i++) {
    const id = b.readInt32LE(idsStart + i * 4);
    if (id < 0 || id >= h.labels.length) throw corrupt(`label id ${id} out of range at example ${i}`);
    labelIds[i] = id;
  }
  const splits = new Uint8Array(h.count);
  splits.set(b.subarray(splitsStart, splitsStart + h.count));
  for (let i = 0; i < h.count; i++) {
    if (splits[i] >= SPLITS.length) throw corrupt(`split id ${splits[i]} out of range at example ${i}`);
  }
  const counts = countExamples(h.labels.length, labelIds, splits);
  if (JSON.stringify(counts) !== JSON.stringify(h.counts)) throw corrupt('counts in the header disagree with the examples');
  return {
    imageSize: h.imageSize,
    labels: h.labels,
    counts,
    sources: h.sources,
    pixels: b.subarray(pixelsStart, expected),
    labelIds,
    splits,
  };
}

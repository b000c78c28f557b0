/**
 * Limits applied while ingesting an uploaded data set. Every limit exists to keep a hostile or
 * careless upload from exhausting memory, disk or CPU before we can say "no" with a clear error.
 */
import { z } from 'zod';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.number().int().min(min).max(max);

export const ingestLimitsSchema = z.object({
  /** Zip entries (files + folders) or JSONL lines. Checked from the zip's end record before any entry is read. */
  maxEntries: int(1, 10_000_000).default(200_000),
  /**
   * Sum of declared uncompressed sizes of all zip entries (sizes are enforced while inflating).
   * PNG/JPEG hardly compress, so a real data set inflates to about its upload size.
   */
  maxUncompressedBytes: int(1).default(2 * GiB),
  /**
   * Largest ratio of the whole archive: declared uncompressed total / the zip file's size. Many
   * small entries each under `compressionRatioMinBytes` (1,100 × 1 MiB of zeros from 1.3 MB) are a
   * zip bomb too; this bounds them before anything is inflated.
   */
  maxArchiveRatio: z.number().min(1).default(20),
  /**
   * Archives declaring at most this many bytes in all pass the archive ratio whatever their size:
   * small data sets of solid-colour BMP/TIFF legitimately compress far beyond it.
   */
  archiveRatioFloorBytes: int(0).default(256 * MiB),
  /** Largest uncompressed / compressed ratio of one zip entry; beyond it the archive is a zip bomb. */
  maxCompressionRatio: z.number().min(1).default(200),
  /**
   * Entries smaller than this are not ratio-checked: a small solid-colour BMP/TIFF legitimately
   * compresses 1000:1, and small entries cannot blow up memory (the archive ratio still holds).
   */
  compressionRatioMinBytes: int(0).default(1 * MiB),
  /** Largest single image file (zip entry or decoded base64 of a JSONL line); also bounds manifests. */
  maxEntryBytes: int(1).default(64 * MiB),
  /** Decoded pixel limit per image (sharp `limitInputPixels`); refused from the header, before allocation. */
  maxImagePixels: int(1).default(40_000_000),
  /** Images a class needs (all splits together). Classes under it are dropped ('skip') or fatal ('reject'). */
  minPerClass: int(1).default(2),
  /** Most distinct labels; checked from names/manifests before any image is decoded. */
  maxClasses: int(2, 65_535).default(10_000),
  /** Most bytes of preprocessed pixels held in memory (count × size² × 3). */
  maxPreparedBytes: int(1, 4 * GiB - 64 * MiB).default(2 * GiB),
  /** Most problems kept in the result (the total is still counted). */
  maxProblems: int(1).default(1000),
});

export type IngestLimits = z.infer<typeof ingestLimitsSchema>;
export type IngestLimitsInput = z.input<typeof ingestLimitsSchema>;

/** Defaults for every limit; `parseIngestLimits({ minPerClass: 5 })` overrides just one. */
export function parseIngestLimits(input: IngestLimitsInput = {}): IngestLimits {
  return ingestLimitsSchema.parse(input);
}

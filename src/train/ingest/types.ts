/** Shapes shared by the ingestion modules and returned to the service layer. */
import { z } from 'zod';

/** Split ids as stored in a prepared data set (index = id). */
export const SPLITS = ['unassigned', 'train', 'val', 'test'] as const;
export type Split = (typeof SPLITS)[number];
export const splitSchema = z.enum(SPLITS);

export const splitCountsSchema = z.object({
  unassigned: z.number().int().min(0),
  train: z.number().int().min(0),
  val: z.number().int().min(0),
  test: z.number().int().min(0),
  total: z.number().int().min(0),
});
export type SplitCounts = z.infer<typeof splitCountsSchema>;

export function emptyCounts(): SplitCounts {
  return { unassigned: 0, train: 0, val: 0, test: 0, total: 0 };
}

/**
 * Why one file (or class, or manifest row) was not used. Codes are stable strings:
 * - invalid_image: not a supported image, corrupt, truncated, or over the pixel limit
 * - invalid_name: a zip entry name that is not valid UTF-8, or a file/folder name with control or
 *   bidirectional characters (src/text.ts)
 * - invalid_label: a label that is empty, too long or has control or bidirectional characters
 * - invalid_row: a manifest or JSONL line that cannot be parsed or lacks a field
 * - invalid_path: a manifest path that is absolute or climbs out with `..`
 * - missing_file: a manifest path with no file in the archive
 * - duplicate_path: a manifest path listed twice (the first row wins)
 * - unexpected_path: a file outside any class folder (or outside train/ val/ test/)
 * - unsupported_entry: an encrypted, symlink or otherwise unreadable zip entry
 * - too_large: an entry or line over `maxEntryBytes`
 * - empty_class: a class with no usable image
 * - too_few_images: a class with fewer than `minPerClass` usable images
 */
export const PROBLEM_CODES = [
  'invalid_image',
  'invalid_name',
  'invalid_label',
  'invalid_row',
  'invalid_path',
  'missing_file',
  'duplicate_path',
  'unexpected_path',
  'unsupported_entry',
  'too_large',
  'empty_class',
  'too_few_images',
] as const;
export const problemSchema = z.object({
  path: z.string(),
  code: z.enum(PROBLEM_CODES),
  message: z.string(),
});
export type Problem = z.infer<typeof problemSchema>;
export type ProblemCode = Problem['code'];

export type IngestPolicy = 'skip' | 'reject';

/** Which accepted form an upload (or, for `dtl-host train`, a local directory) turned out to be. */
export type DatasetForm =
  | 'zip-folders'
  | 'zip-manifest-csv'
  | 'zip-manifest-jsonl'
  | 'jsonl'
  | 'dir-folders'
  | 'dir-manifest-csv'
  | 'dir-manifest-jsonl';

/** A file chosen for decoding: where it comes from, its (normalised) label and split. */
export interface Candidate<Ref> {
  source: string;
  label: string;
  split: Split;
  ref: Ref;
}

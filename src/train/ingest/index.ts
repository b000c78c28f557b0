/** Public surface of data set ingestion (used by the datasets service, the trainer and the CLI). */
export {
  ingestUpload,
  ingestFile,
  ingestDirectory,
  type IngestResult,
  type IngestUploadResult,
  type IngestFileOptions,
  type IngestUploadOptions,
  type IngestDirectoryOptions,
  type IngestNeed,
} from './ingest.js';
export { ingestLimitsSchema, parseIngestLimits, type IngestLimits, type IngestLimitsInput } from './limits.js';
export {
  encodePrepared,
  encodePreparedParts,
  decodePrepared,
  preparedCount,
  countExamples,
  PREPARED_MAGIC,
  PREPARED_VERSION,
  type PreparedDataset,
} from './prepared.js';
export { spoolUpload, removeWorkDir, sweepWorkDirs, type SpooledUpload } from './spool.js';
export { decodeToRgb, ImageDecodeError, ACCEPTED_IMAGE_FORMATS } from './image.js';
export { normaliseLabel, MAX_LABEL_CHARS } from './labels.js';
export {
  SPLITS,
  PROBLEM_CODES,
  problemSchema,
  splitCountsSchema,
  type Split,
  type SplitCounts,
  type Problem,
  type ProblemCode,
  type IngestPolicy,
  type DatasetForm,
} from './types.js';

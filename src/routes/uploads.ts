/**
 * Request bodies as streams, never buffered whole (hono's parseBody and bodyLimit both buffer):
 * a raw body as a Node Readable, or multipart/form-data parsed by busboy while it arrives. Byte
 * limits are enforced by whoever consumes the stream (they count as they read), so an oversized
 * upload is cut off at the limit instead of being read to the end. Nothing here destroys the
 * request stream itself (see body.ts: that would take the socket, and the answer, with it).
 */
import { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import busboy from 'busboy';
import type { Context } from 'hono';
import { AppError, isAppError } from '../errors.js';
import { incomingOf, requestStream } from './body.js';

export { readBody } from './body.js';

export function contentTypeOf(c: Context): string {
  return (c.req.header('content-type') ?? '').trim();
}

export function isMultipart(c: Context): boolean {
  return /^multipart\/form-data/i.test(contentTypeOf(c));
}

export function isJson(c: Context): boolean {
  return /^application\/([a-z0-9.+-]+\+)?json\s*(;|$)/i.test(contentTypeOf(c));
}

/** The request body as a Node stream its consumer may destroy; 'bad_request' when there is none. */
export function rawBody(c: Context): Readable {
  return requestStream(c);
}

export interface FilePart {
  field: string;
  filename: string | undefined;
  mimeType: string;
  stream: Readable;
}

export interface MultipartOptions {
  /** Most file parts accepted. */
  maxFiles: number;
  /** Largest text field in bytes. */
  maxFieldBytes?: number;
  maxFields?: number;
  /**
   * Called for each file part, with the text fields seen before it. Must consume `part.stream`.
   * `signal` aborts when the request fails elsewhere (its stream is destroyed then too); the
   * promise is awaited before `parseMultipart` settles, so work it started can be undone.
   */
  onFile(part: FilePart, fieldsSoFar: Record<string, string>, signal: AbortSignal): Promise<void>;
}

/**
 * Streams a multipart body through busboy. Text fields are collected; each file part goes to
 * `onFile` as it arrives. Resolves with the fields once the body ended and every onFile settled;
 * rejects with the first failure, after stopping the reading and letting every onFile settle.
 */
export function parseMultipart(c: Context, opts: MultipartOptions): Promise<Record<string, string>> {
  // The IncomingMessage itself where there is one (busboy reads it directly; on failure it is
  // unpiped, never destroyed), otherwise the web body.
  const source = incomingOf(c) ?? requestStream(c);
  return new Promise((resolve, reject) => {
    let bb: busboy.Busboy;
    const maxFields = opts.maxFields ?? 50;
    try {
      bb = busboy({
        headers: { 'content-type': contentTypeOf(c) },
        limits: { files: opts.maxFiles, fields: maxFields, fieldSize: opts.maxFieldBytes ?? 64 * 1024, parts: opts.maxFiles + maxFields },
      });
    } catch (err) {
      reject(new AppError('bad_request', `malformed multipart request: ${(err as Error).message}`));
      return;
    }
    const fields: Record<string, string> = {};
    const pending: Promise<void>[] = [];
    const open = new Set<Readable>();
    const controller = new AbortController();
    let failed = false;
    const fail = (err: unknown) => {
      if (failed) return;
      failed = true;
      controller.abort(err);
      source.unpipe(bb);
      source.pause();
      if (!(source instanceof IncomingMessage)) source.destroy();
      for (const stream of open) stream.destroy(err instanceof Error ? err : new Error(String(err)));
      void Promise.allSettled(pending).then(() => reject(err));
    };
    bb.on('field', (name, value, info) => {
      if (info.valueTruncated) return fail(new AppError('payload_too_large', `form field '${name}' is too long`));
      fields[name] = value;
    });
    bb.on('file', (field, stream, info) => {
      if (failed) {
        stream.resume();
        return;
      }
      open.add(stream);
      stream.once('close', () => open.delete(stream));
      // Destroying it on failure must not crash the process when its consumer already let go.
      stream.on('error', () => {});
      const p = opts
        .onFile({ field, filename: info.filename, mimeType: info.mimeType, stream }, { ...fields }, controller.signal)
        .catch((err: unknown) => {
          stream.resume(); // let busboy carry on even if the consumer gave up
          fail(err);
        });
      pending.push(p);
    });
    bb.on('filesLimit', () => fail(new AppError('validation_failed', `at most ${opts.maxFiles} file part(s) per request`)));
    bb.on('fieldsLimit', () => fail(new AppError('validation_failed', 'too many form fields')));
    bb.on('partsLimit', () => fail(new AppError('validation_failed', 'too many form parts')));
    bb.on('error', (err) => fail(new AppError('bad_request', `malformed multipart request: ${(err as Error).message}`)));
    bb.on('close', () => {
      void Promise.all(pending).then(() => {
        if (!failed) resolve(fields);
      });
    });
    source.on('error', (err) => fail(isAppError(err) ? err : new AppError('bad_request', `the request body could not be read: ${err.message}`)));
    source.on('close', () => {
      if (source instanceof IncomingMessage && !source.complete) fail(new AppError('bad_request', 'the client closed the connection before the request body ended'));
    });
    source.pipe(bb);
  });
}

/** Reads a whole stream up to `maxBytes` (small multipart parts: images, adapter files; never the request itself). */
export async function readAll(stream: AsyncIterable<Uint8Array>, maxBytes: number, what: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const chunk of stream) {
    n += chunk.length;
    if (n > maxBytes) throw new AppError('payload_too_large', `${what} is larger than ${maxBytes} bytes`, { details: { maxBytes } });
    parts.push(Buffer.from(chunk));
  }
  return Buffer.concat(parts, n);
}

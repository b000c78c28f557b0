/**
 * How a job handler's failure counts and what its tenant is told: outages of the storage or the
 * database (however wrapped) are transient, 4xx AppErrors permanent with their message, anything
 * else a retryable 'internal' with a fixed message.
 */
import { describe, expect, it } from 'vitest';
import { AppError } from '../../src/errors.js';
import { judgeFailure } from '../../src/jobs/failure.js';

const coded = (code: string, message = code) => Object.assign(new Error(message), { code });
const STORAGE = { code: 'storage_error', message: 'the storage backend is temporarily unavailable; retry later' };
const UNAVAILABLE = { code: 'unavailable', message: 'the service is temporarily unavailable; retry later' };
const INTERNAL = { code: 'internal', message: 'internal error' };

describe('judgeFailure', () => {
  it.each([
    ['a storage error', new AppError('storage_error', "S3 put 'k' in bucket 'b' failed"), 'transient', STORAGE],
    ['a storage error inside an internal wrapper', new AppError('internal', 'x', { cause: new AppError('storage_error', 'disk /srv full') }), 'transient', STORAGE],
    ['a refused database connection under drizzle', new Error('Failed query', { cause: coded('ECONNREFUSED') }), 'transient', UNAVAILABLE],
    ['PGlite closed', new Error('PGlite is closed'), 'transient', UNAVAILABLE],
    ['a locked embedded database', new AppError('database_locked', 'locked by pid 7 at /srv/pglite'), 'transient', { code: 'database_locked', message: 'the database is temporarily unavailable; retry later' }],
    ['a 4xx AppError', new AppError('invalid_dataset', 'no images'), 'permanent', { code: 'invalid_dataset', message: 'no images' }],
    ['retryable: false', Object.assign(new Error('/srv/x broken'), { retryable: false }), 'permanent', INTERNAL],
    ['an unknown error', new Error('TypeError at /app/src/x.ts:12'), 'retryable', INTERNAL],
    ['an internal AppError', new AppError('internal', 'adapter loader returned 7 for /srv/k'), 'retryable', INTERNAL],
  ])('%s', (_, err, kind, error) => {
    expect(judgeFailure(err)).toEqual({ kind, error });
  });
});

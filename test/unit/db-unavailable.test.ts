/**
 * The shapes a database outage takes, each recognised as 'unavailable' wherever it sits in the
 * cause chain (drizzle wraps driver errors once; an 'internal' AppError may wrap them again), and
 * a storage failure that merely shares a socket error code is left to its own layer.
 */
import { describe, expect, it } from 'vitest';
import { dbUnavailable, mapDbError } from '../../src/db/errors.js';
import { AppError } from '../../src/errors.js';
import { toAppError } from '../../src/routes/errors.js';

const coded = (code: string, message = code) => Object.assign(new Error(message), { code });
const drizzle = (cause: unknown) => new Error('Failed query: select 1\nparams: ', { cause });

describe('database unavailability', () => {
  const outages: [string, unknown][] = [
    ['postgres-js connect timeout', coded('CONNECT_TIMEOUT', 'write CONNECT_TIMEOUT 10.0.0.1:5432')],
    ['refused socket', coded('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:5432')],
    ['reset socket, wrapped by drizzle', drizzle(coded('ECONNRESET', 'read ECONNRESET'))],
    ['admin shutdown 57P01', drizzle(coded('57P01', 'terminating connection due to administrator command'))],
    ['cannot connect now 57P03', coded('57P03', 'the database system is starting up')],
    ['connection failure 08006', coded('08006', 'connection failure')],
    ['too many connections', coded('53300', 'sorry, too many clients already')],
    ['ALLOW_CONNECTIONS false', drizzle(coded('55000', 'database "x" is not currently accepting connections'))],
    ['PGlite closed', drizzle(new Error('PGlite is closed'))],
    ['PGlite closing, inside an internal AppError', new AppError('internal', 'ingestion failed', { cause: new Error('PGlite is closing') })],
    ['serialization failure', coded('40001', 'could not serialize access')],
  ];
  it.each(outages)('%s → unavailable with Retry-After', (_, err) => {
    const mapped = dbUnavailable(err);
    expect(mapped?.code).toBe('unavailable');
    expect(mapped?.retryAfterSeconds).toBeGreaterThan(0);
    expect(toAppError(err).code).toBe('unavailable');
    if (!(err instanceof AppError)) expect((mapDbError(err) as AppError).code).toBe('unavailable');
  });

  it('leaves other errors alone', () => {
    expect(dbUnavailable(coded('55000', 'object not in prerequisite state'))).toBeUndefined();
    expect(dbUnavailable(coded('23505', 'duplicate key'))).toBeUndefined();
    expect(dbUnavailable(new Error('boom'))).toBeUndefined();
    expect(toAppError(new Error('boom')).code).toBe('internal');
    // Already classified by the storage layer: stays a storage_error.
    const storage = new AppError('storage_error', 'S3 put failed', { cause: coded('ECONNREFUSED') });
    expect(dbUnavailable(storage)).toBeUndefined();
    expect(toAppError(storage).code).toBe('storage_error');
  });

  it('maps a database error raised outside dbCall by the same rules (a NUL the database refuses is the caller\'s 400)', () => {
    const nul = coded('22021', 'invalid byte sequence for encoding "UTF8": 0x00');
    expect((mapDbError(nul) as AppError).code).toBe('validation_failed');
    expect(toAppError(nul).code).toBe('validation_failed');
    expect(toAppError(coded('23505', 'duplicate key')).code).toBe('already_exists');
  });
});

/**
 * One rule for adapter names, whichever verb creates the adapter. Training used to accept a
 * UUID-shaped name that import refused; such an adapter could never be found by name, since a
 * UUID-shaped reference is read as an id.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppError } from '../../src/errors.js';
import { importAdapter } from '../../src/services/adapters.js';
import { startTraining } from '../../src/services/training.js';
import { openServiceFixture, type ServiceFixture } from '../train/service-fixture.js';

async function failure(p: Promise<unknown>): Promise<AppError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof AppError) return err;
    throw err;
  }
  throw new Error('expected a failure');
}

describe('adapter names', () => {
  let f: ServiceFixture;
  beforeAll(async () => {
    f = await openServiceFixture('pglite');
  });
  afterAll(async () => {
    await f?.close();
  });

  const refused = [randomUUID(), randomUUID().toUpperCase(), '', '-starts-with-dash', 'has space', 'x'.repeat(101), 'caf\u00e9'];

  it.each(refused)('training and import refuse %j with the same message', async (name) => {
    const train = await failure(startTraining({ deps: f.deps, ctx: f.ctx, input: { adapterName: name, datasetId: randomUUID() } }));
    const imported = await failure(importAdapter({ deps: f.deps, ctx: f.ctx, input: { name, source: Buffer.from('not reached') } as never }));
    expect([train.code, imported.code]).toEqual(['validation_failed', 'validation_failed']);
    expect(train.message).toBe(imported.message);
  });

  it('a good name passes the rule in both (and fails later, on what is missing)', async () => {
    const train = await failure(startTraining({ deps: f.deps, ctx: f.ctx, input: { adapterName: 'shoes-v2.1_x', datasetId: randomUUID() } }));
    expect(train.code).toBe('not_found');
  });
});

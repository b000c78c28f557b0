/**
 * The rule for adapter names, whichever verb creates the adapter (training, import). A name is a
 * reference tenants put in URLs (`/v1/adapters/{id or name}`), so it is plain ASCII, and never
 * UUID-shaped: such a reference is read as an id, and the adapter could never be found by name.
 * Free-text names (data sets, keys, tenants) follow `text.ts` instead.
 */
import { z } from 'zod';
import { isUuid } from '../db/errors.js';
import { validationError } from '../errors.js';

export const adapterNameSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/, '1–100 characters: letters, digits, ".", "_" or "-", starting with a letter or digit')
  .refine((n) => !isUuid(n), 'a name must not look like an id (UUID)');

/** The name, or 400 validation_failed naming the rule it breaks. */
export function parseAdapterName(raw: unknown): string {
  const parsed = adapterNameSchema.safeParse(raw);
  if (!parsed.success) throw validationError(parsed.error, { field: 'name' });
  return parsed.data;
}

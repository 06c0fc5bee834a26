// Helpers shared by the CCOS tests.
import assert from 'node:assert/strict';
import { CcosError } from '../src/ccos/index.js';

/** Expects `fn` to fail with a CcosError of `code` (thrown or rejected); returns the error. */
export async function failsWith(fn: () => unknown, code: string, message?: RegExp): Promise<CcosError> {
  let err: unknown;
  try {
    await fn();
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof CcosError, `expected a CcosError ${code}, got ${err === undefined ? 'success' : String(err)}`);
  assert.equal(err.code, code, err.message);
  if (message) assert.match(err.message, message);
  return err;
}

// Helpers shared by the CCOS tests.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CcosError, openCcos, type Ccos } from '../src/ccos/index.js';

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

/** A CCOS node over a fresh temp data dir (also its workspace), removed after the test. */
export function tempNode(t: { after: (fn: () => void) => void }, prefix = 'ccos-test-'): Ccos {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const ccos = openCcos({ dataDir, workspaceRoot: dataDir });
  t.after(() => {
    ccos.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });
  return ccos;
}

/** The single JSON line a `--json` command printed on stdout. */
export function jsonLine<T = Record<string, unknown>>(r: { stdout: string; stderr: string }): T {
  const lines = r.stdout.trim().split('\n');
  assert.equal(lines.length, 1, `expected one JSON line on stdout, got:\n${r.stdout}\nstderr:\n${r.stderr}`);
  return JSON.parse(lines[0]) as T;
}

/** Output must not contain a JS stack trace. */
export const noStack = (s: string): void => assert.doesNotMatch(s, /\n\s+at .*\.js:\d+/, `unexpected stack trace:\n${s}`);

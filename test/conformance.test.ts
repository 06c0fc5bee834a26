// The original implementation's own test cases (../shared/conformance): every case passes or is a
// listed, explained divergence. A listed case that starts passing is reported too (stale entry).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { evaluate, prStr, readOne, valueEquals, type Value } from '../src/rtfs/index.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const corpus = process.env.RTFS_CONFORMANCE ?? path.resolve(root, '../shared/conformance/peer-public.jsonl');
const divergences = new Map(
  fs
    .readFileSync(path.join(root, 'test/conformance/divergences.tsv'), 'utf8')
    .split('\n')
    .filter((l) => l.trim() && !l.startsWith('#'))
    .map((l) => l.split('\t') as [string, string]),
);

interface Case {
  id: string;
  source: string;
  expect: { value?: string; error?: boolean; kind?: string };
  tier: string;
}

function runCase(c: Case): { ok: boolean; detail: string } {
  let got: Value;
  try {
    got = evaluate(c.source, { fuel: 10_000_000, file: c.id });
  } catch (e) {
    return { ok: !!c.expect.error, detail: `error: ${(e as Error).message}` };
  }
  if (c.expect.error) return { ok: false, detail: `expected an error, got ${prStr(got)}` };
  const expected = readOne(c.expect.value!) as Value;
  return { ok: valueEquals(got, expected), detail: `expected ${c.expect.value}, got ${prStr(got)}` };
}

test('conformance corpus of the original implementation', { skip: !fs.existsSync(corpus) && `corpus not found at ${corpus}` }, () => {
  const cases: Case[] = fs.readFileSync(corpus, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.ok(cases.length > 300, 'the corpus is complete');
  const failures: string[] = [];
  const stale: string[] = [];
  for (const c of cases) {
    const r = runCase(c);
    const listed = divergences.has(c.id);
    if (!r.ok && !listed) failures.push(`${c.id} ${JSON.stringify(c.source).slice(0, 120)}: ${r.detail}`);
    if (r.ok && listed) stale.push(c.id);
  }
  for (const id of divergences.keys()) assert.ok(cases.some((c) => c.id === id), `divergence ${id} names no case`);
  assert.deepEqual(failures, [], `unexplained conformance failures:\n${failures.join('\n')}`);
  assert.deepEqual(stale, [], 'divergences that now pass: remove them from test/conformance/divergences.tsv');
});

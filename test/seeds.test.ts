// Every complete RTFS example in the specification seeds parses, and `rtfs check` lists exactly
// the capabilities it calls. "Complete" = a fenced block that starts with a form and has no `...`
// placeholder outside strings and no backslash-escaped quotes (a documentation artifact).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readAll } from '../src/rtfs/index.js';
import { checkProgram } from '../src/rtfs/check.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const seedsDir = process.env.RTFS_SEEDS ?? path.resolve(root, '../shared/seeds');

interface Example {
  file: string;
  index: number;
  code: string;
}

function examples(): Example[] {
  const out: Example[] = [];
  for (const file of fs.readdirSync(seedsDir).sort()) {
    const text = fs.readFileSync(path.join(seedsDir, file), 'utf8');
    let index = 0;
    for (const m of text.matchAll(/```([a-z]*)\n([\s\S]*?)```/g)) {
      index++;
      const [, lang, code] = m;
      if (!['', 'clojure', 'clj', 'rtfs', 'lisp'].includes(lang)) continue;
      const body = code.trim();
      if (!body.startsWith('(')) continue;
      const outsideStrings = body.replace(/"(?:[^"\\]|\\.)*"/g, '""');
      if (/\.\.\./.test(outsideStrings) || body.includes('\\"')) continue;
      out.push({ file, index, code });
    }
  }
  return out;
}

test('every complete RTFS example in the seeds parses and check lists its capabilities', { skip: !fs.existsSync(seedsDir) && `seeds not found at ${seedsDir}` }, () => {
  const all = examples();
  assert.ok(all.length >= 8, `found ${all.length} examples`);
  for (const ex of all) {
    const where = `${ex.file} block ${ex.index}`;
    assert.doesNotThrow(() => readAll(ex.code, ex.file), where);
    const result = checkProgram(ex.code, ex.file);
    assert.ok(!result.diagnostics.some((d) => d.code === 'parse'), `${where}: ${JSON.stringify(result.diagnostics)}`);
    // Independent of the compiler: the capability keywords written after `(call`.
    const expected = [...new Set([...ex.code.matchAll(/\(call\s+:([^\s()[\]{}"]+)/g)].map((m) => m[1]))].sort();
    const listed = [...new Set(result.capabilities.map((c) => c.id))].sort();
    assert.deepEqual(listed, expected, where);
  }
});

test('the seed plans with plan/step/step.parallel/step.with-compensation compile without errors', { skip: !fs.existsSync(seedsDir) }, () => {
  const plans = examples().filter((e) => /\(plan\b/.test(e.code) && /step/.test(e.code));
  assert.ok(plans.length >= 2);
  for (const ex of plans) {
    // Fragments may use free variables (`docs`, `ctx`); anything else is an error in our compiler.
    const errors = checkProgram(ex.code, ex.file).diagnostics.filter((d) => d.severity === 'error' && d.code !== 'unbound-symbol');
    assert.deepEqual(errors, [], `${ex.file} block ${ex.index}`);
  }
});

/**
 * The RTFS language spec as a corpus (mal-style): test/corpus/*.rtfs.
 *
 * Format of a corpus file:
 * - an expression (it may span lines) followed by `;=> <expected printed value>`, or by
 *   `;!! <error-code>` when it must fail with an `RtfsError` whose `.code` is that code;
 * - lines starting with `;;` are comments, except the directives `;; fuel N` (fuel budget for the
 *   next case) and `;; pending: <reason>` (the next case is a known kernel bug: skipped, with the
 *   reason as the skip message);
 * - all cases of one file share one runtime (so `def`s carry over).
 *
 * Every case runs twice, once normally and once with `roundtrip: true` (the machine is serialized
 * and resumed in a fresh runtime at every suspension); both runs must match. Expected values are
 * read with `readOne` and compared with `valueEquals` (maps and sets unordered; 1 ≠ 1.0).
 *
 * Plans call a tiny deterministic fake host: `test.echo` returns its first argument, `test.add`
 * sums its arguments, `test.fail` fails with the error code `test-failure`.
 */
import { describe, it, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SPECIAL_FORM_NAMES, RtfsError, createRuntime, evaluate, prStr, readOne, valueEquals, type Runtime, type Value } from '../src/rtfs/index.js';
import { CORE_MACROS } from '../src/rtfs/macros.js';
import { NATIVES } from '../src/rtfs/stdlib/natives.js';
import { PRELUDE_NAMES } from '../src/rtfs/stdlib/prelude.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const corpusDir = process.env.RTFS_CORPUS_DIR ?? path.join(root, 'test/corpus');

interface Case {
  file: string;
  line: number;
  source: string;
  expect: { value: string } | { error: string };
  fuel?: number;
  pending?: string;
}

/** Splits a corpus file into cases. Throws on malformed files (so a typo cannot hide a case). */
export function parseCorpus(file: string, text: string): Case[] {
  const cases: Case[] = [];
  const lines = text.split('\n');
  let buf: string[] = [];
  let start = 0;
  let fuel: number | undefined;
  let pending: string | undefined;
  lines.forEach((raw, i) => {
    const line = raw.trimEnd();
    const lineNo = i + 1;
    const exp = /^;(=>|!!)\s?(.*)$/.exec(line);
    if (exp) {
      if (buf.length === 0) throw new Error(`${file}:${lineNo}: an expectation without an expression`);
      const want = exp[2].trim();
      if (want === '') throw new Error(`${file}:${lineNo}: an empty expectation`);
      cases.push({ file, line: start, source: buf.join('\n'), expect: exp[1] === '=>' ? { value: want } : { error: want }, fuel, pending });
      buf = [];
      fuel = undefined;
      pending = undefined;
      return;
    }
    if (line.startsWith(';;')) {
      const body = line.replace(/^;;+\s*/, '');
      const f = /^fuel\s+(\d+)\s*$/.exec(body);
      if (f) fuel = Number(f[1]);
      const p = /^pending:\s*(.*)$/.exec(body);
      if (p) pending = p[1] || 'pending';
      return;
    }
    if (buf.length === 0 && line.trim() === '') return;
    if (buf.length === 0) start = lineNo;
    buf.push(raw);
  });
  if (buf.some((l) => l.trim() !== '')) throw new Error(`${file}:${start}: an expression without an expectation at the end of the file`);
  return cases;
}

/** The fake host of the corpus's plans. */
function onCall(capability: string, args: Value[]): Value {
  switch (capability) {
    case 'test.echo':
      return args.length > 0 ? args[0] : null;
    case 'test.add': {
      let sum = 0;
      for (const a of args) {
        if (typeof a !== 'number') throw new RtfsError('test-failure', `test.add takes small integers, got ${prStr(a)}`);
        sum += a;
      }
      return sum;
    }
    case 'test.fail':
      throw new RtfsError('test-failure', 'failed on purpose');
    default:
      throw new RtfsError('host', `the corpus host has no capability ${capability}`);
  }
}

/** Runs one case in a runtime; returns a description of the mismatch, or null when it matches. */
function check(c: Case, runtime: Runtime, roundtrip: boolean): string | null {
  let got: Value;
  try {
    got = evaluate(c.source, { file: `${c.file}:${c.line}`, runtime, onCall, roundtrip, fuel: c.fuel });
  } catch (e) {
    if (!(e instanceof RtfsError)) return `threw a non-RTFS error: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`;
    if ('error' in c.expect) return e.code === c.expect.error ? null : `expected error ${c.expect.error}, got error ${e.code}: ${e.message}`;
    return `expected ${c.expect.value}, got error ${e.code}: ${e.message}`;
  }
  if ('error' in c.expect) return `expected error ${c.expect.error}, got ${prStr(got)}`;
  const expected = readOne(c.expect.value) as Value;
  return valueEquals(got, expected) ? null : `expected ${c.expect.value}, got ${prStr(got)}`;
}

const files = fs.existsSync(corpusDir) ? fs.readdirSync(corpusDir).filter((f) => f.endsWith('.rtfs')).sort() : [];
const parsed = files.map((f) => ({ file: f, text: fs.readFileSync(path.join(corpusDir, f), 'utf8'), cases: parseCorpus(f, fs.readFileSync(path.join(corpusDir, f), 'utf8')) }));

test('the corpus exists and is substantial', () => {
  assert.ok(files.length >= 10, `expected corpus files in ${corpusDir}`);
  const total = parsed.reduce((n, p) => n + p.cases.length, 0);
  assert.ok(total >= 400, `expected at least 400 cases, found ${total}`);
});

for (const { file, cases } of parsed) {
  describe(file, () => {
    // One runtime per mode per file: definitions carry over between the cases of a file.
    const plain = createRuntime();
    const rt = createRuntime();
    for (const c of cases) {
      it(`${file}:${c.line}`, { skip: c.pending ? `pending: ${c.pending}` : false }, () => {
        const a = check(c, plain, false);
        const b = check(c, rt, true);
        const problems = [a && `normal run: ${a}`, b && `roundtrip run: ${b}`].filter(Boolean);
        assert.deepEqual(problems, [], `${file}:${c.line}: ${c.source.trim().slice(0, 200)}\n  ${problems.join('\n  ')}`);
      });
    }
  });
}

/** The symbol-like tokens of RTFS source, outside strings, regexes, comments and character literals. */
export function tokens(src: string): Set<string> {
  const out = new Set<string>();
  const delim = /[\s,()[\]{}"';`~^@]/;
  let i = 0;
  while (i < src.length) {
    const ch = src[i];
    if (ch === ';') {
      while (i < src.length && src[i] !== '\n') i++;
    } else if (ch === '"' || (ch === '#' && src[i + 1] === '"')) {
      i += ch === '#' ? 2 : 1;
      while (i < src.length && src[i] !== '"') i += src[i] === '\\' ? 2 : 1;
      i++;
    } else if (ch === '\\') {
      i += 2;
      while (i < src.length && !delim.test(src[i])) i++;
    } else if (delim.test(ch) || ch === '#') {
      i++;
    } else {
      let j = i;
      while (j < src.length && !delim.test(src[j])) j++;
      out.add(src.slice(i, j));
      i = j;
    }
  }
  return out;
}

test('the corpus mentions every native, prelude function, core macro and special form', () => {
  const seen = new Set<string>();
  for (const { cases } of parsed) for (const c of cases) for (const t of tokens(c.source)) seen.add(t);
  const names = [
    ...NATIVES.map((b) => b.name).filter((n) => !n.startsWith('rtfs.core/')),
    ...PRELUDE_NAMES,
    ...CORE_MACROS.keys(),
    ...SPECIAL_FORM_NAMES,
  ];
  const missing = [...new Set(names)].filter((n) => !seen.has(n)).sort();
  assert.deepEqual(missing, [], `names the corpus never uses: ${missing.join(' ')}`);
});

test('the corpus parser and runner can fail', () => {
  const [c] = parseCorpus('self', '(+ 1 2)\n;=> 4\n');
  assert.match(check(c, createRuntime(), false) ?? '', /expected 4, got 3/);
  const [e] = parseCorpus('self', '(/ 1 0)\n;!! index\n');
  assert.match(check(e, createRuntime(), false) ?? '', /expected error index, got error arithmetic/);
  assert.throws(() => parseCorpus('self', '(+ 1 2)\n'), /without an expectation/);
  assert.deepEqual([...tokens('(map "filter" ; reduce\n #"x y" \\a :keys ^:k fn)')].sort(), [':k', ':keys', 'fn', 'map']);
});

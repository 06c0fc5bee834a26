/**
 * The documentation is tested: docs/stdlib.md names every standard function, docs/rtfs.md names
 * every special form and core macro, and every example of the guide written with `;=>` evaluates to
 * the value (or the error) it shows. Calls in those examples are answered by the guide's own
 * `mocks.rtfs` block, loaded the way `rtfs eval --host` loads a host file.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NATIVES } from '../src/rtfs/stdlib/natives.js';
import { PRELUDE_NAMES } from '../src/rtfs/stdlib/prelude.js';
import { CORE_MACROS } from '../src/rtfs/macros.js';
import { SPECIAL_FORM_NAMES } from '../src/rtfs/compiler.js';
import { Closure, Keyword, RtfsError, createRuntime, evaluate, isMap, prStr, type CallHandler, type Runtime, type Value } from '../src/rtfs/index.js';

/** The repository root: the nearest ancestor with a package.json (works from test/ and dist/test/). */
function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('docs.test: cannot find the repository root');
    dir = up;
  }
  return dir;
}

const root = repoRoot();
const guide = readFileSync(join(root, 'docs', 'rtfs.md'), 'utf8');
const stdlib = readFileSync(join(root, 'docs', 'stdlib.md'), 'utf8');

/** Characters that may be part of an RTFS symbol: a name "appears" only as a whole token. */
const SYMBOL_CHAR = /[\p{L}\p{N}*+!\-_'?<>=/.&%:$]/u;

function mentions(text: string, name: string): boolean {
  let from = 0;
  for (;;) {
    const i = text.indexOf(name, from);
    if (i < 0) return false;
    const before = i > 0 ? text[i - 1] : ' ';
    const after = text[i + name.length] ?? ' ';
    if (!SYMBOL_CHAR.test(before) && !SYMBOL_CHAR.test(after)) return true;
    from = i + 1;
  }
}

interface Block {
  line: number;
  body: string;
}

/** The ```clojure blocks of a markdown text, with the line each starts on. */
function clojureBlocks(md: string): Block[] {
  const out: Block[] = [];
  const lines = md.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].trim() !== '```clojure') continue;
    const start = i + 1;
    let j = start;
    while (j < lines.length && lines[j].trim() !== '```') j++;
    out.push({ line: start + 1, body: lines.slice(start, j).join('\n') });
    i = j;
  }
  return out;
}

interface Example {
  code: string;
  expected: string;
  line: number;
}

/** Splits a block into (code, expected) pairs at its `;=>` lines; a block without one has none. */
function examples(b: Block): Example[] {
  const out: Example[] = [];
  let code: string[] = [];
  b.body.split('\n').forEach((l, k) => {
    if (l.startsWith(';=>')) {
      out.push({ code: code.join('\n'), expected: l.slice(3).trim(), line: b.line + k });
      code = [];
    } else code.push(l);
  });
  return out;
}

/** The guide's `mocks.rtfs` block turned into a call handler, as `rtfs eval --host` does. */
function guideHost(): CallHandler {
  const block = clojureBlocks(guide).find((b) => b.body.startsWith(';; mocks.rtfs'));
  assert.ok(block, 'docs/rtfs.md has no block starting with ";; mocks.rtfs"');
  const rt = createRuntime();
  const table = rt.runToCompletion(rt.load(block.body, 'mocks.rtfs').main);
  assert.ok(isMap(table), 'the mocks.rtfs block must end with a map');
  const caps = new Map<string, Closure>();
  for (const [k, v] of table) {
    assert.ok(v instanceof Closure);
    caps.set(typeof k === 'string' ? k : (k as Keyword).name, v);
  }
  return (cap, args) => {
    const fn = caps.get(cap);
    if (!fn) throw new RtfsError('host', `unknown capability ${cap} in mocks.rtfs`);
    return rt.runToCompletion(fn, args);
  };
}

describe('docs/stdlib.md', () => {
  it('names every native function', () => {
    const missing = NATIVES.map((b) => b.name).filter((n) => !n.startsWith('rtfs.core/') && !mentions(stdlib, n));
    assert.deepEqual(missing, []);
  });
  it('names every prelude function and apply', () => {
    const missing = [...PRELUDE_NAMES, 'apply'].filter((n) => !mentions(stdlib, n));
    assert.deepEqual(missing, []);
  });
});

describe('docs/rtfs.md', () => {
  it('names every special form', () => {
    assert.ok(SPECIAL_FORM_NAMES.length > 10);
    const missing = SPECIAL_FORM_NAMES.filter((n) => !mentions(guide, n));
    assert.deepEqual(missing, []);
  });

  it('names every core macro', () => {
    const missing = [...CORE_MACROS.keys()].filter((n) => !mentions(guide, n));
    assert.deepEqual(missing, []);
  });

  it('the token check is not vacuous', () => {
    assert.equal(mentions('`->>`', '->'), false);
    assert.equal(mentions('(when-not x)', 'when'), false);
    assert.equal(mentions('(when x)', 'when'), true);
  });

  const blocks = clojureBlocks(guide);
  const tested = blocks.filter((b) => examples(b).length > 0);
  it('has executable examples', () => {
    const n = tested.reduce((k, b) => k + examples(b).length, 0);
    assert.ok(n >= 80, `only ${n} executable examples`);
  });

  const onCall = guideHost();
  for (const b of tested) {
    it(`example block at line ${b.line}`, () => {
      // Definitions carry over between the examples of one block.
      const runtime: Runtime = createRuntime();
      for (const ex of examples(b)) {
        const where = `docs/rtfs.md:${ex.line}: ${ex.code.trim().split('\n')[0]}`;
        let got: string;
        try {
          const v: Value = evaluate(ex.code, { runtime, onCall, file: '<docs>', fuel: 50_000_000 });
          got = prStr(v);
        } catch (e) {
          if (!(e instanceof RtfsError)) throw e;
          got = `error[${e.code}]: ${e.message}`;
        }
        assert.equal(got, ex.expected, where);
      }
    });
  }
});

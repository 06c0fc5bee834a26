// The `rtfs` command-line tool: eval, check, repl, help, exit codes. Runs the compiled CLI.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../src/cli/rtfs.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'rtfs-cli-'));

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function rtfs(args: string[], input?: string): Run {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    input,
    encoding: 'utf8',
    cwd: dir,
    env: { ...process.env, RTFS_HISTORY: join(dir, 'history') },
    timeout: 30_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

const noStack = (s: string): void => assert.doesNotMatch(s, /\n\s+at .*\.js:\d+/, `unexpected stack trace:\n${s}`);

const HOST = file(
  'host.rtfs',
  `;; mock capabilities
{"svc.get" (fn [& args] {:id (first args) :argc (count args)})
 :svc.double (fn [x] (* 2 x))}
`,
);

// ---------------------------------------------------------------------------------------------
// eval

test('eval -e prints the value of the last form', () => {
  const r = rtfs(['eval', '-e', '(def x 4) (reduce + (map inc [x 5 6]))']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, '18\n');
  assert.equal(r.stderr, '');
  const s = rtfs(['eval', '--expr', '{:a [1 "two" :three]}']);
  assert.equal(s.stdout, '{:a [1 "two" :three]}\n');
});

test('eval FILE evaluates a file', () => {
  const p = file('sq.rtfs', '(defn square [x] (* x x))\n(map square (range 1 5))\n');
  const r = rtfs(['eval', p]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, '[1 4 9 16]\n');
});

test('a compile error shows code, file:line:col and a caret, exit 1', () => {
  const p = file('bad.rtfs', '(def a 1)\n(+ a\n   (undefined-fn 2))\n');
  const r = rtfs(['eval', p]);
  assert.equal(r.status, 1);
  assert.equal(r.stdout, '');
  const lines = r.stderr.split('\n');
  assert.equal(lines[0], 'error[unbound-symbol]: unbound symbol `undefined-fn`');
  assert.equal(lines[1], `  --> ${p}:3:5`);
  assert.ok(lines.includes('3 |    (undefined-fn 2))'), r.stderr);
  assert.ok(lines.includes('  |     ^'), r.stderr);
  noStack(r.stderr);
  // The same with -e: the position is in <expr>.
  const e = rtfs(['eval', '-e', '(+ 1 (undefined-fn 2))']);
  assert.equal(e.status, 1);
  assert.match(e.stderr, /^error\[unbound-symbol\]: unbound symbol `undefined-fn`\n {2}--> <expr>:1:7\n/);
});

test('division by zero is a runtime error at the position of the division', () => {
  const r = rtfs(['eval', '-e', '(let [x 0]\n  (inc (/ 10 x)))']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^error\[arithmetic\]: division by zero\n {2}--> <expr>:2:8\n/);
  assert.ok(r.stderr.includes('2 |   (inc (/ 10 x)))\n  |        ^'), r.stderr);
  noStack(r.stderr);
});

test('--host answers capability calls with RTFS functions and passes the arguments through', () => {
  const r = rtfs(['eval', '--host', HOST, '-e', '[(call "svc.get" 7 "x" :y) (call :svc.double 21)]']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, '[{:id 7 :argc 3} 42]\n');
});

test('--host: an unknown capability is a host error naming the file', () => {
  const r = rtfs(['eval', '--host', HOST, '-e', '(call :svc.missing 1)']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^error\[host\]: unknown capability svc\.missing in --host file .*host\.rtfs/);
  assert.ok(r.stderr.includes('svc.double, svc.get'), r.stderr);
  // A host file that does not end with a map of functions is rejected with its name.
  const notMap = file('notmap.rtfs', '[1 2]');
  const n = rtfs(['eval', '--host', notMap, '-e', '1']);
  assert.equal(n.status, 1);
  assert.match(n.stderr, /^error\[host\]: --host file .*notmap\.rtfs must end with a map/);
  const notFn = file('notfn.rtfs', '{"a" 1}');
  const f = rtfs(['eval', '--host', notFn, '-e', '1']);
  assert.equal(f.status, 1);
  assert.match(f.stderr, /capability a must be a function, found 1/);
  noStack(n.stderr + f.stderr);
});

test('--roundtrip gives the same result as a direct run with calls inside map', () => {
  const p = file(
    'plan.rtfs',
    `(defn fetch [i] (:id (call :svc.get i)))
(plan :program
  (step "all"
    (let [ids (map fetch [1 2 3])
          doubled (map (fn [i] (call :svc.double i)) ids)]
      {:ids ids :doubled doubled :sum (reduce + doubled)})))
`,
  );
  const direct = rtfs(['eval', p, '--host', HOST]);
  const rt = rtfs(['eval', p, '--host', HOST, '--roundtrip']);
  assert.equal(direct.status, 0, direct.stderr);
  assert.equal(rt.status, 0, rt.stderr);
  assert.equal(direct.stdout, '{:ids [1 2 3] :doubled [2 4 6] :sum 12}\n');
  assert.equal(rt.stdout, direct.stdout);
});

test('--trace prints each host request on stderr', () => {
  const r = rtfs(['eval', '--host', HOST, '--trace', '-e', '(step "s" (call :svc.get 5 "z"))']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, '{:id 5 :argc 2}\n');
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 3, r.stderr);
  assert.match(lines[0], /^\[trace\] step-start "s"/);
  assert.match(lines[1], /^\[trace\] call svc\.get args: \[5 "z"\] step: s at <expr>:1:11$/);
  assert.match(lines[2], /^\[trace\] step-end "s" ok: \{:id 5 :argc 2\}/);
});

test('without --host a call fails with a clear error', () => {
  const r = rtfs(['eval', '-e', '(+ 1 (call :svc.get 1))']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^error\[host\]: no host to run capability svc\.get\n {2}--> <expr>:1:6/);
  assert.match(r.stderr, /--host FILE/);
  noStack(r.stderr);
});

test('--fuel bounds a runaway loop', () => {
  const r = rtfs(['eval', '--fuel', '5000', '-e', '(loop [i 0] (recur (inc i)))']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^error\[fuel-exhausted\]: ran out of fuel after 5000 steps/);
  const bad = rtfs(['eval', '--fuel', 'lots', '-e', '1']);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--fuel needs a positive integer/);
});

test('--json output shape for success and error', () => {
  const ok = rtfs(['eval', '--json', '-e', '(str "a" 1)']);
  assert.equal(ok.status, 0);
  assert.deepEqual(JSON.parse(ok.stdout), { ok: true, value: '"a1"' });
  const err = rtfs(['eval', '--json', '-e', '(+ 1\n (undefined-fn 2))']);
  assert.equal(err.status, 1);
  const j = JSON.parse(err.stdout);
  assert.equal(j.ok, false);
  assert.deepEqual(Object.keys(j.error).sort(), ['code', 'col', 'file', 'hint', 'line', 'message']);
  assert.equal(j.error.code, 'unbound-symbol');
  assert.equal(j.error.message, 'unbound symbol `undefined-fn`');
  assert.equal(j.error.file, '<expr>');
  assert.equal(j.error.line, 2);
  assert.equal(j.error.col, 3);
  assert.equal(typeof j.error.hint, 'string');
});

test('eval of a missing file is an io error, not a crash', () => {
  const r = rtfs(['eval', join(dir, 'nope.rtfs')]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^error\[io\]: cannot read .*nope\.rtfs: no such file/);
  noStack(r.stderr);
});

// ---------------------------------------------------------------------------------------------
// check

test('check on a good file: no diagnostics, capabilities listed sorted and unique, exit 0', () => {
  const p = file(
    'good.rtfs',
    `(defn fetch [id] (call :svc.get id))
(def later (helper 2))
(defn helper [x] (call "svc.put" x))
(plan :program (step "a" [(map fetch [1 2]) (call :audit.log "done") (call :svc.get 3)]))
`,
  );
  const r = rtfs(['check', p]);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.equal(lines.at(-2), `${p}: 0 errors, 0 warnings`);
  assert.equal(lines.at(-1), 'capabilities: :audit.log, :svc.get, :svc.put');
});

test('check reports the first error of each of two forms with positions, exit 1', () => {
  const p = file('two.rtfs', '(defn f [x]\n  (+ x (nope x)))\n(def ok 1)\n(let [a 1]\n  (if a))\n(f ok)\n');
  const r = rtfs(['check', p]);
  assert.equal(r.status, 1);
  assert.ok(r.stdout.includes(`error[unbound-symbol]: unbound symbol \`nope\`\n  --> ${p}:2:9`), r.stdout);
  assert.ok(r.stdout.includes(`  --> ${p}:5:3`), r.stdout);
  assert.match(r.stdout, /error\[compile\]: if takes a test/);
  assert.ok(r.stdout.includes(`${p}: 2 errors, 0 warnings`), r.stdout);
  assert.ok(r.stdout.includes('capabilities: none'), r.stdout);
});

test('check --json lists diagnostics and capabilities', () => {
  const p = file('j.rtfs', '(call :a.b 1)\n(defn map [f xs] xs)\n(undefined-thing)\n');
  const r = rtfs(['check', '--json', p]);
  assert.equal(r.status, 1);
  const j = JSON.parse(r.stdout);
  assert.equal(j.file, p);
  assert.equal(j.ok, false);
  assert.deepEqual(
    j.diagnostics.map((d: { severity: string; code: string; line: number; col: number }) => [d.severity, d.code, d.line, d.col]),
    [
      ['warning', 'shadows-core', 2, 7],
      ['error', 'unbound-symbol', 3, 2],
    ],
  );
  assert.deepEqual(j.capabilities, [{ id: 'a.b', line: 1, col: 1 }]);
  const good = rtfs(['check', '--json', file('g.rtfs', '(+ 1 2)')]);
  assert.equal(good.status, 0);
  assert.deepEqual(JSON.parse(good.stdout), { file: join(dir, 'g.rtfs'), ok: true, diagnostics: [], capabilities: [], dynamicCapabilities: false });
});

test('check stops at a parse error with its position', () => {
  const p = file('parse.rtfs', '(def a 1)\n(+ 1 (\n');
  const r = rtfs(['check', p]);
  assert.equal(r.status, 1);
  assert.match(r.stdout, new RegExp(`^error\\[parse\\]: .*\\n {2}--> ${p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:2:`));
  assert.ok(r.stdout.includes('1 error, 0 warnings'), r.stdout);
});

// ---------------------------------------------------------------------------------------------
// repl

test('repl with piped input: multi-line forms, persistent defs, :help, errors continue', () => {
  const input = [
    '(def x 20)',
    '(defn add [a',
    '         b]',
    '  (+ a b))',
    ':help',
    '(add x 22)',
    '(undefined 1)',
    '(str "a ( [" ; a comment with (',
    '     "b")',
    ':doc inc',
    '(* x 2)',
    '',
  ].join('\n');
  const r = rtfs(['repl'], input);
  assert.equal(r.status, 1, 'exit status 1: one input failed');
  const out = r.stdout.split('\n');
  assert.equal(out[0], '20');
  assert.equal(out[1], '#<fn add>');
  assert.ok(out.includes('  :doc NAME      documentation of a function, macro or special form'), r.stdout);
  const i42 = out.indexOf('42');
  assert.ok(i42 > 1, r.stdout);
  assert.equal(out[i42 + 1], '"a ( [b"');
  assert.equal(out[i42 + 2], '(inc x): x plus one');
  assert.equal(out.at(-2), '40');
  assert.match(r.stderr, /^error\[unbound-symbol\]: unbound symbol `undefined`\n {2}--> <repl>:1:2/);
  noStack(r.stderr);
});

test('repl: all inputs succeed → exit 0; :quit stops reading', () => {
  const r = rtfs(['repl'], '(def y 1)\n(inc y)\n:quit\n(this-is-never-read)\n');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, '1\n2\n');
  assert.equal(r.stderr, '');
});

test('repl --host answers calls', () => {
  const r = rtfs(['repl', '--host', HOST], '(call :svc.double 4)\n');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, '8\n');
});

// ---------------------------------------------------------------------------------------------
// help, version, usage errors

test('--help on each command, help COMMAND, --version', () => {
  const main = rtfs(['--help']);
  assert.equal(main.status, 0);
  for (const c of ['eval', 'check', 'repl']) assert.match(main.stdout, new RegExp(`rtfs ${c}`));
  assert.equal(rtfs(['help']).stdout, main.stdout);
  const expect: Record<string, RegExp[]> = {
    eval: [/--host FILE/, /--fuel N/, /--roundtrip/, /--json/, /--trace/, /rtfs eval -e '\(\+ 1 2\)'/],
    check: [/--json/, /rtfs check plan\.rtfs/],
    repl: [/:doc NAME/, /RTFS_HISTORY/, /\| rtfs repl/],
  };
  for (const [c, res] of Object.entries(expect)) {
    const r = rtfs([c, '--help']);
    assert.equal(r.status, 0, c);
    for (const re of res) assert.match(r.stdout, re, `${c} --help`);
    assert.equal(rtfs(['help', c]).stdout, r.stdout);
    assert.equal(rtfs([c, '-h']).stdout, r.stdout);
  }
  const pkg = JSON.parse(readFileSync(fileURLToPath(new URL('../../package.json', import.meta.url)), 'utf8')) as { version: string };
  assert.equal(rtfs(['--version']).stdout, `rtfs ${pkg.version}\n`);
});

test('unknown command or option: message, hint, exit 2', () => {
  const c = rtfs(['frobnicate']);
  assert.equal(c.status, 2);
  assert.match(c.stderr, /unknown command `frobnicate`/);
  assert.match(c.stderr, /rtfs --help/);
  const o = rtfs(['eval', '--bogus', '-e', '1']);
  assert.equal(o.status, 2);
  assert.match(o.stderr, /unknown option --bogus/);
  assert.match(o.stderr, /rtfs eval --help/);
  const none = rtfs(['eval']);
  assert.equal(none.status, 2);
  assert.match(none.stderr, /nothing to evaluate/);
  assert.equal(rtfs([]).status, 2);
});

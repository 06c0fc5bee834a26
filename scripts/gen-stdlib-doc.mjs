#!/usr/bin/env node
/**
 * Generates docs/stdlib.md, the RTFS standard library reference, from the compiled kernel.
 *
 * Sources: the natives (`NATIVES` of dist/src/rtfs/stdlib/natives.js, each with name, arity and
 * `doc`), `apply` (a kernel builtin), and the prelude functions (`PRELUDE_NAMES`, written in RTFS in
 * PRELUDE_SOURCE). Prelude functions carry no doc string: a `;;` comment directly above a `defn` is
 * used when there is one, else the one-line description in PRELUDE_DOCS below. Prelude arities are
 * read from the compiled functions.
 *
 * Usage (from the repository root, after a build):
 *   npx tsc -p tsconfig.json && node scripts/gen-stdlib-doc.mjs          # writes docs/stdlib.md
 *   node scripts/gen-stdlib-doc.mjs --check                              # exit 1 if out of date
 */
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = (p) => pathToFileURL(join(root, 'dist', p)).href;

const { NATIVES } = await import(dist('src/rtfs/stdlib/natives.js'));
const { KERNEL_BUILTINS } = await import(dist('src/rtfs/stdlib/kernel.js'));
const { PRELUDE_NAMES, PRELUDE_SOURCE } = await import(dist('src/rtfs/stdlib/prelude.js'));
const { createRuntime } = await import(dist('src/rtfs/index.js'));
const modules = {
  numbers: (await import(dist('src/rtfs/stdlib/numbers.js'))).numbersBuiltins,
  predicates: (await import(dist('src/rtfs/stdlib/predicates.js'))).predicatesBuiltins,
  strings: (await import(dist('src/rtfs/stdlib/strings.js'))).stringsBuiltins,
  collections: (await import(dist('src/rtfs/stdlib/collections.js'))).collectionsBuiltins,
  regex: (await import(dist('src/rtfs/stdlib/regex.js'))).regexBuiltins,
  json: (await import(dist('src/rtfs/stdlib/json.js'))).jsonBuiltins,
  misc: (await import(dist('src/rtfs/stdlib/misc.js'))).miscBuiltins,
};

/** One-line descriptions of the prelude functions (they have no doc strings). */
const PRELUDE_DOCS = {
  map: ['(map f coll & colls)', 'f applied to each element (to the i-th elements of several collections, up to the shortest), as a vector'],
  mapv: ['(mapv f coll & colls)', 'same as map (map already returns a vector)'],
  'map-indexed': ['(map-indexed f coll)', '(f index element) for each element, as a vector'],
  filter: ['(filter pred coll)', 'the elements for which pred is truthy, as a vector'],
  filterv: ['(filterv pred coll)', 'same as filter'],
  remove: ['(remove pred coll)', 'the elements for which pred is falsy, as a vector'],
  keep: ['(keep f coll)', 'the non-nil results of (f element), as a vector'],
  'keep-indexed': ['(keep-indexed f coll)', 'the non-nil results of (f index element), as a vector'],
  mapcat: ['(mapcat f & colls)', 'the results of map concatenated, as a vector'],
  reduce: ['(reduce f [init] coll)', 'folds coll with f from the left; without init, the first element is the start and an empty coll gives (f)'],
  'reduce-kv': ['(reduce-kv f init coll)', '(f acc key value) over a map, or (f acc index element) over a vector; nil gives init'],
  reductions: ['(reductions f [init] coll)', 'the intermediate values of reduce, as a vector'],
  some: ['(some pred coll)', 'the first truthy (pred element), or nil'],
  'every?': ['(every? pred coll)', 'true if pred is truthy for every element (true for an empty coll)'],
  'not-any?': ['(not-any? pred coll)', '(not (some pred coll))'],
  'not-every?': ['(not-every? pred coll)', '(not (every? pred coll))'],
  'take-while': ['(take-while pred coll)', 'the leading elements for which pred is truthy, as a vector'],
  'drop-while': ['(drop-while pred coll)', 'the elements after the leading run for which pred is truthy, as a vector'],
  'split-with': ['(split-with pred coll)', '[(take-while pred coll) (drop-while pred coll)]'],
  sort: ['(sort [cmp] coll)', 'the elements sorted (stable) by the natural total order, or by cmp (a boolean "before?" or a -/0/+ comparator), as a vector'],
  'sort-by': ['(sort-by keyfn [cmp] coll)', 'the elements sorted (stable) by (keyfn element), as a vector'],
  'group-by': ['(group-by f coll)', 'a map from each (f element) to the vector of elements with that result'],
  'partition-by': ['(partition-by f coll)', 'the elements split into vectors each time (f element) changes'],
  'min-key': ['(min-key k x & more)', 'the argument for which (k x) is least (the last one on ties)'],
  'max-key': ['(max-key k x & more)', 'the argument for which (k x) is greatest (the last one on ties)'],
  update: ['(update m k f & args)', 'm with the value at k replaced by (f old-value & args)'],
  'update-in': ['(update-in m ks f & args)', 'm with the value at the key path ks replaced by (f old-value & args), creating maps as needed'],
  'merge-with': ['(merge-with f & maps)', 'merge, combining the values of a key present in several maps with (f earlier later)'],
  'update-vals': ['(update-vals m f)', 'm with f applied to every value'],
  'update-keys': ['(update-keys m f)', 'm with f applied to every key'],
  juxt: ['(juxt & fs)', 'a function returning the vector of the results of each f on its arguments'],
  comp: ['(comp & fs)', 'the composition of the functions (the rightmost is applied first); (comp) is identity'],
  partial: ['(partial f & args)', 'f with its first arguments fixed'],
  complement: ['(complement f)', 'a function returning (not (apply f args))'],
  constantly: ['(constantly x)', 'a function that takes any arguments and returns x'],
  fnil: ['(fnil f x [y [z]])', 'f with nil first (second, third) arguments replaced by the defaults'],
  'every-pred': ['(every-pred p & ps)', 'a predicate true when every predicate holds for every argument'],
  'some-fn': ['(some-fn p & ps)', 'a function returning the first truthy result of a predicate on an argument'],
  repeatedly: ['(repeatedly n f)', 'a vector of n results of calling (f) with no arguments'],
  'run!': ['(run! proc coll)', 'calls proc on each element for its result, returns nil (pure code: mostly useful for errors)'],
};

/** Groups: [title, intro, names or a module]. Natives not placed in a named group fall back to their module's group. */
const SUBGROUPS = {
  maps: ['get', 'get-in', 'assoc', 'assoc-in', 'dissoc', 'merge', 'select-keys', 'keys', 'vals', 'find', 'contains?', 'key', 'val', 'zipmap', 'hash-map', 'frequencies'],
  sets: ['hash-set', 'set', 'disj', 'clojure.set/union', 'clojure.set/intersection', 'clojure.set/difference'],
  cstring: (b) => b.name.startsWith('clojure.string/'),
  tests: ['=', 'not=', '!=', 'identical?', 'not', 'identity', 'boolean', 'compare', 'hash'],
};

const GROUPS = [
  { id: 'numbers', title: 'Numbers and arithmetic', intro: 'Integers are exact 64-bit; overflow is an `arithmetic` error. Floats are IEEE doubles and always print with a decimal point. Mixed integer/float arithmetic gives a float.' },
  { id: 'equality', title: 'Equality, logic and comparison', intro: '`=` is structural and type-strict (`1` is not `1.0`; a vector equals a list with the same elements). Only `nil` and `false` are falsy.' },
  { id: 'predicates', title: 'Type predicates' },
  { id: 'strings', title: 'Strings', intro: 'Strings are sequences of characters; a character is a one-character string.' },
  { id: 'cstring', title: 'clojure.string', intro: 'Also reachable with the prefixes `str/`, `string/` and `s/` (for example `str/join`).' },
  { id: 'seqs', title: 'Sequences and collections', intro: 'Sequence functions are eager and return vectors (a list stays a list only where noted).' },
  { id: 'maps', title: 'Maps' },
  { id: 'sets', title: 'Sets' },
  { id: 'hof', title: 'Higher-order functions (prelude)', intro: 'These are written in RTFS (the prelude) because they call RTFS functions; they are ordinary functions and can be passed as values.', prelude: true },
  { id: 'regex', title: 'Regular expressions', intro: 'Regex literals are written `#"..."`; they use JavaScript regular expression syntax.' },
  { id: 'json', title: 'JSON' },
  { id: 'misc', title: 'Errors and miscellany', intro: 'See the guide (docs/rtfs.md, "Errors") for `throw`, `try` and catching by `:type`.' },
];

const MODULE_GROUP = { numbers: 'numbers', predicates: 'predicates', strings: 'strings', collections: 'seqs', regex: 'regex', json: 'json', misc: 'misc' };

function groupOf(b, moduleName) {
  if (SUBGROUPS.cstring(b)) return 'cstring';
  if (SUBGROUPS.maps.includes(b.name)) return 'maps';
  if (SUBGROUPS.sets.includes(b.name)) return 'sets';
  if (SUBGROUPS.tests.includes(b.name)) return 'equality';
  return MODULE_GROUP[moduleName] ?? 'misc';
}

function arityText(min, max) {
  if (max === Infinity) return `${min}+`;
  if (min === max) return `${min}`;
  return `${min}–${max}`;
}

/** Splits a doc `(name args): description` into usage and description. */
function splitDoc(name, doc) {
  if (doc.startsWith('(')) {
    // The usage ends at the first "): " (or at the end of alternatives like "(a) or (b): ").
    const m = /^(.*?\)):\s+(.*)$/s.exec(doc);
    if (m) return [m[1], m[2]];
  }
  return [`(${name} ...)`, doc];
}

const esc = (s) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
const code = (s) => (s.includes('`') ? `\`\` ${s} \`\`` : `\`${s}\``);

/** The `;;` comment lines directly above `(defn name`, if any. */
function preludeComment(name) {
  const lines = PRELUDE_SOURCE.split('\n');
  const i = lines.findIndex((l) => l.startsWith(`(defn ${name}`) && /^\(defn \S+/.exec(l)[0] === `(defn ${name}`);
  if (i < 0) return null;
  const out = [];
  for (let k = i - 1; k >= 0 && /^;;\s?/.test(lines[k]); k--) {
    const text = lines[k].replace(/^;;\s?/, '');
    if (/^-+$/.test(text.trim())) break;
    out.unshift(text);
  }
  return out.length > 0 ? out.join(' ') : null;
}

/** The prelude section (`;; Title` after a `;; ----` rule) each prelude name is defined in. */
function preludeSections() {
  const sections = new Map();
  let current = 'Prelude';
  const lines = PRELUDE_SOURCE.split('\n');
  lines.forEach((l, i) => {
    if (/^;;\s*-{5,}/.test(l) && lines[i + 1]?.startsWith(';;')) current = lines[i + 1].replace(/^;;\s*/, '');
    const m = /^\(defn (\S+)/.exec(l);
    if (m) sections.set(m[1], current);
  });
  return sections;
}

function preludeArity(rt, name) {
  const v = rt.findCell(name)?.value;
  const arities = v?.code?.arities;
  if (!arities) return '?';
  const fixed = arities.filter((a) => !a.variadic).map((a) => a.nparams).sort((x, y) => x - y);
  const rest = arities.find((a) => a.variadic);
  const min = Math.min(...arities.map((a) => a.nparams));
  const hi = rest ? rest.nparams : Math.max(...fixed);
  const contiguous = fixed.every((n, i) => n === min + i) && (fixed.length === 0 || !rest || fixed[fixed.length - 1] >= rest.nparams - 1);
  if (!contiguous) return arities.map((a) => (a.variadic ? `${a.nparams}+` : `${a.nparams}`)).join(', ');
  return arityText(min, rest ? Infinity : hi);
}

// -------------------------------------------------------------------------------------------------

const rows = new Map(GROUPS.map((g) => [g.id, []]));
const seen = new Set();
for (const [moduleName, builtins] of Object.entries(modules)) {
  for (const b of builtins) {
    if (b.name.startsWith('rtfs.core/')) continue;
    const [usage, desc] = splitDoc(b.name, b.doc);
    rows.get(groupOf(b, moduleName)).push({ name: b.name, usage, arity: arityText(b.minArity, b.maxArity), desc });
    seen.add(b.name);
  }
}
// Natives registered outside the per-module lists (none today) still get documented.
for (const b of NATIVES) {
  if (seen.has(b.name) || b.name.startsWith('rtfs.core/')) continue;
  const [usage, desc] = splitDoc(b.name, b.doc);
  rows.get('misc').push({ name: b.name, usage, arity: arityText(b.minArity, b.maxArity), desc });
  seen.add(b.name);
}
const rt = createRuntime();
const sections = preludeSections();
const missing = [];
for (const name of PRELUDE_NAMES) {
  const comment = preludeComment(name);
  const table = PRELUDE_DOCS[name];
  if (!comment && !table) missing.push(name);
  rows.get('hof').push({
    name,
    usage: table ? table[0] : `(${name} ...)`,
    arity: preludeArity(rt, name),
    desc: comment ?? table?.[1] ?? '',
    section: sections.get(name) ?? 'Prelude',
  });
}
// `apply` is run by the machine itself (kernel.ts); it belongs with the prelude's function tools.
for (const b of KERNEL_BUILTINS) {
  if (b.name.startsWith('rtfs.core/') || seen.has(b.name)) continue;
  rows.get('hof').push({ name: b.name, usage: '(apply f & args coll)', arity: arityText(b.minArity, b.maxArity), desc: 'calls f with the arguments followed by the elements of coll: (apply f a b [c d]) is (f a b c d)', section: 'Functions of functions' });
  seen.add(b.name);
}

if (missing.length > 0) {
  process.stderr.write(`gen-stdlib-doc: no description for prelude function(s): ${missing.join(', ')} (add them to PRELUDE_DOCS)\n`);
  process.exit(1);
}

const out = [];
out.push('# RTFS standard library reference');
out.push('');
out.push('<!-- Generated by scripts/gen-stdlib-doc.mjs from the compiled kernel; do not edit by hand.');
out.push('     Regenerate: npx tsc -p tsconfig.json && node scripts/gen-stdlib-doc.mjs -->');
out.push('');
out.push('Every function available to RTFS programs without definition. The language itself (special forms,');
out.push('macros, types, the host boundary) is described in [the guide](rtfs.md). All functions are pure:');
out.push('none reads the clock, draws random numbers or does I/O — effects go through `(call ...)`.');
out.push('');
out.push('Arity: `2` exactly two arguments, `1–3` one to three, `1+` one or more. Names written `a/b` are');
out.push('single names (there are no namespaces); `rtfs.core/NAME` and `clojure.core/NAME` are accepted as');
out.push('aliases of `NAME`. Calling a standard function with a wrong number of arguments is a compile error.');
out.push('');
out.push('Contents:');
for (const g of GROUPS) out.push(`- [${g.title}](#${g.title.toLowerCase().replace(/[^a-z0-9 -]/g, '').replace(/ /g, '-')}) (${rows.get(g.id).length})`);
out.push('');
for (const g of GROUPS) {
  const rs = rows.get(g.id);
  out.push(`## ${g.title}`);
  out.push('');
  if (g.intro) {
    out.push(g.intro);
    out.push('');
  }
  const bySection = new Map();
  for (const r of rs) {
    const s = g.prelude ? r.section : '';
    if (!bySection.has(s)) bySection.set(s, []);
    bySection.get(s).push(r);
  }
  for (const [section, list] of bySection) {
    if (section) {
      out.push(`### ${section}`);
      out.push('');
    }
    out.push('| Function | Arity | Description |');
    out.push('|---|---|---|');
    for (const r of list) out.push(`| ${esc(code(r.usage))} | ${r.arity} | ${esc(r.desc)} |`);
    out.push('');
  }
}
const text = out.join('\n');

const target = join(root, 'docs', 'stdlib.md');
if (process.argv.includes('--check')) {
  let current = '';
  try {
    current = readFileSync(target, 'utf8');
  } catch {
    // missing counts as out of date
  }
  if (current !== text) {
    process.stderr.write('docs/stdlib.md is out of date: run node scripts/gen-stdlib-doc.mjs\n');
    process.exit(1);
  }
} else {
  mkdirSync(dirname(target), { recursive: true });
  writeFileSync(target, text);
  process.stdout.write(`wrote ${target} (${[...rows.values()].reduce((n, r) => n + r.length, 0)} functions)\n`);
}

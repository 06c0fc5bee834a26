/**
 * The core macros of RTFS, written as TypeScript form transformers.
 *
 * Owns: `defn`, `when`, `cond`, `case`, `->`, `->>`, `if-let`, `for`, `doseq`, `dotimes`, and the
 * other Clojure conveniences, plus the original's `step-if` / `step-loop` spellings.
 * Must never: evaluate code. Expansions refer to core functions as `rtfs.core/NAME` so that
 * user bindings cannot capture them.
 */
import { MetaForm, posOf, type Form } from './reader.js';
import type { Compiler, MacroFn } from './compiler.js';
import { List, Keyword, RList, RtfsError, Sym, IMap, valueEquals, type Value, type RMap } from './values.js';
import { prStr } from './printer.js';

const sym = (name: string): Sym => new Sym(name);
const core = (name: string): Sym => new Sym(`rtfs.core/${name}`);
const list = (...items: Form[]): RList => RList.from(items as Value[]);
const vec = (...items: Form[]): List<Value> => List(items as Value[]);

function args(form: RList): Form[] {
  return form.rest().toArray();
}

function fail(form: RList, msg: string, hint?: string): never {
  throw new RtfsError('compile', msg, posOf(form), undefined, hint);
}

function need(form: RList, n: number, usage: string): Form[] {
  const a = args(form);
  if (a.length < n) fail(form, `${(form.first() as Sym).name} needs at least ${n} argument${n === 1 ? '' : 's'}`, usage);
  return a;
}

const defn: MacroFn = (form) => {
  const a = need(form, 2, '(defn name [params] body)');
  const nameForm = a[0] instanceof MetaForm ? a[0].form : a[0];
  if (!(nameForm instanceof Sym)) fail(form, 'defn needs a symbol as its name', '(defn name [params] body)');
  let rest = a.slice(1);
  if (typeof rest[0] === 'string' && rest.length > 1) rest = rest.slice(1); // docstring
  if (IMap.isMap(rest[0]) && rest.length > 1) rest = rest.slice(1); // attribute map
  return list(sym('def'), nameForm, list(sym('fn'), nameForm, ...rest));
};

const when: MacroFn = (form) => {
  const [test, ...body] = need(form, 1, '(when test body...)');
  return list(sym('if'), test, list(sym('do'), ...body), null);
};

const whenNot: MacroFn = (form) => {
  const [test, ...body] = need(form, 1, '(when-not test body...)');
  return list(sym('if'), test, null, list(sym('do'), ...body));
};

const ifNot: MacroFn = (form) => {
  const [test, then, els] = need(form, 2, '(if-not test then else)');
  return list(sym('if'), test, els ?? null, then);
};

const cond: MacroFn = (form) => {
  const a = args(form);
  if (a.length % 2 !== 0) fail(form, 'cond needs test/expression pairs (an even number of forms)', '(cond test1 expr1 test2 expr2 :else default)');
  let out: Form = null;
  for (let i = a.length - 2; i >= 0; i -= 2) out = list(sym('if'), a[i], a[i + 1], out);
  return out;
};

const and: MacroFn = (form, c) => {
  const a = args(form);
  if (a.length === 0) return true;
  if (a.length === 1) return a[0];
  const g = c.gensym('and');
  return list(sym('let'), vec(g, a[0]), list(sym('if'), g, list(sym('and'), ...a.slice(1)), g));
};

const or: MacroFn = (form, c) => {
  const a = args(form);
  if (a.length === 0) return null;
  if (a.length === 1) return a[0];
  const g = c.gensym('or');
  return list(sym('let'), vec(g, a[0]), list(sym('if'), g, g, list(sym('or'), ...a.slice(1))));
};

function thread(form: RList, last: boolean): Form {
  const [x, ...steps] = need(form, 1, last ? '(->> x (f a) g)' : '(-> x (f a) g)');
  let acc: Form = x;
  for (const s of steps) {
    if (s instanceof RList && s.count > 0) {
      const items = s.toArray();
      acc = last ? list(...items, acc) : list(items[0], acc, ...items.slice(1));
    } else acc = list(s, acc);
  }
  return acc;
}

const asThread: MacroFn = (form) => {
  const [x, name, ...steps] = need(form, 2, '(as-> x name (f name) ...)');
  let acc: Form = x;
  for (const s of steps) acc = list(sym('let'), vec(name, acc), s);
  return acc;
};

function someThread(form: RList, c: Compiler, last: boolean): Form {
  const [x, ...steps] = need(form, 1, '(some-> x f g)');
  const g = c.gensym('some');
  let acc: Form = x;
  for (const s of steps) {
    const call = s instanceof RList && s.count > 0 ? (last ? list(...s.toArray(), g) : list(s.first(), g, ...s.rest().toArray())) : list(s, g);
    acc = list(sym('let'), vec(g, acc), list(sym('if'), list(core('nil?'), g), null, call));
  }
  return acc;
}

function condThread(form: RList, c: Compiler, last: boolean): Form {
  const [x, ...clauses] = need(form, 1, '(cond-> x test (f) ...)');
  if (clauses.length % 2 !== 0) fail(form, 'cond-> needs test/form pairs');
  const g = c.gensym('cond');
  const bindings: Form[] = [g, x];
  for (let i = 0; i < clauses.length; i += 2) {
    const s = clauses[i + 1];
    const step = s instanceof RList && s.count > 0 ? (last ? list(...s.toArray(), g) : list(s.first(), g, ...s.rest().toArray())) : list(s, g);
    bindings.push(g, list(sym('if'), clauses[i], step, g));
  }
  return list(sym('let'), vec(...bindings), g);
}

function ifLetLike(form: RList, c: Compiler, someOnly: boolean, isWhen: boolean): Form {
  const a = need(form, 2, isWhen ? '(when-let [x expr] body...)' : '(if-let [x expr] then else)');
  const bv = a[0] instanceof MetaForm ? a[0].form : a[0];
  if (!List.isList(bv) || (bv as List<Value>).size !== 2) fail(form, 'needs a binding vector with exactly one name and one value', '[x expr]');
  const [pat, expr] = (bv as List<Value>).toArray();
  const g = c.gensym('tmp');
  const test = someOnly ? list(sym('if'), list(core('nil?'), g), false, true) : g;
  const then = isWhen ? list(sym('let'), vec(pat, g), ...a.slice(1)) : list(sym('let'), vec(pat, g), a[1]);
  const els = isWhen ? null : (a[2] ?? null);
  return list(sym('let'), vec(g, expr), list(sym('if'), test, then, els));
}

const caseMacro: MacroFn = (form, c) => {
  const [x, ...clauses] = need(form, 1, '(case x v1 r1 (v2 v3) r2 default)');
  const g = c.gensym('case');
  const hasDefault = clauses.length % 2 === 1;
  let out: Form = hasDefault
    ? clauses[clauses.length - 1]
    : list(sym('throw'), list(core('ex-info'), list(core('str'), 'no case clause matches ', list(core('pr-str'), g)), IMap<Value, Value>().set(Keyword.of('type'), Keyword.of('case'))));
  const n = hasDefault ? clauses.length - 1 : clauses.length;
  const seen: Value[] = [];
  for (let i = 0; i < n; i += 2) {
    const consts = clauses[i] instanceof RList ? (clauses[i] as RList).toArray() : [clauses[i] as Value];
    for (const k of consts) {
      if (seen.some((x) => valueEquals(x, k))) fail(form, `duplicate case test constant ${prStr(k)}`);
      seen.push(k);
    }
  }
  for (let i = n - 2; i >= 0; i -= 2) {
    const k = clauses[i];
    const test = k instanceof RList ? list(core('contains?'), list(sym('quote'), List(k.toArray())).rest().first() === null ? null : list(core('set'), list(sym('quote'), List(k.toArray()))), g) : list(core('='), g, list(sym('quote'), k));
    out = list(sym('if'), test, clauses[i + 1], out);
  }
  return list(sym('let'), vec(g, x), out);
};

/** `for` and `doseq` share the expansion: nested `mapcat` with `:let`, `:when`, `:while`. */
function comprehension(form: RList, usage: string): Form {
  const [bv, ...body] = need(form, 2, usage);
  const b = bv instanceof MetaForm ? bv.form : bv;
  if (!List.isList(b) || (b as List<Value>).size % 2 !== 0) fail(form, 'the binding vector needs name/collection pairs', usage);
  const items = (b as List<Value>).toArray();
  const bodyForm: Form = body.length === 1 ? body[0] : list(sym('do'), ...body);
  const build = (i: number): Form => {
    if (i >= items.length) return vec(bodyForm);
    const k = items[i];
    if (k instanceof Keyword) {
      const v = items[i + 1];
      const inner = build(i + 2);
      if (k.name === 'let') return list(sym('let'), v, inner);
      if (k.name === 'when') return list(sym('if'), v, inner, vec());
      if (k.name === 'while') return list(sym('if'), v, inner, vec());
      fail(form, `unknown ${usage.slice(1, usage.indexOf(' '))} modifier :${k.name}`, 'use :let, :when or :while');
    }
    let coll: Form = items[i + 1];
    // `:while` right after a binding stops that binding's iteration.
    if (items[i + 2] instanceof Keyword && (items[i + 2] as Keyword).name === 'while') {
      coll = list(core('take-while'), list(sym('fn'), vec(k), items[i + 3]), coll);
    }
    return list(core('mapcat'), list(sym('fn'), vec(k), build(i + 2)), coll);
  };
  return build(0);
}

const forMacro: MacroFn = (form) => comprehension(form, '(for [x xs :when (p x)] body)');
const doseq: MacroFn = (form) => list(sym('do'), comprehension(form, '(doseq [x xs] body...)'), null);

const dotimes: MacroFn = (form, c) => {
  const [bv, ...body] = need(form, 1, '(dotimes [i n] body...)');
  const b = bv instanceof MetaForm ? bv.form : bv;
  if (!List.isList(b) || (b as List<Value>).size !== 2) fail(form, 'dotimes needs [name count]', '(dotimes [i n] body...)');
  const [name, n] = (b as List<Value>).toArray();
  const limit = c.gensym('n');
  return list(sym('let'), vec(limit, n), list(sym('loop'), vec(name, 0), list(sym('when'), list(core('<'), name, limit), ...body, list(sym('recur'), list(core('inc'), name)))));
};

const declare: MacroFn = () => null;
const comment: MacroFn = () => null;

/** The original's `step-if`: a step around an `if` whose falsiness also counts 0, "" and empties. */
/** Drops the original's step options (`:expose-context v`, `:context-keys v`) from the front. */
function withoutStepOptions(a: Form[]): Form[] {
  let i = 0;
  while (i + 1 < a.length && a[i] instanceof Keyword && ['expose-context', 'context-keys', 'params', 'merge-policy'].includes((a[i] as Keyword).name)) i += 2;
  return a.slice(i);
}

const stepIf: MacroFn = (form) => {
  const a = withoutStepOptions(args(form));
  if (a.length < 2) fail(form, 'step-if needs a test and a then branch', '(step-if test then else)');
  return list(sym('step'), 'step-if', list(sym('if'), list(core('broad-truthy?'), a[0]), a[1], a[2] ?? null));
};

/** The original's `step-loop`: a while loop (capped at 10,000 iterations) inside a step. */
const stepLoop: MacroFn = (form, c) => {
  const a = withoutStepOptions(args(form));
  if (a.length < 2) fail(form, 'step-loop needs a test and a body', '(step-loop test body)');
  const i = c.gensym('i');
  return list(
    sym('step'),
    'step-loop',
    list(
      sym('loop'),
      vec(i, 0),
      list(
        sym('if'),
        list(core('broad-truthy?'), a[0]),
        list(sym('if'), list(core('>='), i, 10000), list(sym('throw'), list(core('ex-info'), 'step-loop exceeded 10000 iterations', IMap<Value, Value>().set(Keyword.of('type'), Keyword.of('step-loop')))), list(sym('do'), ...a.slice(1), list(sym('recur'), list(core('inc'), i)))),
        null,
      ),
    ),
  );
};

/** The global a `(capability ...)` form defines: hosts find capabilities by this prefix. */
export const CAPABILITY_PREFIX = '__capability__';

/**
 * `(capability :id {manifest} (fn [input] ...))` defines a capability in RTFS. It evaluates to
 * the capability's description and defines it under a name hosts can find.
 */
const capability: MacroFn = (form) => {
  const [id, manifest, impl] = args(form);
  if (!(id instanceof Keyword) && typeof id !== 'string') fail(form, 'capability needs an id keyword', '(capability :acme.tool {:description ".."} (fn [input] ...))');
  if (impl === undefined) fail(form, 'capability needs a manifest map and a function', '(capability :acme.tool {:description ".."} (fn [input] ...))');
  const idText = id instanceof Keyword ? id.name : id;
  return list(sym('def'), new Sym(`${CAPABILITY_PREFIX}${idText.replace(/\//g, '%2F')}`), list(core('make-capability'), idText, manifest, impl));
};

/** `(with-timeout ms body...)`: the body as a step with a time limit (seed 003 §1.c). */
const withTimeout: MacroFn = (form) => {
  const [ms, ...body] = need(form, 2, '(with-timeout 5000 body...)');
  return list(sym('step'), 'with-timeout', IMap<Value, Value>().set(Keyword.of('timeout-ms'), ms as Value), ...body);
};

/** `(batch-call :cap coll)`: one call per item, in order (seed 003 §1.c). */
const batchCall: MacroFn = (form, c) => {
  const [cap, coll] = need(form, 2, '(batch-call :capability items)');
  const x = c.gensym('item');
  return list(core('mapv'), list(sym('fn'), vec(x), list(sym('call'), cap, x)), coll);
};

/** Every core macro by name. */
export const CORE_MACROS: ReadonlyMap<string, MacroFn> = new Map<string, MacroFn>([
  ['defn', defn],
  ['defn-', defn],
  ['when', when],
  ['when-not', whenNot],
  ['if-not', ifNot],
  ['cond', cond],
  ['and', and],
  ['or', or],
  ['->', (f) => thread(f, false)],
  ['->>', (f) => thread(f, true)],
  ['as->', asThread],
  ['some->', (f, c) => someThread(f, c, false)],
  ['some->>', (f, c) => someThread(f, c, true)],
  ['cond->', (f, c) => condThread(f, c, false)],
  ['cond->>', (f, c) => condThread(f, c, true)],
  ['if-let', (f, c) => ifLetLike(f, c, false, false)],
  ['when-let', (f, c) => ifLetLike(f, c, false, true)],
  ['if-some', (f, c) => ifLetLike(f, c, true, false)],
  ['when-some', (f, c) => ifLetLike(f, c, true, true)],
  ['case', caseMacro],
  ['for', forMacro],
  ['doseq', doseq],
  ['dotimes', dotimes],
  ['declare', declare],
  ['comment', comment],
  ['step-if', stepIf],
  ['step-loop', stepLoop],
  ['capability', capability],
  ['with-timeout', withTimeout],
  ['batch-call', batchCall],
]);

export type { RMap };

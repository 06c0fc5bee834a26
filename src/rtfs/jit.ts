/**
 * The fast path: pure function arities compiled from bytecode to JavaScript.
 *
 * Owns: deciding which arities may run as generated JS (no host call, step, plan scope, fork or
 * try in their code) and which are pure for the machine's label regions (`isPureArity`: that, and
 * no `def`), generating that JS (an unlabeled and a labels-mode variant), and the `Bail` signal.
 * Must never: change what a program observes. Generated code is *optimistic*: whenever it meets
 * anything it does not handle — a callee that is not compiled, an error, fuel running out, the JS
 * stack running out — it throws `BAIL`, and the machine re-runs the same call in the interpreter
 * with the fuel it had before. That is safe only because the code is pure: re-running it has no
 * effect and gives the same result, error position and fuel use as the interpreter alone.
 *
 * Labels: once labels are active (see `Machine.labelsActive`) the machine uses a second variant of
 * each arity, compiled lazily (`jitL`), and only for calls none of whose arguments is labeled
 * (a pure call's labeled arguments are stripped first: see the machine's label regions). That
 * variant must never pass a `Labeled` value on silently: it bails on any it meets — a global or
 * free variable, a builtin's result, a lookup in callable data, an element spread by `apply` —
 * and on `def`, so that the interpreter propagates labels (or aborts the region) exactly as it
 * would without the fast path. The unlabeled variant pays nothing for this.
 */
import { Op, type Arity, type ClosureSpec, type Proto, Box } from './code.js';
import { Closure, IMap, ISet, Keyword, Labeled, List, RList, EMPTY_MAP, intResult, isFn, valueEquals, type Builtin, type Value } from './values.js';

/** Thrown by generated code to hand a call back to the interpreter. */
export const BAIL = { bail: true } as const;

/** A compiled arity: `(machine, closure, ...args)`, or `(machine, closure, argsArray)` if variadic. */
export type JitFn = (m: FuelHolder, c: Closure, ...args: unknown[]) => Value;

/** The one piece of machine state generated code touches. */
export interface FuelHolder {
  fuel: number;
}

/** Arities gain fields for the fast path (and for label regions, which share its purity rule). */
export interface JitState {
  /** undefined: not tried yet; null: not compilable (or bailed too often); else the function. */
  jit?: JitFn | null;
  bails?: number;
  /** The labels-mode variant (bails on any labeled value), with its own bail count. */
  jitL?: JitFn | null;
  bailsL?: number;
  /** Whether the arity's own code is pure (see `isPureArity`); computed on first use. */
  pure?: boolean;
}

/** After this many bails at one entry point the arity stays interpreted (prevents quadratic re-runs). */
export const MAX_BAILS = 3;

const UNSUPPORTED = new Set<Op>([Op.HOST, Op.TRY, Op.ENDTRY, Op.STEP_ENTER, Op.STEP_EXIT, Op.STEP_FAIL, Op.PLAN_ENTER, Op.PLAN_EXIT, Op.FORK, Op.ERRMATCH, Op.SAGA_PUSH, Op.SAGA_MARK, Op.SAGA_NEXT, Op.CONTRACT]);

const OPERANDS: Partial<Record<Op, number>> = {
  [Op.CONST]: 1, [Op.LOCAL]: 1, [Op.SETLOCAL]: 1, [Op.FREE]: 1, [Op.GLOBAL]: 1, [Op.DEF]: 1, [Op.JUMP]: 1, [Op.JUMPF]: 1,
  [Op.CALL]: 1, [Op.TAILCALL]: 1, [Op.CLOSURE]: 1, [Op.PLAN_ENTER]: 1, [Op.FORK]: 2, [Op.VEC]: 1, [Op.MAP]: 1, [Op.SET]: 1, [Op.LIST]: 1, [Op.BOXSET]: 1,
};

function width(op: Op): number {
  return 1 + (OPERANDS[op] ?? 0);
}

function selectArity(proto: Proto, n: number): (Arity & JitState) | undefined {
  const as = proto.arities as (Arity & JitState)[];
  for (let i = 0; i < as.length; i++) if (as[i].nparams === n && !as[i].variadic) return as[i];
  for (let i = 0; i < as.length; i++) if (as[i].variadic && n >= as[i].nparams) return as[i];
  return undefined;
}

/**
 * Whether an arity's own code is pure: what the fast path accepts, and no `def` (a global written
 * from inside a label region would keep a value whose labels the region stripped). The machine
 * opens label regions only at calls of such arities.
 */
export function isPureArity(ar: Arity & JitState): boolean {
  if (ar.pure !== undefined) return ar.pure;
  let pure = true;
  const ops = ar.ops;
  for (let pc = 0; pc < ops.length && pure; pc += width(ops[pc])) pure = !UNSUPPORTED.has(ops[pc]) && ops[pc] !== Op.DEF;
  ar.pure = pure;
  return pure;
}

/** Returns the compiled function of an arity, compiling it on first use (null when it can't be). */
export function ensureJit(ar: Arity & JitState): JitFn | null {
  if (ar.jit !== undefined) return ar.jit;
  ar.jit = tryCompile(ar, false);
  return ar.jit;
}

/** The labels-mode variant of `ensureJit`. */
export function ensureJitL(ar: Arity & JitState): JitFn | null {
  if (ar.jitL !== undefined) return ar.jitL;
  ar.jitL = tryCompile(ar, true);
  return ar.jitL;
}

function tryCompile(ar: Arity, labels: boolean): JitFn | null {
  try {
    return compileArity(ar, labels);
  } catch {
    return null;
  }
}

/** Records a bail at an entry point; after MAX_BAILS the arity stays interpreted. */
export function noteBail(ar: Arity & JitState): void {
  ar.bails = (ar.bails ?? 0) + 1;
  if (ar.bails >= MAX_BAILS) ar.jit = null;
}

/** The labels-mode variant of `noteBail` (bails on labeled data do not disable the other variant). */
export function noteBailL(ar: Arity & JitState): void {
  ar.bailsL = (ar.bailsL ?? 0) + 1;
  if (ar.bailsL >= MAX_BAILS) ar.jitL = null;
}

// -------------------------------------------------------------------------------------------------
// Runtime helpers called by generated code

function callGeneric(m: FuelHolder, f: Value, args: Value[]): Value {
  if (--m.fuel < 0) throw BAIL;
  if (f instanceof Closure) {
    const ar = selectArity(f.code as Proto, args.length);
    if (ar === undefined) throw BAIL;
    const j = ar.jit === undefined ? ensureJit(ar) : ar.jit;
    if (!j) throw BAIL;
    if (ar.variadic) return j(m, f, args);
    switch (args.length) {
      case 0:
        return j(m, f);
      case 1:
        return j(m, f, args[0]);
      case 2:
        return j(m, f, args[0], args[1]);
      case 3:
        return j(m, f, args[0], args[1], args[2]);
      default:
        return j(m, f, ...args);
    }
  }
  if (isFn(f)) {
    const b = f as Builtin;
    if (b.special === 'apply') {
      // The interpreter charges one unit of fuel for apply and the call it makes.
      m.fuel++;
      return callGeneric(m, args[0], applyArgs(args));
    }
    if (b.special || args.length < b.minArity || args.length > b.maxArity) throw BAIL;
    return b.fn(args);
  }
  if (f instanceof Labeled) throw BAIL;
  // Callable data: keywords, maps, sets, vectors.
  if (args.length === 1 || args.length === 2) {
    const d = args.length === 2 ? args[1] : null;
    const a0 = args[0];
    if (IMap.isMap(f)) return (f as IMap<Value, Value>).get(a0, d);
    if (f instanceof Keyword) {
      if (IMap.isMap(a0)) return (a0 as IMap<Value, Value>).get(f, d);
      if (ISet.isSet(a0)) return (a0 as ISet<Value>).has(f) ? f : d;
      if (a0 instanceof Labeled) throw BAIL;
      return d;
    }
  }
  throw BAIL;
}

/** (apply f a [b c]) → the arguments (a b c) of f. */
function applyArgs(args: Value[]): Value[] {
  const last = args.length >= 2 ? args[args.length - 1] : undefined;
  let spread: Value[];
  if (last === null) spread = [];
  else if (last instanceof RList) spread = last.toArray();
  else if (List.isList(last) || ISet.isSet(last)) spread = (last as List<Value>).toArray();
  else throw BAIL;
  return [...args.slice(1, -1), ...spread];
}

/**
 * `callGeneric` for the labels-mode variant: closures run their labels-mode code, and a labeled
 * value coming back from a builtin or callable data, or spread by `apply`, bails.
 */
function callGenericL(m: FuelHolder, f: Value, args: Value[]): Value {
  if (f instanceof Closure) {
    if (--m.fuel < 0) throw BAIL;
    const ar = selectArity(f.code as Proto, args.length);
    if (ar === undefined) throw BAIL;
    const j = ar.jitL === undefined ? ensureJitL(ar) : ar.jitL;
    if (!j) throw BAIL;
    if (ar.variadic) return j(m, f, args);
    return args.length === 1 ? j(m, f, args[0]) : args.length === 2 ? j(m, f, args[0], args[1]) : j(m, f, ...args);
  }
  if (isFn(f) && (f as Builtin).special === 'apply') {
    if (--m.fuel < 0) throw BAIL;
    const spread = applyArgs(args);
    for (let i = 0; i < spread.length; i++) if (spread[i] instanceof Labeled) throw BAIL;
    m.fuel++;
    return callGenericL(m, args[0], spread);
  }
  const r = callGeneric(m, f, args);
  if (r instanceof Labeled) throw BAIL;
  return r;
}

function callBuiltin2(_m: FuelHolder, b: Builtin, a: Value, c: Value): Value {
  return b.fn([a, c]);
}

const RT = { BAIL, Closure, Labeled, List, ISet, RList, EMPTY_MAP, Box, intResult, valueEquals, callGeneric, callGenericL, callBuiltin2 };

// -------------------------------------------------------------------------------------------------
// Code generation

function compileArity(ar: Arity, labels: boolean): JitFn | null {
  const ops = ar.ops;
  // Reject what the fast path does not handle, and find basic-block leaders.
  const leaders = new Set<number>([0]);
  for (let pc = 0; pc < ops.length; pc += width(ops[pc])) {
    const op = ops[pc] as Op;
    if (UNSUPPORTED.has(op)) return null;
    if (op === Op.JUMP || op === Op.JUMPF) {
      leaders.add(ops[pc + 1]);
      leaders.add(pc + 2);
    }
  }
  // Static stack depth at each pc (the compiler emits structured code, so it is consistent).
  const depthAt = new Map<number, number>();
  const work: [number, number][] = [[0, 0]];
  let maxDepth = 0;
  while (work.length) {
    const [start, d0] = work.pop()!;
    let d = d0;
    for (let pc = start; pc < ops.length; ) {
      const seen = depthAt.get(pc);
      if (seen !== undefined) {
        if (seen !== d) return null;
        break;
      }
      depthAt.set(pc, d);
      const op = ops[pc] as Op;
      const a = ops[pc + 1];
      switch (op) {
        case Op.CONST: case Op.LOCAL: case Op.FREE: case Op.SELF: case Op.GLOBAL: case Op.BOX:
          d++;
          break;
        case Op.SETLOCAL: case Op.POP: case Op.BOXSET: case Op.JUMPF:
        case Op.ADD: case Op.SUB: case Op.MUL: case Op.LT: case Op.GT: case Op.LE: case Op.GE: case Op.EQ:
          d--;
          break;
        case Op.CALL: case Op.TAILCALL:
          d -= a;
          break;
        case Op.CLOSURE:
          d -= (ar.consts[a] as ClosureSpec).nfree - 1;
          break;
        case Op.VEC: case Op.SET: case Op.LIST:
          d -= a - 1;
          break;
        case Op.MAP:
          d -= 2 * a - 1;
          break;
        default:
          break;
      }
      maxDepth = Math.max(maxDepth, d);
      if (op === Op.JUMPF) work.push([a, d]);
      if (op === Op.JUMP) {
        work.push([a, d]);
        break;
      }
      if (op === Op.RETURN || op === Op.THROW) break;
      pc += width(op);
    }
  }
  const o: string[] = [];
  const call = labels ? 'RT.callGenericL' : 'RT.callGeneric';
  // In labels mode, a value loaded from outside the call (global, free variable) may be labeled.
  const guard = (slot: string): string => (labels ? `if(${slot} instanceof RT.Labeled)throw RT.BAIL;` : '');
  const np = ar.nparams;
  const params = ar.variadic ? ['A'] : Array.from({ length: np }, (_, i) => `a${i}`);
  const locals = Array.from({ length: ar.nlocals }, (_, i) => `l${i}`);
  const init = locals.map((l, i) => {
    if (ar.variadic) return i < np ? `${l}=A[${i}]` : i === np ? `${l}=A.length>${np}?RT.RList.from(A.slice(${np})):null` : `${l}=null`;
    return i < np ? `${l}=a${i}` : `${l}=null`;
  });
  const stackVars = Array.from({ length: maxDepth + 1 }, (_, i) => `s${i}`);
  o.push(`return function self(M,c${params.map((p) => ',' + p).join('')}){`);
  if (init.length) o.push(`let ${init.join(',')};`);
  o.push(`let ${stackVars.join(',')};let pc=0;for(;;)switch(pc){case 0:`);
  let selfSlots = new Set<number>();
  for (let pc = 0; pc < ops.length; pc += width(ops[pc])) {
    const d = depthAt.get(pc);
    if (d === undefined) continue; // unreachable
    if (pc !== 0 && leaders.has(pc)) {
      o.push(`case ${pc}:`);
      selfSlots = new Set();
    }
    const op = ops[pc] as Op;
    const a = ops[pc + 1];
    const top = `s${d - 1}`;
    const push = `s${d}`;
    switch (op) {
      case Op.CONST:
        o.push(`${push}=K[${a}];`);
        selfSlots.delete(d);
        break;
      case Op.LOCAL:
        o.push(`${push}=l${a};`);
        selfSlots.delete(d);
        break;
      case Op.SETLOCAL:
        o.push(`l${a}=${top};`);
        break;
      case Op.FREE:
        o.push(`${push}=c.free[${a}];${guard(push)}`);
        selfSlots.delete(d);
        break;
      case Op.SELF:
        o.push(`${push}=c;`);
        selfSlots.add(d);
        break;
      case Op.GLOBAL:
        o.push(`if(!K[${a}].defined)throw RT.BAIL;${push}=K[${a}].value;${guard(push)}`);
        selfSlots.delete(d);
        break;
      case Op.DEF:
        // In labels mode the interpreter decides (a `def` inside a label region aborts it).
        o.push(labels ? 'throw RT.BAIL;' : `K[${a}].value=${top};K[${a}].defined=true;`);
        break;
      case Op.POP:
        break;
      case Op.JUMP:
        o.push(a <= pc ? `if(--M.fuel<0)throw RT.BAIL;pc=${a};continue;` : `pc=${a};continue;`);
        break;
      case Op.JUMPF:
        o.push(`if(${top}===null||${top}===false){pc=${a};continue;}`);
        break;
      case Op.CALL:
      case Op.TAILCALL: {
        const calleeSlot = d - a - 1;
        const args = Array.from({ length: a }, (_, i) => `s${calleeSlot + 1 + i}`);
        if (selfSlots.has(calleeSlot) && !ar.variadic && a === np) {
          o.push(`if(--M.fuel<0)throw RT.BAIL;s${calleeSlot}=self(M,c${args.map((x) => ',' + x).join('')});`);
        } else {
          o.push(`s${calleeSlot}=${call}(M,s${calleeSlot},[${args.join(',')}]);`);
        }
        selfSlots.delete(calleeSlot);
        break;
      }
      case Op.RETURN:
        o.push(`return ${top};`);
        break;
      case Op.THROW:
        o.push('throw RT.BAIL;');
        break;
      case Op.CLOSURE: {
        const spec = ar.consts[a] as ClosureSpec;
        const first = d - spec.nfree;
        const free = Array.from({ length: spec.nfree }, (_, i) => `s${first + i}`);
        o.push(`s${first}=new RT.Closure(K[${a}].proto,[${free.join(',')}],K[${a}].proto.name);`);
        selfSlots.delete(first);
        break;
      }
      case Op.VEC:
      case Op.SET:
      case Op.LIST: {
        const first = d - a;
        const items = Array.from({ length: a }, (_, i) => `s${first + i}`).join(',');
        const make = op === Op.VEC ? `RT.List([${items}])` : op === Op.SET ? `RT.ISet([${items}])` : `RT.RList.from([${items}])`;
        o.push(`s${first}=${make};`);
        selfSlots.delete(first);
        break;
      }
      case Op.MAP: {
        const first = d - 2 * a;
        let expr = 'RT.EMPTY_MAP';
        for (let i = 0; i < a; i++) expr += `.set(s${first + 2 * i},s${first + 2 * i + 1})`;
        o.push(`s${first}=${expr};`);
        selfSlots.delete(first);
        break;
      }
      case Op.BOX:
        o.push(`${push}=new RT.Box(null);`);
        selfSlots.delete(d);
        break;
      case Op.BOXSET:
        o.push(`l${a}.value=${top};`);
        break;
      case Op.UNBOX:
        o.push(`${top}=${top}.value;`);
        break;
      case Op.ADD:
      case Op.SUB:
      case Op.MUL: {
        const x = `s${d - 2}`;
        const y = top;
        const js = op === Op.ADD ? '+' : op === Op.SUB ? '-' : '*';
        const name = op === Op.ADD ? "'+'" : op === Op.SUB ? "'-'" : "'*'";
        o.push(
          `if(typeof ${x}==='number'&&typeof ${y}==='number'){const r=${x}${js}${y};${x}=Number.isSafeInteger(r)?${op === Op.MUL ? '(r===0?0:r)' : 'r'}:RT.intResult(r,${x},${y},${name},(p,q)=>p${js}q);}else ${x}=RT.callBuiltin2(M,B[${name}],${x},${y});`,
        );
        selfSlots.delete(d - 2);
        break;
      }
      case Op.LT:
      case Op.GT:
      case Op.LE:
      case Op.GE: {
        const x = `s${d - 2}`;
        const js = op === Op.LT ? '<' : op === Op.GT ? '>' : op === Op.LE ? '<=' : '>=';
        o.push(`${x}=(typeof ${x}==='number'&&typeof ${top}==='number')?${x}${js}${top}:RT.callBuiltin2(M,B['${js}'],${x},${top});`);
        selfSlots.delete(d - 2);
        break;
      }
      case Op.EQ: {
        const x = `s${d - 2}`;
        o.push(`${x}=${x}===${top}||RT.valueEquals(${x},${top});`);
        selfSlots.delete(d - 2);
        break;
      }
      case Op.INC:
        o.push(`${top}=(typeof ${top}==='number'&&${top}<9007199254740991)?${top}+1:${call}(M,B['inc'],[${top}]);`);
        break;
      case Op.DEC:
        o.push(`${top}=(typeof ${top}==='number'&&${top}>-9007199254740991)?${top}-1:${call}(M,B['dec'],[${top}]);`);
        break;
      default:
        return null;
    }
  }
  o.push('default:throw RT.BAIL;}};');
  if (!coreBuiltins) return null;
  return new Function('RT', 'K', 'B', o.join('\n'))(RT, ar.consts, coreBuiltins) as JitFn;
}

/** The builtins inlined operators fall back to, taken from the cells the code refers to. */
let coreBuiltins: Record<string, Builtin> | null = null;

/** Installs the builtins that inlined operators fall back to (called once by the runtime). */
export function setJitBuiltins(lookup: (name: string) => Builtin): void {
  coreBuiltins = {};
  for (const n of ['+', '-', '*', '<', '>', '<=', '>=', 'inc', 'dec']) coreBuiltins[n] = lookup(n);
}

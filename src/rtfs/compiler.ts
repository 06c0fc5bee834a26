/**
 * The RTFS compiler: forms → bytecode (`Proto`), with macro expansion.
 *
 * Owns: special forms, lexical scoping (locals, captured free variables, letfn boxes),
 * destructuring, `loop`/`recur`, `try`, `match`, steps, plans, `call`, `step.parallel`, and the
 * positioned compile errors (unbound symbol, wrong arity of a known function, malformed forms).
 * Must never: run plan code (only macros, through `CompileHost.expand`), import `node:*`.
 */
import { Op, Proto, type Arity, type Cell, type ClosureSpec } from './code.js';
import { MetaForm, formPos, posOf, type Form } from './reader.js';
import { prStr } from './printer.js';
import { parseType } from './types.js';
import {
  Closure,
  EMPTY_MAP,
  IMap,
  ISet,
  Keyword,
  List,
  RList,
  RtfsError,
  Sym,
  kw,
  type Builtin,
  type RMap,
  type SourcePos,
  type Value,
} from './values.js';

/** What the compiler needs from the runtime it compiles for. */
export interface CompileHost {
  /** The global cell of `name`, created on demand. */
  cell(name: string): Cell;
  /** The global cell of `name` if it exists (defined or declared). */
  findCell(name: string): Cell | undefined;
  /** A macro: a TypeScript expander or an RTFS closure. */
  macro(name: string): MacroFn | Closure | undefined;
  defineMacro(name: string, m: Closure): void;
  /** Applies an RTFS macro closure to argument forms at compile time. */
  expand(m: Closure, args: Value[], pos: SourcePos | undefined): Form;
  /** Compiles and runs a form to completion at compile time (used by `defmacro`). */
  evalAtCompileTime(form: Form, file: string): Value;
}

/** A macro written in TypeScript: receives the whole form and the compiler (for gensyms). */
export type MacroFn = (form: RList, c: Compiler) => Form;

/** One arity of a `fn` as written: parameters, body, and `^{:pre .. :post ..}` contracts. */
interface FnClause {
  params: List<Value>;
  body: Form[];
  form: Form;
  contracts?: RMap;
}

/** A parameter or binding with its optional type annotation (a type form). */
interface Param {
  pat: Form;
  type: Value | null;
  /** For a variadic rest parameter: the type applies to each element. */
  variadicElements: boolean;
}

interface Binding {
  slot: number;
  boxed: boolean;
}

type Resolved =
  | { kind: 'local'; slot: number; boxed: boolean }
  | { kind: 'free'; index: number; boxed: boolean }
  | { kind: 'self' };

interface LoopTarget {
  pc: number;
  slots: number[];
  /** Try depth when the loop was entered: `recur` may not cross a `try`. */
  tryDepth: number;
}

class ArityBuilder implements Arity {
  ops: number[] = [];
  consts: unknown[] = [];
  pos: (SourcePos | undefined)[] = [];
  nlocals = 0;
  blocks: Map<string, Binding>[] = [new Map()];
  loop: LoopTarget | null = null;
  tryDepth = 0;
  /** Set when the arity checks its return type: calls in tail position must come back. */
  noTailCalls = false;
  constructor(
    readonly nparams: number,
    readonly variadic: boolean,
  ) {}
  constIndex(v: unknown): number {
    const i = this.consts.indexOf(v);
    if (i >= 0 && (typeof v !== 'object' || v === null || v instanceof Keyword)) return i;
    this.consts.push(v);
    return this.consts.length - 1;
  }
}

class FnCtx {
  arity!: ArityBuilder;
  readonly free: Resolved[] = [];
  readonly freeNames = new Map<string, number>();
  constructor(
    readonly parent: FnCtx | null,
    readonly selfName: string | null,
  ) {}
}

const SPECIAL_FORMS = new Set([
  'quote', 'if', 'do', 'def', 'fn', 'fn*', 'λ', 'let', 'let*', 'loop', 'recur', 'letfn', 'try', 'throw',
  'defmacro', 'call', 'step', 'step.parallel', 'step-parallel', 'step.with-compensation', 'plan', 'match',
  'catch', 'finally', '&', 'rtfs.core/saga-scope',
]);

/** Internal special form: its body is a saga scope (used for whole units). */
const SAGA_SCOPE = 'rtfs.core/saga-scope';

/** Whether a symbol names a special form (used by `rtfs check` and the docs test). */
export const isSpecialForm = (name: string): boolean => SPECIAL_FORMS.has(name);
export const SPECIAL_FORM_NAMES: readonly string[] = [...SPECIAL_FORMS].filter((n) => !['catch', 'finally', '&', 'rtfs.core/saga-scope'].includes(n));

const CORE_PREFIXES = ['rtfs.core/', 'clojure.core/'];
const STRING_ALIASES = ['str/', 'string/', 's/'];

const INLINE_BINARY: Record<string, Op> = { '+': Op.ADD, '-': Op.SUB, '*': Op.MUL, '<': Op.LT, '>': Op.GT, '<=': Op.LE, '>=': Op.GE, '=': Op.EQ };

/** Callers of the compiler get a compiled unit and the capabilities it names statically. */
export interface CompiledUnit {
  readonly main: Proto;
  readonly protos: Proto[];
  /** Capability ids written literally in `(call :id ...)` forms, with their positions. */
  readonly capabilities: { id: string; pos: SourcePos | undefined }[];
  /** True when some `call` names its capability with a computed expression. */
  readonly dynamicCapabilities: boolean;
}

/** Compiles one unit (a file, a REPL input, a macro). Deterministic: same source, same ids. */
export class Compiler {
  private fn!: FnCtx;
  private readonly protos: Proto[] = [];
  private gensymCounter = 0;
  private readonly capabilities: { id: string; pos: SourcePos | undefined }[] = [];
  private dynamicCapabilities = false;
  private currentPos: SourcePos | undefined;
  /** Inside a contract predicate: effects are compile errors. */
  private pureDepth = 0;

  constructor(
    private readonly host: CompileHost,
    private readonly unitId: string,
    private readonly file: string,
    /**
     * For static checks: report unbound symbols and wrong arities here and keep compiling (the
     * code produced is then not meant to run), so that one pass finds every such problem.
     */
    private readonly recover?: (e: RtfsError) => void,
  ) {}

  /** Compiles top-level forms into a zero-argument `main` function. */
  compileUnit(forms: Form[]): CompiledUnit {
    // Top-level definitions may refer to each other in any order: declare them first.
    for (const f of forms) this.predeclare(f);
    const body = forms.length === 0 ? [null] : forms;
    // A unit that registers compensations is a saga scope: a failure escaping it runs them.
    const main = mentions(forms, 'step.with-compensation') ? this.compileFnBody('main', null, [RList.from([new Sym(SAGA_SCOPE), ...(body as Value[])])], undefined) : this.compileFnBody('main', null, body, undefined);
    return { main, protos: this.protos, capabilities: this.capabilities, dynamicCapabilities: this.dynamicCapabilities };
  }

  /** A fresh symbol for macro expansions. */
  gensym(prefix: string): Sym {
    return new Sym(`${prefix}__${++this.gensymCounter}#`, this.currentPos);
  }

  // -------------------------------------------------------------------------------------------
  // Errors

  private fail(msg: string, form?: unknown, hint?: string): never {
    throw new RtfsError('compile', msg, posOf(form) ?? this.currentPos ?? { file: this.file, line: 1, col: 1 }, undefined, hint);
  }

  // -------------------------------------------------------------------------------------------
  // Function bodies

  private newProto(name: string | null, arities: Arity[], pos: SourcePos | undefined): Proto {
    const p = new Proto(`${this.unitId}:${this.protos.length}`, name, arities, pos);
    this.protos.push(p);
    return p;
  }

  private compileFnBody(name: string, selfName: string | null, body: Form[], pos: SourcePos | undefined): Proto {
    const outer = this.fn as FnCtx | undefined;
    this.fn = new FnCtx(outer ?? null, selfName);
    this.fn.arity = new ArityBuilder(0, false);
    this.compileBody(body, true);
    this.emit(Op.RETURN);
    const proto = this.newProto(name, [this.fn.arity], pos);
    if (outer) this.fn = outer;
    return proto;
  }

  private get ar(): ArityBuilder {
    return this.fn.arity;
  }

  private emit(op: Op, ...operands: number[]): void {
    const a = this.ar;
    a.pos[a.ops.length] = this.currentPos;
    a.ops.push(op, ...operands);
  }

  private here(): number {
    return this.ar.ops.length;
  }

  /** Emits a jump with a placeholder target; returns the operand's index for `patch`. */
  private emitJump(op: Op.JUMP | Op.JUMPF | Op.TRY): number {
    this.emit(op, -1);
    return this.ar.ops.length - 1;
  }

  private patch(at: number, target = this.here()): void {
    this.ar.ops[at] = target;
  }

  private newSlot(): number {
    return this.ar.nlocals++;
  }

  private pushBlock(): void {
    this.ar.blocks.push(new Map());
  }

  private popBlock(): void {
    this.ar.blocks.pop();
  }

  private bindName(name: string, slot: number, boxed = false): void {
    const b = this.ar.blocks;
    b[b.length - 1].set(name, { slot, boxed });
  }

  private emitConst(v: unknown): void {
    this.emit(Op.CONST, this.ar.constIndex(v));
  }

  // -------------------------------------------------------------------------------------------
  // Name resolution

  private resolveIn(ctx: FnCtx, name: string): Resolved | null {
    const blocks = ctx.arity.blocks;
    for (let i = blocks.length - 1; i >= 0; i--) {
      const b = blocks[i].get(name);
      if (b) return { kind: 'local', slot: b.slot, boxed: b.boxed };
    }
    if (ctx.selfName === name) return { kind: 'self' };
    const fi = ctx.freeNames.get(name);
    if (fi !== undefined) {
      const src = ctx.free[fi];
      return { kind: 'free', index: fi, boxed: src.kind !== 'self' && src.boxed };
    }
    if (!ctx.parent) return null;
    const outer = this.resolveIn(ctx.parent, name);
    if (!outer) return null;
    ctx.free.push(outer);
    ctx.freeNames.set(name, ctx.free.length - 1);
    return { kind: 'free', index: ctx.free.length - 1, boxed: outer.kind !== 'self' && outer.boxed };
  }

  private isLocal(name: string): boolean {
    return this.resolveIn(this.fn, name) !== null;
  }

  /** The global cell a symbol refers to, following `rtfs.core/` and `clojure.string` aliases. */
  private globalCell(name: string): Cell | undefined {
    const direct = this.host.findCell(name);
    if (direct) return direct;
    for (const p of CORE_PREFIXES) if (name.startsWith(p)) return this.host.findCell(name.slice(p.length));
    for (const p of STRING_ALIASES) if (name.startsWith(p)) return this.host.findCell(`clojure.string/${name.slice(p.length)}`);
    return undefined;
  }

  private emitLoad(r: Resolved): void {
    if (r.kind === 'local') this.emit(Op.LOCAL, r.slot);
    else if (r.kind === 'free') this.emit(Op.FREE, r.index);
    else this.emit(Op.SELF);
  }

  private compileSymbol(s: Sym): void {
    const r = this.resolveIn(this.fn, s.name);
    if (r) {
      this.emitLoad(r);
      if (r.kind !== 'self' && r.boxed) this.emit(Op.UNBOX);
      return;
    }
    const cell = this.globalCell(s.name);
    if (cell) return this.emit(Op.GLOBAL, this.ar.constIndex(cell));
    if (SPECIAL_FORMS.has(s.name) || this.host.macro(s.name)) {
      this.fail(`\`${s.name}\` is a special form or macro and cannot be used as a value`, s);
    }
    const err = new RtfsError('unbound-symbol', `unbound symbol \`${s.name}\``, s.pos ?? this.currentPos, undefined, 'define it with def/defn/let before use, or check the spelling');
    if (!this.recover) throw err;
    this.recover(err);
    this.emitConst(null);
  }

  /** Registers names defined at top level (also inside `do`) so forward references compile. */
  private predeclare(f: Form): void {
    if (!(f instanceof RList) || f.count < 2) return;
    const h = f.first();
    if (!(h instanceof Sym)) return;
    if (h.name === 'do') for (const x of f.rest()) this.predeclare(x);
    if (h.name === 'def' || h.name === 'defn' || h.name === 'defn-' || h.name === 'declare') {
      for (const x of h.name === 'declare' ? f.rest() : [f.rest().first()]) {
        const n = x instanceof MetaForm ? x.form : x;
        if (n instanceof Sym) this.host.cell(n.name);
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // Expressions

  /** Compiles a form leaving its value on the stack. */
  compile(form: Form, tail: boolean): void {
    const saved = this.currentPos;
    const p = posOf(form);
    if (p) this.currentPos = p;
    try {
      this.compileInner(form, tail);
    } finally {
      this.currentPos = saved;
    }
  }

  private compileInner(form: Form, tail: boolean): void {
    if (form instanceof Sym) return this.compileSymbol(form);
    if (form instanceof RList) return this.compileList(form, tail);
    if (form instanceof MetaForm) return this.compileMeta(form, tail);
    if (List.isList(form)) return this.compileCollection(form as List<Value>, Op.VEC);
    if (IMap.isMap(form)) return this.compileMapLiteral(form as RMap);
    if (ISet.isSet(form)) return this.compileCollection(form as ISet<Value>, Op.SET);
    this.emitConst(form);
  }

  private isConstant(f: Form): boolean {
    if (f instanceof Sym || f instanceof RList || f instanceof MetaForm) return false;
    if (List.isList(f) || ISet.isSet(f)) return (f as List<Value>).every((x) => this.isConstant(x));
    if (IMap.isMap(f)) return (f as RMap).every((v, k) => this.isConstant(k) && this.isConstant(v));
    return true;
  }

  private compileCollection(items: List<Value> | ISet<Value>, op: Op.VEC | Op.SET): void {
    if (this.isConstant(items)) return this.emitConst(items);
    let n = 0;
    for (const it of items) {
      this.compile(it, false);
      n++;
    }
    this.emit(op, n);
  }

  private compileMapLiteral(m: RMap): void {
    if (this.isConstant(m)) return this.emitConst(m);
    let n = 0;
    m.forEach((v, k) => {
      this.compile(k, false);
      this.compile(v, false);
      n++;
    });
    this.emit(Op.MAP, n);
  }

  private compileMeta(f: MetaForm, tail: boolean): void {
    const inner = f.form;
    if (inner instanceof RList && inner.first() instanceof Sym) {
      const h = (inner.first() as Sym).name;
      if (h === 'call') return this.compileHostCall(inner, f.meta);
      if (h === 'step') return this.compileStep(inner, f.meta);
      if (h === 'step.parallel' || h === 'step-parallel') return this.compileParallel(inner, inner.rest().toArray(), f.meta);
      // `^{...} (plan ...)`: the metadata belongs to the plan, as if written inside it.
      if (h === 'plan') return this.compilePlan(inner, [new MetaForm(f.meta, inner.rest().first(), f.pos), ...inner.rest().rest().toArray()]);
    }
    this.compile(inner, tail);
  }

  private compileList(form: RList, tail: boolean): void {
    if (form.count === 0) return this.emitConst(RList.EMPTY);
    const head = form.first();
    if (head instanceof Sym) {
      const name = head.name;
      if (SPECIAL_FORMS.has(name)) return this.compileSpecial(name, form, tail);
      if (name === 'deref' && !this.isLocal(name) && !this.globalCell(name)) {
        this.fail('RTFS has no atoms or deref (`@x`): plans are pure', form, 'keep state in capabilities, e.g. (call :ccos.state.kv.get "key")');
      }
      if (!this.isLocal(name)) {
        const m = this.host.macro(name);
        if (m) return this.compile(this.expandMacro(m, form), tail);
        const cell = this.globalCell(name);
        if (cell) return this.compileGlobalCall(cell, form, tail);
      }
    }
    this.compileCall(form, tail);
  }

  /** Expands one macro application; the expansion keeps the call's position. */
  expandMacro(m: MacroFn | Closure, form: RList): Form {
    try {
      const out = m instanceof Closure ? this.host.expand(m, form.rest().toArray(), posOf(form)) : m(form, this);
      return inheritPos(out, form);
    } catch (e) {
      if (e instanceof RtfsError && e.code === 'compile') throw e;
      const msg = e instanceof Error ? e.message : String(e);
      this.fail(`while expanding macro \`${prStr(form.first())}\`: ${msg}`, form);
    }
  }

  private compileGlobalCall(cell: Cell, form: RList, tail: boolean): void {
    const nargs = form.count - 1;
    const v = cell.value;
    if (cell.core && cell.defined && typeof v === 'object' && v !== null && (v as Builtin).kind === 'builtin') {
      const b = v as Builtin;
      if (nargs < b.minArity || nargs > b.maxArity) {
        const expected = b.minArity === b.maxArity ? `${b.minArity}` : b.maxArity === Infinity ? `at least ${b.minArity}` : `${b.minArity} to ${b.maxArity}`;
        const err = new RtfsError('arity', `wrong number of arguments to \`${b.name}\`: ${nargs} given, ${expected} expected`, posOf(form) ?? this.currentPos);
        if (!this.recover) throw err;
        this.recover(err);
        return this.compileCall(form, tail);
      }
      const inline = INLINE_BINARY[b.name];
      if (inline !== undefined && nargs === 2) {
        const args = form.rest();
        this.compile(args.first(), false);
        this.compile(args.rest().first(), false);
        return this.emit(inline);
      }
      if ((b.name === 'inc' || b.name === 'dec') && nargs === 1) {
        this.compile(form.rest().first(), false);
        return this.emit(b.name === 'inc' ? Op.INC : Op.DEC);
      }
    }
    this.compileCall(form, tail);
  }

  private compileCall(form: RList, tail: boolean): void {
    let n = 0;
    for (const x of form) {
      this.compile(x, false);
      n++;
    }
    this.emit(tail && this.ar.tryDepth === 0 && !this.ar.noTailCalls ? Op.TAILCALL : Op.CALL, n - 1);
  }

  private compileBody(forms: Iterable<Form>, tail: boolean): void {
    const arr = [...forms];
    if (arr.length === 0) return this.emitConst(null);
    arr.forEach((f, i) => {
      const last = i === arr.length - 1;
      this.compile(f, tail && last);
      if (!last) this.emit(Op.POP);
    });
  }

  // -------------------------------------------------------------------------------------------
  // Special forms

  private compileSpecial(name: string, form: RList, tail: boolean): void {
    const args = form.rest().toArray();
    switch (name) {
      case 'quote':
        if (args.length !== 1) this.fail('quote takes exactly one form', form);
        return this.emitConst(stripMeta(args[0]));
      case 'if':
        return this.compileIf(form, args, tail);
      case 'do':
        return this.compileBody(args, tail);
      case 'def':
        return this.compileDef(form, args);
      case 'fn':
      case 'fn*':
      case 'λ':
        return this.compileFn(form, args);
      case 'let':
      case 'let*':
        return this.compileLet(form, args, tail);
      case 'loop':
        return this.compileLoop(form, args);
      case 'recur':
        return this.compileRecur(form, args, tail);
      case 'letfn':
        return this.compileLetfn(form, args, tail);
      case 'try':
        return this.compileTry(form, args);
      case 'throw':
        if (args.length !== 1) this.fail('throw takes exactly one value', form);
        this.compile(args[0], false);
        return this.emit(Op.THROW);
      case 'defmacro':
        return this.compileDefmacro(form, args);
      case 'call':
        return this.compileHostCall(form, null);
      case 'step':
        return this.compileStep(form, null);
      case 'step.parallel':
      case 'step-parallel':
        return this.compileParallel(form, args);
      case 'step.with-compensation':
        return this.compileWithCompensation(form, args);
      case 'plan':
        return this.compilePlan(form, args);
      case 'match':
        return this.compileMatch(form, args, tail);
      case SAGA_SCOPE:
        return this.compileSagaScope(() => this.compileBody(args, false));
      default:
        this.fail(`\`${name}\` is only valid inside its enclosing form`, form);
    }
  }

  private compileIf(form: RList, args: Form[], tail: boolean): void {
    if (args.length < 2 || args.length > 3) this.fail(`if takes a test, a then branch and an optional else branch; got ${args.length} forms`, form, '(if test then else)');
    this.compile(args[0], false);
    const toElse = this.emitJump(Op.JUMPF);
    this.compile(args[1], tail);
    const toEnd = this.emitJump(Op.JUMP);
    this.patch(toElse);
    this.compile(args.length === 3 ? args[2] : null, tail);
    this.patch(toEnd);
  }

  private compileDef(form: RList, args: Form[]): void {
    this.assertEffectsAllowed(form, '`def` (it changes the program\'s globals)');
    if (args.length < 1 || args.length > 3) this.fail('def takes a name and a value', form, '(def name value)');
    const nameForm = stripMeta(args[0]);
    if (!(nameForm instanceof Sym) || (nameForm.name.includes('/') && !nameForm.name.startsWith('__'))) this.fail('def needs a plain symbol as its name', args[0]);
    // (def name "doc" value) is accepted as in Clojure.
    const valueForm = args.length === 3 ? args[2] : args.length === 2 ? args[1] : null;
    const cell = this.host.cell(nameForm.name);
    this.compile(valueForm, false);
    this.emit(Op.DEF, this.ar.constIndex(cell));
  }

  // fn ---------------------------------------------------------------------------------------

  private compileFn(form: RList, args: Form[]): void {
    let i = 0;
    let name: string | null = null;
    const first = stripMeta(args[0] ?? null);
    if (first instanceof Sym) {
      name = first.name;
      i++;
    }
    const rest = args.slice(i);
    if (rest.length === 0) this.fail('fn needs a parameter vector', form, '(fn [x] body)');
    let clauses: FnClause[];
    const p0 = stripMeta(rest[0]);
    if (List.isList(p0)) clauses = [{ params: p0 as List<Value>, body: rest.slice(1), form, contracts: rest[0] instanceof MetaForm ? rest[0].meta : undefined }];
    else if (p0 instanceof RList && rest.every((c) => stripMeta(c) instanceof RList)) {
      // Multi-arity `([x] ...) ([x y] ...)`, or the seeds' `(fn (x) body)` list parameters.
      const asArity = rest.every((c) => {
        const l = stripMeta(c) as RList;
        return List.isList(stripMeta(l.first()));
      });
      if (asArity) clauses = rest.map((c) => {
        const l = stripMeta(c) as RList;
        const ps = l.first();
        return { params: stripMeta(ps) as List<Value>, body: l.rest().toArray(), form: c, contracts: ps instanceof MetaForm ? ps.meta : undefined };
      });
      else clauses = [{ params: List((p0 as RList).toArray()), body: rest.slice(1), form }];
    } else this.fail('fn needs a parameter vector', rest[0], '(fn [x] body)');
    this.emitFn(name, clauses, posOf(form));
  }

  /** Compiles a function and emits the CLOSURE instruction that makes it at run time. */
  private emitFn(name: string | null, clauses: FnClause[], pos: SourcePos | undefined): Proto {
    const outer = this.fn;
    const ctx = new FnCtx(outer, name);
    this.fn = ctx;
    const arities: Arity[] = [];
    let variadicSeen = false;
    for (const cl of clauses) {
      const parsed = this.parseParams(cl.params, cl.form);
      if (parsed.variadic) {
        if (variadicSeen) this.fail('a function can have only one variadic arity', cl.form);
        variadicSeen = true;
      }
      if (arities.some((a) => a.nparams === parsed.fixed.length && a.variadic === parsed.variadic)) {
        this.fail(`two arities with ${parsed.fixed.length} parameters`, cl.form);
      }
      ctx.arity = new ArityBuilder(parsed.fixed.length, parsed.variadic);
      const all = parsed.variadic ? [...parsed.fixed, parsed.rest!] : parsed.fixed;
      const slots = all.map(() => this.newSlot());
      this.ar.loop = { pc: 0, slots, tryDepth: 0 };
      all.forEach((p, k) => {
        this.bindPattern(p.pat, slots[k], parsed.variadic && k === all.length - 1);
        if (p.type !== null) this.emitTypeCheck(slots[k], p.type, `argument ${prStr(p.pat)} of ${name ?? 'fn'}`, p.variadicElements);
      });
      const { returnType, body } = this.splitReturnType(cl.body);
      const pre = cl.contracts?.get(kw('pre'), null) ?? null;
      const post = cl.contracts?.get(kw('post'), null) ?? null;
      const argLoads = slots.map((sl) => () => this.emit(Op.LOCAL, sl));
      if (pre !== null) this.emitContract('pre', pre, argLoads, slots.length);
      if (post !== null) {
        this.ar.noTailCalls = true;
        this.compileBody(body, true);
        const r = this.newSlot();
        this.emit(Op.SETLOCAL, r);
        if (returnType !== null) this.emitTypeCheck(r, returnType, `return value of ${name ?? 'fn'}`, false);
        this.emitContract('post', post, [...argLoads, () => this.emit(Op.LOCAL, r)], slots.length + 1);
        this.emit(Op.LOCAL, r);
      } else if (returnType === null) {
        this.compileBody(body, true);
      } else {
        this.ar.noTailCalls = true;
        this.compileBody(body, true);
        const r = this.newSlot();
        this.emit(Op.SETLOCAL, r);
        this.emitTypeCheck(r, returnType, `return value of ${name ?? 'fn'}`, false);
        this.emit(Op.LOCAL, r);
      }
      this.emit(Op.RETURN);
      arities.push(ctx.arity);
    }
    arities.sort((a, b) => (a.variadic ? 1 : 0) - (b.variadic ? 1 : 0) || a.nparams - b.nparams);
    const proto = this.newProto(name, arities, pos);
    this.fn = outer;
    for (const src of ctx.free) this.emitLoad(src);
    const spec: ClosureSpec = { proto, nfree: ctx.free.length };
    this.emit(Op.CLOSURE, this.ar.constIndex(spec));
    return proto;
  }

  /**
   * Parses a parameter vector, with the original's optional type annotations: `x : T`, `x :int`
   * (a keyword after a parameter) and `x:int` (one token).
   */
  private parseParams(params: List<Value>, form: Form): { fixed: Param[]; variadic: boolean; rest?: Param } {
    const ps = this.annotated(params.toArray().map(stripMeta), true, form);
    const amp = ps.findIndex((p) => p.pat instanceof Sym && p.pat.name === '&');
    if (amp < 0) return { fixed: ps, variadic: false };
    if (amp !== ps.length - 2) this.fail('`&` must be followed by exactly one parameter', form);
    return { fixed: ps.slice(0, amp), variadic: true, rest: { ...ps[amp + 1], variadicElements: true } };
  }

  /** Pairs binding forms with their type annotations. `keywordTypes`: a bare keyword annotates. */
  private annotated(items: Form[], keywordTypes: boolean, form: Form): Param[] {
    const out: Param[] = [];
    for (let i = 0; i < items.length; i++) {
      const it = items[i];
      const last = out[out.length - 1];
      const canAnnotate = last !== undefined && last.type === null && !(last.pat instanceof Sym && last.pat.name === '&');
      if (it instanceof Sym && it.name === ':') {
        if (!canAnnotate || i + 1 >= items.length) this.fail('`:` must sit between a name and its type', form, '[x : Int]');
        last.type = this.checkedType(items[++i]);
        continue;
      }
      if (keywordTypes && it instanceof Keyword && canAnnotate) {
        last.type = this.checkedType(it);
        continue;
      }
      const colon = it instanceof Sym ? it.name.indexOf(':') : -1;
      if (it instanceof Sym && colon > 0 && !it.name.includes('/')) {
        out.push({ pat: new Sym(it.name.slice(0, colon), it.pos), type: this.checkedType(kw(it.name.slice(colon + 1))), variadicElements: false });
        continue;
      }
      out.push({ pat: it, type: null, variadicElements: false });
    }
    return out;
  }

  /** Validates a type form at compile time so that a malformed type is a positioned error. */
  private checkedType(t: Form): Value {
    const form = stripMeta(t);
    try {
      parseType(form);
    } catch (e) {
      this.fail(`invalid type ${prStr(form)}: ${e instanceof Error ? e.message : String(e)}`, t);
    }
    return form;
  }

  /** A keyword or `: T` right after the parameter vector is a return type (when a body follows). */
  private splitReturnType(body: Form[]): { returnType: Value | null; body: Form[] } {
    const first = body[0];
    if (first instanceof Sym && first.name === ':' && body.length >= 3) return { returnType: this.checkedType(body[1]), body: body.slice(2) };
    if (first instanceof Keyword && body.length >= 2) {
      try {
        parseType(first);
        return { returnType: first, body: body.slice(1) };
      } catch {
        // Not a type name: an ordinary keyword expression.
      }
    }
    return { returnType: null, body };
  }

  private emitTypeCheck(slot: number, type: Value, what: string, elements: boolean): void {
    const cell = this.host.findCell('rtfs.core/check-type')!;
    this.emit(Op.GLOBAL, this.ar.constIndex(cell));
    this.emit(Op.LOCAL, slot);
    this.emitConst(type);
    this.emitConst(what);
    this.emitConst(elements);
    this.emit(Op.CALL, 4);
    this.emit(Op.POP);
  }

  // let / loop / recur ---------------------------------------------------------------------------

  private bindingPairs(form: RList, args: Form[], what: string): [Form, Form, Value | null][] {
    const v = stripMeta(args[0] ?? null);
    if (!List.isList(v)) this.fail(`${what} needs a binding vector`, form, `(${what} [name value ...] body)`);
    const raw = (v as List<Value>).toArray();
    // Bindings may carry the original's type annotations: `x : Int 5`, `x:int 5`.
    const items: Form[] = [];
    const types: (Value | null)[] = [];
    for (let i = 0; i < raw.length; i++) {
      const it = raw[i];
      if (items.length % 2 === 1 && it instanceof Sym && it.name === ':') {
        types[items.length - 1] = this.checkedType(raw[++i]);
        continue;
      }
      const colon = it instanceof Sym ? it.name.indexOf(':') : -1;
      if (items.length % 2 === 0 && it instanceof Sym && colon > 0 && !it.name.includes('/')) {
        types[items.length] = this.checkedType(kw(it.name.slice(colon + 1)));
        items.push(new Sym(it.name.slice(0, colon), it.pos));
        continue;
      }
      items.push(it);
    }
    if (items.length % 2 !== 0) this.fail(`${what} bindings need an even number of forms (name value pairs); got ${items.length}`, v);
    const pairs: [Form, Form, Value | null][] = [];
    for (let i = 0; i < items.length; i += 2) pairs.push([stripMeta(items[i]), items[i + 1], types[i] ?? null]);
    return pairs;
  }

  private compileLet(form: RList, args: Form[], tail: boolean): void {
    const pairs = this.bindingPairs(form, args, 'let');
    this.pushBlock();
    for (const [pat, expr, type] of pairs) {
      this.compile(pat instanceof Sym ? nameAnonymousFn(expr, pat) : expr, false);
      const slot = this.newSlot();
      this.emit(Op.SETLOCAL, slot);
      if (type !== null) this.emitTypeCheck(slot, type, `binding ${prStr(pat)}`, false);
      this.bindPattern(pat, slot);
    }
    this.compileBody(args.slice(1), tail);
    this.popBlock();
  }

  private compileLoop(form: RList, args: Form[]): void {
    const pairs = this.bindingPairs(form, args, 'loop');
    this.pushBlock();
    const slots: number[] = [];
    for (const [pat, expr] of pairs) {
      this.compile(pat instanceof Sym ? nameAnonymousFn(expr, pat) : expr, false);
      const slot = this.newSlot();
      this.emit(Op.SETLOCAL, slot);
      slots.push(slot);
    }
    const saved = this.ar.loop;
    this.ar.loop = { pc: this.here(), slots, tryDepth: this.ar.tryDepth };
    this.pushBlock();
    pairs.forEach(([pat], i) => this.bindPattern(pat, slots[i]));
    // A loop body is in tail position for `recur` only; its value is not a tail call of the fn.
    this.compileBody(args.slice(1), true);
    this.popBlock();
    this.ar.loop = saved;
    this.popBlock();
  }

  private compileRecur(form: RList, args: Form[], tail: boolean): void {
    const target = this.ar.loop;
    if (!target) this.fail('recur outside of loop or fn', form);
    if (this.ar.tryDepth !== target.tryDepth) this.fail('recur cannot cross a try (or a step, which is a try)', form, 'move the loop inside the try, or the try outside the loop');
    if (!tail) this.fail('recur must be in tail position', form, 'recur can only be the last thing evaluated in its loop or fn');
    if (args.length !== target.slots.length) this.fail(`recur needs ${target.slots.length} arguments, got ${args.length}`, form);
    for (const a of args) this.compile(a, false);
    for (let i = target.slots.length - 1; i >= 0; i--) this.emit(Op.SETLOCAL, target.slots[i]);
    this.emit(Op.JUMP, target.pc);
  }

  private compileLetfn(form: RList, args: Form[], tail: boolean): void {
    const specs = stripMeta(args[0] ?? null);
    if (!List.isList(specs)) this.fail('letfn needs a vector of function specs', form, '(letfn [(f [x] ...) (g [y] ...)] body)');
    const fns = (specs as List<Value>).toArray().map((s) => {
      const l = stripMeta(s);
      if (!(l instanceof RList) || !(l.first() instanceof Sym)) this.fail('letfn spec must be (name [params] body...)', s);
      return { name: (l.first() as Sym).name, form: l };
    });
    this.pushBlock();
    const slots = fns.map((f) => {
      const slot = this.newSlot();
      this.emit(Op.BOX);
      this.emit(Op.SETLOCAL, slot);
      this.bindName(f.name, slot, true);
      return slot;
    });
    fns.forEach((f, i) => {
      this.compileFn(f.form, f.form.rest().toArray());
      this.emit(Op.BOXSET, slots[i]);
    });
    this.compileBody(args.slice(1), tail);
    this.popBlock();
  }

  // Destructuring ---------------------------------------------------------------------------------

  /** Binds `pat` to the value in `slot`, destructuring vectors and maps as in Clojure. */
  private bindPattern(pat: Form, slot: number, fromRest = false): void {
    pat = stripMeta(pat);
    if (pat instanceof Sym) {
      if (pat.name.includes('/') && pat.name !== '/') this.fail(`cannot bind a qualified name \`${pat.name}\``, pat);
      return this.bindName(pat.name, slot);
    }
    if (List.isList(pat)) return this.bindVectorPattern(pat as List<Value>, slot);
    if (IMap.isMap(pat)) {
      // A map pattern over a sequence reads it as key/value pairs (keyword arguments).
      const asMap = this.coreCallToSlot('rtfs.core/kwargs-map', [() => this.emit(Op.LOCAL, slot), () => this.emitConst(fromRest)]);
      return this.bindMapPattern(pat as RMap, asMap);
    }
    this.fail(`invalid binding form ${prStr(pat)}: expected a symbol, a vector or a map`, pat);
  }

  private coreCallToSlot(name: string, argEmitters: (() => void)[]): number {
    const cell = this.host.findCell(name);
    if (!cell) throw new Error(`core function ${name} missing`);
    this.emit(Op.GLOBAL, this.ar.constIndex(cell));
    for (const e of argEmitters) e();
    this.emit(Op.CALL, argEmitters.length);
    const s = this.newSlot();
    this.emit(Op.SETLOCAL, s);
    return s;
  }

  private bindVectorPattern(pat: List<Value>, slot: number): void {
    const items = pat.toArray().map(stripMeta);
    let i = 0;
    let idx = 0;
    while (i < items.length) {
      const p = items[i];
      if (p instanceof Sym && p.name === '&') {
        const restPat = items[i + 1];
        if (restPat === undefined) this.fail('`&` in a binding vector needs a name after it', pat);
        const n = idx;
        const s = this.coreCallToSlot('nthnext', [() => this.emit(Op.LOCAL, slot), () => this.emitConst(n)]);
        this.bindPattern(restPat, s, true);
        i += 2;
        continue;
      }
      if (p instanceof Keyword && p.name === 'as') {
        const asName = items[i + 1];
        if (!(asName instanceof Sym)) this.fail(':as in a binding vector needs a symbol', pat);
        this.bindName(asName.name, slot);
        i += 2;
        continue;
      }
      const n = idx;
      const s = this.coreCallToSlot('nth', [() => this.emit(Op.LOCAL, slot), () => this.emitConst(n), () => this.emitConst(null)]);
      this.bindPattern(p, s);
      idx++;
      i++;
    }
  }

  private bindMapPattern(pat: RMap, slot: number): void {
    const defaults = (pat.get(kw('or')) ?? EMPTY_MAP) as RMap;
    if (!IMap.isMap(defaults)) this.fail(':or in a map binding needs a map of defaults', pat);
    const getInto = (key: Value, name: Sym | Form): void => {
      const d = name instanceof Sym ? defaults.find((_v, k) => k instanceof Sym && k.name === name.name) : undefined;
      const s = this.coreCallToSlot('get', [() => this.emit(Op.LOCAL, slot), () => this.emitConst(key), () => this.compile(d ?? null, false)]);
      this.bindPattern(name, s);
    };
    pat.forEach((v, k) => {
      if (k instanceof Keyword && (k.name === 'keys' || k.name === 'strs' || k.name === 'syms')) {
        if (!List.isList(v)) this.fail(`:${k.name} needs a vector of names`, pat);
        for (const n0 of (v as List<Value>).toArray()) {
          const n = stripMeta(n0);
          const name = n instanceof Sym ? n.name : n instanceof Keyword ? n.name : null;
          if (name === null) this.fail(`:${k.name} entries must be symbols`, pat);
          const local = name.includes('/') ? name.slice(name.lastIndexOf('/') + 1) : name;
          const key: Value = k.name === 'keys' ? kw(name) : k.name === 'strs' ? name : new Sym(name);
          getInto(key, new Sym(local, n instanceof Sym ? n.pos : posOf(pat)));
        }
        return;
      }
      if (k instanceof Keyword && k.name === 'as') {
        if (!(v instanceof Sym)) this.fail(':as in a map binding needs a symbol', pat);
        return this.bindName(v.name, slot);
      }
      if (k instanceof Keyword && k.name === 'or') return;
      // `{:key name}` (the original's key-first order) as well as `{name :key}` (Clojure's).
      if (!(k instanceof Sym) && !List.isList(k) && !IMap.isMap(k) && v instanceof Sym) return getInto(k, v);
      // `{name :key}` (Clojure order): the binding form is the map key.
      getInto(v, k);
    });
  }

  // try / throw -----------------------------------------------------------------------------------

  private compileTry(form: RList, args: Form[]): void {
    const body: Form[] = [];
    const catches: { type: Form; binding: Sym; body: Form[]; form: Form }[] = [];
    let finallyBody: Form[] | null = null;
    for (const a of args) {
      const l = stripMeta(a);
      const h = l instanceof RList ? l.first() : null;
      if (h instanceof Sym && h.name === 'catch') {
        const parts = (l as RList).rest().toArray();
        if (parts.length < 2 || !(stripMeta(parts[1]) instanceof Sym)) this.fail('catch needs a type and a name', a, '(catch :type e body) or (catch Exception e body)');
        catches.push({ type: stripMeta(parts[0]), binding: stripMeta(parts[1]) as Sym, body: parts.slice(2), form: a });
      } else if (h instanceof Sym && h.name === 'finally') {
        if (finallyBody) this.fail('only one finally per try', a);
        finallyBody = (l as RList).rest().toArray();
      } else {
        if (catches.length || finallyBody) this.fail('try body forms must come before catch and finally', a);
        body.push(a);
      }
    }
    const errSlot = this.newSlot();
    this.ar.tryDepth++;
    const toHandler = this.emitJump(Op.TRY);
    this.compileBody(body, false);
    this.emit(Op.ENDTRY);
    this.ar.tryDepth--;
    const toOk = this.emitJump(Op.JUMP);
    this.patch(toHandler);
    this.emit(Op.SETLOCAL, errSlot);
    let toFinallyHandler = -1;
    if (finallyBody) {
      this.ar.tryDepth++;
      toFinallyHandler = this.emitJump(Op.TRY);
    }
    const toCaught: number[] = [];
    for (const c of catches) {
      let toNext = -1;
      if (!(c.type instanceof Sym)) {
        if (!(c.type instanceof Keyword)) this.fail('catch type must be a keyword (error :type) or a class-like symbol', c.form);
        this.emit(Op.LOCAL, errSlot);
        this.emit(Op.ERRMATCH, this.ar.constIndex(c.type));
        toNext = this.emitJump(Op.JUMPF);
      }
      this.pushBlock();
      this.bindName(c.binding.name, errSlot);
      this.compileBody(c.body, false);
      this.popBlock();
      toCaught.push(this.emitJump(Op.JUMP));
      if (toNext >= 0) this.patch(toNext);
    }
    this.emit(Op.LOCAL, errSlot);
    this.emit(Op.THROW);
    for (const j of toCaught) this.patch(j);
    if (finallyBody) {
      this.emit(Op.ENDTRY);
      this.ar.tryDepth--;
      const toOk2 = this.emitJump(Op.JUMP);
      // An error in a catch body: run finally, then re-raise.
      this.patch(toFinallyHandler);
      const err2 = this.newSlot();
      this.emit(Op.SETLOCAL, err2);
      this.compileBody(finallyBody, false);
      this.emit(Op.POP);
      this.emit(Op.LOCAL, err2);
      this.emit(Op.THROW);
      this.patch(toOk2);
    }
    this.patch(toOk);
    if (finallyBody) {
      this.compileBody(finallyBody, false);
      this.emit(Op.POP);
    }
  }

  private compileDefmacro(form: RList, args: Form[]): void {
    const name = stripMeta(args[0] ?? null);
    if (!(name instanceof Sym)) this.fail('defmacro needs a name', form, '(defmacro name [params] body)');
    const fnForm = RList.from([new Sym('fn', name.pos), name, ...(args.slice(1).filter((a, i) => !(i === 0 && typeof a === 'string')) as Value[])]);
    const closure = this.host.evalAtCompileTime(inheritPos(fnForm, form), this.file);
    if (!(closure instanceof Closure)) this.fail('defmacro body did not produce a function', form);
    this.host.defineMacro(name.name, closure);
    this.emitConst(null);
  }

  // Host boundary ----------------------------------------------------------------------------------

  private assertEffectsAllowed(form: RList, what: string): void {
    if (this.pureDepth > 0) this.fail(`contract predicates must be pure: ${what} is not allowed in :pre, :post or :invariant`, form, 'a contract may only inspect its arguments; do the effect in the step itself');
  }

  private compileHostCall(form: RList, meta: RMap | null): void {
    this.assertEffectsAllowed(form, '`call`');
    const args = form.rest().toArray();
    if (args.length < 1) this.fail('call needs a capability id', form, '(call :capability.id args...)');
    const cap = args[0];
    if (cap instanceof Keyword) this.capabilities.push({ id: cap.name, pos: posOf(form) });
    else if (typeof cap === 'string') this.capabilities.push({ id: cap, pos: posOf(form) });
    else this.dynamicCapabilities = true;
    this.compile(meta, false);
    for (const a of args) this.compile(a, false);
    this.emit(Op.HOST, args.length - 1);
  }

  private compileStep(form: RList, outerMeta: RMap | null): void {
    const args = form.rest().toArray();
    if (args.length < 1) this.fail('step needs a name', form, '(step "name" body)');
    let meta: RMap | null = outerMeta;
    let nameForm = args[0];
    if (nameForm instanceof MetaForm) {
      meta = meta ? meta.merge(nameForm.meta) : nameForm.meta;
      nameForm = nameForm.form;
    }
    if (!(typeof nameForm === 'string' || nameForm instanceof Keyword || nameForm instanceof Sym || nameForm instanceof RList)) {
      this.fail('step name must be a string, keyword or symbol (or an expression computing a string)', args[0]);
    }
    let rest = args.slice(1);
    let opts: Form = null;
    if (rest.length > 1 && IMap.isMap(rest[0])) {
      opts = rest[0];
      rest = rest.slice(1);
    }
    // Metadata written before the body belongs to the step (as the seeds write it).
    if (rest.length > 0 && rest[0] instanceof MetaForm) {
      const m = rest[0] as MetaForm;
      meta = meta ? meta.merge(m.meta) : m.meta;
      rest = [m.form, ...rest.slice(1)];
    }
    const stepName: Form = nameForm instanceof Keyword ? nameForm.name : nameForm instanceof Sym ? nameForm.name : nameForm;
    this.assertEffectsAllowed(form, 'a step');
    const pre = meta?.get(kw('pre'), null) ?? null;
    const post = meta?.get(kw('post'), null) ?? null;
    if (stepName instanceof RList) this.compile(stepName, false);
    else this.emitConst(stepName);
    this.compile(opts, false);
    this.compile(meta, false);
    this.emit(Op.STEP_ENTER);
    // A step is a saga scope: on failure, compensations registered inside it run (newest first)
    // before the host hears that the step failed.
    this.compileSagaScope(
      () => {
        if (pre === null && post === null) return this.compileBody(rest, false);
        // Contracts see a context: the step's :ctx metadata, or {:step name}.
        const ctx = this.newSlot();
        if (meta?.has(kw('ctx'))) this.compile(meta.get(kw('ctx')) as Form, false);
        else if (stepName instanceof RList) this.compile(RList.from([new Sym('rtfs.core/hash-map'), kw('step'), stepName]), false);
        else this.emitConst(EMPTY_MAP.set(kw('step'), stepName));
        this.emit(Op.SETLOCAL, ctx);
        if (pre !== null) this.emitContract('pre', pre, [() => this.emit(Op.LOCAL, ctx)], 1);
        this.compileBody(rest, false);
        if (post !== null) {
          const r = this.newSlot();
          this.emit(Op.SETLOCAL, r);
          this.emitContract('post', post, [() => this.emit(Op.LOCAL, ctx), () => this.emitAssocResult(ctx, r)], 2);
          this.emit(Op.LOCAL, r);
        }
      },
      Op.STEP_EXIT,
      Op.STEP_FAIL,
    );
  }

  /** `(assoc ctx :result r)`, the "after" context of a postcondition or invariant. */
  private emitAssocResult(ctx: number, r: number): void {
    this.emit(Op.GLOBAL, this.ar.constIndex(this.host.findCell('assoc')!));
    this.emit(Op.LOCAL, ctx);
    this.emitConst(kw('result'));
    this.emit(Op.LOCAL, r);
    this.emit(Op.CALL, 3);
  }

  /** Runs, newest first, the compensations registered since `mark` (a saga scope's failure path). */
  private emitCompensateSince(mark: number): void {
    const thunk = this.newSlot();
    const loop = this.here();
    this.emit(Op.LOCAL, mark);
    this.emit(Op.SAGA_NEXT);
    this.emit(Op.SETLOCAL, thunk);
    this.emit(Op.LOCAL, thunk);
    const done = this.emitJump(Op.JUMPF);
    // A compensation that fails for good (the host gave up on it, recorded) does not stop the
    // older ones: the loop goes on.
    this.ar.tryDepth++;
    const toSkip = this.emitJump(Op.TRY);
    this.emit(Op.LOCAL, thunk);
    this.emit(Op.CALL, 0);
    this.emit(Op.ENDTRY);
    this.ar.tryDepth--;
    this.emit(Op.POP);
    this.emit(Op.JUMP, loop);
    this.patch(toSkip);
    this.emit(Op.POP);
    this.emit(Op.JUMP, loop);
    this.patch(done);
  }

  /**
   * A saga scope around `body`: a failure escaping it runs the compensations registered inside,
   * then goes on with `failOp` (THROW, or STEP_FAIL for a step); success runs `successOp` if any.
   */
  private compileSagaScope(body: () => void, successOp?: Op.STEP_EXIT, failOp: Op.THROW | Op.STEP_FAIL = Op.THROW): void {
    const mark = this.newSlot();
    this.emit(Op.SAGA_MARK);
    this.emit(Op.SETLOCAL, mark);
    this.ar.tryDepth++;
    const toHandler = this.emitJump(Op.TRY);
    body();
    this.emit(Op.ENDTRY);
    this.ar.tryDepth--;
    if (successOp !== undefined) this.emit(successOp);
    const toEnd = this.emitJump(Op.JUMP);
    this.patch(toHandler);
    const err = this.newSlot();
    this.emit(Op.SETLOCAL, err);
    this.emitCompensateSince(mark);
    this.emit(Op.LOCAL, err);
    this.emit(failOp);
    this.patch(toEnd);
  }

  /**
   * Emits a contract check: the predicate (compiled pure, its arity checked when it is a literal
   * `fn`) and its arguments go to the host, which evaluates it in a pure machine and records it.
   */
  private emitContract(phase: 'pre' | 'post' | 'invariant', predicate: Form, args: (() => void)[], arity: number): void {
    const lit = literalFnArities(predicate);
    if (lit && !lit.some((a) => (a.variadic ? arity >= a.n : arity === a.n))) {
      this.fail(`the :${phase} contract takes ${arity} argument${arity === 1 ? '' : 's'} here, but its fn takes ${lit.map((a) => (a.variadic ? `${a.n}+` : a.n)).join(' or ')}`, predicate, phase === 'pre' ? '(fn [ctx] ...) for a step, (fn [args...] ...) for a defn' : '(fn [before after] ...) for a step or plan, (fn [args... result] ...) for a defn');
    }
    this.emitConst(phase);
    this.pureDepth++;
    try {
      this.compile(predicate, false);
    } finally {
      this.pureDepth--;
    }
    for (const a of args) a();
    this.emit(Op.VEC, args.length);
    this.emit(Op.CONTRACT);
  }

  private compileParallel(form: RList, args: Form[], meta: RMap | null = null): void {
    this.assertEffectsAllowed(form, 'step.parallel');
    if (args.length === 0) return this.emitConst(List());
    const policy = meta?.get(kw('on-branch-fail'), null);
    if (policy !== null && policy !== undefined && !(policy instanceof Keyword && (policy.name === 'cancel' || policy.name === 'await'))) {
      this.fail(':on-branch-fail must be :await (default) or :cancel', form);
    }
    // The block is a saga scope: when the join fails, what the branches registered is undone.
    this.compileSagaScope(() => {
      for (const branch of args) this.emitFn(null, [{ params: List(), body: [branch], form: branch }], posOf(branch) ?? posOf(form));
      this.emit(Op.FORK, args.length, policy instanceof Keyword && policy.name === 'cancel' ? 1 : 0);
    });
  }

  private compileWithCompensation(form: RList, args: Form[]): void {
    this.assertEffectsAllowed(form, 'step.with-compensation');
    if (args.length !== 2) this.fail('step.with-compensation takes a primary form and a compensation form', form, '(step.with-compensation (step "do" ...) (step "undo" ...))');
    const [primary, compensation] = args;
    // The primary's step name (an expression when the name is computed; pure, so safe to repeat).
    const primaryName: Form = stepNameOf(primary) ?? 'primary';
    // The compensation runs as a step of its own, marked as such for the host.
    const thunk = (): void => {
      const label = typeof primaryName === 'string' ? `compensate: ${primaryName}` : RList.from([new Sym('rtfs.core/str'), 'compensate: ', primaryName]);
      const opts = typeof primaryName === 'string' ? EMPTY_MAP.set(kw('compensation-of'), primaryName) : EMPTY_MAP.set(kw('compensation-of'), primaryName);
      const comp = RList.from([new Sym('step'), label, opts, compensation as Value]);
      formPos.set(comp, posOf(compensation) ?? posOf(form)!);
      this.emitFn(null, [{ params: List(), body: [comp], form: compensation }], posOf(compensation));
    };
    const result = this.newSlot();
    this.ar.tryDepth++;
    const toHandler = this.emitJump(Op.TRY);
    // The primary runs in a `saga` scope: the host can see that its calls have a compensation.
    this.emitConst(null);
    this.emit(Op.PLAN_ENTER, 1);
    this.compile(primary, false);
    this.emit(Op.PLAN_EXIT);
    this.emit(Op.ENDTRY);
    this.ar.tryDepth--;
    this.emit(Op.SETLOCAL, result);
    // Success: register the compensation in the enclosing saga scope.
    this.compile(primaryName, false);
    thunk();
    this.emit(Op.SAGA_PUSH);
    this.emit(Op.LOCAL, result);
    const toEnd = this.emitJump(Op.JUMP);
    // The primary failed its postcondition: its effects happened, so compensate it now.
    this.patch(toHandler);
    const err = this.newSlot();
    this.emit(Op.SETLOCAL, err);
    this.emit(Op.LOCAL, err);
    this.emit(Op.ERRMATCH, this.ar.constIndex(kw('contract/postcondition-failed')));
    const toRethrow = this.emitJump(Op.JUMPF);
    thunk();
    this.emit(Op.CALL, 0);
    this.emit(Op.POP);
    this.patch(toRethrow);
    this.emit(Op.LOCAL, err);
    this.emit(Op.THROW);
    this.patch(toEnd);
  }

  private compilePlan(form: RList, args: Form[]): void {
    let meta: RMap = EMPTY_MAP;
    const props: Form[] = [];
    for (const a of args) {
      if (a instanceof MetaForm) {
        meta = meta.merge(a.meta);
        props.push(a.form);
      } else props.push(a);
    }
    // `(plan name? :key value ... )`: the name is an optional leading string or symbol.
    let i = 0;
    let name: Value = null;
    if (typeof props[0] === 'string' || props[0] instanceof Sym) {
      name = props[0] instanceof Sym ? props[0].name : props[0];
      i = 1;
    }
    let program: Form | undefined;
    const propMap: Form[] = [];
    for (; i < props.length; i += 2) {
      const k = props[i];
      if (!(k instanceof Keyword)) this.fail('plan properties are :keyword value pairs', props[i] ?? form, '(plan ^{meta} :program body)');
      if (i + 1 >= props.length) this.fail(`plan property :${k.name} has no value`, k);
      if (k.name === 'program' || k.name === 'body') program = props[i + 1];
      else propMap.push(k, props[i + 1]);
    }
    if (program === undefined) this.fail('plan needs a :program', form, '(plan ^{meta} :program body)');
    let m = meta;
    if (name !== null) m = m.set(kw('name'), name);
    for (let k = 0; k < propMap.length; k += 2) m = m.set(propMap[k] as Value, propMap[k + 1] as Value);
    this.compile(m, false);
    this.emit(Op.PLAN_ENTER, 0);
    const invariant = meta.get(kw('invariant'), null);
    // A plan is a saga scope; its invariant compares the state at entry and at exit.
    this.compileSagaScope(() => {
      if (invariant === null) return this.compile(program!, false);
      const state = this.newSlot();
      const stateIdx = propMap.findIndex((k) => k instanceof Keyword && k.name === 'state');
      this.compile(stateIdx >= 0 ? propMap[stateIdx + 1] : EMPTY_MAP, false);
      this.emit(Op.SETLOCAL, state);
      this.compile(program!, false);
      const r = this.newSlot();
      this.emit(Op.SETLOCAL, r);
      this.emitContract('invariant', invariant as Form, [() => this.emit(Op.LOCAL, state), () => this.emitAssocResult(state, r)], 2);
      this.emit(Op.LOCAL, r);
    });
    this.emit(Op.PLAN_EXIT);
  }

  // match -------------------------------------------------------------------------------------------

  private compileMatch(form: RList, args: Form[], tail: boolean): void {
    if (args.length < 1) this.fail('match needs a value', form);
    this.compile(args[0], false);
    const subject = this.newSlot();
    this.emit(Op.SETLOCAL, subject);
    const clauses = args.slice(1);
    const toEnd: number[] = [];
    let i = 0;
    while (i < clauses.length) {
      const pat = stripMeta(clauses[i]);
      let guard: Form | undefined;
      let body: Form;
      const maybeWhen = clauses[i + 1];
      if (maybeWhen instanceof Sym && maybeWhen.name === 'when') {
        guard = clauses[i + 2];
        body = clauses[i + 3];
        if (body === undefined) this.fail('match clause with `when` guard needs a body', clauses[i]);
        i += 4;
      } else {
        body = clauses[i + 1];
        if (body === undefined) this.fail('match clause has a pattern but no body', clauses[i]);
        i += 2;
      }
      this.pushBlock();
      const fails: number[] = [];
      this.compilePattern(pat, subject, fails);
      if (guard !== undefined) {
        this.compile(guard, false);
        fails.push(this.emitJump(Op.JUMPF));
      }
      this.compile(body, tail);
      toEnd.push(this.emitJump(Op.JUMP));
      this.popBlock();
      for (const f of fails) this.patch(f);
    }
    const err = this.host.findCell('rtfs.core/match-error')!;
    this.emit(Op.GLOBAL, this.ar.constIndex(err));
    this.emit(Op.LOCAL, subject);
    this.emit(Op.CALL, 1);
    this.emit(Op.THROW);
    for (const j of toEnd) this.patch(j);
  }

  private emitCoreTest(name: string, argEmitters: (() => void)[], fails: number[]): void {
    const cell = this.host.findCell(name)!;
    this.emit(Op.GLOBAL, this.ar.constIndex(cell));
    for (const e of argEmitters) e();
    this.emit(Op.CALL, argEmitters.length);
    fails.push(this.emitJump(Op.JUMPF));
  }

  /** Emits tests of `pat` against the value in `slot`; failing tests jump to the `fails` list. */
  private compilePattern(pat: Form, slot: number, fails: number[]): void {
    pat = stripMeta(pat);
    if (pat instanceof Sym) {
      if (pat.name !== '_') this.bindName(pat.name, slot);
      return;
    }
    if (List.isList(pat)) {
      const items = (pat as List<Value>).toArray().map(stripMeta);
      const amp = items.findIndex((p) => p instanceof Sym && p.name === '&');
      const fixed = amp < 0 ? items : items.slice(0, amp);
      this.emitCoreTest('rtfs.core/match-seq?', [() => this.emit(Op.LOCAL, slot), () => this.emitConst(fixed.length), () => this.emitConst(amp >= 0)], fails);
      fixed.forEach((p, k) => {
        const s = this.coreCallToSlot('nth', [() => this.emit(Op.LOCAL, slot), () => this.emitConst(k), () => this.emitConst(null)]);
        this.compilePattern(p, s, fails);
      });
      if (amp >= 0) {
        const restPat = items[amp + 1];
        if (restPat === undefined) this.fail('`&` in a match pattern needs a name after it', pat);
        const s = this.coreCallToSlot('rtfs.core/drop-vec', [() => this.emitConst(fixed.length), () => this.emit(Op.LOCAL, slot)]);
        this.compilePattern(restPat, s, fails);
      }
      return;
    }
    if (IMap.isMap(pat)) {
      this.emitCoreTest('map?', [() => this.emit(Op.LOCAL, slot)], fails);
      (pat as RMap).forEach((v, k) => {
        if (k instanceof Sym && k.name === '&') return;
        this.emitCoreTest('contains?', [() => this.emit(Op.LOCAL, slot), () => this.emitConst(k)], fails);
        const s = this.coreCallToSlot('get', [() => this.emit(Op.LOCAL, slot), () => this.emitConst(k)]);
        this.compilePattern(v, s, fails);
      });
      return;
    }
    if (pat instanceof RList) {
      const h = pat.first();
      if (h instanceof Keyword && h.name === 'as') {
        const [name, sub] = pat.rest().toArray();
        if (!(name instanceof Sym)) this.fail('(:as name pattern) needs a symbol', pat);
        this.bindName(name.name, slot);
        return this.compilePattern(sub ?? new Sym('_'), slot, fails);
      }
      if (h instanceof Sym && h.name === 'quote') {
        this.emitCoreTest('=', [() => this.emit(Op.LOCAL, slot), () => this.emitConst(pat.rest().first())], fails);
        return;
      }
      this.fail(`unsupported match pattern ${prStr(pat)}`, pat);
    }
    // Literal.
    this.emitCoreTest('=', [() => this.emit(Op.LOCAL, slot), () => this.emitConst(pat)], fails);
  }
}

/**
 * `(let [f (fn [n] ... (f ...))] ...)`: an anonymous fn bound to a name gets that name, so it can
 * call itself (the original evaluated such lets in "letrec mode").
 */
function nameAnonymousFn(expr: Form, name: Sym): Form {
  if (!(expr instanceof RList) || expr.count < 2) return expr;
  const h = expr.first();
  if (!(h instanceof Sym) || !['fn', 'fn*', 'λ'].includes(h.name)) return expr;
  const second = stripMeta(expr.rest().first());
  if (second instanceof Sym) return expr;
  const named = expr.rest().cons(name).cons(h);
  const p = posOf(expr);
  if (p) formPos.set(named, p);
  return named;
}

/** Does `sym` appear anywhere in these forms? */
function mentions(forms: Form[], name: string): boolean {
  // Iterative: deeply nested data must not exhaust the JS stack here.
  const todo: Form[] = [...forms];
  while (todo.length) {
    const f = todo.pop()!;
    if (f instanceof Sym) {
      if (f.name === name) return true;
    } else if (f instanceof MetaForm) todo.push(f.form);
    else if (f instanceof RList) todo.push(...f.toArray());
    else if (List.isList(f) || ISet.isSet(f)) todo.push(...(f as List<Value>).toArray());
    else if (IMap.isMap(f)) (f as RMap).forEach((v, k) => todo.push(k, v));
  }
  return false;
}

/** The name of a `(step name ...)` form: a string, or the expression computing it. */
function stepNameOf(f: Form): Form | null {
  const l = stripMeta(f);
  if (!(l instanceof RList) || !(l.first() instanceof Sym) || (l.first() as Sym).name !== 'step') return null;
  const n = stripMeta(l.rest().first());
  return typeof n === 'string' ? n : n instanceof Keyword || n instanceof Sym ? n.name : n instanceof RList ? n : null;
}

/** Parameter counts of a literal `(fn [..] ..)` form, or null when it is not one. */
function literalFnArities(f: Form): { n: number; variadic: boolean }[] | null {
  const l = stripMeta(f);
  if (!(l instanceof RList) || !(l.first() instanceof Sym) || !['fn', 'fn*', 'λ'].includes((l.first() as Sym).name)) return null;
  let rest = l.rest().toArray();
  if (stripMeta(rest[0] ?? null) instanceof Sym) rest = rest.slice(1);
  const vectors = List.isList(stripMeta(rest[0] ?? null)) ? [stripMeta(rest[0])] : rest.map((c) => (stripMeta(c) instanceof RList ? stripMeta((stripMeta(c) as RList).first()) : null));
  if (vectors.some((v) => !List.isList(v))) return null;
  return vectors.map((v) => {
    const ps = (v as List<Value>).toArray().filter((p) => !(p instanceof Keyword) && !(p instanceof Sym && p.name === ':'));
    const amp = ps.findIndex((p) => p instanceof Sym && p.name === '&');
    return amp < 0 ? { n: ps.length, variadic: false } : { n: amp, variadic: true };
  });
}

/** Removes a reader metadata wrapper. */
export function stripMeta(f: Form): Value {
  return f instanceof MetaForm ? stripMeta(f.form) : f;
}

/** Gives a macro expansion the position of the form it replaces, where it has none. */
function inheritPos(out: Form, from: Form): Form {
  if (typeof out === 'object' && out !== null && !(out instanceof Sym) && !(out instanceof Keyword) && posOf(out) === undefined) {
    const p = posOf(from);
    if (p) formPos.set(out, p);
  }
  return out;
}

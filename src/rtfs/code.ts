/**
 * The compiled form of RTFS code: opcodes, function prototypes, global cells.
 *
 * Owns: the instruction set shared by the compiler (which emits it) and the machine (which runs
 * it), and the shapes of compiled functions.
 * Must never: execute code or depend on the compiler or the machine.
 *
 * Instructions are flat numbers in `Arity.ops`: an opcode followed by its operands. Operand `k`
 * indexes `Arity.consts`. `Arity.pos[pc]` is the source position of the instruction at `pc`
 * (sparse), used to name the place of a runtime error.
 */
import type { CodeRef, SourcePos, Value } from './values.js';

export const enum Op {
  /** push consts[k] */
  CONST = 1,
  /** push locals[i] */
  LOCAL,
  /** pop → locals[i] */
  SETLOCAL,
  /** push closure.free[i] */
  FREE,
  /** push the running closure */
  SELF,
  /** push the value of global cell consts[k] (error when undefined) */
  GLOBAL,
  /** pop → global cell consts[k]; push the value */
  DEF,
  POP,
  /** jump to absolute pc */
  JUMP,
  /** pop; jump when falsy */
  JUMPF,
  /** call with n args: callee below them */
  CALL,
  /** call in tail position */
  TAILCALL,
  RETURN,
  /** make a closure of proto consts[k] capturing n values popped from the stack */
  CLOSURE,
  /** build a vector / map / set / list of n items (maps: n pairs) */
  VEC,
  MAP,
  SET,
  LIST,
  /** host call: pops [meta, capability, ...n args]; suspends */
  HOST,
  /** push an error handler at absolute pc */
  TRY,
  /** pop the innermost error handler */
  ENDTRY,
  /** pop a value and raise it */
  THROW,
  /** pop [name, opts, meta]; enter a step (suspends with a step-start request) */
  STEP_ENTER,
  /** pop the step's value; leave the step (suspends with a step-end request) */
  STEP_EXIT,
  /** pop the error; report the step failed (suspends; the host may retry the step) */
  STEP_FAIL,
  /** pop [meta]; enter a plan scope (operand 0) or a saga primary's scope (1) (no suspension) */
  PLAN_ENTER,
  PLAN_EXIT,
  /** pop n zero-argument closures; run them as fibers; push the vector of results */
  FORK,
  /** push a new box (for letfn) */
  BOX,
  /** pop value; store into the box in locals[i] */
  BOXSET,
  /** replace the box on top of the stack with its content */
  UNBOX,
  /** does the error on top match type consts[k]? pops the error, pushes a boolean */
  ERRMATCH,
  /** pop [name, thunk]: register a compensation on the fiber's saga stack */
  SAGA_PUSH,
  /** push the saga stack's height (a scope's mark) */
  SAGA_MARK,
  /** pop a mark; if entries were registered above it, pop the newest and push its thunk, else nil */
  SAGA_NEXT,
  /** pop [phase, fn, args]: ask the host to evaluate a contract; a falsy answer raises */
  CONTRACT,
  // Inlined core functions (2 operands unless said); fall back to the builtin for other types.
  ADD,
  SUB,
  MUL,
  LT,
  GT,
  LE,
  GE,
  EQ,
  INC,
  DEC,
}

/** A global variable: the machine reads `value` when `defined`. */
export class Cell {
  defined = false;
  value: Value = null;
  /** True for cells defined by the prelude or natives (not serialized). */
  core = false;
  constructor(readonly name: string) {}
}

/** A mutable box, used only by `letfn` for mutually recursive local functions. */
export class Box {
  constructor(public value: Value) {}
}

/** One arity of a compiled function. */
export interface Arity {
  /** Number of fixed parameters. */
  readonly nparams: number;
  /** True if extra arguments are collected into a list in slot `nparams`. */
  readonly variadic: boolean;
  /** Total local slots (parameters first). */
  nlocals: number;
  readonly ops: number[];
  readonly consts: unknown[];
  readonly pos: (SourcePos | undefined)[];
}

/** A compiled function (all its arities); closures point at one. */
export class Proto implements CodeRef {
  constructor(
    /** `<unit hash>:<index>` — stable across processes for the same source. */
    readonly id: string,
    readonly name: string | null,
    readonly arities: Arity[],
    readonly pos: SourcePos | undefined,
  ) {}
}

/** A constant of a CLOSURE instruction. */
export interface ClosureSpec {
  readonly proto: Proto;
  readonly nfree: number;
}

/** A constant of a STEP/HOST instruction: where it is and what it is. */
export interface SiteSpec {
  readonly pos: SourcePos | undefined;
}

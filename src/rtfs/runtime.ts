/**
 * An RTFS runtime: global cells, macros, compiled units, and the prelude.
 *
 * Owns: turning source text into runnable closures (read → expand → compile), the table of
 * compiled code by id (so that saved machine states find their code again), and the shared,
 * process-wide core (natives + prelude, compiled once).
 * Must never: import `node:*` or run plan code on its own (running is the machine's business).
 */
import { sha256Hex } from '../common/sha256.js';
import { Cell, type Proto } from './code.js';
import { Compiler, type CompileHost, type CompiledUnit, type MacroFn } from './compiler.js';
import { setJitBuiltins } from './jit.js';
import { CORE_MACROS } from './macros.js';
import { Machine, type MachineEnv } from './machine.js';
import { readAll, type Form } from './reader.js';
import { NATIVES } from './stdlib/natives.js';
import { KERNEL_BUILTINS } from './stdlib/kernel.js';
import { PRELUDE_SOURCE } from './stdlib/prelude.js';
import { Closure, RtfsError, type Builtin, type SourcePos, type Value } from './values.js';

/** Fuel for macro expansion and compile-time evaluation: plenty, but never a hang. */
const COMPILE_TIME_FUEL = 10_000_000;

/** A unit of source loaded into a runtime, kept so that a saved state can be restored. */
export interface LoadedUnit {
  readonly id: string;
  readonly file: string;
  readonly source: string;
  readonly compiled: CompiledUnit;
  /** The unit's top-level code as a closure, ready to run. */
  readonly main: Closure;
}

interface Core {
  readonly cells: Map<string, Cell>;
  readonly protos: Map<string, Proto>;
  readonly macros: Map<string, MacroFn | Closure>;
  readonly preludeId: string;
}

let sharedCore: Core | null = null;

/** The natives and the compiled prelude, built once per process and shared (they are immutable). */
function core(): Core {
  if (sharedCore) return sharedCore;
  const cells = new Map<string, Cell>();
  for (const b of [...NATIVES, ...KERNEL_BUILTINS]) {
    const c = new Cell(b.name);
    c.value = b;
    c.defined = true;
    c.core = true;
    cells.set(b.name, c);
  }
  const macros = new Map<string, MacroFn | Closure>(CORE_MACROS);
  const protos = new Map<string, Proto>();
  const preludeId = `prelude-${sha256Hex(PRELUDE_SOURCE).slice(0, 16)}`;
  const boot = new Runtime({ cells, protos, macros, preludeId }, true);
  boot.load(PRELUDE_SOURCE, '<prelude>', preludeId);
  boot.runToCompletion(boot.units[0].main);
  for (const c of cells.values()) c.core = true;
  setJitBuiltins((name) => boot.builtin(name));
  sharedCore = { cells, protos, macros, preludeId };
  return sharedCore;
}

/** Compiles and holds RTFS code; creates machines that run it. */
export class Runtime implements CompileHost, MachineEnv {
  readonly cells: Map<string, Cell>;
  private readonly protos: Map<string, Proto>;
  private readonly macros: Map<string, MacroFn | Closure>;
  readonly units: LoadedUnit[] = [];
  readonly preludeId: string;
  private compileTimeCounter = 0;

  constructor(base?: Core, booting = false) {
    const c = base ?? core();
    // The core is shared; definitions made here go into this runtime's own tables.
    this.cells = booting ? c.cells : new Map(c.cells);
    this.protos = booting ? c.protos : new Map(c.protos);
    this.macros = booting ? c.macros : new Map(c.macros);
    this.preludeId = c.preludeId;
  }

  // CompileHost ---------------------------------------------------------------------------------

  cell(name: string): Cell {
    const existing = this.cells.get(name);
    if (existing && !existing.core) return existing;
    // Defining a core name shadows it in this runtime only.
    const c = new Cell(name);
    this.cells.set(name, c);
    return c;
  }

  findCell(name: string): Cell | undefined {
    return this.cells.get(name);
  }

  macro(name: string): MacroFn | Closure | undefined {
    return this.macros.get(name);
  }

  defineMacro(name: string, m: Closure): void {
    this.macros.set(name, m);
  }

  expand(m: Closure, args: Value[], _pos: SourcePos | undefined): Form {
    return Machine.runPure(this, m, args, COMPILE_TIME_FUEL);
  }

  evalAtCompileTime(form: Form, file: string): Value {
    const id = `ct${++this.compileTimeCounter}-${sha256Hex(file + String(this.compileTimeCounter)).slice(0, 8)}`;
    const compiled = new Compiler(this, id, file).compileUnit([form]);
    for (const p of compiled.protos) this.protos.set(p.id, p);
    return Machine.runPure(this, new Closure(compiled.main, [], 'main'), [], COMPILE_TIME_FUEL);
  }

  // MachineEnv -------------------------------------------------------------------------------------

  proto(id: string): Proto | undefined {
    return this.protos.get(id);
  }

  builtin(name: string): Builtin {
    const c = this.cells.get(name);
    const v = c?.value as Builtin | undefined;
    if (!v || v.kind !== 'builtin') throw new RtfsError('internal', `core function ${name} is missing`);
    return v;
  }

  // Loading ---------------------------------------------------------------------------------------

  /**
   * Reads and compiles `source`. The unit id is the hash of file name and source, so the same
   * program compiles to the same code ids in every process.
   */
  load(source: string, file = '<input>', id?: string): LoadedUnit {
    const unitId = id ?? `u-${sha256Hex(`${file}\n${source}`).slice(0, 16)}`;
    const forms = readAll(source, file);
    const compiled = new Compiler(this, unitId, file).compileUnit(forms);
    for (const p of compiled.protos) this.protos.set(p.id, p);
    const unit: LoadedUnit = { id: unitId, file, source, compiled, main: new Closure(compiled.main, [], 'main') };
    this.units.push(unit);
    return unit;
  }

  /** Runs pure code to completion (no host calls allowed). */
  runToCompletion(closure: Closure, args: Value[] = [], fuel = Infinity): Value {
    return Machine.runPure(this, closure, args, fuel);
  }

  /** A new machine over this runtime. */
  machine(): Machine {
    return new Machine(this);
  }
}

/** Creates a runtime with the standard library loaded. */
export function createRuntime(): Runtime {
  return new Runtime();
}

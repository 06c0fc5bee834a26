/**
 * The RTFS reader: source text → forms (RTFS values), with positions.
 *
 * Owns: lexical syntax (design.md §4), reader macros (quote, syntax-quote with auto-gensym,
 * `#(...)`, `#{}`, `#"re"`, `#_`, `^meta`), and positioned parse errors.
 * Must never: evaluate anything, import `node:*`, or throw anything but `RtfsError`.
 *
 * Positions: a symbol carries its own; lists, vectors, maps and sets are recorded in `formPos`.
 * Metadata `^{...} form` reads as a `MetaForm` so that it can sit on any form, keywords included
 * (the seeds write `(plan ^{...} :program ...)`).
 */
import {
  EMPTY_MAP,
  MetaForm,
  IMap,
  ISet,
  Keyword,
  List,
  RFloat,
  RList,
  RRegex,
  RtfsError,
  Sym,
  kw,
  normalizeBig,
  type RMap,
  type SourcePos,
  type Value,
} from './values.js';

/** A form is a value as the reader produced it (metadata annotations included). */
export type Form = Value;
export { MetaForm };

/** Source positions of collection forms read from text. */
export const formPos = new WeakMap<object, SourcePos>();

/** The position of a form, if the reader recorded one. */
export function posOf(form: unknown): SourcePos | undefined {
  if (form instanceof Sym || form instanceof MetaForm) return form.pos;
  if (typeof form === 'object' && form !== null) return formPos.get(form);
  return undefined;
}

// A backslash ends a token as in Clojure (`x\"` reads as the symbol x, then a character literal).
const DELIMS = new Set([' ', '\t', '\n', '\r', ',', '(', ')', '[', ']', '{', '}', '"', ';', '\f', '\\']);
const CHAR_NAMES: Record<string, string> = {
  newline: '\n',
  space: ' ',
  tab: '\t',
  return: '\r',
  backspace: '\b',
  formfeed: '\f',
};

const S_QUOTE = 'quote';
const S_UNQUOTE = 'unquote';
const S_SPLICE = 'unquote-splicing';

/** Reads every form of `source`. Throws `RtfsError` (code `parse`) with a position. */
export function readAll(source: string, file = '<input>'): Form[] {
  const r = new Reader(source, file);
  const out: Form[] = [];
  try {
    for (;;) {
      r.skipBlank();
      if (r.atEnd()) return out;
      const f = r.readForm();
      if (f !== DISCARDED) out.push(f);
    }
  } catch (e) {
    if (e instanceof RangeError) throw new RtfsError('parse', 'forms are nested too deeply to read', r.position(), undefined, 'flatten the data (nesting of a few thousand levels is the limit)');
    throw e;
  }
}

/** Reads exactly one form; trailing text is an error (unlike the original, which ignored it). */
export function readOne(source: string, file = '<input>'): Form {
  const forms = readAll(source, file);
  if (forms.length !== 1) {
    throw new RtfsError('parse', forms.length === 0 ? 'expected a form, found nothing' : `expected one form, found ${forms.length}`, { file, line: 1, col: 1 });
  }
  return forms[0];
}

const DISCARDED = Symbol('discarded') as unknown as Form;

class Reader {
  private i = 0;
  private line = 1;
  private col = 1;
  private gensymCounter = 0;
  private inAnonFn = false;
  constructor(
    private readonly src: string,
    private readonly file: string,
  ) {}

  atEnd(): boolean {
    return this.i >= this.src.length;
  }
  /** Where the reader is now (for errors). */
  position(): SourcePos {
    return this.pos();
  }
  private pos(): SourcePos {
    return { file: this.file, line: this.line, col: this.col };
  }
  private peek(off = 0): string {
    return this.src[this.i + off] ?? '';
  }
  private next(): string {
    const c = this.src[this.i++];
    if (c === '\n') {
      this.line++;
      this.col = 1;
    } else this.col++;
    return c;
  }
  private fail(msg: string, pos: SourcePos = this.pos(), hint?: string): never {
    throw new RtfsError('parse', msg, pos, undefined, hint);
  }

  skipBlank(): void {
    for (;;) {
      const c = this.peek();
      if (c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === ',' || c === '\f') this.next();
      else if (c === ';') {
        while (!this.atEnd() && this.peek() !== '\n') this.next();
      } else if (c === '#' && this.peek(1) === '|') {
        const start = this.pos();
        this.next();
        this.next();
        while (!(this.peek() === '|' && this.peek(1) === '#')) {
          if (this.atEnd()) this.fail('unterminated block comment `#| ... |#`', start);
          this.next();
        }
        this.next();
        this.next();
      } else return;
    }
  }

  readForm(): Form {
    this.skipBlank();
    if (this.atEnd()) this.fail('unexpected end of input: a form was expected');
    const start = this.pos();
    const c = this.peek();
    switch (c) {
      case '(':
        this.next();
        return this.record(RList.from(this.readSeq(')', start, 'list')), start);
      case '[':
        this.next();
        return this.record(List(this.readSeq(']', start, 'vector') as Value[]), start);
      case '{':
        this.next();
        return this.readMap(start);
      case ')':
      case ']':
      case '}':
        this.next();
        this.fail(`unexpected \`${c}\`: nothing is open here`, start, 'remove it, or add the opening bracket it belongs to');
      // eslint-disable-next-line no-fallthrough
      case '"':
        this.next();
        return this.readString(start);
      case "'":
        this.next();
        return this.record(RList.from([new Sym(S_QUOTE, start), this.readValueForm('quote')]), start);
      case '`':
        this.next();
        return this.syntaxQuote(this.readValueForm('syntax-quote'), new Map());
      case '~':
        this.next();
        if (this.peek() === '@') {
          this.next();
          return this.record(RList.from([new Sym(S_SPLICE, start), this.readValueForm('~@')]), start);
        }
        return this.record(RList.from([new Sym(S_UNQUOTE, start), this.readValueForm('~')]), start);
      case '@':
        this.next();
        return this.record(RList.from([new Sym('deref', start), this.readValueForm('@')]), start);
      case '^':
        this.next();
        return this.readMeta(start);
      case '\\':
        this.next();
        return this.readChar(start);
      case '#':
        this.next();
        return this.readDispatch(start);
      default:
        return this.readAtom(start);
    }
  }

  /** Reads a form that may not be discarded (`#_` after a quote makes no sense). */
  private readValueForm(what: string): Form {
    this.skipBlank();
    if (this.atEnd()) this.fail(`unexpected end of input after ${what}: a form was expected`);
    const f = this.readForm();
    if (f === DISCARDED) return this.readValueForm(what);
    return f;
  }

  private record<T extends Form>(f: T, pos: SourcePos): T {
    if (typeof f === 'object' && f !== null) formPos.set(f, pos);
    return f;
  }

  private readSeq(close: string, start: SourcePos, what: string): Form[] {
    const items: Form[] = [];
    for (;;) {
      this.skipBlank();
      if (this.atEnd()) {
        this.fail(`unterminated ${what}: \`${close}\` expected before the end of input`, start, `close the ${what} opened at line ${start.line}, column ${start.col}`);
      }
      const c = this.peek();
      if (c === close) {
        this.next();
        return items;
      }
      if (c === ')' || c === ']' || c === '}') {
        this.fail(`mismatched \`${c}\`: the ${what} opened at line ${start.line}, column ${start.col} must close with \`${close}\``, this.pos());
      }
      const f = this.readForm();
      if (f !== DISCARDED) items.push(f);
    }
  }

  private readMap(start: SourcePos): Form {
    const items = this.readSeq('}', start, 'map');
    if (items.length % 2 !== 0) {
      this.fail(`map literal has ${items.length} forms; it needs key/value pairs (an even number)`, start);
    }
    let m: RMap = EMPTY_MAP;
    for (let i = 0; i < items.length; i += 2) {
      if (m.has(items[i] as Value)) this.fail(`duplicate key ${describe(items[i])} in map literal`, posOf(items[i]) ?? start);
      m = m.set(items[i] as Value, items[i + 1] as Value);
    }
    return this.record(m, start);
  }

  private readString(start: SourcePos): string {
    let out = '';
    for (;;) {
      if (this.atEnd()) this.fail('unterminated string: `"` expected before the end of input', start);
      const c = this.next();
      if (c === '"') return out;
      if (c !== '\\') {
        out += c;
        continue;
      }
      const escPos = { file: this.file, line: this.line, col: this.col - 1 };
      const e = this.next();
      switch (e) {
        case 'n':
          out += '\n';
          break;
        case 't':
          out += '\t';
          break;
        case 'r':
          out += '\r';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case '0':
          out += '\0';
          break;
        case '\\':
          out += '\\';
          break;
        case '"':
          out += '"';
          break;
        case 'u': {
          const hex = this.src.slice(this.i, this.i + 4);
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) this.fail(`bad unicode escape \`\\u${hex}\`: four hex digits expected`, escPos);
          for (let k = 0; k < 4; k++) this.next();
          out += String.fromCharCode(parseInt(hex, 16));
          break;
        }
        default:
          this.fail(`bad escape \`\\${e ?? ''}\` in string`, escPos, 'valid escapes: \\n \\t \\r \\b \\f \\0 \\\\ \\" \\uXXXX');
      }
    }
  }

  private readToken(): string {
    const s = this.i;
    while (!this.atEnd() && !DELIMS.has(this.peek())) this.next();
    return this.src.slice(s, this.i);
  }

  private readChar(start: SourcePos): string {
    // A character literal reads as a one-character string (RTFS has no character type).
    const first = this.next();
    if (first === undefined) this.fail('unexpected end of input after `\\`', start);
    const rest = DELIMS.has(first) ? '' : this.readToken();
    const tok = first + rest;
    if (tok.length === 1) return tok;
    if (tok in CHAR_NAMES) return CHAR_NAMES[tok];
    if (/^u[0-9a-fA-F]{4}$/.test(tok)) return String.fromCharCode(parseInt(tok.slice(1), 16));
    return this.fail(`unknown character literal \`\\${tok}\``, start);
  }

  private readMeta(start: SourcePos): Form {
    const m = this.readValueForm('^');
    let meta: RMap;
    if (m instanceof Keyword) meta = EMPTY_MAP.set(m, true);
    else if (m instanceof Sym || typeof m === 'string') meta = EMPTY_MAP.set(kw('tag'), m);
    else if (IMap.isMap(m)) meta = m as RMap;
    else this.fail('metadata must be a map, a keyword, a symbol or a string', start);
    const target = this.readValueForm('metadata');
    if (target instanceof MetaForm) return new MetaForm(target.meta.merge(meta), target.form, start);
    return new MetaForm(meta, target as Value, start);
  }

  private readDispatch(start: SourcePos): Form {
    const c = this.peek();
    switch (c) {
      case '{': {
        this.next();
        const items = this.readSeq('}', start, 'set');
        let s = ISet<Value>();
        for (const it of items) {
          if (s.has(it as Value)) this.fail(`duplicate element ${describe(it)} in set literal`, posOf(it) ?? start);
          s = s.add(it as Value);
        }
        return this.record(s, start);
      }
      case '"': {
        this.next();
        let src = '';
        for (;;) {
          if (this.atEnd()) this.fail('unterminated regex: `"` expected before the end of input', start);
          const ch = this.next();
          if (ch === '"') break;
          if (ch === '\\') {
            src += ch + this.next();
          } else src += ch;
        }
        try {
          return new RRegex(src);
        } catch (e) {
          return this.fail(`invalid regex #"${src}": ${(e as Error).message}`, start);
        }
      }
      case '_':
        this.next();
        this.readValueForm('#_');
        return DISCARDED;
      case '(': {
        this.next();
        if (this.inAnonFn) this.fail('nested #() are not allowed', start, 'use (fn [x] ...) for the inner function');
        this.inAnonFn = true;
        try {
          const body = RList.from(this.readSeq(')', start, 'anonymous function'));
          return this.anonFn(body, start);
        } finally {
          this.inAnonFn = false;
        }
      }
      case '#': {
        this.next();
        const tok = this.readToken();
        if (tok === 'Inf') return new RFloat(Infinity);
        if (tok === '-Inf') return new RFloat(-Infinity);
        if (tok === 'NaN') return new RFloat(NaN);
        return this.fail(`unknown symbolic value \`##${tok}\``, start, 'use ##Inf, ##-Inf or ##NaN');
      }
      default:
        return this.fail(`unknown dispatch \`#${c}\``, start, 'known: #{...} set, #"..." regex, #(...) function, #_ discard, ##Inf');
    }
  }

  private anonFn(body: RList, start: SourcePos): Form {
    let maxArg = 0;
    let rest = false;
    const scan = (f: Form): void => {
      if (f instanceof Sym) {
        if (f.name === '%' || f.name === '%1') maxArg = Math.max(maxArg, 1);
        else if (f.name === '%&') rest = true;
        else if (/^%[1-9][0-9]*$/.test(f.name)) maxArg = Math.max(maxArg, parseInt(f.name.slice(1), 10));
      } else if (f instanceof RList) {
        for (const x of f) scan(x);
      } else if (List.isList(f)) (f as List<Value>).forEach((x) => scan(x));
      else if (IMap.isMap(f)) (f as RMap).forEach((v, k) => (scan(k), scan(v)));
      else if (f instanceof MetaForm) scan(f.form);
    };
    scan(body);
    const params: Value[] = [];
    for (let k = 1; k <= maxArg; k++) params.push(new Sym(`%${k}`, start));
    if (rest) params.push(new Sym('&', start), new Sym('%&', start));
    // `%` is `%1`: rename it in the body.
    const rename = (f: Form): Form => {
      if (f instanceof Sym) return f.name === '%' ? new Sym('%1', f.pos) : f;
      if (f instanceof RList) return this.record(RList.from(f.toArray().map(rename) as Value[]), posOf(f) ?? start);
      if (List.isList(f)) return this.record((f as List<Value>).map((x) => rename(x) as Value), posOf(f) ?? start);
      return f;
    };
    return this.record(RList.from([new Sym('fn', start), this.record(List(params), start), rename(body) as Value]), start);
  }

  private readAtom(start: SourcePos): Form {
    const tok = this.readToken();
    if (tok === '') this.fail(`unexpected character \`${this.peek()}\``, start);
    if (tok === 'nil') return null;
    if (tok === 'true') return true;
    if (tok === 'false') return false;
    const c0 = tok[0];
    if ((c0 >= '0' && c0 <= '9') || ((c0 === '-' || c0 === '+') && tok.length > 1 && tok[1] >= '0' && tok[1] <= '9')) {
      return this.readNumber(tok, start);
    }
    if (c0 === ':') {
      let name = tok.slice(1);
      if (name === '') return new Sym(':', start); // a lone colon: the type-annotation marker `x : T`
      if (name.startsWith(':')) name = name.slice(1); // `::k` reads as `:k` (no namespaces to resolve)
      if (name === '' || name.endsWith('/') && name.length > 1 && !name.endsWith('//')) this.fail(`invalid keyword \`${tok}\``, start);
      return Keyword.of(name);
    }
    if (tok.includes('//') && tok !== '//') this.fail(`invalid symbol \`${tok}\``, start);
    return new Sym(tok, start);
  }

  private readNumber(tok: string, start: SourcePos): Value {
    if (/^[+-]?\d+$/.test(tok)) return parseInteger(tok, 10, start);
    const hex = /^([+-]?)0[xX]([0-9a-fA-F]+)$/.exec(tok);
    if (hex) return parseInteger(hex[1] + hex[2], 16, start);
    if (/^[+-]?\d+(\.\d+)?([eE][+-]?\d+)?$/.test(tok) || /^[+-]?\d+\.$/.test(tok)) return new RFloat(parseFloat(tok));
    if (/^[+-]?\d+\/\d+$/.test(tok)) this.fail(`ratio literal \`${tok}\` is not supported`, start, 'write a float (0.5) or a division ((/ 1 2))');
    return this.fail(`invalid number \`${tok}\``, start);
  }

  // -------------------------------------------------------------------------------------------
  // Syntax-quote, expanded at read time as in Clojure. Symbols stay unqualified (RTFS has no
  // namespaces to resolve); `x#` becomes a fresh symbol, the same one within one syntax-quote.

  private syntaxQuote(f: Form, gensyms: Map<string, Sym>): Form {
    const pos = posOf(f);
    const call = (head: string, ...args: Form[]): Form => this.record(RList.from([new Sym(head, pos), ...(args as Value[])]), pos ?? { file: this.file, line: 0, col: 0 });
    if (f instanceof Sym) {
      if (f.name.endsWith('#') && f.name.length > 1) {
        let g = gensyms.get(f.name);
        if (!g) {
          g = new Sym(`${f.name.slice(0, -1)}__${++this.gensymCounter}__auto`, f.pos);
          gensyms.set(f.name, g);
        }
        return call(S_QUOTE, g);
      }
      return call(S_QUOTE, f);
    }
    if (f instanceof MetaForm) return this.syntaxQuote(f.form, gensyms);
    if (f instanceof RList) {
      if (f.count === 0) return call(S_QUOTE, f);
      const head = f.first();
      if (head instanceof Sym && head.name === S_UNQUOTE) return f.rest().first();
      if (head instanceof Sym && head.name === S_SPLICE) this.fail('`~@` is only valid inside a list, vector, map or set', pos);
      return call('rtfs.core/apply', new Sym('rtfs.core/list', pos), this.sqParts(f.toArray(), gensyms, call));
    }
    if (List.isList(f)) return call('rtfs.core/vec', this.sqParts((f as List<Value>).toArray(), gensyms, call));
    if (IMap.isMap(f)) {
      const flat: Form[] = [];
      (f as RMap).forEach((v, k) => flat.push(k, v));
      return call('rtfs.core/apply', new Sym('rtfs.core/hash-map', pos), this.sqParts(flat, gensyms, call));
    }
    if (ISet.isSet(f)) return call('rtfs.core/set', this.sqParts((f as ISet<Value>).toArray(), gensyms, call));
    return f;
  }

  private sqParts(items: Form[], gensyms: Map<string, Sym>, call: (h: string, ...a: Form[]) => Form): Form {
    const parts = items.map((it) => {
      if (it instanceof RList && it.count > 0) {
        const h = it.first();
        if (h instanceof Sym && h.name === S_SPLICE) return it.rest().first();
        if (h instanceof Sym && h.name === S_UNQUOTE) return this.record(List([it.rest().first()]), posOf(it)!);
      }
      return call('rtfs.core/vector', this.syntaxQuote(it, gensyms));
    });
    return call('rtfs.core/concat', ...parts);
  }
}

function parseInteger(tok: string, radix: number, start: SourcePos): number | bigint {
  const neg = tok.startsWith('-');
  const digits = tok.replace(/^[+-]/, '');
  const n = radix === 10 ? Number(tok) : (neg ? -1 : 1) * parseInt(digits, radix);
  if (Number.isSafeInteger(n)) return n;
  const magnitude = BigInt((radix === 16 ? '0x' : '') + digits);
  const b = neg ? -magnitude : magnitude;
  try {
    return normalizeBig(b, 'literal');
  } catch {
    throw new RtfsError('parse', `integer literal \`${tok}\` is outside the 64-bit range`, start, undefined, 'use a float (append .0) for large magnitudes');
  }
}

function describe(f: Form): string {
  if (f instanceof Keyword) return `:${f.name}`;
  if (f instanceof Sym) return f.name;
  if (typeof f === 'string') return JSON.stringify(f);
  return String(f);
}

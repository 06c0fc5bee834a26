/**
 * Native JSON functions: `parse-json` and `to-json` / `serialize-json` / `serialize-json-pretty`
 * (plus the original's `tool/` aliases).
 *
 * Parsing: objects → maps with string keys (in document order), arrays → vectors, integers stay
 * exact integers (outside the 64-bit range is an error), other numbers → floats, null → nil.
 * Serializing: keywords and symbols → their name without the colon (as keys and as values), integer
 * keys → strings, sets and lists → arrays; NaN, infinities, functions, regexes and errors are errors.
 * Must never: import `node:*`, read the clock, use randomness.
 */
import {
  EMPTY_MAP,
  ErrorValue,
  Keyword,
  List,
  RFloat,
  RList,
  RtfsError,
  Sym,
  isInt,
  isMap,
  isSet,
  isVector,
  normalizeBig,
  type Builtin,
  type Value,
} from '../values.js';
import { defineBuiltin, typeError } from './define.js';

const MAX_DEPTH = 1000;

class JsonParser {
  private i = 0;
  constructor(
    private readonly s: string,
    private readonly fname: string,
  ) {}

  fail(what: string): never {
    const at = this.i < this.s.length ? `at position ${this.i}` : 'at the end of the text';
    throw new RtfsError('value', `${this.fname}: invalid JSON ${at}: ${what}`);
  }

  ws(): void {
    const s = this.s;
    while (this.i < s.length) {
      const c = s.charCodeAt(this.i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) this.i++;
      else break;
    }
  }

  parseTop(): Value {
    this.ws();
    const v = this.value(0);
    this.ws();
    if (this.i < this.s.length) this.fail('unexpected text after the value');
    return v;
  }

  value(depth: number): Value {
    if (depth > MAX_DEPTH) this.fail(`nesting deeper than ${MAX_DEPTH}`);
    const s = this.s;
    const c = s[this.i];
    switch (c) {
      case '{': {
        this.i++;
        const m = EMPTY_MAP.asMutable();
        this.ws();
        if (s[this.i] === '}') {
          this.i++;
          return m.asImmutable();
        }
        for (;;) {
          this.ws();
          if (s[this.i] !== '"') this.fail('expected a string key');
          const k = this.string();
          this.ws();
          if (s[this.i] !== ':') this.fail('expected ":"');
          this.i++;
          this.ws();
          m.set(k, this.value(depth + 1));
          this.ws();
          if (s[this.i] === ',') {
            this.i++;
            continue;
          }
          if (s[this.i] === '}') {
            this.i++;
            return m.asImmutable();
          }
          this.fail('expected "," or "}"');
        }
      }
      case '[': {
        this.i++;
        const out: Value[] = [];
        this.ws();
        if (s[this.i] === ']') {
          this.i++;
          return List<Value>(out);
        }
        for (;;) {
          this.ws();
          out.push(this.value(depth + 1));
          this.ws();
          if (s[this.i] === ',') {
            this.i++;
            continue;
          }
          if (s[this.i] === ']') {
            this.i++;
            return List<Value>(out);
          }
          this.fail('expected "," or "]"');
        }
      }
      case '"':
        return this.string();
      case 't':
        return this.literal('true', true);
      case 'f':
        return this.literal('false', false);
      case 'n':
        return this.literal('null', null);
      default:
        return this.number();
    }
  }

  literal(word: string, v: Value): Value {
    if (this.s.startsWith(word, this.i)) {
      this.i += word.length;
      return v;
    }
    return this.fail('unexpected character');
  }

  number(): Value {
    const m = /-?(?:0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y;
    m.lastIndex = this.i;
    const r = m.exec(this.s);
    if (r === null) return this.fail(this.i < this.s.length ? 'unexpected character' : 'expected a value');
    this.i += r[0].length;
    if (r[1] === undefined && r[2] === undefined) {
      const n = Number(r[0]);
      if (Number.isSafeInteger(n)) return n === 0 ? 0 : n;
      try {
        return normalizeBig(BigInt(r[0]), 'parse-json');
      } catch {
        throw new RtfsError('value', `${this.fname}: the integer ${r[0]} is outside the 64-bit range`);
      }
    }
    return new RFloat(Number(r[0]));
  }

  string(): string {
    const s = this.s;
    this.i++; // opening quote
    let out = '';
    let start = this.i;
    for (;;) {
      if (this.i >= s.length) this.fail('unterminated string');
      const c = s.charCodeAt(this.i);
      if (c === 0x22) {
        out += s.slice(start, this.i);
        this.i++;
        return out;
      }
      if (c < 0x20) this.fail('control character in a string');
      if (c === 0x5c) {
        out += s.slice(start, this.i);
        const e = s[this.i + 1];
        this.i += 2;
        switch (e) {
          case '"':
          case '\\':
          case '/':
            out += e;
            break;
          case 'b':
            out += '\b';
            break;
          case 'f':
            out += '\f';
            break;
          case 'n':
            out += '\n';
            break;
          case 'r':
            out += '\r';
            break;
          case 't':
            out += '\t';
            break;
          case 'u': {
            const h = s.slice(this.i, this.i + 4);
            if (!/^[0-9a-fA-F]{4}$/.test(h)) this.fail('bad \\u escape');
            out += String.fromCharCode(parseInt(h, 16));
            this.i += 4;
            break;
          }
          default:
            this.i -= 2;
            this.fail('bad escape');
        }
        start = this.i;
      } else this.i++;
    }
  }
}

/** Parses JSON text into RTFS values. */
export function parseJson(s: string, fname = 'parse-json'): Value {
  return new JsonParser(s, fname).parseTop();
}

function jsonKey(fname: string, k: Value): string {
  if (typeof k === 'string') return k;
  if (k instanceof Keyword || k instanceof Sym) return k.name;
  if (isInt(k)) return k.toString();
  return typeError(fname, 'map keys that are strings, keywords or integers', k);
}

function jsonFloat(fname: string, x: number): string {
  if (!Number.isFinite(x)) throw new RtfsError('value', `${fname}: ${x} cannot be represented in JSON`);
  const s = String(x);
  return /[.eE]/.test(s) ? s : `${s}.0`;
}

/** Serializes an RTFS value as JSON; `indent` > 0 pretty-prints. */
export function toJson(fname: string, v: Value, indent: number): string {
  const out: string[] = [];
  const nl = (depth: number): void => {
    if (indent > 0) out.push('\n', ' '.repeat(indent * depth));
  };
  const go = (v: Value, depth: number): void => {
    if (depth > MAX_DEPTH) throw new RtfsError('value', `${fname}: nesting deeper than ${MAX_DEPTH}`);
    if (v === null) return void out.push('null');
    switch (typeof v) {
      case 'boolean':
      case 'number':
        return void out.push(String(v));
      case 'bigint':
        return void out.push(v.toString());
      case 'string':
        return void out.push(JSON.stringify(v));
    }
    if (v instanceof RFloat) return void out.push(jsonFloat(fname, v.v));
    if (v instanceof Keyword || v instanceof Sym) return void out.push(JSON.stringify(v.name));
    if (isVector(v) || v instanceof RList || isSet(v)) {
      const xs = isVector(v) ? v : v instanceof RList ? v : v.toList();
      let first = true;
      out.push('[');
      for (const x of xs) {
        if (!first) out.push(',');
        first = false;
        nl(depth + 1);
        go(x, depth + 1);
      }
      if (!first) nl(depth);
      return void out.push(']');
    }
    if (isMap(v)) {
      let first = true;
      out.push('{');
      v.forEach((val, k) => {
        if (!first) out.push(',');
        first = false;
        nl(depth + 1);
        out.push(JSON.stringify(jsonKey(fname, k)), indent > 0 ? ': ' : ':');
        go(val, depth + 1);
      });
      if (!first) nl(depth);
      return void out.push('}');
    }
    if (v instanceof ErrorValue) return typeError(fname, 'data (an error value has no JSON form)', v);
    return typeError(fname, 'data (nil, booleans, numbers, strings, keywords, collections)', v);
  };
  go(v, 0);
  return out.join('');
}

function parser(name: string): Builtin {
  return defineBuiltin(
    name,
    1,
    1,
    (a) => {
      if (typeof a[0] !== 'string') return typeError(name, 'a string of JSON text', a[0], 0);
      return parseJson(a[0], name);
    },
    `(${name} s): the RTFS value of the JSON text s (objects → maps with string keys)`,
  );
}

function serializer(name: string, indent: number): Builtin {
  return defineBuiltin(
    name,
    1,
    1,
    (a) => toJson(name, a[0], indent),
    `(${name} x): x as ${indent > 0 ? 'indented' : 'compact'} JSON text (keywords become strings without the colon)`,
  );
}

export const jsonBuiltins: Builtin[] = [
  parser('parse-json'),
  parser('tool/parse-json'),
  serializer('to-json', 0),
  serializer('serialize-json', 0),
  serializer('tool/serialize-json', 0),
  serializer('serialize-json-pretty', 2),
  serializer('tool/serialize-json-pretty', 2),
];

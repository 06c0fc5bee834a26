/**
 * `ccos secrets set|list|delete`: the secrets capabilities declare (`manifest.secrets`), stored
 * encrypted in the data directory.
 *
 * Owns: the text and `--json` output of these commands, reading a value from stdin.
 * Must never: take a value from the command line (it would land in shell history and `ps`), echo
 * a value, or print one in an error.
 * Errors that are not usage errors are thrown (CcosError) for the `ccos` entry point to print.
 */
import type { Ccos } from '../ccos/index.js';
import { CcosError } from '../ccos/errors.js';
import { installSecrets, recordSecretChange } from '../ccos/secrets.js';

/** Where a command writes (default: the process's stdout and stderr). */
export interface SecretsIo {
  stdout(s: string): void;
  stderr(s: string): void;
}

export interface SecretsCommand {
  summary: string;
  usage: string;
  run(ccos: Ccos, args: string[], json: boolean, stdin: () => Promise<string>, io?: SecretsIo): Promise<number>;
}

const EXIT_OK = 0;
const EXIT_USAGE = 2;

const processIo: SecretsIo = {
  stdout: (s) => void process.stdout.write(s.endsWith('\n') ? s : `${s}\n`),
  stderr: (s) => void process.stderr.write(s.endsWith('\n') ? s : `${s}\n`),
};

function usage(io: SecretsIo, json: boolean, command: string, message: string, text: string): number {
  if (json) io.stdout(JSON.stringify({ ok: false, error: { code: 'usage', message, hint: `run \`ccos ${command} --help\` for usage`, file: null, line: null, col: null } }));
  io.stderr(`ccos: ${message}`);
  io.stderr(text);
  return EXIT_USAGE;
}

/** Reads all of stdin (the value of `ccos secrets set`). */
export async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) process.stderr.write('value (end with Ctrl-D; it is not echoed to the log): ');
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(typeof c === 'string' ? Buffer.from(c) : (c as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

const SET_USAGE = `ccos secrets set — store a secret (encrypted in the data directory)

Usage:
  printf %s "$VALUE" | ccos secrets set NAME

The value is read from stdin (one trailing newline is removed), never from the command line, and
is never printed. Capabilities that list NAME in their manifest's secrets read it at the provider
boundary; it never appears in plans, the causal chain, logs, errors or --json output.

With --json: {"ok":true,"name","updated"}.`;

const LIST_USAGE = `ccos secrets list — the names of the stored secrets (never their values)

Usage:
  ccos secrets list

With --json: {"ok":true,"secrets":[{"name","updated"}]}.`;

const DELETE_USAGE = `ccos secrets delete — delete a stored secret

Usage:
  ccos secrets delete NAME

With --json: {"ok":true,"name"}.`;

export const secretsCommands: Record<string, SecretsCommand> = {
  'secrets set': {
    summary: 'store a secret; the value is read from stdin',
    usage: SET_USAGE,
    async run(ccos, args, json, stdin, io = processIo) {
      if (args.length !== 1) return usage(io, json, 'secrets set', args.length ? `\`ccos secrets set\` takes one NAME (the value is read from stdin, not from the command line)` : 'missing NAME', SET_USAGE);
      const [name] = args as [string];
      let value = await stdin();
      // `echo value | ccos secrets set` adds a newline that is not part of the value.
      if (value.endsWith('\r\n')) value = value.slice(0, -2);
      else if (value.endsWith('\n')) value = value.slice(0, -1);
      if (value.length === 0) throw new CcosError('invalid-input', `no value for the secret ${name} on stdin`, { hint: `printf %s "$VALUE" | ccos secrets set ${name}` });
      const store = installSecrets(ccos);
      const info = store.set(name, value);
      recordSecretChange(ccos, 'SecretSet', name);
      if (json) io.stdout(JSON.stringify({ ok: true, name: info.name, updated: info.updated }));
      else io.stdout(`secret ${name} set`);
      return EXIT_OK;
    },
  },
  'secrets list': {
    summary: 'list the stored secrets (names only)',
    usage: LIST_USAGE,
    async run(ccos, args, json, _stdin, io = processIo) {
      if (args.length !== 0) return usage(io, json, 'secrets list', '`ccos secrets list` takes no arguments', LIST_USAGE);
      const secrets = installSecrets(ccos).list();
      if (json) io.stdout(JSON.stringify({ ok: true, secrets }));
      else if (secrets.length === 0) io.stdout('no secrets (set one with: printf %s "$VALUE" | ccos secrets set NAME)');
      else for (const s of secrets) io.stdout(`${s.name}  ${s.updated}`);
      return EXIT_OK;
    },
  },
  'secrets delete': {
    summary: 'delete a stored secret',
    usage: DELETE_USAGE,
    async run(ccos, args, json, _stdin, io = processIo) {
      if (args.length !== 1) return usage(io, json, 'secrets delete', args.length ? '`ccos secrets delete` takes one NAME' : 'missing NAME', DELETE_USAGE);
      const [name] = args as [string];
      installSecrets(ccos).delete(name);
      recordSecretChange(ccos, 'SecretDeleted', name);
      if (json) io.stdout(JSON.stringify({ ok: true, name }));
      else io.stdout(`secret ${name} deleted`);
      return EXIT_OK;
    },
  },
};

// Layering: common ← rtfs ← ccos ← server ← cli. The RTFS kernel imports no `node:*` module and
// nothing above it; nothing imports the CLI.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
// server (MCP and HTTP front ends) sits under cli: the CLI starts servers; nothing imports cli.
const LAYERS = ['common', 'rtfs', 'ccos', 'server', 'cli'];

function files(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : []));
}

function imports(file: string): string[] {
  const text = fs.readFileSync(file, 'utf8');
  return [...text.matchAll(/^\s*(?:import|export)\s[^;]*?from\s+'([^']+)'/gms), ...text.matchAll(/import\(\s*'([^']+)'\s*\)/g)].map((m) => m[1]);
}

test('imports only go down the layers', () => {
  const problems: string[] = [];
  for (const layer of LAYERS) {
    const rank = LAYERS.indexOf(layer);
    for (const f of files(path.join(root, 'src', layer))) {
      for (const spec of imports(f)) {
        if (!spec.startsWith('.')) continue;
        const target = path.relative(path.join(root, 'src'), path.resolve(path.dirname(f), spec)).split(path.sep)[0];
        const targetRank = LAYERS.indexOf(target);
        if (targetRank > rank) problems.push(`${path.relative(root, f)} imports ${spec} (${layer} → ${target})`);
      }
    }
  }
  assert.deepEqual(problems, []);
});

test('the RTFS kernel and common imports no node:* module and no I/O, clock or randomness', () => {
  const problems: string[] = [];
  for (const f of [...files(path.join(root, 'src/rtfs')), ...files(path.join(root, 'src/common'))]) {
    for (const spec of imports(f)) if (spec.startsWith('node:') || ['fs', 'path', 'os', 'child_process', 'crypto'].includes(spec)) problems.push(`${path.relative(root, f)} imports ${spec}`);
    const text = fs.readFileSync(f, 'utf8').replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, '');
    for (const banned of ['Date.now', 'new Date', 'Math.random', 'performance.now', 'process.']) if (text.includes(banned)) problems.push(`${path.relative(root, f)} uses ${banned}`);
  }
  assert.deepEqual(problems, []);
});

// The examples the README points at run offline on the built-in capabilities, and the pausing one
// resumes in another process without repeating its completed effect.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { openCcos } from '../src/ccos/index.js';
import { prStr, readOne, valueEquals, type Value } from '../src/rtfs/index.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const example = (name: string): string => path.join(root, 'examples', name);
const tmp = (): string => fs.mkdtempSync(path.join(os.tmpdir(), 'ccos-examples-'));

test('every example plan compiles and the offline ones complete', async () => {
  const ccos = openCcos({ dataDir: tmp() });
  try {
    const stateful = await ccos.runFile(example('stateful.rtfs'));
    assert.equal(stateful.status, 'completed', JSON.stringify(stateful.error));
    assert.ok(valueEquals(stateful.value!, readOne('{:status "completed" :counter 2 :state "completed" :events 2}') as Value), prStr(stateful.value!));
    const triage = await ccos.runFile(example('incident-triage.rtfs'), { inputs: { severity: 3 } });
    assert.equal(triage.status, 'completed', JSON.stringify(triage.error));
    assert.equal(prStr(triage.value!), '{:service "checkout" :action :page-on-call :incidents 1}');
    assert.equal(ccos.verifyChain().ok, true);
    assert.equal(ccos.replay(stateful.runId).identical, true);
  } finally {
    ccos.close();
  }
});

test('ask-and-resume pauses, then a new process resumes it and the earlier effect ran once', async () => {
  const dir = tmp();
  const ccos = openCcos({ dataDir: dir });
  const paused = await ccos.runFile(example('ask-and-resume.rtfs'));
  ccos.close();
  assert.equal(paused.status, 'paused');
  const cli = path.join(root, 'dist/src/cli/ccos.js');
  const r = spawnSync(process.execPath, [cli, 'resume', paused.runId, '--data-dir', dir, '--answer', '"ship it"', '--json'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr + r.stdout);
  const again = openCcos({ dataDir: dir });
  try {
    const details = again.runDetails(paused.runId)!;
    assert.equal(details.status, 'completed');
    assert.equal(prStr(details.result), '{:decision "ship it" :preparations 1}');
    const counted = await again.call('ccos.state.counter.get', '"deploy-preparations"');
    assert.equal(counted.value, 1, 'the preparation ran once, not again on resume');
    assert.equal(again.verifyChain().ok, true);
  } finally {
    again.close();
  }
});

test('the built CLIs are executable, so `npx ccos` and `npx rtfs` run them directly (README)', () => {
  for (const cli of ['ccos', 'rtfs']) {
    const file = path.join(root, 'dist/src/cli', `${cli}.js`);
    assert.ok((fs.statSync(file).mode & 0o111) !== 0, `${file} must be executable`);
    assert.match(fs.readFileSync(file, 'utf8').split('\n')[0], /^#!\/usr\/bin\/env node/);
    const r = spawnSync(file, ['--version'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^${cli} \\d+\\.\\d+\\.\\d+`));
  }
});

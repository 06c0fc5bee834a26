/**
 * Approvals: requests that pause a run until enough approvers (by count, role and quorum) have
 * decided, each decision signed with the approver's Ed25519 key and verified before it counts.
 *
 * Owns: approver keys (`ccos keys`), approval requests and their lifecycle (pending → approved /
 * denied / expired), signature checks, and the human summary of what is being approved.
 * Must never: count an unsigned, forged, replayed or unauthorized decision; change a decided
 * request; show a secret in a summary.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomUUID, sign, verify, type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { canonicalJson, type Json } from '../../common/canonical.js';
import { CcosError } from '../errors.js';
import type { Orchestrator } from '../orchestrator.js';
import type { SqliteStore } from '../store/sqlite.js';
import type { ApprovalRequirement } from './constitution.js';

export type ApprovalStatus = 'pending' | 'approved' | 'denied' | 'expired';

/** One approval request. */
export interface ApprovalRequest {
  id: string;
  runId: string | null;
  /** What is being approved: `call:<request id>`, `step:<path>`, `plan`, `amendment`. */
  subjectKey: string;
  kind: 'call' | 'step' | 'plan' | 'amendment' | 'budget';
  /** Human summary: capability, arguments (secrets redacted), step, plan, rule, estimated cost. */
  summary: Record<string, Json>;
  rule: string;
  requirement: ApprovalRequirement;
  status: ApprovalStatus;
  created: string;
  expires: string;
  decisions: ApprovalDecision[];
}

export interface ApprovalDecision {
  approver: string;
  decision: 'approve' | 'deny';
  reason: string;
  time: string;
  keyId: string;
  signature: string;
}

interface Row {
  id: string;
  run_id: string | null;
  subject_key: string;
  kind: ApprovalRequest['kind'];
  summary: string;
  rule: string;
  requirement: string;
  status: ApprovalStatus;
  created: string;
  expires: string;
  decisions: string;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS approvers (name TEXT PRIMARY KEY, key_id TEXT NOT NULL, public_key TEXT NOT NULL, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS approvals (
  id TEXT PRIMARY KEY, run_id TEXT, subject_key TEXT NOT NULL, kind TEXT NOT NULL, summary TEXT NOT NULL, rule TEXT NOT NULL,
  requirement TEXT NOT NULL, status TEXT NOT NULL, created TEXT NOT NULL, expires TEXT NOT NULL, decisions TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS approvals_subject ON approvals(run_id, subject_key);
`;

const toRequest = (r: Row): ApprovalRequest => ({
  id: r.id,
  runId: r.run_id,
  subjectKey: r.subject_key,
  kind: r.kind,
  summary: JSON.parse(r.summary),
  rule: r.rule,
  requirement: JSON.parse(r.requirement),
  status: r.status,
  created: r.created,
  expires: r.expires,
  decisions: JSON.parse(r.decisions),
});

/** The message an approver signs: the request, its subject and the decision. */
export function decisionMessage(req: Pick<ApprovalRequest, 'id' | 'subjectKey' | 'summary'>, approver: string, decision: string, reason: string): string {
  return canonicalJson({ approval: req.id, subject: req.subjectKey, summary_sha256: createHash('sha256').update(canonicalJson(req.summary)).digest('hex'), approver, decision, reason });
}

export class Approvals {
  constructor(
    private readonly store: SqliteStore,
    private readonly orchestrator: Orchestrator,
  ) {
    store.db.exec(SCHEMA);
  }

  private keysDir(): string {
    return path.join(this.store.dataDir, 'keys', 'approvers');
  }

  /** Creates an approver key pair; the private key goes to `keys/approvers/NAME.pem` (0600). */
  createApprover(name: string): { name: string; keyId: string; privateKeyFile: string } {
    if (!/^[A-Za-z0-9._@-]+$/.test(name)) throw new CcosError('invalid-input', `approver name ${JSON.stringify(name)} may use letters, digits and . _ @ - only`);
    if (this.store.stmt('SELECT 1 FROM approvers WHERE name = ?').get(name)) throw new CcosError('exists', `approver ${name} already has a key`, { hint: 'keys are not replaced silently; use another name' });
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    fs.mkdirSync(this.keysDir(), { recursive: true, mode: 0o700 });
    const file = path.join(this.keysDir(), `${name}.pem`);
    fs.writeFileSync(file, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600, flag: 'wx' });
    const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const keyId = `key-${createHash('sha256').update(pem).digest('hex').slice(0, 16)}`;
    this.store.tx(() => {
      this.store.stmt('INSERT INTO approvers (name, key_id, public_key, created) VALUES (?, ?, ?, ?)').run(name, keyId, pem, new Date().toISOString());
      this.orchestrator.record({ type: 'ApproverRegistered', data: { approver: name, key_id: keyId } });
    });
    return { name, keyId, privateKeyFile: file };
  }

  approvers(): { name: string; keyId: string; created: string }[] {
    return (this.store.stmt('SELECT name, key_id, created FROM approvers ORDER BY name').all() as { name: string; key_id: string; created: string }[]).map((r) => ({ name: r.name, keyId: r.key_id, created: r.created }));
  }

  /** The approval request for a subject of a run, if one exists. */
  find(runId: string | null, subjectKey: string): ApprovalRequest | undefined {
    const r = this.store.stmt('SELECT * FROM approvals WHERE run_id IS ? AND subject_key = ? ORDER BY created DESC LIMIT 1').get(runId, subjectKey) as Row | undefined;
    return r ? this.refresh(toRequest(r)) : undefined;
  }

  get(id: string): ApprovalRequest | undefined {
    const r = this.store.stmt('SELECT * FROM approvals WHERE id = ?').get(id) as Row | undefined;
    return r ? this.refresh(toRequest(r)) : undefined;
  }

  list(filter: { status?: ApprovalStatus } = {}): ApprovalRequest[] {
    const rows = (filter.status ? this.store.stmt('SELECT * FROM approvals WHERE status = ? ORDER BY created').all(filter.status) : this.store.stmt('SELECT * FROM approvals ORDER BY created').all()) as Row[];
    return rows.map((r) => this.refresh(toRequest(r)));
  }

  /** Opens a request (recorded on the chain). */
  open(runId: string | null, subjectKey: string, kind: ApprovalRequest['kind'], summary: Record<string, Json>, rule: string, requirement: ApprovalRequirement): ApprovalRequest {
    const now = new Date();
    const req: ApprovalRequest = {
      id: `apr-${randomUUID().slice(0, 8)}`,
      runId,
      subjectKey,
      kind,
      summary,
      rule,
      requirement,
      status: 'pending',
      created: now.toISOString(),
      expires: new Date(now.getTime() + requirement.expiresMs).toISOString(),
      decisions: [],
    };
    this.store.tx(() => {
      this.store
        .stmt('INSERT INTO approvals (id, run_id, subject_key, kind, summary, rule, requirement, status, created, expires, decisions) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)')
        .run(req.id, runId, subjectKey, kind, JSON.stringify(summary), rule, JSON.stringify(requirement), 'pending', req.created, req.expires, '[]');
      this.orchestrator.record({ type: 'ApprovalRequested', runId, data: { approval: req.id, kind, rule, summary, requirement: requirement as unknown as Json, expires: req.expires } });
    });
    return req;
  }

  /** Marks an expired pending request (recorded once). */
  private refresh(req: ApprovalRequest): ApprovalRequest {
    if (req.status === 'pending' && Date.now() > Date.parse(req.expires)) {
      this.store.tx(() => {
        this.store.stmt("UPDATE approvals SET status = 'expired' WHERE id = ? AND status = 'pending'").run(req.id);
        this.orchestrator.record({ type: 'ApprovalDecided', runId: req.runId, data: { approval: req.id, status: 'expired' } });
      });
      return { ...req, status: 'expired' };
    }
    return req;
  }

  /**
   * Records an approver's signed decision. `signWith` signs the decision message (with the
   * approver's private key); the signature is verified against the registered public key before
   * anything changes. Throws `CcosError` naming the problem; nothing changes half-way.
   */
  decide(id: string, approver: string, decision: 'approve' | 'deny', reason: string, roles: ReadonlyMap<string, ReadonlySet<string>>, signWith: (message: string) => string): ApprovalRequest {
    const req = this.get(id);
    if (!req) throw new CcosError('not-found', `no approval request ${id}`, { hint: 'list them with `ccos approvals list`' });
    const reject = (code: string, msg: string, hint?: string): never => {
      this.store.tx(() => this.orchestrator.record({ type: 'ApprovalRejected', runId: req.runId, data: { approval: id, approver, decision, problem: msg } }));
      throw new CcosError(code, msg, { hint });
    };
    if (req.status !== 'pending') return reject('already-decided', `approval ${id} is already ${req.status}`);
    if (decision === 'deny' && !reason.trim()) throw new CcosError('invalid-input', 'a denial needs a reason (--reason)');
    const row = this.store.stmt('SELECT key_id, public_key FROM approvers WHERE name = ?').get(approver) as { key_id: string; public_key: string } | undefined;
    if (!row) return reject('unknown-approver', `${approver} is not a registered approver`, 'register with `ccos keys create NAME`');
    const held = roles.get(approver) ?? new Set<string>();
    const wanted = [...req.requirement.roles, ...req.requirement.quorum];
    if (wanted.length > 0 && !wanted.some((r) => held.has(r))) {
      return reject('unauthorized-approver', `${approver} holds none of the roles this approval needs (${wanted.map((r) => ':' + r).join(' ')})`, 'roles come from the constitution\'s :roles');
    }
    if (req.decisions.some((d) => d.approver === approver)) return reject('already-decided', `${approver} has already decided on ${id}`);
    const message = decisionMessage(req, approver, decision, reason);
    let signature: string;
    try {
      signature = signWith(message);
    } catch (e) {
      return reject('signature', `could not sign as ${approver}: ${(e as Error).message}`, 'pass the approver\'s private key with --key FILE');
    }
    let valid = false;
    try {
      valid = verify(null, Buffer.from(message), createPublicKey(row.public_key), Buffer.from(signature, 'base64'));
    } catch {
      valid = false;
    }
    if (!valid) return reject('signature', `the signature does not verify with ${approver}'s registered key (${row.key_id})`, 'sign with the approver\'s own private key');
    const d: ApprovalDecision = { approver, decision, reason, time: new Date().toISOString(), keyId: row.key_id, signature };
    const decisions = [...req.decisions, d];
    const status: ApprovalStatus = decision === 'deny' ? 'denied' : satisfied(req.requirement, decisions, roles) ? 'approved' : 'pending';
    this.store.tx(() => {
      const changed = this.store.stmt("UPDATE approvals SET decisions = ?, status = ? WHERE id = ? AND status = 'pending'").run(JSON.stringify(decisions), status, id).changes;
      if (changed !== 1) throw new CcosError('already-decided', `approval ${id} was decided meanwhile`);
      this.orchestrator.record({ type: 'ApprovalDecided', runId: req.runId, data: { approval: id, approver, decision, reason, key_id: row.key_id, signature, message, status } });
    });
    return { ...req, decisions, status };
  }

  /** Re-verifies every recorded decision's signature (for audits). */
  verifyDecisions(): { approval: string; approver: string; ok: boolean }[] {
    const out: { approval: string; approver: string; ok: boolean }[] = [];
    for (const req of this.list()) {
      for (const d of req.decisions) {
        const row = this.store.stmt('SELECT public_key FROM approvers WHERE name = ?').get(d.approver) as { public_key: string } | undefined;
        const ok = !!row && verify(null, Buffer.from(decisionMessage(req, d.approver, d.decision, d.reason)), createPublicKey(row.public_key), Buffer.from(d.signature, 'base64'));
        out.push({ approval: req.id, approver: d.approver, ok });
      }
    }
    return out;
  }
}

/** Does a set of approvals satisfy a requirement (count of authorized approvers, and quorum)? */
export function satisfied(r: ApprovalRequirement, decisions: ApprovalDecision[], roles: ReadonlyMap<string, ReadonlySet<string>>): boolean {
  const approvers = decisions.filter((d) => d.decision === 'approve').map((d) => d.approver);
  const authorized = r.roles.length === 0 ? approvers : approvers.filter((a) => r.roles.some((role) => roles.get(a)?.has(role)));
  if (authorized.length < r.count) return false;
  return r.quorum.every((role) => approvers.some((a) => roles.get(a)?.has(role)));
}

/** Loads an approver's private key for signing (from `--key FILE` or the data dir). */
export function approverSigner(store: SqliteStore, approver: string, keyFile?: string): (message: string) => string {
  const file = keyFile ?? path.join(store.dataDir, 'keys', 'approvers', `${approver}.pem`);
  let key: KeyObject;
  try {
    key = createPrivateKey(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new CcosError('key', `cannot read the private key of ${approver} at ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { hint: 'pass --key FILE with the approver\'s private key' });
  }
  return (message) => sign(null, Buffer.from(message), key).toString('base64');
}

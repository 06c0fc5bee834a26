/**
 * The intent graph: goals with constraints and success criteria, their status, and relations
 * between them; plans (runs) link to the intent they serve.
 *
 * Owns: intents and their edges in the store; every change is an action on the chain.
 * Must never: change an intent without recording it.
 */
import { randomUUID } from 'node:crypto';
import { CcosError } from './errors.js';
import type { Orchestrator } from './orchestrator.js';
import type { SqliteStore } from './store/sqlite.js';

export const INTENT_STATUSES = ['Active', 'Executing', 'Completed', 'Failed', 'Suspended', 'Archived'] as const;
export type IntentStatus = (typeof INTENT_STATUSES)[number];
export const INTENT_RELATIONS = ['depends-on', 'is-subgoal-of', 'conflicts-with', 'enables', 'related-to'] as const;
export type IntentRelation = (typeof INTENT_RELATIONS)[number];

export interface Intent {
  id: string;
  goal: string;
  constraints: Record<string, unknown>;
  successCriteria: string;
  status: IntentStatus;
  created: string;
  updated: string;
}

interface IntentRow {
  id: string;
  goal: string;
  constraints: string;
  success: string;
  status: IntentStatus;
  created: string;
  updated: string;
}

const toIntent = (r: IntentRow): Intent => ({ id: r.id, goal: r.goal, constraints: JSON.parse(r.constraints), successCriteria: r.success, status: r.status, created: r.created, updated: r.updated });

export class IntentGraph {
  constructor(
    private readonly store: SqliteStore,
    private readonly orchestrator: Orchestrator,
  ) {
    // Runs move their intent through its lifecycle.
    orchestrator.subscribe((a) => {
      if (!a.intentId) return;
      const next: Partial<Record<string, IntentStatus>> = { PlanStarted: 'Executing', PlanResumed: 'Executing', PlanCompleted: 'Completed', PlanAborted: 'Failed', PlanPaused: 'Suspended' };
      const status = next[a.type];
      if (status && this.get(a.intentId)?.status !== status) this.setStatus(a.intentId, status, `${a.type} of ${a.runId}`);
    });
  }

  create(goal: string, opts: { constraints?: Record<string, unknown>; successCriteria?: string } = {}): Intent {
    if (!goal.trim()) throw new CcosError('invalid-input', 'an intent needs a goal');
    const now = new Date().toISOString();
    const intent: Intent = { id: `intent-${randomUUID()}`, goal, constraints: opts.constraints ?? {}, successCriteria: opts.successCriteria ?? '', status: 'Active', created: now, updated: now };
    this.store.tx(() => {
      this.store.stmt('INSERT INTO intents (id, goal, constraints, success, status, created, updated) VALUES (?, ?, ?, ?, ?, ?, ?)').run(intent.id, goal, JSON.stringify(intent.constraints), intent.successCriteria, intent.status, now, now);
      this.orchestrator.record({ type: 'IntentCreated', intentId: intent.id, data: { goal, constraints: intent.constraints as never, success_criteria: intent.successCriteria } });
    });
    return intent;
  }

  get(id: string): Intent | undefined {
    const r = this.store.stmt('SELECT * FROM intents WHERE id = ?').get(id) as IntentRow | undefined;
    return r ? toIntent(r) : undefined;
  }

  list(): Intent[] {
    return (this.store.stmt('SELECT * FROM intents ORDER BY created DESC, rowid DESC').all() as IntentRow[]).map(toIntent);
  }

  setStatus(id: string, status: IntentStatus, reason = ''): void {
    if (!INTENT_STATUSES.includes(status)) throw new CcosError('invalid-input', `unknown intent status ${status}`, { hint: `one of ${INTENT_STATUSES.join(', ')}` });
    const before = this.get(id);
    if (!before) throw new CcosError('not-found', `no intent ${id}`);
    this.store.tx(() => {
      this.store.stmt('UPDATE intents SET status = ?, updated = ? WHERE id = ?').run(status, new Date().toISOString(), id);
      this.orchestrator.record({ type: 'IntentStatusChanged', intentId: id, data: { from: before.status, to: status, reason } });
    });
  }

  relate(from: string, to: string, relation: IntentRelation): void {
    if (!INTENT_RELATIONS.includes(relation)) throw new CcosError('invalid-input', `unknown relation ${relation}`, { hint: `one of ${INTENT_RELATIONS.join(', ')}` });
    for (const id of [from, to]) if (!this.get(id)) throw new CcosError('not-found', `no intent ${id}`);
    this.store.tx(() => {
      this.store.stmt('INSERT OR IGNORE INTO intent_edges (from_id, to_id, kind) VALUES (?, ?, ?)').run(from, to, relation);
      this.orchestrator.record({ type: 'IntentRelationshipCreated', intentId: from, data: { from, to, relation } });
    });
  }

  /** Edges touching an intent. */
  relations(id: string): { from: string; to: string; relation: IntentRelation }[] {
    return (this.store.stmt('SELECT from_id, to_id, kind FROM intent_edges WHERE from_id = ? OR to_id = ?').all(id, id) as { from_id: string; to_id: string; kind: IntentRelation }[]).map((e) => ({ from: e.from_id, to: e.to_id, relation: e.kind }));
  }

  /** Runs (plans) linked to an intent. */
  runs(id: string): { id: string; status: string; created: string }[] {
    return this.store.stmt('SELECT id, status, created FROM runs WHERE intent_id = ? ORDER BY created').all(id) as { id: string; status: string; created: string }[];
  }
}

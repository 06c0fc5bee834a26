/**
 * The causal chain: the tamper-evident record of everything a run did and why.
 *
 * Owns: action types, their canonical encoding, the hash chain
 * (`hash = sha256(prev_hash ‖ canonical body)`), Ed25519 seals over the chain head, content
 * addressing of large payloads, reading actions back, export, and verification that detects
 * any edited, deleted, inserted or reordered action.
 * Must never: store a secret value; rewrite an existing action.
 *
 * Why seals rather than a signature per action: a signature costs ~70 µs here, a hash ~1 µs.
 * Every action is hash-linked; the node signs the chain head (a seal) at every completion and
 * abort, every SEAL_EVERY actions, when it closes, and within PAUSE_SEAL_DELAY_MS of a pause.
 * Editing any sealed action breaks either the links or a seal's signature, and re-signing needs
 * the node's private key. (A pause is sealed a moment later rather than at once so that a plan
 * that asks and is answered in quick succession pays for one signature, not one per question.)
 */
import { hash, randomUUID } from 'node:crypto';
import { canonicalJson, sortedKeys, type Json } from '../common/canonical.js';
import { CcosError } from './errors.js';
import type { NodeKey } from './keys.js';
import { translateSqliteError, type SqliteStore } from './store/sqlite.js';

/** Every kind of action on the chain. */
export const ACTION_TYPES = [
  'PlanStarted', 'PlanPaused', 'PlanResumed', 'PlanCompleted', 'PlanAborted', 'PlanCancelled',
  'StepStarted', 'StepCompleted', 'StepFailed', 'StepRetrying',
  'CapabilityCall', 'CapabilityResult', 'PolicyDecision', 'CheckpointCreated',
  'IntentCreated', 'IntentStatusChanged', 'IntentRelationshipCreated',
  'CapabilityRegistered',
  'ContractCheckStarted', 'ContractCheckCompleted', 'CompensationStarted', 'CompensationCompleted',
  'ConstitutionLoaded', 'ApproverRegistered', 'ApprovalRequested', 'ApprovalDecided', 'ApprovalRejected',
  'SecretSet', 'SecretDeleted', 'StepProfileDerived', 'AccessDenied', 'McpServerStaged', 'McpToolBlocked',
] as const;
export type ActionType = (typeof ACTION_TYPES)[number];

/** Payloads above this size go to the blob table and are referenced by hash. */
export const INLINE_LIMIT = 4096;
/** Seal the chain head at least this often. */
export const SEAL_EVERY = 256;
/** A pause is sealed at the latest this long after it (sooner if anything else seals). */
export const PAUSE_SEAL_DELAY_MS = 50;

export const GENESIS = '0'.repeat(64);

/** What a caller provides to append an action. */
export interface NewAction {
  type: ActionType;
  runId?: string | null;
  planId?: string | null;
  intentId?: string | null;
  parentId?: string | null;
  stepPath?: string[];
  /** Type-specific data: arguments, results, decisions (large values are stored by hash). */
  data?: Record<string, Json>;
  costUsd?: number;
  durationMs?: number;
}

/**
 * An action made before its place on the chain is known (a call's, recorded in the redo log
 * before its effect starts and put on the chain with its result): its id, time and content are
 * fixed; its sequence number and hash are given when it is appended (see `appendPair`).
 */
export interface DraftAction {
  readonly action: Action;
  /** Its canonical body, for the sequence number the head had when it was drafted. */
  readonly body: string;
  readonly dataText: string;
}

/** An action as stored. */
export interface Action {
  seq: number;
  id: string;
  parentId: string | null;
  runId: string | null;
  planId: string | null;
  intentId: string | null;
  stepPath: string[];
  type: ActionType;
  time: string;
  data: Record<string, Json>;
  costUsd?: number;
  durationMs?: number;
  prevHash: string;
  hash: string;
}

interface ActionRow {
  seq: number;
  body: string;
  hash: string;
  /** The previous row's hash (see ROW_SQL); null when there is no such row. */
  prev_hash: string | null;
}

/** The columns an ActionRow is read from (the previous hash is the previous row's). */
const ROW_SQL = 'seq, body, hash, (SELECT p.hash FROM action_rows p WHERE p.seq = action_rows.seq - 1) AS prev_hash';

/** Result of `verify`. */
export interface VerifyReport {
  ok: boolean;
  actions: number;
  sealed: number;
  seals: number;
  /** Actions after the last seal (normal while a run is in progress). */
  unsealedTail: number;
  /** Problems found, first first; each names the sequence number (0: not tied to one action). */
  problems: { seq: number; problem: string }[];
}

const sha256 = (s: string): string => hash('sha256', s);

let isoMs = -1;
let isoText = '';
/**
 * The current time as an ISO 8601 string, as `new Date().toISOString()` gives it. Formatting costs
 * ~0.5 µs and every action and run update needs one; within one millisecond the text is the same.
 */
export function isoNow(): string {
  const ms = Date.now();
  if (ms !== isoMs) {
    isoMs = ms;
    isoText = new Date(ms).toISOString();
  }
  return isoText;
}

/**
 * Action ids: a random prefix per process (the first 24 characters of a v4 UUID: 72 random bits)
 * and a counter as the last 12 hex digits, so unique as UUIDs are. `randomUUID` assembles its text
 * from 16 pieces, and every action needs an id: this costs a fraction of it.
 */
const ID_PREFIX = `act-${randomUUID().slice(0, 24)}`;
let idCounter = 0;
function actionId(): string {
  return ID_PREFIX + (++idCounter).toString(16).padStart(12, '0');
}

/** The chain over a store. */
export class CausalChain {
  private readonly insert;
  private readonly insertPair;
  private readonly head;
  private readonly insertSeal;
  /** Actions this node appended since its last seal. */
  private sinceSeal = 0;
  private sealTimer: NodeJS.Timeout | null = null;
  /** The head as of `store.generation` (saves a query per append inside one transaction). */
  private cachedHead: { generation: number; seq: number; hash: string } | null = null;

  constructor(
    private readonly store: SqliteStore,
    private readonly key: NodeKey,
  ) {
    const db = store.db;
    // The run id column is the body's `run` (see the store's ACTION_ROWS; `verify` checks it).
    this.insert = db.prepare('INSERT INTO action_rows (seq, body, hash, run_id) VALUES (?, ?, ?, ?)');
    this.insertPair = db.prepare('INSERT INTO action_rows (seq, body, hash, run_id) VALUES (?, ?, ?, ?), (?, ?, ?, ?)');
    this.head = db.prepare('SELECT seq, hash FROM action_rows ORDER BY seq DESC LIMIT 1');
    this.insertSeal = db.prepare('INSERT INTO seals (seq, head_hash, time, key_id, signature) VALUES (?, ?, ?, ?, ?)');
    // In the redo log an action is its body, appended again on replay (at the head of that time:
    // another process may have appended meanwhile), and a seal is redone by sealing that head.
    store.onReplay('action', (body) => this.appendRecorded(JSON.parse(body) as Record<string, Json>, body));
    store.onReplay('seal', () => this.seal());
  }

  /**
   * Appends actions. Call inside `store.tx` so that they land together with the state change
   * they describe; the head is read inside the transaction, so concurrent writers cannot fork it.
   */
  append(a: NewAction): Action {
    const { generation, seq, prevHash } = this.nextLink();
    const { action, body } = this.build(a, seq, prevHash);
    this.put(generation, seq, body, action.hash, action.runId || null);
    return action;
  }

  /**
   * Appends an action recorded before (a redo log's body: its fields, and its text if at hand) at
   * the current head: as it was if the head is where it was then, else renumbered (its id, time
   * and content unchanged).
   */
  appendRecorded(fields: Record<string, Json>, text?: string): void {
    const { generation, seq, prevHash } = this.nextLink();
    const body = text !== undefined && fields.seq === seq ? text : canonicalJson({ ...fields, seq });
    this.put(generation, seq, body, sha256(prevHash + body), typeof fields.run === 'string' ? fields.run : null);
  }

  /** Inserts one action row (captured for the redo log unless `redone`) and makes it the head. */
  private put(generation: number, seq: number, body: string, hash: string, runId: string | null, redone = false): void {
    this.insert.run(seq, body, hash, runId);
    this.captureAppended(body, redone);
    this.linked(generation, { seq, hash }, 1);
  }

  /**
   * Makes an action whose place on the chain comes later (see `DraftAction`), encoded for the
   * place after the last head this chain knows (no query: a wrong guess costs a re-encoding).
   */
  draft(a: NewAction): DraftAction {
    return this.compose(a, (this.cachedHead?.seq ?? 0) + 1);
  }

  /**
   * Appends two actions with one insert, the second made from the first (a call and its result,
   * written in the same breath: one statement instead of two). The first may be a draft:
   * `firstRedone` then says that a record of the open group already redoes it after a crash (so
   * it is not captured again).
   */
  appendPair(first: NewAction | DraftAction, second: (first: Action) => NewAction, firstRedone = false): [Action, Action] {
    const { generation, seq, prevHash } = this.nextLink();
    const a = this.place('body' in first ? first : this.compose(first, seq), seq, prevHash);
    const b = this.build(second(a.action), seq + 1, a.action.hash);
    this.insertPair.run(seq, a.body, a.action.hash, a.action.runId || null, seq + 1, b.body, b.action.hash, b.action.runId || null);
    this.captureAppended(a.body, firstRedone);
    this.captureAppended(b.body, false);
    this.linked(generation, b.action, 2);
    return [a.action, b.action];
  }

  /** Appends a draft alone (its call is still in flight at a commit, or it paused). */
  appendDraft(d: DraftAction, redone: boolean): Action {
    const { generation, seq, prevHash } = this.nextLink();
    const { action, body } = this.place(d, seq, prevHash);
    this.put(generation, seq, body, action.hash, action.runId || null, redone);
    return action;
  }

  /** An appended action, for the redo log: its body, or nothing if a record of the group redoes it. */
  private captureAppended(body: string, redone: boolean): void {
    if (redone) this.store.captureCovered(1);
    else this.store.capture('action', body, 1);
  }

  /** The sequence number and previous hash of the next action. */
  private nextLink(): { generation: number; seq: number; prevHash: string } {
    const generation = this.store.generation;
    const cached = this.store.db.inTransaction && this.cachedHead?.generation === generation ? this.cachedHead : null;
    const h = cached ?? (this.head.get() as { seq: number; hash: string } | undefined);
    return { generation, seq: (h?.seq ?? 0) + 1, prevHash: h?.hash ?? GENESIS };
  }

  /** An action and its canonical body, hashed onto `prevHash`. */
  private build(a: NewAction, seq: number, prevHash: string): { action: Action; body: string } {
    return this.place(this.compose(a, seq), seq, prevHash);
  }

  /** A draft given its place: renumbered if the head moved since it was drafted, then hashed. */
  private place(d: DraftAction, seq: number, prevHash: string): { action: Action; body: string } {
    const { action } = d;
    let body = d.body;
    if (action.seq !== seq) {
      action.seq = seq;
      body = bodyText(action, d.dataText);
    }
    action.prevHash = prevHash;
    action.hash = sha256(prevHash + body);
    return { action, body };
  }

  /** An action and its canonical body for sequence number `seq`, not yet hashed. */
  private compose(a: NewAction, seq: number): DraftAction {
    const { data, text: dataText } = this.externalize(a.data ?? {});
    const action: Action = {
      seq,
      id: actionId(),
      parentId: a.parentId ?? null,
      runId: a.runId ?? null,
      planId: a.planId ?? null,
      intentId: a.intentId ?? null,
      stepPath: a.stepPath ?? [],
      type: a.type,
      time: isoNow(),
      data,
      prevHash: '',
      hash: '',
    };
    if (a.costUsd !== undefined) action.costUsd = a.costUsd;
    if (a.durationMs !== undefined) action.durationMs = Math.round(a.durationMs * 1000) / 1000;
    return { action, body: bodyText(action, dataText), dataText };
  }

  /** Notes `head` as the chain head (`count` actions were appended); seals when due. */
  private linked(generation: number, head: { seq: number; hash: string }, count: number): void {
    this.cachedHead = { generation, seq: head.seq, hash: head.hash };
    this.sinceSeal += count;
    if (this.sinceSeal >= SEAL_EVERY) this.seal();
  }

  /** Signs the current head. Call inside a transaction (or alone). */
  seal(): void {
    if (this.sealTimer) clearTimeout(this.sealTimer);
    this.sealTimer = null;
    const h = this.head.get() as { seq: number; hash: string } | undefined;
    if (!h) return;
    const exists = this.store.stmt('SELECT 1 FROM seals WHERE seq = ?').get(h.seq);
    this.sinceSeal = 0;
    if (exists) return;
    const time = isoNow();
    const signature = this.key.sign(sealMessage(h.seq, h.hash));
    this.insertSeal.run(h.seq, h.hash, time, this.key.id, signature);
    this.store.capture('seal', 'null', 1);
  }

  /** Seals within PAUSE_SEAL_DELAY_MS (in its own transaction), unless something seals sooner. */
  sealSoon(): void {
    this.sealTimer ??= setTimeout(() => {
      this.sealTimer = null;
      try {
        if (this.store.db.open) this.store.tx(() => this.seal());
      } catch {
        // The store is failing (disk full, closed under us): the next seal covers these actions.
      }
    }, PAUSE_SEAL_DELAY_MS).unref();
  }

  /** Seals if this node appended actions since its last seal (a node closing). */
  sealIfUnsealed(): void {
    if (this.sinceSeal > 0 || this.sealTimer) this.store.tx(() => this.seal());
  }

  /**
   * Stores large values by content hash (the action keeps `{"$blob": "sha256:..."}`); returns the
   * data as stored and its canonical text (each value is encoded once, to measure and to hash).
   */
  private externalize(data: Record<string, Json>): { data: Record<string, Json>; text: string } {
    const out: Record<string, Json> = {};
    const keys = sortedKeys(data);
    let text = '{';
    for (const k of keys) {
      let v = data[k];
      if (v === undefined) continue;
      let t = canonicalJson(v);
      if (t.length > INLINE_LIMIT) {
        v = { $blob: this.storeBlob(t), bytes: t.length, summary: t.slice(0, 200) };
        t = canonicalJson(v);
      }
      out[k] = v;
      text += (text.length > 1 ? ',' : '') + JSON.stringify(k) + ':' + t;
    }
    return { data: out, text: text + '}' };
  }

  /**
   * Stores a JSON text by content hash, once; returns its address (`blobAddress`). Call inside a
   * transaction with whatever refers to it.
   */
  storeBlob(json: string, address = blobAddress(json)): string {
    this.store.stmt('INSERT OR IGNORE INTO blobs (hash, content) VALUES (?, ?)').run(address, json);
    return address;
  }

  /** A stored blob's JSON. */
  blob(hash: string): Json | undefined {
    const content = this.blobContent(hash);
    return content === undefined ? undefined : (JSON.parse(content) as Json);
  }

  /** A stored blob's JSON text if it still hashes to its address; undefined if missing or altered. */
  blobText(address: string): string | undefined {
    const content = this.blobContent(address);
    return content !== undefined && blobAddress(content) === address ? content : undefined;
  }

  private blobContent(address: string): string | undefined {
    return this.store.stmt('SELECT content FROM blobs WHERE hash = ?').pluck(true).get(address) as string | undefined;
  }

  /** Actions, optionally of one run, in chain order. */
  list(filter: { runId?: string; limit?: number; afterSeq?: number } = {}): Action[] {
    const where: string[] = [];
    const args: unknown[] = [];
    if (filter.runId) {
      where.push('run_id = ?');
      args.push(filter.runId);
    }
    if (filter.afterSeq !== undefined) {
      where.push('seq > ?');
      args.push(filter.afterSeq);
    }
    const sql = `SELECT ${ROW_SQL} FROM action_rows ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY seq${filter.limit ? ' LIMIT ' + Number(filter.limit) : ''}`;
    try {
      return (this.store.stmt(sql).all(...args) as ActionRow[]).map(rowToAction);
    } catch (e) {
      throw translateSqliteError(e, this.store.dbPath);
    }
  }

  /** Streams every action (for export and verification) without loading the chain in memory. */
  *iterate(): IterableIterator<Action> {
    let prevHash = GENESIS;
    for (const row of this.store.db.prepare('SELECT seq, body, hash FROM action_rows ORDER BY seq').iterate() as IterableIterator<ActionRow>) {
      yield rowToAction({ ...row, prev_hash: prevHash });
      prevHash = row.hash;
    }
  }

  /**
   * Verifies the whole chain: contiguous sequence numbers from 1, each body hashing to its stored
   * hash with the previous hash, and every seal signed by the node key over the hash at its
   * sequence number.
   */
  verify(): VerifyReport {
    try {
      if (this.sealTimer) this.store.tx(() => this.seal()); // a pause of this node, sealed now rather than soon
      return this.verifyUnsafe();
    } catch (e) {
      throw translateSqliteError(e, this.store.dbPath);
    }
  }

  private verifyUnsafe(): VerifyReport {
    const problems: { seq: number; problem: string }[] = [];
    const seals = this.store.stmt('SELECT * FROM seals ORDER BY seq').all() as { seq: number; head_hash: string; key_id: string; signature: string }[];
    const sealAt = new Map(seals.map((s) => [s.seq, s]));
    let expectedSeq = 1;
    let prev = GENESIS;
    let count = 0;
    // One-shot hashing: about twice as fast as createHash for small inputs.
    const hasher = (p: string, body: string): string => hash('sha256', p + body);
    // The other columns are read from the body (see the store's ACTION_ROWS), so the body and its
    // hash are what there is to check, and that the run id column (which the run index and every
    // per-run query use) is the body's. The body names its own sequence number: one that differs
    // from its place tells a moved action from an edited one.
    const validSeals: number[] = [];
    const rows = this.store.db.prepare('SELECT seq, body, hash, run_id FROM action_rows ORDER BY seq').raw().iterate() as IterableIterator<unknown[]>;
    for (const row of rows) {
      const [seq, body, hash, runId] = row as [number, string, string, string | null];
      if (!isBodyRun(body, runId)) problems.push({ seq, problem: 'its run id column does not match its content (edited: the action would be listed under another run)' });
      count++;
      const inPlace = seq === expectedSeq;
      if (!inPlace) problems.push({ seq, problem: seq > expectedSeq ? `actions ${expectedSeq}..${seq - 1} are missing (deleted)` : `sequence number out of order (expected ${expectedSeq})` });
      expectedSeq = seq + 1;
      if (hasher(prev, body) !== hash) {
        problems.push({ seq, problem: inPlace && ownSeq(body) === seq ? 'content does not match its hash (the action was edited)' : 'previous-hash link broken (an action was deleted, inserted or reordered before this one)' });
      }
      prev = hash;
      const s = sealAt.get(seq);
      if (s) {
        if (s.head_hash !== hash) problems.push({ seq, problem: 'seal does not match the chain at this point' });
        else if (!this.key.verifyFrom(s.key_id, sealMessage(seq, s.head_hash), s.signature)) problems.push({ seq, problem: 'seal signature is invalid (forged or re-signed with another key)' });
        else validSeals.push(seq);
      }
      if (problems.length >= 50) break;
    }
    // Trust ends at the first problem: the last seal before it is the sealed prefix.
    const firstProblem = problems.reduce((m, p) => Math.min(m, p.seq), Infinity);
    const lastSealed = validSeals.filter((q) => q < firstProblem).pop() ?? 0;
    for (const s of seals) if (s.seq >= expectedSeq) problems.push({ seq: s.seq, problem: 'a seal covers actions that are missing (deleted from the end of the chain)' });
    // The node seals in the same transaction as every PlanCompleted/Aborted/Cancelled, so such an
    // action after the last seal was not written by this node (forged, or its seals were removed
    // to hide a rewrite). (PlanPaused is sealed a moment later: see PAUSE_SEAL_DELAY_MS.)
    const lastSeal = seals.length ? seals[seals.length - 1].seq : 0;
    const unsealedTerminal = this.store.db
      .prepare(`SELECT seq, type FROM actions WHERE seq > ? AND type IN ('PlanCompleted','PlanAborted','PlanCancelled') ORDER BY seq`)
      .all(lastSeal) as { seq: number; type: string }[];
    for (const t of unsealedTerminal) problems.push({ seq: t.seq, problem: `${t.type} is not covered by a seal (appended without the node key, or seals were deleted)` });
    // Blobs are addressed by content: their bytes must still hash to their address.
    for (const b of this.store.db.prepare('SELECT hash, content FROM blobs').iterate() as IterableIterator<{ hash: string; content: string }>) {
      if (`sha256:${sha256(b.content)}` !== b.hash) problems.push({ seq: 0, problem: `blob ${b.hash} does not match its content (edited)` });
    }
    problems.sort((a, b) => a.seq - b.seq);
    return { ok: problems.length === 0, actions: count, sealed: lastSealed, seals: seals.length, unsealedTail: count - lastSeal > 0 ? Math.max(0, expectedSeq - 1 - lastSeal) : 0, problems };
  }
}

/**
 * Whether `runId` (an action row's run id column) is its body's top-level `run`, or the body has
 * none and `runId` is null. Read from the text: SQLite's JSON functions cost verification up to a
 * third of its speed here, this nothing measurable. In canonical order `run` comes right before
 * `seq`, and the members from `id` to `type` hold strings (or a list of them), where a raw
 * `,"run":` or `,"seq":` cannot occur; `data`, which may hold anything, comes before `id`.
 */
function isBodyRun(body: string, runId: string | null): boolean {
  const seqAt = topSeqAt(body);
  const idAt = body.lastIndexOf(',"id":', seqAt);
  if (seqAt < 0 || idAt < 0) return false;
  if (runId === null) return body.indexOf(',"run":', idAt) < 0;
  const member = `,"run":${JSON.stringify(runId)}`;
  return body.startsWith(member, seqAt - member.length);
}

/**
 * Where a canonical body's top-level `,"seq":` is: the last one in the text, since only strings
 * follow it and a quote inside a JSON string is escaped; -1 if none.
 */
function topSeqAt(body: string): number {
  return body.lastIndexOf(',"seq":');
}

/** The sequence number a canonical body names (its top-level `seq`); NaN if none. */
function ownSeq(body: string): number {
  const at = topSeqAt(body);
  return at < 0 ? NaN : parseInt(body.slice(at + 7, at + 27), 10);
}

/** The content address of a blob's JSON text. */
export function blobAddress(json: string): string {
  return `sha256:${sha256(json)}`;
}

function sealMessage(seq: number, hash: string): string {
  return `ccos-chain-seal\n${seq}\n${hash}`;
}

/**
 * The canonical body of an action, written out in canonical key order (cost_usd, data,
 * duration_ms, id, intent, parent, plan, run, seq, step, time, type) rather than built as an
 * object and sorted: equal to canonicalJson of that object, and every action goes through here.
 */
function bodyText(a: Action, dataText: string): string {
  const J = JSON.stringify;
  let b = '{';
  if (a.costUsd !== undefined) b += `"cost_usd":${canonicalJson(a.costUsd)},`;
  b += `"data":${dataText}`;
  if (a.durationMs !== undefined) b += `,"duration_ms":${canonicalJson(a.durationMs)}`;
  b += `,"id":${J(a.id)}`;
  if (a.intentId) b += `,"intent":${J(a.intentId)}`;
  if (a.parentId) b += `,"parent":${J(a.parentId)}`;
  if (a.planId) b += `,"plan":${J(a.planId)}`;
  if (a.runId) b += `,"run":${J(a.runId)}`;
  return `${b},"seq":${a.seq},"step":${canonicalJson(a.stepPath)},"time":${J(a.time)},"type":${J(a.type)}}`;
}

function rowToAction(r: ActionRow): Action {
  let b: Record<string, Json>;
  try {
    b = JSON.parse(r.body);
  } catch {
    throw new CcosError('chain', `action ${r.seq} is unreadable (its body is not JSON)`, { hint: 'run `ccos chain verify`' });
  }
  const text = (k: string): string | null => (typeof b[k] === 'string' ? (b[k] as string) : null);
  const a: Action = {
    seq: r.seq,
    id: text('id') ?? '',
    parentId: text('parent'),
    runId: text('run'),
    planId: text('plan'),
    intentId: text('intent'),
    stepPath: Array.isArray(b.step) ? (b.step as string[]) : [],
    type: text('type') as ActionType,
    time: text('time') ?? '',
    data: (b.data as Record<string, Json>) ?? {},
    // The first action links to GENESIS; '' when the action before this one is missing.
    prevHash: r.prev_hash ?? (r.seq === 1 ? GENESIS : ''),
    hash: r.hash,
  };
  if (typeof b.cost_usd === 'number') a.costUsd = b.cost_usd;
  if (typeof b.duration_ms === 'number') a.durationMs = b.duration_ms;
  return a;
}

// The Holdfast client for Node.js: one connection to a node, Cap'n Proto RPC through
// capnp-es with the node's own schema (src/gen, generated from ../../protocol).
//
// The rules the C++ client and the CLI follow, built in:
// - Every call has a deadline (`deadlineMs`, default 15 s). Before it, a hold operation
//   whose answer was lost (`outcome_unknown`: the connection dropped, the node timed
//   out inside) is sent again with the same hold id, which is safe: the node answers a
//   repeated reserve, confirm, release or extend with the hold as it stands. A call the
//   node did not take (`unavailable`: unreachable, overloaded, an owner down) is sent
//   again after a backoff. At the deadline the call fails with the last such error.
// - Auto-batching: hold operations of one kind made in the same turn of the event loop
//   go out as one batch RPC; while a batch is on the wire, new calls wait for the next
//   one (a second leaves only if the first is slow), so batches grow with the load.
// - Domain refusals (out_of_stock, unknown_sku, hold_conflict, forbidden, ...) are not
//   retried: the promise rejects with a HoldfastError whose `code` names the outcome.
import net from "node:net";
import tls from "node:tls";
import { readFileSync } from "node:fs";
import * as capnp from "capnp-es";
import { SocketTransport } from "./transport.js";
import { Inventory } from "./gen/inventory.js";
import { HoldfastError, codes } from "./errors.js";
import { kinds, fillRef, num, holdOf, holdResult, skuResult, transportError } from "./wire.js";
import { holdListStates, timerMax, checkText, tooLong, checkCount, splitAddress, delay } from "./checks.js";

export { HoldfastError, codes };

export class Holdfast {
  /**
   * @param {string} address HOST:PORT of a node
   * @param {object} [options]
   * @param {string} [options.token] bearer token for a node started with --tokens
   * @param {number} [options.deadlineMs] every call answers by then (default 15000)
   * @param {number} [options.connectTimeoutMs] one connection attempt (default 3000)
   * @param {number} [options.batchMax] operations per batch RPC (default 1024; learned down from the node)
   * @param {boolean} [options.autoBatch] false: one RPC per call
   * @param {{ca: string, cert?: string, key?: string, servername?: string}} [options.tls] PEM files: the CA
   *   the node's certificate chains to; a client certificate and its key (`holdfast cluster cert`)
   */
  constructor(address, options = {}) {
    this.address = splitAddress(address);
    this.options = { deadlineMs: 15000, connectTimeoutMs: 3000, batchMax: 1024, autoBatch: true, ...options };
    checkCount("deadlineMs", this.options.deadlineMs, 1, timerMax);
    checkCount("connectTimeoutMs", this.options.connectTimeoutMs, 1, timerMax);
    checkCount("batchMax", this.options.batchMax, 1, 16384);
    const t = this.options.tls;
    if (t) {
      if (typeof t.ca !== "string") throw new TypeError("tls.ca must be the path of the CA's PEM file");
      if (!t.cert !== !t.key) throw new TypeError("tls.cert and tls.key go together");
      this.tlsFiles = { ca: readFileSync(t.ca), cert: t.cert && readFileSync(t.cert), key: t.key && readFileSync(t.key) };
    }
    // Operations per batch: at most what the node said it takes (learned), and fewer for a
    // while after the node refused a batch as OVERLOADED (halved; grown back as batches pass).
    this.batchCap = this.options.batchMax;
    this.batchNow = this.options.batchMax;
    this.link = null;
    this.closed = false;
    this.pending = new Set(); // hold operations not settled yet
    this.pauses = new Set();  // unbatched calls waiting to try again (close() ends them)
    this.queues = new Map(); // kind -> { items, scheduled, sent: [{at}], rtt }
    /** Counters: batch RPCs and the operations they carried, retries, connections made. */
    this.stats = { batches: 0, batchedOps: 0, retries: 0, connections: 0 };
  }

  // --- connection --------------------------------------------------------------------

  // The live connection, made (and logged in) if there is none.
  linkUp() {
    if (this.closed) return Promise.reject(new HoldfastError("unavailable", "the client is closed"));
    if (this.link && !this.link.dead) return this.link.ready;
    const link = { dead: null, calls: new Set() };
    this.link = link;
    // Connecting, the TLS handshake and the login, all within connectTimeoutMs.
    const late = delay(this.options.connectTimeoutMs);
    const timeout = late.promise.then(() => {
      throw new Error(`no connection${this.options.token ? " and login" : ""} within ${this.options.connectTimeoutMs} ms`);
    });
    link.ready = Promise.race([this.open(link), timeout]).finally(() => late.cancel()).catch((err) => {
      this.drop(link, err);
      if (err instanceof HoldfastError) throw err;
      const refused = transportError(err, false);
      throw refused.final ? refused
        : new HoldfastError("unavailable", `cannot reach node at ${this.address.host}:${this.address.port}: ${err.message}`);
    });
    return link.ready;
  }

  async open(link) {
    const { host, port } = this.address;
    const f = this.tlsFiles;
    const socket = f
      ? tls.connect({ host, port, ca: f.ca, cert: f.cert, key: f.key,
                      servername: this.options.tls.servername ?? "holdfast-node" })
      : net.connect({ host, port });
    link.socket = socket;
    socket.setNoDelay(true);
    await new Promise((resolve, reject) => {
      socket.once(f ? "secureConnect" : "connect", resolve);
      socket.once("error", reject);
      socket.once("close", () => reject(new Error("connection closed")));
    });
    if (link.dead) throw link.dead;
    link.conn = new capnp.Conn(new SocketTransport(socket, (err) => this.drop(link, err)));
    link.conn.onError = (err) => this.drop(link, err ?? new Error("connection failed"));
    link.inventory = link.conn.bootstrap(Inventory);
    this.stats.connections++;
    if (f) {
      // Under TLS 1.3 the node judges this client's certificate after the client's handshake
      // is done: one round trip (status is open to every role) before any call is sent, so a
      // refusal is known to have taken nothing.
      await this.guard(link, link.inventory.status().promise());
    }
    if (this.options.token) {
      const r = await this.guard(link, link.inventory.login((p) => { p.token = this.options.token; }).promise());
      if (r.refused) throw new HoldfastError("forbidden", `login refused: ${r.refused}`);
      link.role = r.role;
    }
    return link;
  }

  // Ends `link`: every RPC still waiting on it fails now (capnp-es would wait for ever).
  drop(link, err) {
    if (link.dead) return;
    link.dead = err;
    if (this.link === link) this.link = null;
    for (const fail of link.calls) fail(err);
    link.calls.clear();
    link.socket?.destroy();
  }

  // A call on `link` got no answer by its deadline: ask the node for its status. A node that
  // answers is slow, and the link (with every other call on it) stays; one that does not
  // within connectTimeoutMs is taken as lost (stopped, or a path that drops everything), so
  // unanswered calls do not pile up on it.
  suspect(link) {
    if (link.dead || link.probing) return;
    link.probing = true;
    const late = delay(this.options.connectTimeoutMs);
    const silence = late.promise.then(() => { throw new Error("no answer to a status probe either"); });
    Promise.race([this.guard(link, link.inventory.status().promise()), silence])
      .then(() => { link.probing = false; },
            (err) => this.drop(link, new Error(`no answer within the deadline (${err.message})`)))
      .finally(() => late.cancel());
  }

  // `promise`, or its link's death, whichever comes first.
  guard(link, promise) {
    if (link.dead) return Promise.reject(link.dead);
    return new Promise((resolve, reject) => {
      const fail = (err) => reject(err);
      link.calls.add(fail);
      promise.then((v) => { link.calls.delete(fail); resolve(v); },
                   (e) => { link.calls.delete(fail); reject(e); });
    });
  }

  /**
   * Closes the connection. Calls not answered yet reject at once: outcome_unknown for those
   * that were sent (they may have applied), unavailable for the rest; later calls reject
   * with unavailable.
   */
  close() {
    if (this.closed) return;
    this.closed = true;
    for (const q of this.queues.values()) {
      q.items.length = 0;
      clearTimeout(q.slowTimer);
    }
    for (const pause of this.pauses) pause.cancel();
    for (const item of [...this.pending]) {
      const applied = item.mayHaveApplied || item.onWire;
      this.settle(item, new HoldfastError(applied ? "outcome_unknown" : "unavailable",
                                          `the client was closed${applied ? " with the call sent" : ""}`,
                                          { sku: item.op.sku, holdId: item.op.holdId }));
    }
    if (this.link) this.drop(this.link, new Error("the client was closed"));
  }

  // --- hold operations ---------------------------------------------------------------

  /**
   * Reserves `qty` units of `sku` under `holdId` for `ttlMs`. Resolves to the hold;
   * rejects with a HoldfastError (out_of_stock, unknown_sku, hold_conflict, ...).
   */
  reserve(request = {}) {
    Holdfast.checkReserve(request);
    const { sku, qty = 1, holdId, ttlMs, user } = request;
    return this.hold("reserve", { sku, qty, holdId, ttlMs, user });
  }

  // The checks of reserve(), without sending: a TypeError for a wrong type.
  static checkReserve({ sku, qty = 1, holdId, ttlMs, user } = {}) {
    checkText("sku", sku);
    checkText("holdId", holdId);
    checkText("user", user, false);
    checkCount("qty", qty, 1);
    checkCount("ttlMs", ttlMs, 1);
  }

  /** Confirms (sells) a hold. `sku` is optional: without it the node looks the hold up. */
  confirm({ holdId, sku } = {}) {
    checkText("holdId", holdId);
    checkText("sku", sku, false);
    return this.hold("confirm", { holdId, sku });
  }

  /** Releases a hold: its units are available again. */
  release({ holdId, sku } = {}) {
    checkText("holdId", holdId);
    checkText("sku", sku, false);
    return this.hold("release", { holdId, sku });
  }

  /** Moves an active hold's deadline to at least now + ttlMs. */
  extend({ holdId, sku, ttlMs } = {}) {
    checkText("holdId", holdId);
    checkText("sku", sku, false);
    checkCount("ttlMs", ttlMs, 1);
    return this.hold("extend", { holdId, sku, ttlMs });
  }

  /** The hold as it stands (any state). */
  queryHold({ holdId, sku } = {}) {
    checkText("holdId", holdId);
    checkText("sku", sku, false);
    const long = tooLong({ holdId, sku });
    if (long) return Promise.reject(long);
    return this.call(true, (inv) => inv.queryHold((p) => fillRef(p._initHold(), { holdId, sku })).promise(),
                     (r) => holdResult(r.result, { holdId, sku }));
  }

  /**
   * Several reserves at once; never rejects: each entry is the hold or the
   * HoldfastError for that request (the batch rules above apply to each).
   */
  reserveMany(requests) {
    if (!Array.isArray(requests)) throw new TypeError("reserveMany takes an array of requests");
    requests.forEach((r) => Holdfast.checkReserve(r)); // every one checked before any is sent
    return Promise.all(requests.map((r) => this.reserve(r).catch((e) => e)));
  }

  hold(kind, op) {
    if (this.closed) return Promise.reject(new HoldfastError("unavailable", "the client is closed", { sku: op.sku, holdId: op.holdId }));
    const long = tooLong({ sku: op.sku, holdId: op.holdId, user: op.user });
    if (long) return Promise.reject(long);
    return new Promise((resolve, reject) => {
      const item = { kind, op, resolve, reject, deadline: Date.now() + this.options.deadlineMs,
                     error: null, mayHaveApplied: false, onWire: false, backoffMs: 5 };
      item.timer = setTimeout(() => this.expire(item), this.options.deadlineMs);
      this.pending.add(item);
      this.enqueue(item);
    });
  }

  queue(kind) {
    let q = this.queues.get(kind);
    if (!q) this.queues.set(kind, (q = { items: [], scheduled: false, sent: [], rtt: 0, slowTimer: null }));
    return q;
  }

  enqueue(item, front = false) {
    if (item.done) return;
    const q = this.queue(item.kind);
    if (front) q.items.unshift(item); else q.items.push(item);
    if (!q.scheduled) {
      q.scheduled = true;
      setImmediate(() => { q.scheduled = false; this.flush(item.kind); });
    }
  }

  // Sends what waits, within the in-flight rule: one batch per kind on the wire, a second
  // only once the first has been out twice the usual round trip (1-50 ms).
  flush(kind) {
    const q = this.queue(kind);
    while (q.items.length) {
      if (this.options.autoBatch && q.sent.length >= 1) {
        const slowAfter = Math.min(50, Math.max(1, 2 * q.rtt));
        const waited = Date.now() - q.sent[0].at;
        if (q.sent.length >= 2) return;
        if (waited < slowAfter) {
          if (!q.slowTimer) {
            q.slowTimer = setTimeout(() => { q.slowTimer = null; this.flush(kind); }, slowAfter - waited);
          }
          return;
        }
      }
      const n = this.options.autoBatch ? Math.min(q.items.length, this.batchCap, this.batchNow) : 1;
      const items = q.items.splice(0, n).filter((item) => !item.done);
      if (items.length) this.send(kind, q, items);
    }
  }

  async send(kind, q, items) {
    const entry = { at: Date.now() };
    q.sent.push(entry);
    const roundTrip = () => { const ms = Date.now() - entry.at; q.rtt = q.rtt ? 0.8 * q.rtt + 0.2 * ms : ms; };
    let sent = false, link = null;
    try {
      link = await this.linkUp();
      // Calls that ended meanwhile (their deadline, close()) are not sent: they answered.
      items = items.filter((item) => !item.done);
      if (!items.length) return;
      const k = kinds[kind];
      sent = true;
      this.stats.batches++;
      this.stats.batchedOps += items.length;
      for (const item of items) item.onWire = true;
      const call = link.inventory[k.method]((p) => {
        const list = p[k.list](items.length);
        items.forEach((item, i) => k.fill(list.get(i), item.op));
      }).promise();
      let timer;
      const late = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new HoldfastError("outcome_unknown", "no answer")), this.options.deadlineMs);
      });
      let r;
      try {
        r = await Promise.race([this.guard(link, call), late]);
      } catch (err) {
        // The node's own refusal (an RPC exception) is a round trip too; a lost link or no
        // answer is not.
        if (!(err instanceof HoldfastError) && !link.dead) roundTrip();
        throw err;
      } finally {
        clearTimeout(timer);
        for (const item of items) item.onWire = false;
      }
      roundTrip();
      const refused = r.refused;
      if (refused) {
        const most = /exceeds (\d+)/.exec(refused);
        if (most && Number(most[1]) >= 1 && items.length > Number(most[1])) {
          this.batchCap = Math.max(Math.min(Number(most[1]), this.batchCap), 1);
          for (const item of items.reverse()) this.enqueue(item, true);
          return;
        }
        const code = refused.startsWith("forbidden: ") ? "forbidden" : "invalid";
        for (const item of items) this.settle(item, new HoldfastError(code, refused.replace(/^forbidden: /, "")));
        return;
      }
      if (this.batchNow < this.batchCap) this.batchNow = Math.min(this.batchCap, this.batchNow * 2);
      const results = r.results;
      items.forEach((item, i) => {
        const out = i < results.length ? holdResult(results.get(i), item.op)
          : new HoldfastError("outcome_unknown", "the node's answer was short");
        this.answer(item, out);
      });
    } catch (err) {
      const e = err instanceof HoldfastError ? err : transportError(err, sent);
      if (e.code === "unavailable" && sent && items.length > 1) {
        // OVERLOADED: the node took none of it; smaller batches fit under its in-flight limits.
        this.batchNow = Math.max(1, Math.floor(items.length / 2));
      }
      // No answer by the deadline: the connection is taken as lost (a node that stopped, a
      // path that drops everything), so its unanswered calls do not pile up on it.
      if (e.code === "outcome_unknown" && /^outcome_unknown: no answer$/.test(e.message) && link) {
        this.suspect(link);
      }
      for (const item of items) this.answer(item, e);
    } finally {
      q.sent.splice(q.sent.indexOf(entry), 1);
      if (q.items.length) this.flush(kind);
    }
  }

  // An attempt's outcome: settle, or try again before the deadline (the rules above).
  answer(item, out) {
    if (item.done) return;
    const retry = out instanceof HoldfastError && !out.final && (out.code === "outcome_unknown" || out.code === "unavailable");
    if (!retry) return this.settle(item, out);
    item.error = out;
    if (out.code === "outcome_unknown") item.mayHaveApplied = true;
    if (this.closed) return this.expire(item);
    // The backoff, but never past the deadline: a last, shorter wait still gets a try if
    // the attempt has time to answer (twice the usual round trip, at least 20 ms: timers
    // fire late), so it is not left on the wire at the deadline ("may have applied").
    const answerMs = Math.max(20, 2 * (this.queue(item.kind).rtt || 0));
    const wait = Math.min(item.backoffMs, 500, item.deadline - Date.now() - answerMs);
    item.backoffMs *= 2;
    if (wait <= 0) return this.expire(item);
    this.stats.retries++;
    setTimeout(() => this.enqueue(item), wait);
  }

  // The deadline: the last error, as outcome_unknown if any attempt may have applied.
  expire(item) {
    if (item.done) return;
    const last = item.error;
    const code = item.mayHaveApplied || item.onWire ? "outcome_unknown" : "unavailable";
    const why = last ? last.message.replace(/^\w+: /, "") : "no answer";
    this.settle(item, new HoldfastError(code, `no answer within ${this.options.deadlineMs} ms (${why})`,
                                        { sku: item.op.sku, holdId: item.op.holdId }));
  }

  settle(item, out) {
    if (item.done) return;
    item.done = true;
    this.pending.delete(item);
    clearTimeout(item.timer);
    if (out instanceof Error) item.reject(out); else item.resolve(out);
  }

  // --- SKUs and the node -------------------------------------------------------------

  // One unbatched call: `query` calls (reads) are retried like hold operations; changes
  // that are not idempotent (create, restock) are not: their outcome_unknown is final.
  async call(query, invoke, convert) {
    const deadline = Date.now() + this.options.deadlineMs;
    let backoff = 5, applied = false;
    for (;;) {
      let sent = false, out, link = null;
      const late = delay(deadline - Date.now());
      try {
        const timeout = late.promise.then(() => { throw new HoldfastError(sent ? "outcome_unknown" : "unavailable", "no answer"); });
        link = await Promise.race([this.linkUp(), timeout]);
        if (this.closed) throw new HoldfastError("unavailable", "the client is closed");
        sent = true;
        out = convert(await Promise.race([this.guard(link, invoke(link.inventory)), timeout]));
      } catch (err) {
        out = err instanceof HoldfastError ? err : transportError(err, sent);
        if (sent && out.code === "outcome_unknown" && out.message === "outcome_unknown: no answer") {
          this.suspect(link);
        }
      } finally {
        late.cancel();
      }
      if (!(out instanceof HoldfastError)) return out;
      if (out.code === "outcome_unknown") applied = true;
      if (this.closed) {
        throw new HoldfastError(sent ? "outcome_unknown" : "unavailable", `the client was closed${sent ? " with the call sent" : ""}`);
      }
      const retry = !out.final && (out.code === "unavailable" || (query && out.code === "outcome_unknown"));
      if (!retry || (!query && applied)) throw out;
      const wait = Math.min(backoff, deadline - Date.now() - 1);
      if (wait <= 0) {
        throw new HoldfastError(applied && !query ? "outcome_unknown" : "unavailable",
                                `no answer within ${this.options.deadlineMs} ms (${out.message.replace(/^\w+: /, "")})`);
      }
      this.stats.retries++;
      const pause = delay(wait);
      this.pauses.add(pause);
      await pause.promise;
      this.pauses.delete(pause);
      if (this.closed) {
        throw new HoldfastError(applied ? "outcome_unknown" : "unavailable",
                                `the client was closed${applied ? " with the call sent" : ""}`);
      }
      backoff = Math.min(backoff * 2, 500);
    }
  }

  /** The SKU's counters and availability. */
  querySku(sku) {
    checkText("sku", sku);
    const long = tooLong({ sku });
    if (long) return Promise.reject(long);
    return this.call(true, (inv) => inv.querySku((p) => { p.sku = sku; }).promise(),
                     (r) => skuResult(r.result, sku));
  }

  /**
   * One page of the SKU's holds in hold-id order (admin role): `state` "" (any), "active",
   * "finished", or one of confirmed/released/expired/returned; `after` the last page's
   * `next`; `limit` 1..1000 (0: the node's default, 100). Resolves to { sku, holds, next }:
   * page on until `next` is "".
   */
  listHolds(sku, { state = "", after = "", limit = 0 } = {}) {
    checkText("sku", sku);
    if (!holdListStates.includes(state)) throw new TypeError(`state must be one of "", ${holdListStates.slice(1).join(", ")}`);
    checkText("after", after, false);
    checkCount("limit", limit, 0, 1000);
    const long = tooLong({ sku, holdId: after });
    if (long) return Promise.reject(long);
    return this.call(true, (inv) => inv.listHolds((p) => {
      const q = p._initQuery();
      q.sku = sku; q.state = state; q.after = after; q.limit = limit;
    }).promise(), (r) => {
      const s = skuResult(r.result, sku);
      if (s instanceof HoldfastError) return s;
      return { sku: s, holds: r.holds.map(holdOf), next: r.next };
    });
  }

  /** Creates an SKU (admin role on a node with --tokens). */
  createSku({ sku, stock, priceCents = 0, title = "", limitPerUser = 0 } = {}) {
    checkText("sku", sku);
    checkCount("stock", stock, 0);
    checkCount("priceCents", priceCents, 0);
    checkCount("limitPerUser", limitPerUser, 0);
    if (typeof title !== "string") throw new TypeError("title must be a string");
    if (title) checkText("title", title);
    const long = tooLong({ sku, title });
    if (long) return Promise.reject(long);
    return this.call(false, (inv) => inv.createSku((p) => {
      p.sku = sku; p.stock = BigInt(stock); p.priceCents = BigInt(priceCents);
      p.title = title; p.limitPerUser = BigInt(limitPerUser);
    }).promise(), (r) => skuResult(r.result, sku));
  }

  /** Adds `qty` units on hand (admin role). */
  restock(sku, qty) {
    checkText("sku", sku);
    checkCount("qty", qty, 1);
    const long = tooLong({ sku });
    if (long) return Promise.reject(long);
    return this.call(false, (inv) => inv.restock((p) => { p.sku = sku; p.qty = BigInt(qty); }).promise(),
                     (r) => skuResult(r.result, sku));
  }

  /** The node: version, uptime, operations, SKU actors, cluster. */
  status() {
    return this.call(true, (inv) => inv.status().promise(), (r) => {
      const s = r.status;
      const startedMs = num(s.startedMs);
      return { nodeId: s.nodeId, version: s.version, cluster: s.cluster, startedMs,
               uptimeMs: Date.now() - startedMs, callsTotal: num(s.callsTotal),
               callsPerSecond: s.callsPerSecond, skusActive: num(s.skusActive),
               notServing: s.notServing };
    });
  }
}

/**
 * A client for the node at `address`, connected (and logged in, with `options.token`)
 * before it resolves; rejects with a HoldfastError if that fails.
 */
export async function connect(address, options = {}) {
  const client = new Holdfast(address, options);
  try {
    await client.linkUp();
  } catch (err) {
    client.close();
    throw err;
  }
  return client;
}

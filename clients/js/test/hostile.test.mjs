// What an adversarial pass found (each a regression test): hostile servers, careless
// use, inputs that would have been sent wrong.
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { connect, Holdfast, HoldfastError } from "../src/index.js";
import { startNode, tempDir, tokensFile, eventually, rejectsWith } from "./node.mjs";
import { fakeNode, frameOf, returnException, okBatch, abort, gen } from "./fake-node.mjs";

const ttlMs = 60_000;
const outcome = (p) => p.then((v) => v, (e) => e);


test("a call that ended (unavailable) before its connection was up is never sent afterwards", async (t) => {
  const dir = tempDir(t);
  const tokens = tokensFile(dir);
  const node = await startNode({ data: `${dir}/n`, args: ["--tokens", tokens.file], t });
  const admin = await connect(node.address, { token: tokens.admin });
  t.after(() => admin.close());
  await admin.createSku({ sku: "late", stock: 5 });
  await node.stop();  // the TCP connect succeeds; the login waits
  let stopped = true;
  t.after(() => { if (stopped) node.resume(); });
  const shop = new Holdfast(node.address, { token: tokens.client, deadlineMs: 300, connectTimeoutMs: 10_000 });
  t.after(() => shop.close());
  const err = await rejectsWith(shop.reserve({ sku: "late", holdId: "never", ttlMs }), "unavailable");
  assert.equal(err.mayHaveApplied, false);
  node.resume();
  stopped = false;
  // Calls after it on the same connection come after it: had it been sent, it would be held.
  await rejectsWith(shop.confirm({ holdId: "never", sku: "late" }), "unknown_hold");
  assert.equal((await admin.querySku("late")).reserved, 0);
});

test("close(): calls sent reject at once as outcome_unknown, later calls as unavailable", async (t) => {
  const node = await startNode({ data: `${tempDir(t)}/n`, t });
  const hf = await connect(node.address, { deadlineMs: 30_000 });
  await hf.createSku({ sku: "c", stock: 5 });
  await node.stop();
  t.after(() => node.resume());
  const held = outcome(hf.reserve({ sku: "c", holdId: "c1", ttlMs }));
  const asked = outcome(hf.querySku("c"));
  const created = outcome(hf.createSku({ sku: "d", stock: 1 }));
  await eventually(() => hf.stats.batches >= 1, 5000, "the reserve sent");
  await new Promise((r) => setImmediate(r));
  const started = Date.now();
  hf.close();
  for (const p of [held, created]) {
    const e = await p;
    assert.ok(e instanceof HoldfastError && e.code === "outcome_unknown", String(e));
    assert.ok(e.mayHaveApplied);
  }
  assert.ok((await asked) instanceof HoldfastError);
  assert.ok(Date.now() - started < 1000, "answered at close(), not at the deadline");
  const after = await rejectsWith(hf.reserve({ sku: "c", holdId: "c2", ttlMs }), "unavailable");
  assert.equal(after.mayHaveApplied, false);
  await rejectsWith(hf.querySku("c"), "unavailable");
  assert.ok(Date.now() - started < 1000);
});

test("a server that sends a call or a bootstrap request is dropped; the process goes on", async (t) => {
  for (const kind of ["call", "bootstrap"]) {
    const fake = await fakeNode((s) => s.write(kind === "call"
      ? frameOf((rpc) => {
          const call = rpc._initCall(); call.questionId = 0; call.interfaceId = gen.Inventory$Client.interfaceId;
          call.methodId = 1; call._initTarget().importedCap = 0; call._initParams();
        })
      : frameOf((rpc) => { rpc._initBootstrap().questionId = 0; })));
    t.after(() => fake.close());
    const hf = new Holdfast(fake.address, { deadlineMs: 500 });
    const e = await outcome(hf.reserve({ sku: "a", holdId: "h1", ttlMs }));
    assert.ok(e instanceof HoldfastError && ["unavailable", "outcome_unknown"].includes(e.code), String(e));
    hf.close();
  }
});

test("a node that answers nothing, not even a status probe: the connection is dropped, not kept growing", async (t) => {
  let connections = 0;
  const fake = await fakeNode(() => {}, { onConnect: () => connections++ });
  t.after(() => fake.close());
  const hf = new Holdfast(fake.address, { deadlineMs: 300, connectTimeoutMs: 300 });
  t.after(() => hf.close());
  await rejectsWith(hf.reserve({ sku: "a", holdId: "h1", ttlMs }), "outcome_unknown");
  let n = 1;
  await eventually(async () => {
    await hf.reserve({ sku: "a", holdId: `h${++n}`, ttlMs }).catch(() => {});
    return hf.stats.connections >= 2;
  }, 10_000, "a new connection");
  assert.ok(connections >= 2);
});

test("connect() with a token to a node that never answers the login ends by connectTimeoutMs", async (t) => {
  const fake = await fakeNode(() => {});
  t.after(() => fake.close());
  const started = Date.now();
  const e = await outcome(connect(fake.address, { token: "x".repeat(64), connectTimeoutMs: 400 }));
  assert.ok(e instanceof HoldfastError && e.code === "unavailable", String(e));
  assert.ok(Date.now() - started < 3000);
});

test("a node that refuses every attempt as overloaded: unavailable, never 'may have applied'", async (t) => {
  // Each refusal takes 100 ms: the client sees no attempt can answer before the deadline
  // and ends the call between attempts, with none on the wire.
  const fake = await fakeNode((s, c) => setTimeout(
    () => s.write(returnException(c.questionId, "node has too many operations in flight; back off")), 100));
  t.after(() => fake.close());
  const hf = new Holdfast(fake.address, { deadlineMs: 600 });
  t.after(() => hf.close());
  const e = await rejectsWith(hf.reserve({ sku: "a", holdId: "h1", ttlMs }), "unavailable");
  assert.equal(e.mayHaveApplied, false);
  assert.ok(hf.stats.retries > 0);
});

test("batches shrink when the node's in-flight limit refuses them, and every call gets through", async (t) => {
  const node = await startNode({ data: `${tempDir(t)}/n`, args: ["--connection-inflight-max", "100", "--http", "127.0.0.1:0"], t });
  const hf = await connect(node.address);
  t.after(() => hf.close());
  await hf.createSku({ sku: "o", stock: 1000 });
  const results = await hf.reserveMany(Array.from({ length: 600 }, (_, i) => ({ sku: "o", holdId: `o-${i}`, ttlMs })));
  assert.deepEqual(results.filter((r) => r instanceof Error).map(String).slice(0, 3), []);
  assert.equal((await hf.querySku("o")).reserved, 600);
  // The node counted the refused batches by method (/metrics).
  const metrics = await (await fetch(`http://${node.http}/metrics`)).text();
  const failed = /^holdfast_rpc_calls_total\{method="reserveBatch",result="failed"\} (\d+)$/m.exec(metrics);
  assert.ok(failed && Number(failed[1]) >= 1, metrics.split("\n").filter((l) => l.includes("rpc_calls")).join("\n"));
});

test("inputs: a bad request in reserveMany sends none; lone surrogates and oversized names never reach the node", async (t) => {
  const node = await startNode({ data: `${tempDir(t)}/n`, t });
  const hf = await connect(node.address);
  t.after(() => hf.close());
  await hf.createSku({ sku: "i", stock: 500 });
  assert.throws(() => hf.reserveMany([{ sku: "i", holdId: "ok-1", ttlMs }, { sku: "i", holdId: "bad", qty: 0, ttlMs }]), TypeError);
  assert.equal((await hf.querySku("i")).reserved, 0);
  for (const id of ["x\uD800", "x\uDC00y"]) assert.throws(() => hf.reserve({ sku: "i", holdId: id, ttlMs }), TypeError);
  // 100 good reserves and one with a 9 MB id made together: the big one alone is refused.
  const good = Array.from({ length: 100 }, (_, i) => hf.reserve({ sku: "i", holdId: `g-${i}`, ttlMs }));
  const big = outcome(hf.reserve({ sku: "i", holdId: "h".repeat(9 << 20), ttlMs }));
  const e = await big;
  assert.ok(e instanceof HoldfastError && e.code === "invalid" && !e.mayHaveApplied, String(e));
  assert.equal((await Promise.all(good)).length, 100);
  assert.equal((await hf.querySku("i")).reserved, 100);
  assert.throws(() => new Holdfast(node.address, { deadlineMs: 2 ** 31 }), TypeError);
  assert.throws(() => new Holdfast(node.address, { connectTimeoutMs: 0 }), TypeError);
  for (const a of ["host:0", "a b:1", "host:", ":80", "[::1:5"]) assert.throws(() => new Holdfast(a), TypeError, a);
});

test("an answer for another hold is refused as invalid, never taken as this call's", async (t) => {
  const fake = await fakeNode((s, c) => s.write(okBatch(c.questionId, {
    params: { requests: { length: 1, get: () => ({ holdId: "someone-else", sku: "a", qty: 99n }) } },
  })));
  t.after(() => fake.close());
  const hf = new Holdfast(fake.address, { deadlineMs: 1000 });
  t.after(() => hf.close());
  await rejectsWith(hf.reserve({ sku: "a", holdId: "mine", ttlMs }), "invalid");
});

test("a node's Abort that says it read nothing (connection refused) reads as unavailable", async (t) => {
  const fake = await fakeNode((s) => s.write(abort(
    "the node refused this connection before reading any call: 1024 connections open (--connections-max); back off and retry")));
  t.after(() => fake.close());
  const hf = new Holdfast(fake.address, { deadlineMs: 500 });
  t.after(() => hf.close());
  const e = await rejectsWith(hf.reserve({ sku: "a", holdId: "h1", ttlMs }), "unavailable");
  assert.equal(e.mayHaveApplied, false);
  assert.match(e.message, /connections open/);
});

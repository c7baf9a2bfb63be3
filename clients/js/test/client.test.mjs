// holdfast-client against real holdfast node processes on loopback.
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { readFileSync, writeFileSync } from "node:fs";
import { connect, Holdfast, HoldfastError } from "../src/index.js";
import { startNode, tempDir, tokensFile, eventually, holdfast, rejectsWith } from "./node.mjs";

const ttlMs = 60_000;
let ids = 0;
const holdId = (tag) => `${tag}-${process.pid}-${++ids}`;


test("a hold's life: reserve, confirm, release, with the SKU's counters", async (t) => {
  const node = await startNode({ data: `${tempDir(t)}/n`, t });
  const hf = await connect(node.address);
  t.after(() => hf.close());
  const sku = await hf.createSku({ sku: "tee", stock: 5, priceCents: 1999, title: "Tee" });
  assert.deepEqual([sku.onHand, sku.available, sku.priceCents, sku.title], [5, 5, 1999, "Tee"]);

  const a = await hf.reserve({ sku: "tee", qty: 2, holdId: holdId("a"), ttlMs, user: "ann" });
  assert.equal(a.state, "active");
  assert.equal(a.qty, 2);
  assert.ok(a.deadlineMs > Date.now() && a.deadline instanceof Date);
  const b = await hf.reserve({ sku: "tee", holdId: holdId("b"), ttlMs });
  assert.equal((await hf.confirm({ holdId: a.holdId })).state, "confirmed");
  assert.equal((await hf.release({ holdId: b.holdId, sku: "tee" })).state, "released");
  assert.equal((await hf.queryHold({ holdId: a.holdId })).state, "confirmed");
  const after = await hf.querySku("tee");
  assert.deepEqual([after.onHand, after.reserved, after.sold, after.available], [3, 0, 2, 3]);

  // Repeating a finished operation answers the hold as it stands.
  assert.equal((await hf.confirm({ holdId: a.holdId })).state, "confirmed");
  const extended = await hf.extend({ holdId: (await hf.reserve({ sku: "tee", holdId: "c", ttlMs: 1000 })).holdId, ttlMs });
  assert.ok(extended.deadlineMs >= Date.now() + ttlMs - 5000);
  // The SKU's holds, paged in id order: every hold once, whatever the page size.
  for (const limit of [1, 2, 100]) {
    const seen = [];
    let after = "";
    for (let pages = 0; pages < 10; pages++) {
      const page = await hf.listHolds("tee", { after, limit });
      assert.ok(page.holds.length <= limit);
      seen.push(...page.holds.map((h) => `${h.holdId}:${h.state}`));
      if (!page.next) break;
      after = page.next;
    }
    assert.deepEqual(seen, [`${a.holdId}:confirmed`, `${b.holdId}:released`, "c:active"].sort(), `limit ${limit}`);
  }
  assert.deepEqual((await hf.listHolds("tee", { state: "finished" })).holds.map((h) => h.state), ["confirmed", "released"].sort());
  await rejectsWith(hf.listHolds("nope"), "unknown_sku");
  assert.throws(() => hf.listHolds("tee", { state: "bogus" }), TypeError);
  assert.throws(() => hf.listHolds("tee", { limit: 1001 }), TypeError);
  const st = await hf.status();
  assert.match(st.version, /^\d+\.\d+/);
  assert.ok(st.callsTotal > 0 && st.uptimeMs >= 0);
});

test("refusals are typed, change nothing, and the node keeps serving", async (t) => {
  const node = await startNode({ data: `${tempDir(t)}/n`, t });
  const hf = await connect(node.address);
  t.after(() => hf.close());
  await hf.createSku({ sku: "mug", stock: 1 });
  const held = await hf.reserve({ sku: "mug", holdId: "m1", ttlMs });

  const out = await rejectsWith(hf.reserve({ sku: "mug", holdId: "m2", ttlMs }), "out_of_stock");
  assert.equal(out.available, 0);
  assert.equal(out.sku, "mug");
  await rejectsWith(hf.reserve({ sku: "nope", holdId: "n1", ttlMs }), "unknown_sku");
  const conflict = await rejectsWith(hf.reserve({ sku: "mug", holdId: "m1", qty: 2, ttlMs }), "hold_conflict");
  assert.equal(conflict.hold.holdId, "m1");
  await hf.confirm({ holdId: "m1" });
  const wrong = await rejectsWith(hf.release({ holdId: "m1" }), "wrong_state");
  assert.equal(wrong.hold.state, "confirmed");
  await rejectsWith(hf.confirm({ holdId: "never" }), "unknown_hold");
  await rejectsWith(hf.createSku({ sku: "mug", stock: 3 }), "sku_exists");
  // What the node refuses as invalid: a 129-byte SKU, a control character, a 257-byte id.
  await rejectsWith(hf.reserve({ sku: "x".repeat(129), holdId: "v1", ttlMs }), "invalid");
  await rejectsWith(hf.reserve({ sku: "mu\u0007g", holdId: "v2", ttlMs }), "invalid");
  await rejectsWith(hf.reserve({ sku: "mug", holdId: "h".repeat(257), ttlMs }), "invalid");
  await rejectsWith(hf.createSku({ sku: "big", stock: 2_000_000_000 }), "invalid");
  // What this client refuses before sending: wrong JavaScript types.
  assert.throws(() => hf.reserve({ sku: "mug", holdId: "t1", ttlMs: 0 }), TypeError);
  assert.throws(() => hf.reserve({ sku: "mug", holdId: "t1", qty: 1.5, ttlMs }), TypeError);
  assert.throws(() => hf.reserve({ sku: 7, holdId: "t1", ttlMs }), TypeError);
  assert.throws(() => hf.confirm({}), TypeError);
  assert.throws(() => new Holdfast("localhost"), TypeError);

  const mug = await hf.querySku("mug");
  assert.deepEqual([mug.onHand, mug.sold, mug.reserved], [0, 1, 0]);
  assert.equal(held.qty, 1);
});

test("calls made together go out as one batch RPC, and each answers for itself", async (t) => {
  const node = await startNode({ data: `${tempDir(t)}/n`, t });
  const hf = await connect(node.address);
  t.after(() => hf.close());
  await hf.createSku({ sku: "hot", stock: 450 });
  const requests = Array.from({ length: 500 }, (_, i) => ({ sku: "hot", holdId: `hot-${i}`, ttlMs }));
  const before = { ...hf.stats };
  const results = await hf.reserveMany(requests);
  const held = results.filter((r) => !(r instanceof Error));
  const refused = results.filter((r) => r instanceof HoldfastError);
  assert.equal(held.length, 450);
  assert.equal(refused.length, 50);
  assert.ok(refused.every((e) => e.code === "out_of_stock" && e.available === 0));
  const batches = hf.stats.batches - before.batches;
  assert.ok(batches <= 5, `500 calls in ${batches} batch RPCs`);
  assert.equal((await hf.querySku("hot")).reserved, 450);
});

test("a batch over the node's --batch-max is split at the limit the node names", async (t) => {
  const node = await startNode({ data: `${tempDir(t)}/n`, args: ["--batch-max", "100"], t });
  const hf = await connect(node.address, { batchMax: 1000 });
  t.after(() => hf.close());
  await hf.createSku({ sku: "s", stock: 1000 });
  const results = await hf.reserveMany(Array.from({ length: 350 }, (_, i) => ({ sku: "s", holdId: `s-${i}`, ttlMs })));
  assert.ok(results.every((r) => !(r instanceof Error)), String(results.find((r) => r instanceof Error)));
  assert.equal(hf.batchCap, 100);
  assert.equal((await hf.querySku("s")).reserved, 350);
});

test("kill -9 under load: calls retry with their hold ids on the restarted node, none lost, none twice", async (t) => {
  const dir = tempDir(t);
  let node = await startNode({ data: `${dir}/n`, t });
  const hf = await connect(node.address, { deadlineMs: 20_000 });
  t.after(() => hf.close());
  await hf.createSku({ sku: "flash", stock: 100_000 });
  const n = 3000;
  const calls = [];
  let i = 0;
  // A stream of reserves; the node dies while they are in flight.
  const pump = (async () => {
    while (i < n) {
      calls.push(hf.reserve({ sku: "flash", holdId: `f-${i++}`, ttlMs }).catch((e) => e));
      if (i % 50 === 0) await new Promise((r) => setImmediate(r));
    }
  })();
  await eventually(() => i >= n / 3, 10_000, "a third of the calls made");
  await node.kill("SIGKILL");
  await pump;
  node = await startNode({ data: `${dir}/n`, listen: node.address, t });
  const results = await Promise.all(calls);
  const failed = results.filter((r) => r instanceof Error);
  assert.deepEqual(failed.map(String).slice(0, 3), []);
  assert.ok(hf.stats.retries > 0, "some calls were retried");
  // Every acknowledged hold is there exactly once: the SKU reserves exactly n units.
  const flash = await hf.querySku("flash");
  assert.equal(flash.reserved, n);
  assert.equal(flash.activeHolds, n);
});

test("a stopped node: calls end by their deadline as outcome_unknown; the same hold id then answers the original hold", async (t) => {
  const node = await startNode({ data: `${tempDir(t)}/n`, t });
  const hf = await connect(node.address, { deadlineMs: 800 });
  t.after(() => hf.close());
  await hf.createSku({ sku: "slow", stock: 10 });
  await hf.reserve({ sku: "slow", holdId: "warm", ttlMs });
  await node.stop();
  let resumed = false;
  t.after(() => { if (!resumed) node.resume(); });
  const started = Date.now();
  const err = await rejectsWith(hf.reserve({ sku: "slow", holdId: "s1", ttlMs }), "outcome_unknown");
  assert.ok(err.mayHaveApplied);
  assert.ok(Date.now() - started < 3000, "answered by the deadline");
  node.resume();
  resumed = true;
  const again = await hf.reserve({ sku: "slow", holdId: "s1", ttlMs });
  assert.equal(again.state, "active");
  assert.equal((await hf.querySku("slow")).reserved, 2);
  // The node answered the status probe once it ran again: a slow node keeps its connection.
  assert.equal(hf.stats.connections, 1);
});

test("an unreachable node answers unavailable: nothing was applied", async (t) => {
  const server = net.createServer();
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const port = server.address().port;
  await new Promise((r) => server.close(r));
  const started = Date.now();
  const err = await connect(`127.0.0.1:${port}`, { deadlineMs: 500 }).then(() => null, (e) => e);
  assert.ok(err instanceof HoldfastError && err.code === "unavailable", String(err));
  assert.equal(err.mayHaveApplied, false);
  const hf = new Holdfast(`127.0.0.1:${port}`, { deadlineMs: 400 });
  await rejectsWith(hf.reserve({ sku: "x", holdId: "y", ttlMs }), "unavailable");
  assert.ok(Date.now() - started < 5000);
  hf.close();
});

test("a server that sends a hostile frame gets its connection dropped; the client does not hang or crash", async (t) => {
  for (const frame of [
    Buffer.from([0xff, 0xff, 0xff, 0x7f]),                                   // 2^31 segments
    Buffer.concat([Buffer.from([0, 0, 0, 0]), Buffer.from([0xff, 0xff, 0xff, 0x0f])]), // 2 GiB segment
    Buffer.concat([Buffer.from([0, 0, 0, 0, 2, 0, 0, 0]), Buffer.alloc(16, 0xab)]), // garbage message
  ]) {
    const server = net.createServer((s) => { s.on("data", () => {}); s.write(frame); });
    await new Promise((r) => server.listen(0, "127.0.0.1", r));
    const hf = new Holdfast(`127.0.0.1:${server.address().port}`, { deadlineMs: 600 });
    const err = await hf.querySku("x").then(() => null, (e) => e);
    assert.ok(err instanceof HoldfastError, String(err));
    assert.ok(["unavailable", "outcome_unknown"].includes(err.code), err.message);
    hf.close();
    await new Promise((r) => server.close(r));
  }
});

test("tokens: a client token may buy but not create; an unknown token is refused at login", async (t) => {
  const dir = tempDir(t);
  const tokens = tokensFile(dir);
  const node = await startNode({ data: `${dir}/n`, args: ["--tokens", tokens.file], t });
  const admin = await connect(node.address, { token: tokens.admin });
  t.after(() => admin.close());
  await admin.createSku({ sku: "t", stock: 2 });
  const shop = await connect(node.address, { token: tokens.client });
  t.after(() => shop.close());
  assert.equal((await shop.reserve({ sku: "t", holdId: "t1", ttlMs })).state, "active");
  await rejectsWith(shop.createSku({ sku: "u", stock: 1 }), "forbidden");
  await rejectsWith(shop.restock("t", 5), "forbidden");
  await rejectsWith(shop.listHolds("t"), "forbidden");  // hold ids are what a confirm needs: admin only
  const listed = await admin.listHolds("t");
  assert.deepEqual(listed.holds.map((h) => [h.holdId, h.state]), [["t1", "active"]]);
  assert.equal((await admin.querySku("t")).onHand, 2);
  const err = await connect(node.address, { token: "0".repeat(64) }).then(() => null, (e) => e);
  assert.ok(err instanceof HoldfastError && err.code === "forbidden", String(err));
  // Without a token, nothing but login is served.
  const anon = await connect(node.address, { deadlineMs: 2000 });
  t.after(() => anon.close());
  await rejectsWith(anon.reserve({ sku: "t", holdId: "t2", ttlMs }), "forbidden");
});

test("TLS: a node of a --client-tls cluster is reached with the cluster CA; plaintext is refused as unavailable", async (t) => {
  const dir = tempDir(t);
  holdfast("cluster", "init", "--nodes", "1", "--dir", `${dir}/c`, "--base-port", "0", "--client-tls");
  const node = await startNode({ data: `${dir}/n`, listen: "", args: ["--cluster", `${dir}/c/cluster.toml`, "--id", "1"], t });
  const hf = await connect(node.address, { tls: { ca: `${dir}/c/ca.pem` } });
  t.after(() => hf.close());
  await hf.createSku({ sku: "secure", stock: 1 });
  assert.equal((await hf.reserve({ sku: "secure", holdId: "sec-1", ttlMs })).state, "active");

  const plain = new Holdfast(node.address, { deadlineMs: 1500 });
  t.after(() => plain.close());
  await rejectsWith(plain.querySku("secure"), "unavailable");
  // A CA that did not sign the node's certificate: refused too.
  holdfast("cluster", "init", "--nodes", "1", "--dir", `${dir}/other`, "--base-port", "0");
  const err = await connect(node.address, { tls: { ca: `${dir}/other/ca.pem` }, deadlineMs: 1500 }).then(() => null, (e) => e);
  assert.ok(err instanceof HoldfastError && err.code === "unavailable", String(err));
});

test("client certificates: the role in the certificate applies; without one nothing is served", async (t) => {
  const dir = tempDir(t);
  holdfast("cluster", "init", "--nodes", "1", "--dir", `${dir}/c`, "--base-port", "0", "--client-certs");
  const file = `${dir}/c/cluster.toml`;
  holdfast("cluster", "cert", "--dir", `${dir}/c`, "--role", "admin", "--name", "ops");
  holdfast("cluster", "cert", "--dir", `${dir}/c`, "--role", "client", "--name", "shop-js");
  const node = await startNode({ data: `${dir}/n`, listen: "", args: ["--cluster", file, "--id", "1"], t });
  const tlsAs = (who) => ({ ca: `${dir}/c/ca.pem`, cert: `${dir}/c/${who}.pem`, key: `${dir}/c/${who}.key` });
  const admin = await connect(node.address, { tls: tlsAs("admin-ops") });
  t.after(() => admin.close());
  await admin.createSku({ sku: "cert-sku", stock: 3 });
  const shop = await connect(node.address, { tls: tlsAs("client-shop-js") });
  t.after(() => shop.close());
  assert.equal((await shop.reserve({ sku: "cert-sku", holdId: "cs-1", ttlMs })).state, "active");
  await rejectsWith(shop.restock("cert-sku", 10), "forbidden");
  // Without a certificate: refused before any call is sent (one status round trip first),
  // so even a reserve is unavailable (nothing applied), at once rather than at the deadline.
  const bare = new Holdfast(node.address, { tls: { ca: `${dir}/c/ca.pem` }, deadlineMs: 5000 });
  t.after(() => bare.close());
  const started = Date.now();
  const err = await rejectsWith(bare.reserve({ sku: "cert-sku", holdId: "cs-bare", ttlMs }), "unavailable");
  assert.equal(err.mayHaveApplied, false);
  assert.ok(Date.now() - started < 3000, `answered in ${Date.now() - started} ms`);
  assert.throws(() => new Holdfast(node.address, { tls: { ca: `${dir}/c/ca.pem`, cert: `${dir}/c/admin-ops.pem` } }), TypeError);
  const sku = await admin.querySku("cert-sku");
  assert.deepEqual([sku.onHand, sku.reserved], [3, 1]);
});

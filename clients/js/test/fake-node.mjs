// A hand-driven fake node for the hostile-server tests: parses the client's RPC frames
// and lets a test answer (or not) with frames it builds.
import net from "node:net";
import * as capnp from "capnp-es";
import { Message as RpcMessage } from "capnp-es/capnp/rpc";
import * as gen from "../src/gen/inventory.js";
export { gen, capnp };

export function frameOf(build) {
  const m = new capnp.Message();
  build(m.initRoot(RpcMessage));
  return Buffer.from(m.toArrayBuffer());
}
// A Return with results: `fill(resultsStruct)` given a fresh ResultsClass struct.
export function returnResults(id, ResultsClass, fill) {
  return frameOf((rpc) => {
    const ret = rpc._initReturn(); ret.answerId = id; const p = ret._initResults();
    const ptr = p.content;
    capnp.utils.initStruct(ResultsClass._capnp.size, ptr);
    fill(capnp.utils.getAs(ResultsClass, ptr));
  });
}
export function returnException(id, reason) {
  return frameOf((rpc) => { const ret = rpc._initReturn(); ret.answerId = id; ret._initException().reason = reason; });
}
export function abort(reason) { return frameOf((rpc) => { rpc._initAbort().reason = reason; }); }
// A successful reserveBatch answer echoing every request as an active hold.
export function okBatch(id, call) {
  const reqs = call.params.requests ?? call.params.holds;
  if (!reqs) return returnException(id, "fake: not a batch call");
  return returnResults(id, gen.Inventory_ReserveBatch$Results, (res) => {
    const list = res._initResults(reqs.length);
    for (let i = 0; i < reqs.length; i++) {
      const h = list.get(i)._initHold();
      h.holdId = reqs.get(i).holdId; h.sku = reqs.get(i).sku || "x"; h.qty = reqs.get(i).qty ?? 1n; h.state = 0; h.deadlineMs = BigInt(Date.now() + 60000);
    }
  });
}
// Starts a server; onCall(sock, {questionId, methodId, name, params}) for every Call.
export function fakeNode(onCall, { onConnect } = {}) {
  return new Promise((res) => {
    const sockets = new Set();
    const srv = net.createServer((sock) => {
      sockets.add(sock);
      sock.on("close", () => sockets.delete(sock));
      sock.on("error", () => {});
      onConnect?.(sock);
      let buf = Buffer.alloc(0);
      sock.on("data", (d) => {
        buf = Buffer.concat([buf, d]);
        for (;;) {
          if (buf.length < 8) return;
          const segs = buf.readUInt32LE(0) + 1;
          let table = 4 + 4 * segs; if (table % 8) table += 4;
          if (buf.length < table) return;
          let words = 0; for (let i = 0; i < segs; i++) words += buf.readUInt32LE(4 + 4 * i);
          const need = table + words * 8;
          if (buf.length < need) return;
          const f = buf.subarray(0, need); buf = buf.subarray(need);
          const msg = new capnp.Message(f.buffer.slice(f.byteOffset, f.byteOffset + f.length), false).getRoot(RpcMessage);
          const which = msg.which();
          if (which === RpcMessage.CALL) {
            const c = msg.call;
            const m = gen.Inventory$Client.methods[c.methodId];
            const params = c.params.content;
            onCall(sock, { questionId: c.questionId, methodId: c.methodId, name: m?.methodName,
                           params: m ? capnp.utils.getAs(m.ParamsClass, params) : null });
          }
        }
      });
    });
    srv.listen(0, "127.0.0.1", () => res({ srv, address: `127.0.0.1:${srv.address().port}`, close: () => { srv.close(); for (const s of sockets) s.destroy(); } }));
  });
}

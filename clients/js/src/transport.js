// Cap'n Proto's standard stream framing over a Node.js socket (TCP or TLS), as the
// `Transport` capnp-es's RPC `Conn` reads and writes. capnp-es ships no socket
// transport; its `Conn` also leaves questions pending for ever when the transport dies
// (its shutdown only closes the transport), so this one reports the end of the stream
// through `onClose` and the client fails its own calls.
import * as capnp from "capnp-es";
import { Message as RpcMessage } from "capnp-es/capnp/rpc";

// The node's limits (protocol/limits.hpp): every wire reads frames of at most 32 MiB,
// and Cap'n Proto's readers take at most 512 segments.
export const frameBytesMax = 32 * 1024 * 1024;
export const segmentsMax = 512;

export class SocketTransport {
  /** @param {import("node:net").Socket} socket  @param {(err: Error) => void} onClose */
  constructor(socket, onClose) {
    this.socket = socket;
    this.onClose = onClose;
    this.chunks = [];
    this.buffered = 0;
    this.needed = 0; // bytes of the frame being read, once its segment table is known
    this.queue = [];
    this.waiter = null;
    this.error = null;
    socket.on("data", (data) => this.receive(data));
    socket.on("error", (err) => this.fail(err));
    socket.on("close", () => this.fail(new Error("connection closed by the node")));
  }

  receive(data) {
    if (this.error) return;
    this.chunks.push(data);
    this.buffered += data.length;
    try {
      while (this.frame()) {}
    } catch (err) {
      this.fail(err);
      this.socket.destroy();
    }
  }

  // Takes one whole frame off the buffered bytes; false when it is not all here.
  frame() {
    if (this.needed === 0) {
      if (this.buffered < 4) return false;
      const head = this.peek(4);
      const segments = head.readUInt32LE(0) + 1;
      if (segments > segmentsMax) throw new Error(`the node sent a frame of ${segments} segments`);
      let table = 4 + 4 * segments;
      if (table % 8) table += 4;
      if (this.buffered < table) return false;
      const sizes = this.peek(table);
      let words = 0;
      for (let i = 0; i < segments; i++) words += sizes.readUInt32LE(4 + 4 * i);
      if (words * 8 > frameBytesMax) throw new Error(`the node sent a frame of ${words * 8} bytes`);
      this.needed = table + words * 8;
    }
    if (this.buffered < this.needed) return false;
    const all = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks, this.buffered);
    const frame = all.subarray(0, this.needed);
    const rest = all.subarray(this.needed);
    this.chunks = rest.length ? [rest] : [];
    this.buffered = rest.length;
    this.needed = 0;
    // capnp-es reads from an ArrayBuffer of its own.
    const bytes = frame.buffer.slice(frame.byteOffset, frame.byteOffset + frame.length);
    const message = new capnp.Message(bytes, false).getRoot(RpcMessage);
    // This client exports nothing: a node never calls it or asks for its bootstrap. capnp-es
    // would answer such a message with a promise nobody handles (which ends the process).
    const which = message.which();
    if (which === RpcMessage.CALL || which === RpcMessage.BOOTSTRAP) {
      throw new Error("the node sent a call or a bootstrap request, which a client never gets");
    }
    // capnp-es ends the connection on an Abort and drops its reason; the reason says whether
    // the node read anything (a refused connection: it did not), so it is kept here.
    if (which === RpcMessage.ABORT) {
      const abort = message.abort;
      const err = new Error(`the node ended the connection: ${abort.reason}`);
      err.overloaded = abort.type === 1; // Exception.Type.overloaded
      throw err;
    }
    this.deliver(message);
    return true;
  }

  peek(n) {
    if (this.chunks[0].length < n) {
      const joined = Buffer.concat(this.chunks, this.buffered);
      this.chunks = [joined];
    }
    return this.chunks[0];
  }

  deliver(message) {
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w.resolve(message);
    } else {
      this.queue.push(message);
    }
  }

  fail(err) {
    if (this.error) return;
    this.error = err;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w.reject(undefined); // Conn's read loop stops quietly on an undefined rejection
    }
    this.onClose(err);
  }

  sendMessage(message) {
    if (this.error) return;
    this.socket.write(new Uint8Array(message.segment.message.toArrayBuffer()));
  }

  recvMessage() {
    if (this.queue.length) return Promise.resolve(this.queue.shift());
    if (this.error) return Promise.reject(undefined);
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  close() {
    this.fail(new Error("connection closed"));
    this.socket.destroy();
  }
}

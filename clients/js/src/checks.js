// What is checked before anything is sent (types, well-formed strings, the node's byte
// limits, addresses), and a cancellable timer.
import { HoldfastError } from "./errors.js";

// The node's byte limits (protocol/limits.hpp): a longer name is refused `invalid` by the
// node; this client refuses it before sending, so one oversized call cannot make a batch
// frame too large for the node and fail every other call in it.
export const bytesMax = { sku: 128, holdId: 256, user: 256, title: 256 };
export const holdListStates = ["", "active", "finished", "confirmed", "released", "expired", "returned"];
// setTimeout's longest delay: a longer one fires at once.
export const timerMax = 2 ** 31 - 1;
const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

// A wrong JavaScript type or an ill-formed string: a TypeError (a lone surrogate would be
// sent as U+FFFD, so two different ids would name one hold).
export function checkText(name, v, required = true) {
  if (v === undefined || v === null || v === "") {
    if (required) throw new TypeError(`${name} is required`);
    return;
  }
  if (typeof v !== "string") throw new TypeError(`${name} must be a string`);
  if (loneSurrogate.test(v)) throw new TypeError(`${name} is not well-formed UTF-16 (a lone surrogate)`);
}

// A name longer than the node takes: the HoldfastError it would answer, or null.
export function tooLong(fields) {
  for (const [name, v] of Object.entries(fields)) {
    if (typeof v === "string" && Buffer.byteLength(v) > bytesMax[name]) {
      return new HoldfastError("invalid", `${name} longer than ${bytesMax[name]} bytes`,
                               { sku: fields.sku, holdId: fields.holdId });
    }
  }
  return null;
}

export function checkCount(name, v, min, max = Number.MAX_SAFE_INTEGER) {
  if (!Number.isSafeInteger(v) || v < min || v > max) {
    throw new TypeError(`${name} must be an integer from ${min} to ${max}`);
  }
}

export function splitAddress(address) {
  const m = typeof address === "string" ? /^(\[[0-9A-Fa-f:.]+\]|[^\s\[\]]+):(\d{1,5})$/.exec(address) : null;
  const port = m ? Number(m[2]) : 0;
  if (!m || port < 1 || port > 65535) throw new TypeError(`address '${address}' is not HOST:PORT`);
  return { host: m[1].replace(/^\[(.*)\]$/, "$1"), port };
}

// A timer that can be cancelled: `promise` resolves after `ms` unless `cancel()` first.
export function delay(ms) {
  let timer, resolve;
  const promise = new Promise((r) => { resolve = r; timer = setTimeout(r, Math.max(0, Math.min(ms, timerMax))); });
  return { promise, cancel() { clearTimeout(timer); resolve(); } };
}

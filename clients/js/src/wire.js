// Between the wire and JavaScript: batch requests filled, answers (HoldResult, SkuResult,
// an RPC that failed) turned into values or the HoldfastError they stand for.
import { HoldResult, SkuResult } from "./gen/inventory.js";
import { HoldfastError } from "./errors.js";

const holdStates = ["active", "confirmed", "released", "expired", "returned"];

export const kinds = {
  reserve: { method: "reserveBatch", list: "_initRequests", fill: fillReserve },
  confirm: { method: "confirmBatch", list: "_initHolds", fill: fillRef },
  release: { method: "releaseBatch", list: "_initHolds", fill: fillRef },
  extend: { method: "extendBatch", list: "_initHolds", fill: fillRef },
};

export function fillReserve(r, op) {
  r.sku = op.sku;
  r.qty = BigInt(op.qty);
  r.holdId = op.holdId;
  r.ttlMs = BigInt(op.ttlMs);
  if (op.user) r.user = op.user;
}

export function fillRef(r, op) {
  r.holdId = op.holdId;
  if (op.sku) r.sku = op.sku;
  if (op.ttlMs) r.ttlMs = BigInt(op.ttlMs);
}

export function num(v) {
  return typeof v === "bigint" ? Number(v) : v;
}

export function holdOf(h) {
  const deadlineMs = num(h.deadlineMs);
  return { holdId: h.holdId, sku: h.sku, qty: num(h.qty), state: holdStates[h.state] ?? "unknown",
           deadlineMs, deadline: new Date(deadlineMs) };
}

export function skuOf(s) {
  const onHand = num(s.onHand), reserved = num(s.reserved);
  return { sku: s.sku, title: s.title, onHand, reserved, available: onHand - reserved,
           priceCents: num(s.priceCents), sold: num(s.sold), stocked: num(s.stocked),
           activeHolds: num(s.activeHolds), writtenOff: num(s.writtenOff),
           limitPerUser: num(s.limitPerUser) };
}

// A HoldResult off the wire: the hold, or the HoldfastError it stands for.
export function holdResult(r, op) {
  const who = { sku: op.sku || undefined, holdId: op.holdId };
  const name = `hold '${op.holdId}'` + (op.sku ? ` on sku '${op.sku}'` : "");
  const detail = r.detail;
  const more = detail ? ` (${detail})` : "";
  switch (r.which()) {
    case HoldResult.HOLD: {
      const hold = holdOf(r.hold);
      // An answer for another hold is a broken (or hostile) node's, never this call's.
      if (hold.holdId !== op.holdId) {
        return new HoldfastError("invalid", `the node answered for hold '${hold.holdId}', not '${op.holdId}'`, who);
      }
      return hold;
    }
    case HoldResult.OUT_OF_STOCK: {
      const available = num(r.outOfStock);
      return new HoldfastError("out_of_stock", `sku '${op.sku}' has ${available} available`, { ...who, available });
    }
    case HoldResult.UNKNOWN_SKU: return new HoldfastError("unknown_sku", `no sku '${op.sku}'${more}`, who);
    case HoldResult.UNKNOWN_HOLD: return new HoldfastError("unknown_hold", `no ${name}${more}`, who);
    case HoldResult.HOLD_EXPIRED:
      return new HoldfastError("hold_expired", `${name} expired`, { ...who, hold: holdOf(r.holdExpired) });
    case HoldResult.HOLD_CONFLICT: {
      const hold = holdOf(r.holdConflict);
      return new HoldfastError("hold_conflict", `${name}: the id is taken by another hold` +
        (hold.sku ? ` on sku '${hold.sku}'` : ""), { ...who, hold });
    }
    case HoldResult.WRONG_STATE: {
      const hold = holdOf(r.wrongState);
      return new HoldfastError("wrong_state", `${name} is ${hold.state}${more}`, { ...who, hold });
    }
    case HoldResult.INVALID: return new HoldfastError("invalid", r.invalid, who);
    case HoldResult.UNAVAILABLE: return new HoldfastError("unavailable", r.unavailable, who);
    case HoldResult.STORAGE_FULL: return new HoldfastError("storage_full", r.storageFull, who);
    case HoldResult.OUTCOME_UNKNOWN: return new HoldfastError("outcome_unknown", r.outcomeUnknown, who);
    case HoldResult.LIMIT_REACHED: {
      const remaining = num(r.limitReached);
      return new HoldfastError("limit_reached", `${name}: the user may get ${remaining} more`, { ...who, remaining });
    }
    case HoldResult.FORBIDDEN: return new HoldfastError("forbidden", r.forbidden, who);
    default: return new HoldfastError("invalid", `an answer this client does not know (${r.which()})`, who);
  }
}

export function skuResult(r, sku) {
  switch (r.which()) {
    case SkuResult.SKU: return skuOf(r.sku);
    case SkuResult.UNKNOWN_SKU: return new HoldfastError("unknown_sku", `no sku '${sku}'`, { sku });
    case SkuResult.SKU_EXISTS: return new HoldfastError("sku_exists", `sku '${sku}' exists`, { sku, info: skuOf(r.skuExists) });
    case SkuResult.INSUFFICIENT: return new HoldfastError("insufficient", `sku '${sku}' has more reserved`, { sku, info: skuOf(r.insufficient) });
    case SkuResult.INVALID: return new HoldfastError("invalid", r.invalid, { sku });
    case SkuResult.UNAVAILABLE: return new HoldfastError("unavailable", r.unavailable, { sku });
    case SkuResult.STORAGE_FULL: return new HoldfastError("storage_full", r.storageFull, { sku });
    case SkuResult.OUTCOME_UNKNOWN: return new HoldfastError("outcome_unknown", r.outcomeUnknown, { sku });
    case SkuResult.FORBIDDEN: return new HoldfastError("forbidden", r.forbidden, { sku });
    default: return new HoldfastError("invalid", `an answer this client does not know (${r.which()})`, { sku });
  }
}

// An RPC that failed (not a domain answer): did the node take it? An OVERLOADED
// refusal and a connection the node refused before reading anything took nothing.
export function transportError(err, sent) {
  const text = String(err?.message ?? err);
  // The node's TLS refused this client's certificate (or its lack of one): nothing was read,
  // and trying again will not change it.
  if (typeof err?.code === "string" && /^ERR_SSL_.*(ALERT|CERT)|CERT_|UNABLE_TO_VERIFY|SELF_SIGNED/.test(err.code)) {
    return new HoldfastError("unavailable", `the node's TLS refused this client (${err.code}): ${text}`, { final: true });
  }
  const refused = err?.overloaded ||
    /OVERLOADED|too many operations in flight|refused this connection before reading/.test(text);
  return new HoldfastError(sent && !refused ? "outcome_unknown" : "unavailable", text.replace(/^.*?remote exception: /, ""));
}

// The outcomes a call ends with, as the CLI names them, and the error that carries one.

/** The outcome names, as the CLI prints them (protocol/domain.hpp). */
export const codes = Object.freeze([
  "ok", "out_of_stock", "unknown_sku", "unknown_hold", "hold_expired", "hold_conflict",
  "wrong_state", "sku_exists", "insufficient", "invalid", "unavailable", "storage_full",
  "outcome_unknown", "limit_reached", "unknown_order", "forbidden",
]);

export class HoldfastError extends Error {
  /**
   * @param {string} code one of `codes`
   * @param {string} message
   * @param {object} [fields] sku, holdId, available, hold, sku info
   */
  constructor(code, message, fields = {}) {
    super(`${code}: ${message}`);
    this.name = "HoldfastError";
    this.code = code;
    Object.assign(this, fields);
  }
  /** True when the call may have taken effect: retry with the same hold id to learn. */
  get mayHaveApplied() {
    return this.code === "outcome_unknown";
  }
}

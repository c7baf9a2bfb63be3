// Types for holdfast-client (src/client.js says what each call does).
export type Code =
  | "ok" | "out_of_stock" | "unknown_sku" | "unknown_hold" | "hold_expired" | "hold_conflict"
  | "wrong_state" | "sku_exists" | "insufficient" | "invalid" | "unavailable" | "storage_full"
  | "outcome_unknown" | "limit_reached" | "unknown_order" | "forbidden";
export declare const codes: readonly Code[];

export type HoldState = "active" | "confirmed" | "released" | "expired" | "returned";
export interface Hold {
  holdId: string; sku: string; qty: number; state: HoldState; deadlineMs: number; deadline: Date;
}
export interface Sku {
  sku: string; title: string; onHand: number; reserved: number; available: number;
  priceCents: number; sold: number; stocked: number; activeHolds: number; writtenOff: number;
  limitPerUser: number;
}
export interface NodeStatus {
  nodeId: number; version: string; cluster: string; startedMs: number; uptimeMs: number;
  callsTotal: number; callsPerSecond: number; skusActive: number; notServing: string;
}

export declare class HoldfastError extends Error {
  readonly code: Code;
  readonly sku?: string;
  readonly holdId?: string;
  readonly available?: number;   // out_of_stock
  readonly remaining?: number;   // limit_reached
  readonly hold?: Hold;          // hold_conflict, wrong_state, hold_expired
  readonly info?: Sku;           // sku_exists, insufficient
  /** True for outcome_unknown: retry with the same hold id to learn what happened. */
  readonly mayHaveApplied: boolean;
}

export interface Options {
  token?: string;
  deadlineMs?: number;
  connectTimeoutMs?: number;
  batchMax?: number;
  autoBatch?: boolean;
  /** PEM files: the cluster CA; a client certificate and its key (`holdfast cluster cert`). */
  tls?: { ca: string; cert?: string; key?: string; servername?: string };
}
export interface ReserveRequest { sku: string; qty?: number; holdId: string; ttlMs: number; user?: string }
export interface HoldRef { holdId: string; sku?: string }

export declare class Holdfast {
  constructor(address: string, options?: Options);
  readonly stats: { batches: number; batchedOps: number; retries: number; connections: number };
  /** Operations per batch RPC: at most what the node said it takes. */
  readonly batchCap: number;
  reserve(request: ReserveRequest): Promise<Hold>;
  reserveMany(requests: ReserveRequest[]): Promise<Array<Hold | HoldfastError>>;
  confirm(ref: HoldRef): Promise<Hold>;
  release(ref: HoldRef): Promise<Hold>;
  extend(ref: HoldRef & { ttlMs: number }): Promise<Hold>;
  queryHold(ref: HoldRef): Promise<Hold>;
  querySku(sku: string): Promise<Sku>;
  /** One page of the SKU's holds in id order (admin); page on with `after: next` until `next` is "". */
  listHolds(sku: string, query?: { state?: "" | "active" | "finished" | "confirmed" | "released" | "expired" | "returned";
                                   after?: string; limit?: number }): Promise<{ sku: Sku; holds: Hold[]; next: string }>;
  createSku(request: { sku: string; stock: number; priceCents?: number; title?: string; limitPerUser?: number }): Promise<Sku>;
  restock(sku: string, qty: number): Promise<Sku>;
  status(): Promise<NodeStatus>;
  close(): void;
}
export declare function connect(address: string, options?: Options): Promise<Holdfast>;

@0xd2f5a8c61e3b7402;
# LMDB records. Stored data evolves like the wire does: fields are only added. Every
# stored value is one of these messages followed by an 8-byte trailer carrying its
# CRC32C (persistence/records.cpp).

$import "/capnp/c++.capnp".namespace("holdfast::stored");

struct SkuRecord {
  sku @0 :Text;
  onHand @1 :Int64;
  reserved @2 :Int64;
  priceCents @3 :Int64;
  sold @4 :Int64;
  stocked @5 :Int64;
  activeHolds @6 :Int64;
  earliestDeadlineMs @7 :Int64;   # 0 when no hold is active; lets recovery wake only SKUs with holds
  logBlock @8 :UInt64;            # the SKU's last hold-log block written
  checkpointBlock @9 :UInt64;     # the block restating every active hold; older blocks are gone
  writtenOff @10 :Int64;          # units removed by stock-take adjustments
  logEntries @11 :UInt64;         # hold-log entries since (and including) the checkpoint block
  title @12 :Text;
  limitPerUser @13 :Int64;        # 0: none
}

# The `meta` database's one record: which directory this data belongs to.
struct DirectoryMeta {
  format @0 :UInt32;
  directoryId @1 :Text;           # also in the directory's holdfast.format file
  createdMs @2 :Int64;
  clockHighWaterMs @3 :Int64;     # the latest wall-clock time the node has seen (updated
                                  # about once a second): a restart behind it means the clock
                                  # was set back while the node was down
  snapshotPosition @4 :UInt64;    # the last log record this snapshot contains
}

enum HoldState {
  active @0;
  confirmed @1;
  released @2;
  expired @3;
  returned @4;
}

# One snapshot's hold changes for one SKU, in the `hold_log` database under (sku, block
# number). Replaying an SKU's blocks in order gives its active holds.
struct HoldLogBlock {
  holds @0 :List(HoldRecord);     # sku left empty: the key says it
}

struct HoldRecord {
  holdId @0 :Text;
  sku @1 :Text;
  qty @2 :Int64;
  ttlMs @3 :Int64;
  deadlineMs @4 :Int64;
  state @5 :HoldState;
  finishedMs @6 :Int64;           # when it ended (0 while active): finished holds are kept for the idempotency window
  leaseMs @7 :Int64;              # the longest ttl an extend gave it (0: none beyond ttlMs);
                                  # a restart cuts the deadline to now + max(ttlMs, leaseMs)
  user @8 :Text;                  # who reserved it (counted against a per-user limit)
}

# One group commit: the payload of one record of the node's log (persistence/log.hpp),
# which carries its own checksum, so the payload has no trailer.
struct LogCommit {
  batches @0 :List(LogBatch);
}

# One writer's batch: an SKU's new record and the new states of the holds it changed,
# and entity records it wrote; or (no sku) entity records alone.
struct LogBatch {
  sku @0 :SkuRecord;
  holds @1 :List(HoldRecord);     # sku left empty: the batch's SKU
  records @2 :List(EntityRecord);
}

# A cart: the value of its entity record (space cart, key the user id).
struct StoredCart {
  lines @0 :List(StoredCartLine);
  version @1 :UInt64;
  updatedMs @2 :Int64;
  takenBy @3 :Text;
  taken @4 :List(StoredCartLine);
}

struct StoredCartLine {
  sku @0 :Text;
  qty @1 :Int64;
  priceCents @2 :Int64;
}

# An order: the value of its entity record (space order, key the order id): the saga's
# record (actors/order_saga.hpp).
struct StoredOrder {
  user @0 :Text;
  card @1 :Text;
  lines @2 :List(StoredOrderLine);
  totalCents @3 :Int64;
  state @4 :UInt8;
  phase @5 :UInt8;
  done @6 :Data;
  reserved @7 :Data;
  sold @8 :Data;
  intentId @9 :Text;
  authorized @10 :Bool;
  captured @11 :Bool;
  refunded @12 :Bool;
  releasedAll @13 :Bool;
  lookupPending @14 :Bool;
  cancelRequested @15 :Bool;
  reason @16 :Text;
  lastError @17 :Text;
  attempt @18 :UInt32;
  retryAtMs @19 :Int64;
  extendedAtMs @20 :Int64;
  createdMs @21 :Int64;
  updatedMs @22 :Int64;
  version @23 :UInt64;
  authUnsure @24 :Bool;
  orderId @25 :Text;              # also the record's key; an order event carries it here
}

struct StoredOrderLine {
  sku @0 :Text;
  qty @1 :Int64;
  priceCents @2 :Int64;
}

# A keyed value of an entity other than an SKU (a buyer's purchase count; next carts,
# orders, payments), in the `records` database under (space byte, key).
struct EntityRecord {
  space @0 :UInt8;                # persistence/records.hpp record_space
  key @1 :Data;
  value @2 :Data;                 # the entity's own encoding
  deleted @3 :Bool;               # removes the key
}

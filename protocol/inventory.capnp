@0xb7e1c3f2a4d50901;
# Client <-> node contract for inventory. Schemas only grow: new ordinals, never
# renumbered or retyped (tests/unit/schema_test.cpp checks this against
# tests/unit/schema_history.txt).

$import "/capnp/c++.capnp".namespace("holdfast::wire");

enum HoldState {
  active @0;
  confirmed @1;
  released @2;
  expired @3;
  returned @4;             # confirmed, then given back (an order compensated or refunded)
}

struct HoldInfo {
  holdId @0 :Text;
  sku @1 :Text;
  qty @2 :Int64;
  state @3 :HoldState;
  deadlineMs @4 :Int64;   # absolute wall-clock deadline, Unix milliseconds
}

struct SkuInfo {
  sku @0 :Text;
  onHand @1 :Int64;
  reserved @2 :Int64;
  priceCents @3 :Int64;
  sold @4 :Int64;          # units ever confirmed
  stocked @5 :Int64;       # units ever added (create + restock + positive adjust)
  activeHolds @6 :Int64;
  writtenOff @7 :Int64;    # units removed by stock-take adjustments: sold + onHand + writtenOff == stocked
  title @8 :Text;          # what a storefront shows; may be empty
  limitPerUser @9 :Int64;  # units one user may hold and buy in all (0: no limit)
}

struct ReserveRequest {
  sku @0 :Text;
  qty @1 :Int64;
  holdId @2 :Text;
  ttlMs @3 :Int64;
  user @4 :Text;           # who buys: required by an SKU with a per-user limit
}

struct HoldRef {
  holdId @0 :Text;
  sku @1 :Text;            # optional: empty means "look the hold up on the node"
  ttlMs @2 :Int64;         # extend only: the hold lasts at least this long from now
}

# Domain outcomes are values, not exceptions. RPC exceptions mean transport trouble.
struct HoldResult {
  union {
    hold @0 :HoldInfo;             # the operation took effect (or had already)
    outOfStock @1 :Int64;          # units available when refused
    unknownSku @2 :Void;
    unknownHold @3 :Void;
    holdExpired @4 :HoldInfo;      # confirm of a hold whose deadline passed
    holdConflict @5 :HoldInfo;     # same hold id, other arguments: the existing hold
    wrongState @6 :HoldInfo;       # the hold already ended otherwise (e.g. release after confirm)
    invalid @7 :Text;
    unavailable @8 :Text;
    storageFull @9 :Text;
    outcomeUnknown @10 :Text;      # timed out inside the node: retry with the same hold id
    limitReached @12 :Int64;       # the user's per-user limit: units the user may still get
    forbidden @13 :Text;           # the connection's role may not do this (login first)
  }
  detail @11 :Text;                # more words for an outcome that has none of its own,
                                   # e.g. where a hold named with the wrong SKU is
}

struct SkuResult {
  union {
    sku @0 :SkuInfo;
    unknownSku @1 :Void;
    skuExists @2 :SkuInfo;
    insufficient @3 :SkuInfo;      # adjust below what is reserved
    invalid @4 :Text;
    unavailable @5 :Text;
    storageFull @6 :Text;
    outcomeUnknown @7 :Text;
    forbidden @8 :Text;            # the connection's role may not do this (login first)
  }
}

interface Inventory {
  createSku @0 (sku :Text, stock :Int64, priceCents :Int64, title :Text, limitPerUser :Int64) -> (result :SkuResult);
  querySku @1 (sku :Text) -> (result :SkuResult);
  restock @2 (sku :Text, qty :Int64) -> (result :SkuResult);
  adjust @3 (sku :Text, onHand :Int64) -> (result :SkuResult);

  reserve @4 (request :ReserveRequest) -> (result :HoldResult);
  confirm @5 (hold :HoldRef) -> (result :HoldResult);
  release @6 (hold :HoldRef) -> (result :HoldResult);
  queryHold @7 (hold :HoldRef) -> (result :HoldResult);

  # A batch larger than the node's limit is refused whole: `results` is empty and
  # `refused` says why (one error, not one per item).
  reserveBatch @8 (requests :List(ReserveRequest)) -> (results :List(HoldResult), refused :Text);
  confirmBatch @9 (holds :List(HoldRef)) -> (results :List(HoldResult), refused :Text);
  releaseBatch @10 (holds :List(HoldRef)) -> (results :List(HoldResult), refused :Text);
  # Catalog loads: creates in one group commit, without starting an SKU actor for each.
  createSkuBatch @11 (requests :List(CreateSkuRequest)) -> (results :List(SkuResult), refused :Text);

  # The node and its links, for `holdfast cluster status`.
  status @12 () -> (status :NodeStatus);
  # The cluster's members, for clients that send each call straight to its owner.
  # Empty `members` from a node that is not in a cluster.
  members @13 () -> (cluster :Text, fileHash :Text, members :List(Member));
  # Test-only fault hook (the node must run with --fault-hooks, else `refused`): cut the
  # peer links to these nodes, both ways, until the next call; an empty list heals.
  faultPartition @14 (peers :List(UInt32)) -> (refused :Text);

  # The catalog in SKU order, with availability as of the last durable change, from every
  # member (or only this node's SKUs with `localOnly`, which is how members ask each other).
  listSkus @15 (query :SkuQuery) -> (page :SkuPage);
  # Moves an active hold's deadline to at least now + ttlMs (never earlier): a saga keeps
  # its holds while a payment is pending. Repeating it is harmless; an ended hold answers
  # its final state as confirm would (holdExpired, wrongState).
  extend @16 (hold :HoldRef) -> (result :HoldResult);
  extendBatch @17 (holds :List(HoldRef)) -> (results :List(HoldResult), refused :Text);

  # Carts, by user: any member takes them and sends each to its user's owner. Adds and
  # sets are checked against the SKU (it must exist) by the member that took the call.
  cartOps @18 (ops :List(CartOp)) -> (results :List(CartResult), refused :Text);

  # A confirmed hold's units go back on hand (sold and on hand move back), once: a repeat
  # answers the returned hold. What an order's compensation or refund does per line.
  returnHold @19 (hold :HoldRef) -> (result :HoldResult);
  returnBatch @20 (holds :List(HoldRef)) -> (results :List(HoldResult), refused :Text);

  # Checkout: the user's cart, checked against every SKU now, becomes an order on the
  # order's owner (its id comes from the user and the key: the same key, the same
  # order); the saga runs from there. Lines sold out or gone are reported instead.
  checkout @21 (user :Text, card :Text, key :Text) -> (result :CheckoutResult);
  # Orders, by id, on their owner: show, cancel, ship, deliver, shippingFailed; and
  # place (from the member that took a checkout).
  orderOps @22 (ops :List(OrderOp)) -> (results :List(OrderResult), refused :Text);
  # A new price for an SKU; carts holding the old one see `price_changed` at checkout.
  setPrice @23 (sku :Text, priceCents :Int64) -> (result :SkuResult);
  # This node's order events from offset `from` (at least once; resume from `next`): every
  # transition of every order it owns, as the order stood after it. Not routed: a
  # consumer of the whole cluster asks every member (`members`) and merges.
  orderEvents @24 (from :UInt64, limit :UInt32) -> (events :List(OrderEvent), next :UInt64, node :UInt32,
                                                    refused :Text);
  # This node's orders in id order (one user's through their index), for `order list`:
  # not routed either; the CLI asks every member and merges. `next` is set when this node
  # may have more after it (a state filter reads a bounded number of orders per call).
  listOrders @25 (query :OrderQuery) -> (orders :List(OrderInfo), next :Text, node :UInt32, refused :Text);

  # A node started with --tokens serves a connection only once it has logged in with a
  # bearer token: the token's role (admin or client) decides what the connection may do
  # for its lifetime; a call its role may not make answers `forbidden` and changes
  # nothing. Without --tokens every connection may do everything (role "admin").
  # `refused`: why not (an unknown token); the connection's role stays what it was.
  login @26 (token :Text) -> (role :Text, refused :Text);

  # One page of an SKU's holds in hold-id order (`holdfast hold list`), asked of the SKU's
  # owner: active holds, and finished ones while the idempotency window keeps them.
  # `result`: the SKU as it is now, or why no page (unknownSku, invalid, forbidden:
  # admin only, since a hold id is all a confirm or release needs). `next`: empty when
  # nothing follows, else pass it as `after`.
  listHolds @27 (query :HoldQuery) -> (result :SkuResult, holds :List(HoldInfo), next :Text);

  # A replicated cluster: this node's replica, if it leads the SKU group, hands leadership
  # to node `to` (Raft's leadership transfer: `to` is sent what it lacks, then elects itself
  # at once) and answers when `to` leads (`leader` = to) or why not (`refused`: this node
  # does not lead, `to` is not a member, or it did not take over within an election
  # timeout). Admin only. `holdfast cluster rebalance` asks the leader.
  transferLeadership @28 (to :UInt32) -> (leader :UInt32, refused :Text);

  # A replicated cluster, on the leader: replaces node `node`'s lost replica through Raft's
  # configuration change. The lost replica is removed from the group, and a new one, with a
  # Raft id the group never had, is added at the node's raft address as a spare (it gets
  # nothing yet). `replica`: its id, to prepare the node's new data directory with; a spare
  # of `node` an earlier call added is answered again. Admin only; `holdfast cluster
  # replace` calls it once the node is known to be gone.
  replaceReplica @29 (node :UInt32) -> (replica :UInt64, refused :Text);
  # On the leader: makes spare `replica` a voter once its log caught up with the leader's
  # (it must run); answers when that configuration is committed, or why not (it did not
  # catch up: ask again). Admin only.
  promoteReplica @30 (replica :UInt64) -> (refused :Text);
}

struct HoldQuery {
  sku @0 :Text;
  state @1 :Text;          # "" any, "active", "finished", or confirmed/released/expired/returned
  after @2 :Text;          # only holds whose ids sort after this: the previous page's `next`
  limit @3 :UInt32;        # at most this many (0: the node's default, 100; at most 1000)
}

struct OrderQuery {
  user @0 :Text;               # only this user's orders
  state @1 :Text;              # only orders in this state, or "active" (saga still running)
  after @2 :Text;              # only orders after this id: the previous page's `next`
  limit @3 :UInt32;            # at most this many (0: the node's default)
}

struct OrderEvent {
  seq @0 :UInt64;
  order @1 :OrderInfo;
}

enum OrderOpKind {
  show @0;
  cancel @1;
  ship @2;
  deliver @3;
  shippingFailed @4;
  place @5;
  paymentEvent @6;             # a payment gateway's webhook, as it came: the owner
                               # verifies its signature before the order sees it
}

struct OrderOp {
  kind @0 :OrderOpKind;
  orderId @1 :Text;
  detail @2 :Text;             # shippingFailed: why
  user @3 :Text;               # place
  card @4 :Text;               # place
  lines @5 :List(OrderLine);   # place
  webhookBody @6 :Text;        # paymentEvent
  webhookSignature @7 :Text;   # paymentEvent: the Holdfast-Signature header
}

struct OrderLine {
  sku @0 :Text;
  qty @1 :Int64;
  priceCents @2 :Int64;
}

struct OrderInfo {
  orderId @0 :Text;
  user @1 :Text;
  state @2 :Text;              # placed, reserved, authorized, confirmed, captured, shipped,
                               # delivered, cancelled, refunded
  step @3 :Text;               # what the saga does now (done when finished)
  lines @4 :List(OrderLine);
  totalCents @5 :Int64;
  intentId @6 :Text;
  reason @7 :Text;             # why cancelled or refunded
  lastError @8 :Text;          # the last step that found no answer
  createdMs @9 :Int64;
  updatedMs @10 :Int64;
  version @11 :UInt64;
}

struct OrderResult {
  union {
    order @0 :OrderInfo;
    invalid @1 :Text;
    unavailable @2 :Text;
    storageFull @3 :Text;
    outcomeUnknown @4 :Text;
    unknownOrder @5 :Text;
    wrongState @6 :OrderInfo;  # the operation does not apply to the order as it is
    forbidden @8 :Text;        # the connection's role may not do this (login first)
  }
  detail @7 :Text;             # wrongState: why
}

struct CheckoutLine {
  sku @0 :Text;
  qty @1 :Int64;
  priceCents @2 :Int64;        # now
  available @3 :Int64;         # now
  problem @4 :Text;            # empty, "sold_out", "unknown_sku", "price_changed"
  cartPriceCents @5 :Int64;    # the price the cart holds for the line
}

struct CheckoutResult {
  union {
    order @0 :OrderInfo;               # placed (or placed before with this key)
    changed @1 :List(CheckoutLine);    # nothing placed: these lines cannot be bought as they are
    emptyCart @2 :Void;
    invalid @3 :Text;
    unavailable @4 :Text;
    outcomeUnknown @5 :Text;           # retry with the same key
    forbidden @6 :Text;                # the connection's role may not do this (login first)
  }
}

enum CartOpKind {
  view @0;
  add @1;        # qty more of the SKU (a new line, or added to its line)
  remove @2;     # the SKU's line
  set @3;        # the line's qty (0 removes it)
  clear @4;      # every line
  take @5;       # checkout: every line goes to `orderId` if the cart is still at `version`
}

struct CartOp {
  kind @0 :CartOpKind;
  user @1 :Text;
  sku @2 :Text;
  qty @3 :Int64;
  priceCents @4 :Int64;       # set by the member that checked the SKU (a client's is ignored)
  version @5 :UInt64;         # take
  orderId @6 :Text;           # take
}

struct CartLine {
  sku @0 :Text;
  qty @1 :Int64;
  priceCents @2 :Int64;       # the price when the line was added or last set
}

struct CartInfo {
  user @0 :Text;
  lines @1 :List(CartLine);   # in the order they were added
  version @2 :UInt64;         # counts the cart's changes
  updatedMs @3 :Int64;        # wall-clock time of the last change (0: never changed)
  takenBy @4 :Text;           # the last checkout's order
  taken @5 :List(CartLine);   # the lines it took
}

struct CartResult {
  union {
    cart @0 :CartInfo;
    invalid @1 :Text;
    unavailable @2 :Text;
    storageFull @3 :Text;
    outcomeUnknown @4 :Text;
    unknownSku @5 :Text;      # the SKU an add or set named
    forbidden @6 :Text;       # the connection's role may not do this (login first)
  }
}

struct SkuQuery {
  prefix @0 :Text;         # only SKUs whose names start with it
  after @1 :Text;          # only SKUs after this name: the previous page's `next`
  limit @2 :UInt32;        # at most this many (0: the node's default)
  localOnly @3 :Bool;
}

struct SkuPage {
  skus @0 :List(SkuInfo);
  next @1 :Text;           # empty: this was the last page; else pass it as `after`
  partial @2 :Text;        # members that could not be asked (their SKUs are missing)
  invalid @3 :Text;        # the query was refused, and why
}

struct CreateSkuRequest {
  sku @0 :Text;
  stock @1 :Int64;
  priceCents @2 :Int64;
  title @3 :Text;
  limitPerUser @4 :Int64;
}

struct Member {
  id @0 :UInt32;
  client @1 :Text;         # HOST:PORT clients connect to
}

struct LinkStatus {
  node @0 :UInt32;
  state @1 :Text;          # up, connecting, down, refused, partitioned
  detail @2 :Text;         # why it is not up
  incarnation @3 :UInt64;  # the peer's, from its last hello
  rttMicros @4 :Int64;     # the last heartbeat's round trip
  sinceMs @5 :Int64;       # Unix ms of the last change of state
  forwarded @6 :UInt64;    # operations sent to this peer
  downs @7 :UInt64;        # times the link went down
  generation @8 :UInt64;   # the newest generation of the peer's data directory this node accepted
}

struct NodeStatus {
  nodeId @0 :UInt32;       # 0: a single node, not in a cluster
  incarnation @1 :UInt64;  # new at every start (Unix microseconds of the start)
  cluster @2 :Text;
  fileHash @3 :Text;
  skusActive @4 :Int64;    # SKU actors in memory
  callsTotal @5 :UInt64;   # operations accepted from clients and peers
  callsPerSecond @6 :Float64;  # over the last whole second
  forwardedTotal @7 :UInt64;   # operations this node sent on to their owners
  links @8 :List(LinkStatus);
  startedMs @9 :Int64;
  notServing @10 :Text;    # empty while the node serves; else why it answers unavailable
                           # (joining, or refused by every peer that answered)
  generation @11 :UInt64;  # its data directory's generation (raised by each restore)
  clusterId @12 :Text;
  version @13 :Text;       # the node's Holdfast version (holdfast --version)
  raft @14 :RaftStatus;    # a replicated cluster's: this node's replica of the SKU group
}

struct RaftStatus {
  present @0 :Bool;        # false: the SKUs are not replicated
  state @1 :Text;          # follower, candidate, leader, unavailable
  serving @2 :Bool;        # leading, with every entry its log held when elected applied
  term @3 :UInt64;
  commitIndex @4 :UInt64;
  lastApplied @5 :UInt64;
  leader @6 :UInt32;       # the leader this replica knows; 0: none
  followers @7 :List(FollowerLag);  # when leading
  snapshotIndex @8 :UInt64;   # the entry its latest Raft snapshot covers (0: none since it started)
  snapshotsTaken @9 :UInt64;  # since it started
  statesInstalled @10 :UInt64;  # the group's state sent by a leader and installed, since it started
  replica @11 :UInt64;     # this replica's Raft id: the node's id in the low 16 bits, above them
                           # 0 for the group's first replica of the node, else the entry where
                           # the leader added it (a replacement)
  servers @12 :List(RaftServer);  # the group's configuration as this replica has it
}

struct RaftServer {
  replica @0 :UInt64;
  node @1 :UInt32;
  role @2 :Text;           # voter, standby (gets entries, no vote), spare (gets nothing)
  address @3 :Text;        # its raft address
}

struct FollowerLag {
  node @0 :UInt32;
  matchIndex @1 :UInt64;   # the highest entry known to be on its log
  lag @2 :UInt64;          # entries it lacks of the leader's log
  replica @3 :UInt64;      # its Raft id
}

# Node <-> node. The dialing node says who it is, which cluster file it runs and which
# generation and lineage of its data directory; the answering node refuses (and logs why) a
# file whose hash differs from its own, a node id the peer's certificate does not name, a
# member it already has a live link to under another incarnation (a second process with
# the same identity), a generation older than one it accepted (a directory a restore
# replaced), or a lineage without the newest token it accepted (a copy another copy ran
# past). The answer carries the same of the answering node, checked the same way. Only an accepted hello returns the inventory a peer forwards calls to, with
# the limits the answering node holds forwarded batches to.
interface Peer {
  hello @0 (cluster :Text, fileHash :Text, from :UInt32, to :UInt32, incarnation :UInt64,
            generation :UInt64, directoryId :Text, lineage :Text)
      -> (refused :Text, incarnation :UInt64, inventory :Inventory,
          batchMax :UInt32, inflightMax :UInt64, generation :UInt64, lineage :Text,
          fenced :Bool);
  # lineage: the directory's start tokens, comma-separated, newest last. fenced: the refusal
  # is about this very process or directory (a live duplicate, a replaced generation, a
  # lineage behind another copy's), not a disagreement about the cluster file: the refused
  # node serves nothing until that peer accepts it.
  heartbeat @1 () -> (incarnation :UInt64);
}

// Every fixed bound of the protocol in one place: name lengths, list and page sizes,
// batch sizes, and the one read limit every Cap'n Proto reader uses. Fixed, not
// configurable (the configurable intervals and bounds are the node's options, each with
// its default beside it: cluster/rpc_server.hpp, client/cluster_file.hpp).
//
// They fit together: the largest request and the largest answer any call can carry within
// these bounds are smaller than wire_words_max (tests/unit/wire_limits_test.cpp builds
// each one and measures it), so a reader refusing a larger frame never refuses a
// legitimate one, and a hostile peer cannot make a node allocate more per frame.
#pragma once

#include <cstddef>
#include <cstdint>

namespace holdfast {

// Longest names, in bytes of UTF-8. The store builds keys of an SKU and a hold id
// together, and persistence/ checks at compile time that every key it builds fits its key
// limit.
constexpr size_t sku_bytes_max = 128;
constexpr size_t hold_id_bytes_max = 256;
// Most units an SKU has on hand: `create` and `adjust` set no more, a `restock` that would
// take it past is invalid.
constexpr int64_t on_hand_max = 1'000'000'000;
// A title is free text (spaces allowed, no control characters).
constexpr size_t title_bytes_max = 256;
constexpr size_t user_bytes_max = 256;
constexpr size_t cart_lines_max = 100;  // lines one cart holds at most
constexpr size_t order_id_bytes_max = 128;
// A payment gateway's webhook body, as the node's HTTP endpoint and orderOps take it.
constexpr size_t webhook_body_bytes_max = 64 * 1024;
constexpr size_t webhook_signature_bytes_max = 1024;
constexpr size_t order_detail_bytes_max = 1024;  // why a shipment failed
constexpr size_t card_bytes_max = 64;
constexpr size_t idempotency_key_bytes_max = 255;  // a checkout's, a payment's

// Pages.
constexpr size_t order_events_limit_max = 1'000;  // order events in one page
constexpr uint32_t sku_list_limit_default = 100;
constexpr uint32_t sku_list_limit_max = 1'000;
constexpr uint32_t hold_list_limit_default = 100;
constexpr uint32_t hold_list_limit_max = 1'000;
// Finished holds read from the snapshot for one page of `hold list` with a state filter:
// a rare state costs bounded work, and the page ends early with `next` set.
constexpr size_t hold_list_scan_max = 10'000;
constexpr uint32_t order_list_limit_default = 100;
constexpr uint32_t order_list_limit_max = 1'000;
// A node reads at most this many orders for one page of a state filter, so a rare state
// costs bounded work per call: the page then ends early with `next` set.
constexpr size_t order_list_scan_max = 5'000;

// Batches. Hold and SKU operations: the node's --batch-max (default, and the most it
// accepts). Cart and order operations carry whole carts and orders (up to cart_lines_max
// lines each, and a webhook body), so a batch of them holds fewer; clients split larger
// ones.
constexpr size_t hold_batch_default = 4'096;
constexpr size_t hold_batch_limit = 16'384;
constexpr size_t entity_batch_max = 256;

// File descriptors a node keeps for its log, LMDB, data directory and runtime, beyond its
// connections (and 4 per cluster member for peer links): a --connections-max the process's
// limit (ulimit -n) cannot hold beside them is lowered at start.
constexpr size_t fd_reserve = 64;

// The most a Cap'n Proto reader takes in one frame, on every wire: a client reading
// answers, a node reading calls from clients and peers, a peer link reading answers.
// A larger frame ends the connection.
constexpr uint64_t wire_words_max = uint64_t{4} << 20;  // 32 MiB
// The read budget (--read-budget-mb, cluster/frame_watcher.hpp) counts frames up to this
// size but never refuses them: ordinary calls are smaller.
constexpr uint64_t frame_small_bytes_max = uint64_t{1} << 20;
// A bearer token's name (cluster/roles.hpp): written into the tokens file and logs.
constexpr size_t token_name_bytes_max = 64;

// The cluster-aware client in a replicated cluster (client/cluster_client.hpp): it checks
// which member leads every leader_check_interval_ms; after a call says the leader may be
// gone it asks every leader_search_interval_ms, at most leader_search_attempts_max times,
// each member's answer waited for leader_ask_timeout_ms at most.
constexpr int64_t leader_check_interval_ms = 2'000;
constexpr int64_t leader_search_interval_ms = 100;
constexpr int leader_search_attempts_max = 50;
constexpr int64_t leader_ask_timeout_ms = 500;
static_assert(leader_ask_timeout_ms < leader_check_interval_ms, "one check ends before the next begins");
// `holdfast cluster replace` asks the leader again this often while a change of the group's
// members is under way (for ten election timeouts, or its --timeout if longer).
constexpr int64_t replace_ask_interval_ms = 200;
constexpr int replace_transient_election_timeouts = 10;

}  // namespace holdfast

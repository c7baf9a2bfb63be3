#include "cluster/metrics.hpp"

#include <spdlog/fmt/fmt.h>

#include <cmath>

namespace holdfast {
namespace {

const char* kind_name(hold_op_kind k) {
  switch (k) {
    case hold_op_kind::reserve: return "reserve";
    case hold_op_kind::confirm: return "confirm";
    case hold_op_kind::release: return "release";
    case hold_op_kind::query: return "query";
    case hold_op_kind::extend: return "extend";
    case hold_op_kind::return_hold: return "return";
  }
  return "unknown";
}

// The exposition format: a family's HELP and TYPE once, then its samples.
class prometheus_text {
public:
  void family(const char* name, const char* type, const char* help) {
    fmt::format_to(std::back_inserter(out_), "# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  }
  void sample(const std::string& name, double value, const std::string& labels = {}) {
    out_ += name;
    if (!labels.empty()) fmt::format_to(std::back_inserter(out_), "{{{}}}", labels);
    out_ += ' ';
    if (std::isinf(value)) out_ += value > 0 ? "+Inf" : "-Inf";
    else fmt::format_to(std::back_inserter(out_), "{}", value);
    out_ += '\n';
  }
  void one(const char* name, const char* type, const char* help, double value) {
    family(name, type, help);
    sample(name, value);
  }
  void histogram(const char* name, const char* help, const histogram_counts& h) {
    family(name, "histogram", help);
    uint64_t cumulative = 0;
    for (size_t i = 0; i < h.counts.size(); ++i) {
      cumulative += h.counts[i];
      auto le = i < h.bounds.size() ? fmt::format("{}", h.bounds[i]) : std::string("+Inf");
      sample(std::string(name) + "_bucket", static_cast<double>(cumulative), "le=\"" + le + "\"");
    }
    sample(std::string(name) + "_sum", h.sum);
    sample(std::string(name) + "_count", static_cast<double>(cumulative));
  }
  std::string take() { return std::move(out_); }

private:
  std::string out_;
};

void node_families(prometheus_text& p, const metrics_view& v) {
  p.one("holdfast_node_id", "gauge", "this node's id in its cluster (0: a single node)", v.node_id);
  p.one("holdfast_start_time_seconds", "gauge", "when this node started, Unix seconds", v.started_ms / 1000.0);
  p.one("holdfast_serving", "gauge", "1 while the node serves calls, 0 while it may not (see /ready)",
        v.not_serving.empty() ? 1 : 0);
  p.one("holdfast_calls_total", "counter", "operations received from clients and peers", v.calls_total);
  p.one("holdfast_forbidden_total", "counter", "calls refused because the connection's role may not make them",
        v.forbidden_total);
  p.one("holdfast_logins_refused_total", "counter", "logins with a token the node does not know", v.logins_refused);
  p.one("holdfast_operations_in_flight", "gauge", "operations received and not yet answered",
        v.operations_in_flight);
  p.one("holdfast_operations_in_flight_max", "gauge", "--inflight-max: past it callers get OVERLOADED",
        v.inflight_max);
  p.one("holdfast_forwarded_total", "counter", "operations forwarded to the member that owns their SKU",
        v.forwarded_total);
}

void hold_families(prometheus_text& p, const hold_call_metrics& h) {
  p.family("holdfast_hold_operations_total", "counter", "hold operations answered, by kind and outcome");
  for (size_t k = 0; k < hold_op_kinds; ++k)
    for (size_t c = 0; c < code_count; ++c)
      if (h.answered[k][c] > 0)
        p.sample("holdfast_hold_operations_total", static_cast<double>(h.answered[k][c]),
                 fmt::format("kind=\"{}\",outcome=\"{}\"", kind_name(static_cast<hold_op_kind>(k)),
                             to_string(static_cast<code>(c))));
  p.histogram("holdfast_reserve_call_duration_seconds",
              "a reserve call (one reserve or a batch), from its arrival to its answer", h.reserve_latency.read());
  p.histogram("holdfast_hold_call_operations", "hold operations in one call", h.call_operations.read());
}

void rpc_families(prometheus_text& p, const std::vector<rpc_call_counts>& calls) {
  p.family("holdfast_rpc_calls_total", "counter",
           "Inventory RPC calls from clients by method and result: answered (whatever the domain outcome) or "
           "failed (an RPC exception such as OVERLOADED)");
  for (auto& c : calls) {
    if (c.answered)
      p.sample("holdfast_rpc_calls_total", static_cast<double>(c.answered),
               fmt::format("method=\"{}\",result=\"answered\"", c.method));
    if (c.failed)
      p.sample("holdfast_rpc_calls_total", static_cast<double>(c.failed),
               fmt::format("method=\"{}\",result=\"failed\"", c.method));
  }
}

void connection_families(prometheus_text& p, const connection_counters& c) {
  p.one("holdfast_client_connections", "gauge", "client connections open", c.open);
  p.one("holdfast_client_connections_accepted_total", "counter", "client connections accepted", c.accepted);
  p.one("holdfast_client_connections_refused_total", "counter", "client connections refused (--connections-max)",
        c.refused);
  p.family("holdfast_client_connections_closed_total", "counter", "client connections the node closed, by reason");
  p.sample("holdfast_client_connections_closed_total", c.closed_idle, "reason=\"idle\"");
  p.sample("holdfast_client_connections_closed_total", c.closed_frame, "reason=\"unfinished_frame\"");
  p.sample("holdfast_client_connections_closed_total", c.closed_stalled, "reason=\"answers_not_read\"");
  p.sample("holdfast_client_connections_closed_total", c.closed_unfinished, "reason=\"calls_not_finished\"");
  p.one("holdfast_frames_refused_total", "counter",
        "frames refused over the read budget (--read-budget-mb), each closing its connection", c.frames_refused);
  p.one("holdfast_frame_bytes_reading", "gauge",
        "bytes of frames begun and not yet whole, over every connection (--read-budget-mb)", c.frame_bytes_reading);
}

// Replicated SKUs: their group commits are Raft entries (the families above are then the
// node's own log: carts, orders, payments).
void sku_group_families(prometheus_text& p, const storage_stats& s) {
  p.histogram("holdfast_sku_group_commit_duration_seconds",
              "an SKU group commit, from the store's call to committed on a majority and applied here (a Raft "
              "entry)", s.commit_latency);
  p.histogram("holdfast_sku_group_commit_batches", "SKU actors' write batches in one Raft entry", s.commit_batches);
  p.one("holdfast_sku_group_entries_applied_total", "counter", "committed Raft entries applied here",
        s.entries_applied);
  p.one("holdfast_sku_group_states_installed_total", "counter", "group states installed (sent by a leader)",
        s.states_installed);
}

void storage_families(prometheus_text& p, const storage_stats& s) {
  p.histogram("holdfast_group_commit_duration_seconds",
              "a group commit, from the store's call to durable (log append, fdatasync, overlay)", s.commit_latency);
  p.histogram("holdfast_log_fdatasync_duration_seconds", "the fdatasync of one log append", s.sync_latency);
  p.histogram("holdfast_group_commit_batches", "entities' write batches in one group commit", s.commit_batches);
  p.one("holdfast_log_appends_total", "counter", "group commits appended to the log", s.log_appends);
  p.one("holdfast_log_written_bytes_total", "counter", "bytes appended to the log", s.log_bytes);
  p.one("holdfast_log_segments", "gauge", "log segment files", s.log_segments);
  p.one("holdfast_log_records_unsnapshotted", "gauge", "log records no LMDB snapshot covers yet",
        s.log_position > s.snapshot_position ? s.log_position - s.snapshot_position : 0);
  p.one("holdfast_overlay_changes", "gauge", "changes in memory waiting for a snapshot", s.overlay_mutations);
  p.one("holdfast_snapshots_total", "counter", "LMDB snapshots written", s.snapshots);
  p.one("holdfast_snapshot_failures_total", "counter", "LMDB snapshots that failed (map full, I/O)",
        s.snapshot_failures);
  p.one("holdfast_snapshot_last_duration_seconds", "gauge", "how long the latest snapshot took",
        s.last_snapshot_ms / 1000.0);
  p.one("holdfast_commit_waits_total", "counter",
        "group commits that waited for a snapshot to make room (storage_full when it cannot)", s.commit_waits);
  p.one("holdfast_finished_holds_collected_total", "counter",
        "finished holds deleted after the idempotency window", s.finished_collected);
}

void actor_families(prometheus_text& p, const directory_stats& d) {
  p.one("holdfast_sku_actors_active", "gauge", "SKU actors in memory", d.active_actors);
  p.one("holdfast_sku_actor_spawns_total", "counter", "SKU actors started (first use or after passivation)",
        d.spawns);
  p.one("holdfast_sku_actor_passivations_total", "counter", "idle SKU actors passivated", d.passivations);
  p.one("holdfast_sku_wakeups_scheduled", "gauge", "passivated SKUs the directory will wake for a deadline",
        d.scheduled_wakeups);
}

void link_families(prometheus_text& p, const std::vector<link_status>& links) {
  if (links.empty()) return;
  p.family("holdfast_peer_link_up", "gauge", "1 while the link to a member is up");
  for (auto& l : links)
    p.sample("holdfast_peer_link_up", l.state == "up" ? 1 : 0, fmt::format("peer=\"{}\"", l.node));
  p.family("holdfast_peer_link_rtt_seconds", "gauge", "the latest heartbeat round trip to a member");
  for (auto& l : links) p.sample("holdfast_peer_link_rtt_seconds", l.rtt_us / 1e6, fmt::format("peer=\"{}\"", l.node));
  p.family("holdfast_peer_forwarded_total", "counter", "operations forwarded to a member");
  for (auto& l : links)
    p.sample("holdfast_peer_forwarded_total", static_cast<double>(l.forwarded), fmt::format("peer=\"{}\"", l.node));
  p.family("holdfast_peer_link_downs_total", "counter", "times a link to a member went down");
  for (auto& l : links)
    p.sample("holdfast_peer_link_downs_total", static_cast<double>(l.downs), fmt::format("peer=\"{}\"", l.node));
}

void webhook_families(prometheus_text& p, const webhook_counters& w) {
  p.family("holdfast_payment_webhooks_total", "counter", "payment webhooks received, by outcome");
  p.sample("holdfast_payment_webhooks_total", w.applied, "outcome=\"applied\"");
  p.sample("holdfast_payment_webhooks_total", w.duplicates, "outcome=\"duplicate\"");
  p.sample("holdfast_payment_webhooks_total", w.refused, "outcome=\"refused\"");
  p.sample("holdfast_payment_webhooks_total", w.unknown_orders, "outcome=\"unknown_order\"");
  p.sample("holdfast_payment_webhooks_total", w.retry_later, "outcome=\"retry_later\"");
}

}  // namespace

void hold_call_metrics::answered_call(hold_op_kind kind, const std::vector<hold_result>& results) {
  auto& row = answered[static_cast<size_t>(kind)];
  for (auto& r : results) {
    auto c = static_cast<size_t>(r.status);
    if (c < code_count) row[c]++;
  }
  call_operations.record(static_cast<int64_t>(results.size()));
}

std::string render_metrics(const metrics_view& v) {
  prometheus_text p;
  node_families(p, v);
  if (v.holds) hold_families(p, *v.holds);
  if (v.rpc_calls) rpc_families(p, *v.rpc_calls);
  connection_families(p, v.connections);
  storage_families(p, v.storage);
  if (v.sku_group) sku_group_families(p, *v.sku_group);
  actor_families(p, v.directory);
  link_families(p, v.links);
  webhook_families(p, v.webhooks);
  return p.take();
}

}  // namespace holdfast

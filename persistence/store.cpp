#include "persistence/store.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

namespace holdfast {
namespace {

void commit(store_actor::stateful_pointer<store_state> self) {
  auto& st = self->state;
  if (st.batches.empty()) return;
  // Batches that write nothing only wait their turn: they share the commit's outcome.
  std::vector<storage::commit_part> parts;
  std::vector<size_t> part_of(st.batches.size(), SIZE_MAX);
  parts.reserve(st.batches.size());
  // Batches of an earlier leadership tenure (replicated SKUs) are not written.
  const uint64_t fence = st.config.fence ? st.config.fence->load() : 0;
  auto fenced = [&](const write_batch& b) { return b.tenure < fence; };
  for (size_t i = 0; i < st.batches.size(); ++i) {
    auto& p = st.batches[i];
    if (p.batch.mutations.empty() || fenced(p.batch)) continue;
    part_of[i] = parts.size();
    parts.push_back({&p.batch.mutations, p.writer.id()});
  }
  std::vector<store_status> part_status;
  // The tenure the batches were filtered for: the replica refuses the entry if it no longer
  // leads in it by the time it would append it.
  auto status = parts.empty() ? store_status::ok : st.env->commit(parts, part_status, fence);
  // One notification per writer: batches of a writer arrive in seq order. A writer whose
  // batch failed hears about the batches before it (durable) and then the failure.
  struct note {
    store_listener writer;
    uint64_t epoch;
    uint64_t last_durable_seq = 0;
    uint64_t failed_seq = 0;
    store_status why = store_status::ok;
  };
  std::unordered_map<caf::actor_id, note> notes;
  for (size_t i = 0; i < st.batches.size(); ++i) {
    auto& p = st.batches[i];
    auto [it, fresh] = notes.try_emplace(p.writer.id(), note{p.writer, p.batch.epoch});
    auto& n = it->second;
    // A batch that writes nothing hears only its own writer's failure, not another
    // writer's in the same commit: it waited for its writer's batches, nothing else.
    auto why = fenced(p.batch)             ? store_status::not_leader
               : part_of[i] == SIZE_MAX     ? store_status::ok
               : status != store_status::ok ? status
                                            : part_status[part_of[i]];
    // A batch behind a failed one of its writer fails with it: it was built on its state.
    if (why == store_status::ok && n.why != store_status::ok) why = n.why;
    if (p.batch.done) p.batch.done(why == store_status::ok ? nullptr : &why);
    if (why == store_status::ok) {
      n.last_durable_seq = p.batch.seq;
    } else if (n.why == store_status::ok) {
      n.failed_seq = p.batch.seq;
      n.why = why;
    }
  }
  if (status == store_status::ok) {
    st.stats.commits++;
    st.stats.batches += st.batches.size();
    st.stats.mutations += st.mutations_pending;
    st.stats.largest_commit_mutations =
      std::max<uint64_t>(st.stats.largest_commit_mutations, st.mutations_pending);
    st.stats.largest_commit_batches =
      std::max<uint64_t>(st.stats.largest_commit_batches, st.batches.size());
  } else {
    st.stats.failed_commits++;
  }
  for (auto& [id, n] : notes) {
    if (n.last_durable_seq != 0) self->send(n.writer, durable_atom_v, n.last_durable_seq);
    if (n.why == store_status::ok) continue;
    if (status == store_status::ok) st.stats.rejected_batches++;
    st.poisoned[id] = {n.epoch, n.why};
    self->send(n.writer, write_failed_atom_v, n.epoch, n.failed_seq, n.why);
  }
  st.batches.clear();
  st.mutations_pending = 0;
}

}  // namespace

store_actor::behavior_type store_behavior(store_actor::stateful_pointer<store_state> self,
                                          std::shared_ptr<storage> env, store_config config) {
  self->state.env = std::move(env);
  self->state.config = config;
  if (!self->state.env->background())
    self->delayed_send(self, std::chrono::milliseconds(config.collect_interval_ms), collect_atom_v);
  return {
    [self](write_atom, store_listener writer, write_batch& batch) {
      auto& st = self->state;
      if (auto it = st.poisoned.find(writer.id()); it != st.poisoned.end()) {
        if (batch.epoch <= it->second.first) {
          if (batch.done) batch.done(&it->second.second);
          self->send(writer, write_failed_atom_v, batch.epoch, batch.seq, it->second.second);
          return;
        }
        st.poisoned.erase(it);
      }
      st.mutations_pending += batch.mutations.size();
      st.batches.push_back({std::move(writer), std::move(batch)});
      if (st.mutations_pending >= st.config.commit_mutations_max) {
        commit(self);
        return;
      }
      // The flush lands behind every write already queued: all of them share one commit.
      if (!st.flush_scheduled) {
        st.flush_scheduled = true;
        self->send(self, flush_atom_v);
      }
    },
    [self](flush_atom) {
      self->state.flush_scheduled = false;
      commit(self);
    },
    [self](collect_atom) {
      // Writes first: maintenance waits behind any pending group commit.
      commit(self);
      self->state.env->maintain();
      self->delayed_send(self, std::chrono::milliseconds(self->state.config.collect_interval_ms),
                         collect_atom_v);
    },
    [self](stats_atom) {
      auto s = self->state.stats;
      auto t = self->state.env->stats();
      s.finished_collected = t.finished_collected;
      s.collection_passes = t.collection_passes;
      s.snapshots = t.snapshots;
      s.snapshot_position = t.snapshot_position;
      s.log_position = t.log_position;
      return s;
    },
  };
}

}  // namespace holdfast

#include "persistence/store.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

namespace holdfast {
namespace {

void commit(store_actor::stateful_pointer<store_state> self) {
  auto& st = self->state;
  if (st.batches.empty()) return;
  std::vector<const std::vector<mutation>*> parts;
  parts.reserve(st.batches.size());
  for (auto& p : st.batches) parts.push_back(&p.batch.mutations);
  auto status = st.env->commit(parts);
  // One notification per writer: batches of a writer arrive in seq order.
  struct note {
    store_listener writer;
    uint64_t epoch;
    uint64_t first_seq;
    uint64_t last_seq;
  };
  std::unordered_map<caf::actor_id, note> notes;
  for (auto& p : st.batches) {
    auto [it, fresh] = notes.try_emplace(p.writer.id(),
                                         note{p.writer, p.batch.epoch, p.batch.seq, p.batch.seq});
    if (!fresh) it->second.last_seq = p.batch.seq;
  }
  if (status == store_status::ok) {
    st.stats.commits++;
    st.stats.batches += st.batches.size();
    st.stats.mutations += st.mutations_pending;
    st.stats.largest_commit_mutations =
      std::max<uint64_t>(st.stats.largest_commit_mutations, st.mutations_pending);
    st.stats.largest_commit_batches =
      std::max<uint64_t>(st.stats.largest_commit_batches, st.batches.size());
    for (auto& [id, n] : notes) self->send(n.writer, durable_atom_v, n.last_seq);
  } else {
    st.stats.failed_commits++;
    for (auto& [id, n] : notes) {
      st.poisoned[id] = {n.epoch, status};
      self->send(n.writer, write_failed_atom_v, n.epoch, n.first_seq, status);
    }
  }
  st.batches.clear();
  st.mutations_pending = 0;
}

}  // namespace

store_actor::behavior_type store_behavior(store_actor::stateful_pointer<store_state> self,
                                          std::shared_ptr<lmdb_env> env, store_config config) {
  self->state.env = std::move(env);
  self->state.config = config;
  return {
    [self](write_atom, store_listener writer, write_batch& batch) {
      auto& st = self->state;
      if (auto it = st.poisoned.find(writer.id()); it != st.poisoned.end()) {
        if (batch.epoch <= it->second.first) {
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
    [self](stats_atom) { return self->state.stats; },
  };
}

}  // namespace holdfast

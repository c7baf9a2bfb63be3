#include "cluster/replicated_skus.hpp"

#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <algorithm>
#include <mutex>

#include "actors/hold_claims.hpp"
#include "client/client.hpp"
#include "cluster/replica_ids.hpp"
#include "protocol/files.hpp"
#include "protocol/log.hpp"

namespace holdfast {
namespace {

// Work handed back to the gate's own thread (a response promise is delivered there).
struct gate_task {
  std::function<void()> run;
};

}  // namespace
}  // namespace holdfast

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(holdfast::gate_task)

namespace holdfast {
namespace {

// lead_atom(term, tenure), follow_atom(tenure): see group_storage's tenures.
using gate_actor = directory_actor::extend<caf::reacts_to<lead_atom, uint64_t, uint64_t>,
                                           caf::reacts_to<follow_atom, uint64_t>, caf::reacts_to<barrier_atom, gate_task>>;

// What the gate needs of the group besides the directory's context.
struct gate_hooks {
  std::function<std::string()> why_not;  // why this node does not serve now
  // group_storage::stamp and ::after: every answer waits for an entry submitted after its
  // call arrived to commit (see group_storage.hpp).
  std::function<group_storage::confirmation_stamp(uint64_t tenure)> stamp;
  std::function<void(group_storage::confirmation_stamp, std::function<void()>, std::function<void()>)> after;
  std::function<store_status(std::string&)> rebuild_claims;  // storage::rebuild_hold_claims
};

struct gate_state {
  sku_context ctx;
  directory_config config;
  gate_hooks hooks;
  directory_actor current;   // the directory while this node leads and its sweep is done
  directory_actor starting;  // one whose sweep runs
  uint64_t tenure = 0;       // the tenure `current` (or `starting`) serves; 0: none
  uint64_t latest = 0;       // the latest tenure announced (lead or follow)
  bool led_before = false;   // its SKU actors may have left claims of writes that never committed
  ~gate_state() {
    for (auto* d : {&current, &starting})
      if (*d) caf::anon_send_exit(*d, caf::exit_reason::kill);
  }
  static inline const char* name = "holdfast.sku_gate";
};

gate_actor::behavior_type gate_behavior(gate_actor::stateful_pointer<gate_state> self, sku_context ctx,
                                        directory_config config, gate_hooks hooks) {
  self->state.ctx = std::move(ctx);
  self->state.config = std::move(config);
  self->state.hooks = std::move(hooks);
  auto stop = [self] {
    auto& st = self->state;
    for (auto* d : {&st.current, &st.starting}) {
      if (*d) caf::anon_send_exit(*d, caf::exit_reason::kill);
      *d = nullptr;
    }
    st.tenure = 0;
  };
  auto why_not = [self] { return self->state.hooks.why_not(); };
  auto hold_errors = [why_not](size_t n) {
    return std::vector<hold_result>(n, make_hold_error(code::unavailable, why_not()));
  };
  // Asks the directory, and delivers its answer once the group confirmed it (else
  // `refused()`), on the gate's thread.
  auto ask = [self](auto rp, auto refused, auto... xs) {
    auto stamp = self->state.hooks.stamp(self->state.tenure);
    auto me = caf::actor_cast<gate_actor>(self);
    self->request(self->state.current, caf::infinite, xs...)
      .then(
        [self, rp, refused, stamp, me](decltype(refused()) answer) mutable {
          auto shared = std::make_shared<decltype(answer)>(std::move(answer));
          self->state.hooks.after(
            stamp,
            [me, rp, shared]() mutable {
              caf::anon_send(me, barrier_atom_v, gate_task{[rp, shared]() mutable { rp.deliver(std::move(*shared)); }});
            },
            [me, rp, refused]() mutable {
              caf::anon_send(me, barrier_atom_v, gate_task{[rp, refused]() mutable { rp.deliver(refused()); }});
            });
        },
        [rp, refused](caf::error&) mutable { rp.deliver(refused()); });
    return rp;
  };
  return {
    // The hot path: the answers go to the caller's sink, through the group's confirmation.
    [self, hold_errors, why_not](hold_ops_atom, std::vector<hold_op>& ops, hold_sink_ptr& sink) {
      if (!self->state.current) return sink->deliver(hold_errors(ops.size()));
      auto stamp = self->state.hooks.stamp(self->state.tenure);
      auto after = self->state.hooks.after;
      auto n = ops.size();
      auto confirmed = make_hold_sink(n, [sink, stamp, after, n, why_not](std::vector<hold_result> rs) {
        auto shared = std::make_shared<std::vector<hold_result>>(std::move(rs));
        after(
          stamp, [sink, shared] { sink->deliver(std::move(*shared)); },
          [sink, n, why_not] {
            sink->deliver(std::vector<hold_result>(n, make_hold_error(code::unavailable, why_not())));
          });
      });
      self->send(self->state.current, hold_ops_atom_v, std::move(ops), std::move(confirmed));
    },
    [self, hold_errors, ask](hold_ops_atom, std::vector<hold_op>& ops) -> caf::result<std::vector<hold_result>> {
      if (!self->state.current) return hold_errors(ops.size());
      auto n = ops.size();
      return ask(self->make_response_promise<std::vector<hold_result>>(), [hold_errors, n] { return hold_errors(n); },
                 hold_ops_atom_v, std::move(ops));
    },
    // Sent by a directory's own SKU actors to it, never to the gate.
    [](conflicts_atom, std::vector<hold_op>&, std::vector<hold_result>&, hold_sink_ptr&) {},
    [self, why_not, ask](sku_op_atom, sku_op& op) -> caf::result<sku_result> {
      auto refused = [why_not] { return make_sku_error(code::unavailable, why_not()); };
      if (!self->state.current) return refused();
      return ask(self->make_response_promise<sku_result>(), refused, sku_op_atom_v, std::move(op));
    },
    [self, why_not, ask](create_batch_atom, std::vector<sku_op>& ops) -> caf::result<std::vector<sku_result>> {
      auto n = ops.size();
      auto refused = [why_not, n] { return std::vector<sku_result>(n, make_sku_error(code::unavailable, why_not())); };
      if (!self->state.current) return refused();
      return ask(self->make_response_promise<std::vector<sku_result>>(), refused, create_batch_atom_v, std::move(ops));
    },
    [](durable_atom, uint64_t) {},
    [](write_failed_atom, uint64_t, uint64_t, store_status) {},
    [](routed_results_atom, uint64_t, std::vector<hold_result>&) {},
    [](passivated_atom, std::string&, bool, int64_t) {},
    // The node's start: the sweep runs when this node begins to lead instead.
    [](recover_atom) -> caf::result<int64_t> { return int64_t{0}; },
    [self, why_not, ask](list_skus_atom, sku_list_query& query) -> caf::result<sku_page> {
      auto refused = [why_not] {
        sku_page p;
        p.partial = why_not();
        return p;
      };
      if (!self->state.current) return refused();
      return ask(self->make_response_promise<sku_page>(), refused, list_skus_atom_v, std::move(query));
    },
    [](barrier_atom, gate_task& task) { task.run(); },
    [](idle_check_atom) {},
    [](wake_atom) {},
    [self](stats_atom) -> caf::result<directory_stats> {
      if (self->state.current) return self->delegate(self->state.current, stats_atom_v);
      return directory_stats{};
    },
    [self, stop](lead_atom, uint64_t term, uint64_t tenure) {
      auto& st = self->state;
      st.latest = std::max(st.latest, tenure);
      if (st.latest != tenure || st.tenure == tenure) return;  // moved on, or under way
      stop();
      st.tenure = tenure;
      // Tried again in a second when it cannot start, for as long as this tenure lasts: the
      // replica leads, and every router sends its SKU calls here.
      auto retry = [self, term, tenure](const std::string& why) {
        spdlog::error("sku group: leading in term {}, but {}; not serving, trying again in 1 s", term, why);
        if (self->state.tenure == tenure) self->state.tenure = 0;
        self->delayed_send(self, std::chrono::seconds(1), lead_atom_v, term, tenure);
      };
      if (st.led_before) {
        std::string problem;
        if (auto rebuilt = st.hooks.rebuild_claims(problem); rebuilt != store_status::ok)
          return retry("the hold ids could not be indexed (" + std::string(to_string(rebuilt)) + ": " + problem + ")");
      }
      st.led_before = true;
      // (Writes of an earlier tenure's actors still in the store's mailbox fail: the fence
      // rose with the tenure, on the replica's thread.)
      auto ctx = st.ctx;
      ctx.tenure = tenure;
      // A fresh directory on the group's state as applied: it ends the holds that are
      // overdue (the old leader's timers are gone with it) and arms the rest, then serves.
      auto d = self->spawn(directory_behavior, ctx, st.config);
      st.starting = d;
      self->request(d, caf::infinite, recover_atom_v)
        .then(
          [self, d, term, tenure](int64_t n) {
            auto& st = self->state;
            if (st.tenure != tenure || st.starting != d) {  // leadership moved on meanwhile
              caf::anon_send_exit(d, caf::exit_reason::kill);
              return;
            }
            st.current = d;
            st.starting = nullptr;
            spdlog::info("sku group: leading in term {} ({} SKUs had overdue holds)", term, n);
          },
          [self, d, tenure, retry](caf::error& e) {
            caf::anon_send_exit(d, caf::exit_reason::kill);
            if (self->state.starting == d) self->state.starting = nullptr;
            if (self->state.tenure == tenure) retry("the SKUs could not be recovered: " + self->system().render(e));
          });
    },
    [self, stop](follow_atom, uint64_t tenure) {
      auto& st = self->state;
      st.latest = std::max(st.latest, tenure);
      stop();
      spdlog::info("sku group: no longer leading; SKU calls go to the leader");
    },
  };
}

}  // namespace

// Leadership events come from the replica's thread, possibly before the gate exists: the
// latest is kept and handed over when the gate is set.
struct replicated_skus::leadership {
  std::mutex mutex;
  gate_actor gate;
  uint64_t term = 0, tenure = 0;  // the latest event: lead (term != 0) or follow
  replication::raft_host* host = nullptr;  // while the replica runs
  uint32_t leader() {
    std::lock_guard<std::mutex> lock(mutex);
    return host ? member_of_replica(host->leader_hint()) : 0;
  }
  void tell(uint64_t t, uint64_t n) {
    std::lock_guard<std::mutex> lock(mutex);
    term = t;
    tenure = n;
    send();
  }
  void set(gate_actor g) {
    std::lock_guard<std::mutex> lock(mutex);
    gate = std::move(g);
    if (tenure) send();
  }

private:
  void send() {
    if (!gate) return;
    if (term) caf::anon_send(gate, lead_atom_v, term, tenure);
    else caf::anon_send(gate, follow_atom_v, tenure);
  }
};

std::unique_ptr<replicated_skus> replicated_skus::start(caf::actor_system& sys, const replicated_skus_options& o,
                                                        std::string& error) {
  std::unique_ptr<replicated_skus> r(new replicated_skus());
  auto& cfg = *o.cluster;
  auto* me = cfg.member(o.self);
  r->leadership_ = std::make_shared<leadership>();
  // Which replica of this member runs here: the one the directory holds; else the
  // replacement `cluster replace` prepared (it joins the running group); else the member's
  // first, bootstrapped with every member.
  // Both files hold a replica id in decimal, and nothing else.
  auto read_id = [](const std::string& path, uint64_t& out, std::string& why) {
    std::string text;
    if (why = read_small_file(path, 64, text); !why.empty()) return false;
    while (!text.empty() && text.back() == '\n') text.pop_back();
    if (text.empty() || text.size() > 20 || text.find_first_not_of("0123456789") != std::string::npos ||
        (out = std::strtoull(text.c_str(), nullptr, 10)) == 0) {
      why = "it does not hold a replica id";
      return false;
    }
    return true;
  };
  uint64_t id = replica_id(o.self, 0), prepared = 0;
  std::string why;
  auto id_file = o.dir + "/raft/holdfast-replica-id";
  if (!o.replacement_file.empty() && !file_absent(o.replacement_file)) {
    if (!read_id(o.replacement_file, prepared, why) || member_of_replica(prepared) != o.self ||
        sequence_of_replica(prepared) == 0) {
      error = o.replacement_file + " (written by `holdfast cluster replace`): " +
              (why.empty() ? "replica " + std::to_string(prepared) + " is not a replacement of node " +
                               std::to_string(o.self)
                           : why) +
              "; run `holdfast cluster replace` again on an empty directory";
      return nullptr;
    }
    id = prepared;
  }
  if (!file_absent(id_file)) {
    if (!read_id(id_file, id, why)) {
      error = id_file + ": " + why;
      return nullptr;
    }
    if (prepared != 0 && prepared != id) {
      error = o.replacement_file + " names replica " + std::to_string(prepared) + ", but " + o.dir +
              " holds replica " + std::to_string(id) + ": one of them was changed by hand";
      return nullptr;
    }
  }
  if (member_of_replica(id) != o.self) {
    error = o.dir + " holds replica " + std::to_string(id) + " of node " + std::to_string(member_of_replica(id)) +
            ", not one of node " + std::to_string(o.self);
    return nullptr;
  }
  try {
    raft_tls_options t;
    t.listen = me->raft;
    t.self = id;
    t.ca_pem = read_pem_file(cfg.path_of(cfg.ca)).cStr();
    t.cert_pem = read_pem_file(cfg.path_of(me->cert)).cStr();
    t.key_pem = read_pem_file(cfg.path_of(me->key)).cStr();
    t.connect_timeout_ms = static_cast<int>(cfg.connect_timeout_ms);
    t.gate = o.gate;
    r->connector_ = std::make_unique<raft_tls_connector>(t);
  } catch (const std::exception& e) {
    error = "the raft port " + me->raft + ": " + e.what();
    return nullptr;
  } catch (const kj::Exception& e) {
    error = "the raft port " + me->raft + ": " + std::string(e.getDescription().cStr());
    return nullptr;
  }
  group_storage_options g;
  g.storage = o.storage;
  g.storage.path = o.dir;
  g.raft.id = id;
  g.raft.address = me->raft;
  g.raft.joining = sequence_of_replica(id) != 0;
  for (auto& m : cfg.members) g.raft.voters.push_back({replica_id(m.id, 0), m.raft});
  // A replica of a member the file lists is answered at the member's raft address, in the
  // group's configuration or not (a leader an uncommitted change removed, a joiner's leader).
  g.raft.address_of = [&cfg](uint64_t replica) -> std::string {
    auto* m = cfg.member(member_of_replica(replica));
    return m ? m->raft : std::string();
  };
  // Every replica in the group's configuration must be a member's, at the member's raft
  // address: the connector dials what the configuration says, and an address changed in the
  // file alone would cut that member off without a word.
  g.raft.check_configuration = [&cfg](const std::vector<replication::server_info>& servers) -> std::string {
    for (auto& s : servers) {
      auto* m = cfg.member(member_of_replica(s.id));
      if (m == nullptr)
        return "the group's configuration has replica " + std::to_string(s.id) + " of node " +
               std::to_string(member_of_replica(s.id)) + ", which the cluster file does not list";
      if (m->raft != s.address)
        return "the group's configuration has replica " + std::to_string(s.id) + " of node " +
               std::to_string(m->id) + " at " + s.address + ", the cluster file " + m->raft +
               " (a replica's address or the group's members change only through the group, not by editing the "
               "cluster file)";
    }
    return "";
  };
  g.raft.election_timeout_ms = static_cast<unsigned>(cfg.election_timeout_ms);
  g.raft.heartbeat_ms = static_cast<unsigned>(cfg.raft_heartbeat_ms);
  g.raft.snapshot_threshold = g.raft.snapshot_trailing = static_cast<unsigned>(cfg.raft_snapshot_entries);
  std::weak_ptr<leadership> events = r->leadership_;
  // The store's fence rises here, on the replica's thread, as the tenure begins: the store
  // then drops an earlier tenure's batches, and the replica refuses a commit of them that
  // was already on its way (see group_storage::replicate).
  auto fence = std::make_shared<std::atomic<uint64_t>>(0);
  g.on_leading = [events, fence](uint64_t term, uint64_t tenure) {
    fence->store(tenure);
    if (auto l = events.lock()) l->tell(term, tenure);
  };
  g.on_following = [events](uint64_t tenure) {
    if (auto l = events.lock()) l->tell(0, tenure);
  };
  g.keep_alive = r->connector_;  // the replica may outlive this object a little (see hooks)
  r->group_ = group_storage::open(std::move(g), *r->connector_, error);
  if (!r->group_) return nullptr;
  r->cluster_ = o.cluster;
  auto env = r->group_->store();
  store_config sc;
  sc.fence = fence;
  r->store_ = sys.spawn<caf::detached>(store_behavior, env, sc);
  sku_context ctx;
  ctx.env = env;
  ctx.store = r->store_;
  ctx.clock = o.clock;
  ctx.claims = std::make_shared<hold_claims>(env);
  {
    std::lock_guard<std::mutex> lock(r->leadership_->mutex);
    r->leadership_->host = &r->group_->host();
  }
  auto self_id = o.self;
  gate_hooks hooks;
  hooks.why_not = [l = r->leadership_, self_id]() -> std::string {
    auto leader = l->leader();
    if (leader == 0) return "no leader of the SKU group is known (an election may be under way): retry shortly";
    if (leader == self_id)
      return "node " + std::to_string(self_id) + " could not confirm that it leads the SKU group: retry shortly";
    return "node " + std::to_string(self_id) + " does not lead the SKU group; its leader is node " +
           std::to_string(leader);
  };
  // Answers in flight when the node stops may outlive the group: they are refused.
  std::weak_ptr<group_storage> group = r->group_;
  hooks.stamp = [group](uint64_t tenure) {
    auto g = group.lock();
    return g ? g->stamp(tenure) : group_storage::confirmation_stamp{};
  };
  hooks.after = [group](group_storage::confirmation_stamp stamp, std::function<void()> release,
                        std::function<void()> refuse) {
    if (auto g = group.lock()) g->after(stamp, std::move(release), std::move(refuse));
    else refuse();
  };
  hooks.rebuild_claims = [env](std::string& problem) { return env->rebuild_hold_claims(problem); };
  auto gate = sys.spawn(gate_behavior, ctx, o.directory, std::move(hooks));
  r->gate_ = gate;
  r->leadership_->set(gate);
  return r;
}

replicated_skus::~replicated_skus() {
  if (gate_) caf::anon_send_exit(gate_, caf::exit_reason::kill);
  {
    std::lock_guard<std::mutex> lock(leadership_->mutex);
    leadership_->host = nullptr;
  }
  group_.reset();  // commits in flight answer; no more leadership events
  if (store_) caf::anon_send_exit(store_, caf::exit_reason::kill);
}

raft_group_status replicated_skus::status() {
  // The copy: the network thread that asks never waits on the replica's thread.
  auto s = group_->host().published_status();
  raft_group_status g;
  g.present = true;
  g.state = s.state;
  g.serving = s.serving;
  g.term = s.term;
  g.commit_index = s.commit_index;
  g.last_applied = s.last_applied;
  g.leader = member_of_replica(s.leader_id);
  g.replica = s.id;
  g.snapshot_index = s.snapshot_index;
  g.snapshots_taken = s.snapshots_taken;
  g.states_installed = group_->store()->stats().states_installed;
  for (auto& f : s.followers) g.followers.push_back({member_of_replica(f.id), f.match_index, f.lag, f.id});
  for (auto& v : s.servers) g.servers.push_back({v.id, member_of_replica(v.id), v.role, v.address});
  return g;
}

void replicated_skus::transfer(uint32_t to, std::function<void(uint32_t, std::string)> done) {
  auto answer = std::make_shared<std::function<void(uint32_t, std::string)>>(std::move(done));
  bool posted = group_->host().post([to, answer](replication::replica& r) {
    // To the member's voting replica.
    uint64_t id = 0;
    for (auto& v : r.status().servers)
      if (member_of_replica(v.id) == to && std::string(v.role) == "voter") id = v.id;
    if (id == 0) return (*answer)(member_of_replica(r.known_leader()), "node " + std::to_string(to) +
                                                                      " has no voting replica in the group");
    r.transfer(id, [&r, answer](std::string refused) { (*answer)(member_of_replica(r.known_leader()), std::move(refused)); });
  });
  if (!posted) (*answer)(0, "the replica is closing");
}

void replicated_skus::replace(uint32_t member, std::function<void(uint64_t, std::string)> done) {
  auto answer = std::make_shared<std::function<void(uint64_t, std::string)>>(std::move(done));
  auto* me = cluster_->member(member);
  if (me == nullptr) return (*answer)(0, "node " + std::to_string(member) + " is not a member");
  bool posted = group_->host().post([member, address = me->raft, answer](replication::replica& r) {
    auto s = r.status();
    if (std::string(s.state) != "leader") return (*answer)(0, "this replica does not lead the group");
    // What an earlier call did counts once it is committed.
    if (s.configuration_pending) return (*answer)(0, "a change of the group's members is under way: ask again shortly");
    if (member_of_replica(s.id) == member) return (*answer)(0, "node " + std::to_string(member) + " leads the group: it is not lost");
    uint64_t voter = 0;
    for (auto& v : s.servers) {
      if (member_of_replica(v.id) != member) continue;
      // A replacement added before (this command stopped midway): it is the one.
      if (std::string(v.role) != "voter") return (*answer)(v.id, "");
      voter = v.id;
    }
    // The new replica, at the same address (libraft refuses two servers at one address).
    // Its id was never the group's: see cluster/replica_ids.hpp.
    auto add = [&r, member, address, answer] {
      auto id = replica_id(member, r.status().last_index + 1);
      r.change(HF_CHANGE_ADD, id, address, [id, answer](std::string refused) {
        (*answer)(refused.empty() ? id : 0, std::move(refused));
      });
    };
    if (voter == 0) return add();
    // The lost replica goes first. With it gone the group needs as many of the others as it
    // did with it lost, so nothing is less available meanwhile.
    r.change(HF_CHANGE_REMOVE, voter, "", [add, answer](std::string refused) {
      // Appended but not known committed (leadership lost): a later leader may still commit it.
      if (!refused.empty())
        return (*answer)(0, refused + " (the removal may still take effect; run this again once the group has a leader)");
      add();
    });
  });
  if (!posted) (*answer)(0, "the replica is closing");
}

void replicated_skus::promote(uint64_t replica, std::function<void(std::string)> done) {
  auto answer = std::make_shared<std::function<void(std::string)>>(std::move(done));
  bool posted = group_->host().post([replica, answer](replication::replica& r) {
    auto s = r.status();
    if (s.configuration_pending) return (*answer)("a change of the group's members is under way: ask again shortly");
    for (auto& v : s.servers)
      if (v.id == replica && std::string(v.role) == "voter") return (*answer)("");  // done before, committed
    r.change(HF_CHANGE_PROMOTE, replica, "", [answer](std::string refused) { (*answer)(std::move(refused)); });
  });
  if (!posted) (*answer)("the replica is closing");
}

uint32_t replicated_skus::leader() const { return leadership_->leader(); }

}  // namespace holdfast

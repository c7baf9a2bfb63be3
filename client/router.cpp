#include "client/router.hpp"

#include <algorithm>
#include <map>
#include <memory>

namespace holdfast {

router::router(placement where, uint32_t self, transport& remote, local_calls local)
  : where_(std::move(where)), self_(self), remote_(remote), local_(std::move(local)) {}

uint32_t router::sku_owner(const std::string& sku) const {
  if (!sku_leader_) return where_.owner(sku);
  auto leader = sku_leader_();
  return leader == 0 ? no_owner : leader;
}

namespace {
const char* no_leader_known =
  "no leader of the SKU group is known to this node (an election may be under way): retry shortly";

// Hold ids are unique per node, not across the cluster: an id found on several nodes is
// not answered for one of them.
hold_result held_on_several(const std::vector<const hold_result*>& found) {
  std::string where;
  for (auto* f : found) where += (where.empty() ? "" : ", ") + f->hold.sku;
  return make_hold_error(code::invalid, "hold id '" + found.front()->hold.hold_id + "' is held on several SKUs (" +
                                          where + "): name the SKU");
}
}  // namespace

hold_result combine_lookups(const std::vector<hold_result>& answers) {
  const hold_result* lost = nullptr;
  const hold_result* unreachable = nullptr;
  std::vector<const hold_result*> found;
  for (auto& a : answers) {
    if (a.status == code::outcome_unknown) lost = lost ? lost : &a;
    else if (a.status == code::unavailable) unreachable = unreachable ? unreachable : &a;
    else if (a.status != code::unknown_hold) found.push_back(&a);
  }
  if (found.size() > 1) return held_on_several(found);
  if (!found.empty()) return *found.front();
  if (lost) return *lost;
  if (unreachable)
    return make_hold_error(code::unavailable,
                           "the hold is on no node that answered; " + unreachable->message);
  return make_hold_error(code::unknown_hold);
}

namespace {

// The answers of a split call, placed by index as each part answers.
template <class Result>
struct answers {
  std::vector<Result> results;
};

template <class Op, class Result, class Send>
kj::Promise<std::vector<Result>> scatter(std::vector<Op> ops, uint32_t self,
                                         const std::function<uint32_t(const Op&)>& owner_of,
                                         Send send) {
  std::map<uint32_t, std::pair<std::vector<size_t>, std::vector<Op>>> parts;
  for (size_t i = 0; i < ops.size(); ++i) {
    auto& p = parts[owner_of(ops[i])];
    p.first.push_back(i);
    p.second.push_back(std::move(ops[i]));
  }
  if (parts.size() == 1) {
    auto& p = *parts.begin();
    return send(p.first, std::move(p.second.second));
  }
  auto out = std::make_shared<answers<Result>>();
  out->results.resize(ops.size());
  auto calls = kj::heapArrayBuilder<kj::Promise<void>>(parts.size());
  for (auto& [node, part] : parts) {
    calls.add(send(node, std::move(part.second))
                .then([out, where = std::move(part.first)](std::vector<Result> rs) {
                  for (size_t j = 0; j < where.size() && j < rs.size(); ++j)
                    out->results[where[j]] = std::move(rs[j]);
                }));
  }
  return kj::joinPromises(calls.finish()).then([out] { return std::move(out->results); });
}

}  // namespace

kj::Promise<std::vector<hold_result>> router::holds(std::vector<hold_op> ops) {
  auto kind = ops.empty() ? hold_op_kind::reserve : ops.front().kind;
  // A reserve always names its SKU (else the local check refuses it); a confirm, release
  // or query without one is looked for everywhere.
  constexpr uint32_t everywhere = 0;
  std::function<uint32_t(const hold_op&)> owner_of = [this, kind](const hold_op& op) {
    if (sku_leader_) return sku_owner(op.sku);
    if (op.sku.empty())
      return kind == hold_op_kind::reserve ? (self_ ? self_ : where_.nodes().front()) : everywhere;
    return where_.owner(op.sku);
  };
  auto send = [this](uint32_t node, std::vector<hold_op> part) -> kj::Promise<std::vector<hold_result>> {
    if (node == no_owner)
      return std::vector<hold_result>(part.size(), make_hold_error(code::unavailable, no_leader_known));
    if (node != everywhere && node == self_) return local_.holds(std::move(part));
    if (node != everywhere) {
      forwarded_ += part.size();
      return remote_.hold_ops(node, std::move(part));
    }
    // Every node is asked about every hold in `part` (a query: nothing changes yet).
    auto n = part.size();
    auto kind = part.front().kind;
    auto lookups = part;
    for (auto& op : lookups) op.kind = hold_op_kind::query;
    auto calls = kj::heapArrayBuilder<kj::Promise<std::vector<hold_result>>>(where_.nodes().size());
    for (auto id : where_.nodes()) {
      if (id == self_) {
        calls.add(local_.holds(lookups));
      } else {
        forwarded_ += n;
        calls.add(remote_.hold_ops(id, lookups));
      }
    }
    return kj::joinPromises(calls.finish())
      .then([this, n, kind, part = std::move(part)](kj::Array<std::vector<hold_result>> all) mutable
            -> kj::Promise<std::vector<hold_result>> {
        std::vector<hold_result> out(n);
        // A confirm or release goes, with its SKU now known, to the one node that has
        // the hold; ids are unique per node, not across the cluster, so a hold found on
        // several nodes, or found while a node could not be asked, is not acted on.
        std::vector<size_t> resolved_at;
        std::vector<hold_op> resolved;
        for (size_t i = 0; i < n; ++i) {
          std::vector<hold_result> per_node;
          for (auto& answers : all)
            if (i < answers.size()) per_node.push_back(answers[i]);
          if (kind == hold_op_kind::query) {
            out[i] = combine_lookups(per_node);
            continue;
          }
          std::vector<const hold_result*> found;
          const hold_result* unsure = nullptr;
          for (auto& a : per_node) {
            if (a.status == code::unavailable || a.status == code::outcome_unknown) unsure = unsure ? unsure : &a;
            else if (a.status != code::unknown_hold) found.push_back(&a);
          }
          if (found.size() > 1) {
            out[i] = held_on_several(found);
          } else if (unsure) {
            out[i] = make_hold_error(code::unavailable,
                                     (found.empty() ? std::string("the hold is on no node that answered")
                                                    : "the hold is on SKU " + found[0]->hold.sku +
                                                        ", but a node that may hold the same id") +
                                       " could not be asked (" + unsure->message + "); name the SKU");
          } else if (found.empty()) {
            out[i] = make_hold_error(code::unknown_hold);
          } else {
            auto op = part[i];
            op.sku = found[0]->hold.sku;
            resolved_at.push_back(i);
            resolved.push_back(std::move(op));
          }
        }
        if (resolved.empty()) return out;
        return holds(std::move(resolved))
          .then([out = std::move(out), resolved_at = std::move(resolved_at)](std::vector<hold_result> rs) mutable {
            for (size_t j = 0; j < resolved_at.size() && j < rs.size(); ++j) out[resolved_at[j]] = std::move(rs[j]);
            return std::move(out);
          });
      });
  };
  return scatter<hold_op, hold_result>(std::move(ops), self_, owner_of, send);
}

kj::Promise<std::vector<sku_result>> router::skus(std::vector<sku_op> ops) {
  std::function<uint32_t(const sku_op&)> owner_of = [this](const sku_op& op) {
    // A nameless SKU is refused by the local checks.
    if (sku_leader_) return sku_owner(op.sku);
    return op.sku.empty() ? (self_ ? self_ : where_.nodes().front()) : where_.owner(op.sku);
  };
  auto send = [this](uint32_t node, std::vector<sku_op> part) -> kj::Promise<std::vector<sku_result>> {
    if (node == no_owner)
      return std::vector<sku_result>(part.size(), make_sku_error(code::unavailable, no_leader_known));
    if (node == self_) return local_.skus(std::move(part));
    forwarded_ += part.size();
    return remote_.sku_ops(node, std::move(part));
  };
  return scatter<sku_op, sku_result>(std::move(ops), self_, owner_of, send);
}

kj::Promise<std::vector<cart_result>> router::carts(std::vector<cart_op> ops) {
  std::function<uint32_t(const cart_op&)> owner_of = [this](const cart_op& op) {
    // A nameless user is refused by the local checks.
    return op.user.empty() ? (self_ ? self_ : where_.nodes().front()) : where_.owner(op.user);
  };
  auto send = [this](uint32_t node, std::vector<cart_op> part) -> kj::Promise<std::vector<cart_result>> {
    if (node == self_) return local_.carts(std::move(part));
    forwarded_ += part.size();
    return remote_.cart_ops(node, std::move(part));
  };
  return scatter<cart_op, cart_result>(std::move(ops), self_, owner_of, send);
}

kj::Promise<std::vector<order_result>> router::orders(std::vector<order_op> ops) {
  std::function<uint32_t(const order_op&)> owner_of = [this](const order_op& op) {
    return op.order_id.empty() ? (self_ ? self_ : where_.nodes().front()) : where_.owner(op.order_id);
  };
  auto send = [this](uint32_t node, std::vector<order_op> part) -> kj::Promise<std::vector<order_result>> {
    if (node == self_) return local_.orders(std::move(part));
    forwarded_ += part.size();
    return remote_.order_ops(node, std::move(part));
  };
  return scatter<order_op, order_result>(std::move(ops), self_, owner_of, send);
}

sku_page merge_pages(std::vector<sku_page> pages, uint32_t limit) {
  sku_page out;
  bool more = false;
  for (auto& p : pages) {
    // A member that refused the query (a version with other rules) listed nothing.
    if (!p.invalid.empty() && p.partial.empty()) p.partial = "a member refused the query: " + p.invalid;
    if (!p.partial.empty()) out.partial += (out.partial.empty() ? "" : "; ") + p.partial;
    more = more || !p.next.empty();
    for (auto& s : p.skus) out.skus.push_back(std::move(s));
  }
  std::sort(out.skus.begin(), out.skus.end(),
            [](const sku_info& a, const sku_info& b) { return a.sku < b.sku; });
  if (out.skus.size() > limit) {
    out.skus.resize(limit);
    more = true;
  }
  if (more && !out.skus.empty()) out.next = out.skus.back().sku;
  return out;
}

kj::Promise<sku_page> router::list_skus(sku_list_query query) {
  if (query.limit == 0) query.limit = sku_list_limit_default;
  if (sku_leader_) {  // the leader has the whole catalog
    auto node = sku_owner("");
    if (node == no_owner) {
      sku_page p;
      p.partial = no_leader_known;
      return p;
    }
    if (node == self_ && local_.list) return local_.list(std::move(query));
    return remote_.list_skus(node, std::move(query));
  }
  auto pages = kj::heapArrayBuilder<kj::Promise<sku_page>>(where_.nodes().size());
  for (auto node : where_.nodes())
    pages.add(node == self_ && local_.list ? local_.list(query) : remote_.list_skus(node, query));
  return kj::joinPromises(pages.finish()).then([limit = query.limit](kj::Array<sku_page> all) {
    return merge_pages(std::vector<sku_page>(std::make_move_iterator(all.begin()),
                                             std::make_move_iterator(all.end())),
                       limit);
  });
}

}  // namespace holdfast

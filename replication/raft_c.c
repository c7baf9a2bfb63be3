/* The only file that includes raft.h: see raft_c.h. */
#include "replication/raft_c.h"

#include <stdlib.h>
#include <string.h>

#include <raft.h>

struct hf_fsm {
  struct raft_fsm fsm; /* first: a struct raft_fsm * is a struct hf_fsm * */
  const hf_fsm_callbacks *cb;
  struct raft_buffer snapshot;
};

/* An entry is [4-byte little-endian length][command][zeros to a multiple of 8 bytes]:
 * raft_uv refuses entries whose length is not a multiple of 8 (uv_append.c). */
static size_t entry_size(size_t len) { return (4 + len + 7) / 8 * 8; }

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result) {
  struct hf_fsm *f = (struct hf_fsm *)fsm;
  struct raft *r = (struct raft *)f->fsm.data;
  const unsigned char *p = buf->base;
  size_t len;
  *result = NULL;
  /* Returning an error here would stop this replica applying for good (legacy.c never
   * advances past it), on every replica and every restart: skip it the same way instead. */
  if (buf->len < 4) {
    f->cb->malformed(f->cb->data, raft_last_applied(r) + 1);
    return 0;
  }
  len = (size_t)p[0] | (size_t)p[1] << 8 | (size_t)p[2] << 16 | (size_t)p[3] << 24;
  if (len > buf->len - 4 || buf->len != entry_size(len)) {
    f->cb->malformed(f->cb->data, raft_last_applied(r) + 1);
    return 0;
  }
  /* libraft sets last_applied once apply returns: this entry is the next one. */
  f->cb->apply(f->cb->data, raft_last_applied(r) + 1, (const char *)p + 4, len);
  *result = NULL;
  return 0;
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs) {
  struct hf_fsm *f = (struct hf_fsm *)fsm;
  const char *bytes = NULL;
  size_t len = 0;
  if (f->cb->snapshot(f->cb->data, &bytes, &len) != 0) return RAFT_NOMEM;
  f->snapshot.base = (void *)bytes;
  f->snapshot.len = len;
  *bufs = &f->snapshot;
  *n_bufs = 1;
  return 0;
}

/* Version 2: libraft no longer owns the buffers; we release ours here. */
static int fsm_snapshot_finalize(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs) {
  struct hf_fsm *f = (struct hf_fsm *)fsm;
  f->cb->snapshot_done(f->cb->data);
  f->snapshot.base = NULL;
  f->snapshot.len = 0;
  *bufs = NULL;
  *n_bufs = 0;
  return 0;
}

/* libraft 0.22.1 (legacy.c) frees the buffer itself only when a restore at start fails, and
 * after a snapshot install not at all: ours on success; on failure left alone (a leak after
 * an install, and that replica no longer applies: the replica treats it as fatal). */
static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf) {
  struct hf_fsm *f = (struct hf_fsm *)fsm;
  if (f->cb->restore(f->cb->data, (const char *)buf->base, buf->len) != 0) return RAFT_MALFORMED;
  raft_free(buf->base);
  return 0;
}

struct raft_fsm *hf_fsm_create(const hf_fsm_callbacks *callbacks) {
  struct hf_fsm *f = calloc(1, sizeof *f);
  if (f == NULL) return NULL;
  f->cb = callbacks;
  f->fsm.version = 2;
  f->fsm.apply = fsm_apply;
  f->fsm.snapshot = fsm_snapshot;
  f->fsm.snapshot_finalize = fsm_snapshot_finalize;
  f->fsm.restore = fsm_restore;
  return &f->fsm;
}

void hf_fsm_destroy(struct raft_fsm *fsm) { free(fsm); }

static void on_step(struct raft *r) {
  struct hf_fsm *f = (struct hf_fsm *)r->data;
  if (f != NULL && f->cb->stepped != NULL) f->cb->stepped(f->cb->data);
}

void hf_attach(struct raft *r, struct raft_fsm *fsm) {
  fsm->data = r;
  r->data = fsm;
  r->legacy.step_cb = on_step;
}

void hf_detach(struct raft *r) {
  r->data = NULL;
  r->legacy.step_cb = NULL;
}

void hf_info(struct raft *r, hf_raft_info *out) {
  raft_id leader = 0;
  const char *address = NULL;
  memset(out, 0, sizeof *out);
  switch (raft_state(r)) {
    case RAFT_FOLLOWER: out->state = HF_FOLLOWER; break;
    case RAFT_CANDIDATE: out->state = HF_CANDIDATE; break;
    case RAFT_LEADER: out->state = HF_LEADER; break;
    default: out->state = HF_UNAVAILABLE; break;
  }
  out->id = r->id;
  out->term = raft_current_term(r);
  out->commit_index = raft_commit_index(r);
  out->last_applied = raft_last_applied(r);
  out->last_index = raft_last_index(r);
  raft_leader(r, &leader, &address);
  out->leader_id = leader;
  out->leader_address = address;
}

unsigned long long hf_last_applied(struct raft *r) { return raft_last_applied(r); }

int hf_match_index(struct raft *r, unsigned long long id, unsigned long long *match) {
  raft_index index = 0;
  int rv = raft_match_index(r, id, &index);
  *match = index;
  return rv;
}

const char *hf_server_address(struct raft *r, unsigned long long id) {
  unsigned i;
  for (i = 0; i < r->configuration.n; ++i)
    if (r->configuration.servers[i].id == id) return r->configuration.servers[i].address;
  return NULL;
}

void hf_set_snapshot_policy(struct raft *r, unsigned threshold, unsigned trailing) {
  raft_set_snapshot_threshold(r, threshold);
  raft_set_snapshot_trailing(r, trailing);
}

struct hf_apply {
  struct raft_apply req;
  hf_apply_cb cb;
  void *data;
};

static int outcome_of(int status) {
  switch (status) {
    case 0: return HF_COMMITTED;
    case RAFT_NOTLEADER: return HF_NOT_LEADER;
    case RAFT_LEADERSHIPLOST: return HF_LEADERSHIP_LOST;
    case RAFT_SHUTDOWN: return HF_SHUTDOWN;
    default: return HF_FAILED;
  }
}

static void apply_done(struct raft_apply *req, int status, void *result) {
  struct hf_apply *a = (struct hf_apply *)req;
  (void)result;
  a->cb(a->data, outcome_of(status));
  free(a);
}

int hf_apply(struct raft *r, const char *bytes, size_t len, hf_apply_cb cb, void *data) {
  struct raft_buffer buf;
  struct hf_apply *a = calloc(1, sizeof *a);
  raft_index last = raft_last_index(r);
  int rv;
  if (len > 0xffffffffu - 8) {
    free(a);
    return HF_FAILED;
  }
  buf.len = entry_size(len);
  buf.base = raft_calloc(1, buf.len);
  if (a == NULL || buf.base == NULL) {
    free(a);
    raft_free(buf.base);
    return HF_FAILED;
  }
  ((unsigned char *)buf.base)[0] = (unsigned char)len;
  ((unsigned char *)buf.base)[1] = (unsigned char)(len >> 8);
  ((unsigned char *)buf.base)[2] = (unsigned char)(len >> 16);
  ((unsigned char *)buf.base)[3] = (unsigned char)(len >> 24);
  if (len > 0) memcpy((unsigned char *)buf.base + 4, bytes, len);
  a->cb = cb;
  a->data = data;
  rv = raft_apply(r, &a->req, &buf, 1, apply_done);
  if (rv != 0) {
    free(a); /* not queued: its callback never fires */
    /* Once the engine took the entry (its log grew), legacy.c has freed our buffer
     * (legacyHandleUpdateEntries) before the disk or network call that failed. */
    if (raft_last_index(r) > last) return HF_IO_FAILED;
    raft_free(buf.base);
    return rv == RAFT_NOTLEADER ? HF_NOT_LEADER : HF_FAILED;
  }
  return HF_SUBMITTED;
}

struct hf_transfer {
  struct raft_transfer req; /* first */
  void (*cb)(void *data);
  void *data;
};

static void transfer_done(struct raft_transfer *req) {
  struct hf_transfer *t = (struct hf_transfer *)req;
  t->cb(t->data);
  free(t);
}

int hf_transfer(struct raft *r, unsigned long long id, void (*cb)(void *data), void *data) {
  struct hf_transfer *t = calloc(1, sizeof *t);
  int rv;
  if (t == NULL) return RAFT_NOMEM;
  t->cb = cb;
  t->data = data;
  rv = raft_transfer(r, &t->req, id, transfer_done);
  if (rv != 0) free(t);
  return rv;
}

const char *hf_strerror(int rv) { return raft_strerror(rv); }

int hf_configuration_pending(struct raft *r) { return r->configuration_uncommitted_index != 0; }

unsigned hf_servers(struct raft *r, hf_server *out, unsigned max) {
  unsigned i, n = 0;
  for (i = 0; i < r->configuration.n && n < max; ++i) {
    const struct raft_server *s = &r->configuration.servers[i];
    out[n].id = s->id;
    out[n].role = s->role == RAFT_VOTER ? HF_ROLE_VOTER : s->role == RAFT_STANDBY ? HF_ROLE_STANDBY : HF_ROLE_SPARE;
    out[n].address = s->address;
    ++n;
  }
  return n;
}

struct hf_change {
  struct raft_change req; /* first */
  void (*cb)(void *data, int status);
  void *data;
};

static void change_done(struct raft_change *req, int status) {
  struct hf_change *c = (struct hf_change *)req;
  c->cb(c->data, status);
  free(c);
}

int hf_change(struct raft *r, int kind, unsigned long long id, const char *address,
              void (*cb)(void *data, int status), void *data) {
  struct hf_change *c;
  int rv;
  /* legacy.c asserts that no change is pending once its own check passed; a catch-up under
   * way passes that check in some paths, so it is refused here first. */
  if (raft_state(r) != RAFT_LEADER || r->legacy.closing) return RAFT_NOTLEADER;
  if (r->legacy.change != NULL) return RAFT_CANTCHANGE;
  c = calloc(1, sizeof *c);
  if (c == NULL) return RAFT_NOMEM;
  c->cb = cb;
  c->data = data;
  switch (kind) {
    case HF_CHANGE_ADD: rv = raft_add(r, &c->req, id, address, change_done); break;
    case HF_CHANGE_PROMOTE: rv = raft_assign(r, &c->req, id, RAFT_VOTER, change_done); break;
    case HF_CHANGE_REMOVE: rv = raft_remove(r, &c->req, id, change_done); break;
    default: rv = RAFT_INVALID; break;
  }
  if (rv != 0) {
    /* raft_assign records the request before steps that can fail, and does not take it back. */
    if (r->legacy.change == &c->req) r->legacy.change = NULL;
    free(c);
  }
  return rv;
}

/* The only file that includes raft/uv.h: see raft_uv_c.h. */
#include "replication/raft_uv_c.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

/* -- transport -------------------------------------------------------------- */

struct hf_transport {
  struct raft_uv_transport t; /* first */
  const hf_transport_callbacks *cb;
  raft_uv_accept_cb accept;
};

struct hf_connect {
  struct raft_uv_connect *req;
};

static int transport_init(struct raft_uv_transport *t, raft_id id, const char *address) {
  (void)t;
  (void)id;
  (void)address;
  return 0;
}

static int transport_listen(struct raft_uv_transport *t, raft_uv_accept_cb cb) {
  struct hf_transport *h = (struct hf_transport *)t;
  h->accept = cb;
  return h->cb->listen(h->cb->data) == 0 ? 0 : RAFT_IOERR;
}

static int transport_connect(struct raft_uv_transport *t, struct raft_uv_connect *req, raft_id id,
                             const char *address, raft_uv_connect_cb cb) {
  struct hf_transport *h = (struct hf_transport *)t;
  req->cb = cb;
  h->cb->connect(h->cb->data, req, id, address);
  return 0;
}

static void transport_close(struct raft_uv_transport *t, raft_uv_transport_close_cb cb) {
  struct hf_transport *h = (struct hf_transport *)t;
  h->accept = NULL;
  h->cb->close(h->cb->data);
  if (cb != NULL) cb(t);
}

struct raft_uv_transport *hf_transport_create(const hf_transport_callbacks *callbacks) {
  struct hf_transport *h = calloc(1, sizeof *h);
  if (h == NULL) return NULL;
  h->cb = callbacks;
  h->t.version = 1;
  h->t.init = transport_init;
  h->t.listen = transport_listen;
  h->t.connect = transport_connect;
  h->t.close = transport_close;
  return &h->t;
}

void hf_transport_destroy(struct raft_uv_transport *t) { free(t); }

struct uv_stream_s *hf_stream_open(struct uv_loop_s *loop, int fd) {
  /* raft_uv releases a stream with raft_free once it is closed. */
  uv_pipe_t *pipe = raft_malloc(sizeof *pipe);
  if (pipe == NULL) return NULL;
  if (uv_pipe_init(loop, pipe, 0) != 0) {
    raft_free(pipe);
    return NULL;
  }
  if (uv_pipe_open(pipe, fd) != 0) {
    uv_close((uv_handle_t *)pipe, (uv_close_cb)raft_free);
    return NULL;
  }
  return (struct uv_stream_s *)pipe;
}

void hf_transport_connected(void *token, struct uv_stream_s *stream) {
  struct raft_uv_connect *req = token;
  req->cb(req, stream, stream != NULL ? 0 : RAFT_NOCONNECTION);
}

void hf_transport_canceled(void *token) {
  struct raft_uv_connect *req = token;
  req->cb(req, NULL, RAFT_CANCELED);
}

void hf_transport_accepted(struct raft_uv_transport *t, unsigned long long id, const char *address,
                           struct uv_stream_s *stream) {
  struct hf_transport *h = (struct hf_transport *)t;
  if (h->accept == NULL) {
    uv_close((uv_handle_t *)stream, (uv_close_cb)raft_free);
    return;
  }
  h->accept(t, id, address, stream);
}

/* -- node ------------------------------------------------------------------- */

struct hf_node {
  struct raft raft;
  struct raft_io io;
  void (*done)(void *);
  void *done_data;
  int started;
  /* raft_uv's start, and libraft's callbacks it was given: see on_recv. */
  int (*uv_start)(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick, raft_io_recv_cb recv);
  raft_io_tick_cb tick;
  raft_io_recv_cb recv;
  struct uv_loop_s *loop;
  int (*uv_snapshot_get)(struct raft_io *io, struct raft_io_snapshot_get *req, raft_io_snapshot_get_cb cb);
  hf_ship_fn ship;
  void *ship_data;
  unsigned shipping; /* ships on the pool: closing waits for them */
  int closing;       /* hf_node_close was called; raft_close waits while shipping */
  int holding;              /* an InstallSnapshot waits in `held` */
  struct raft_message held; /* its data and configuration are ours until delivered */
  char *held_address;
};

static struct hf_node *node_of(struct raft_io *io) {
  return (struct hf_node *)((char *)io - offsetof(struct hf_node, io));
}

static void held_free(struct hf_node *n) {
  if (!n->holding) return;
  raft_configuration_close(&n->held.install_snapshot.conf);
  raft_free(n->held.install_snapshot.data.base);
  raft_free(n->held_address);
  n->held_address = NULL;
  n->holding = 0;
}

/* libraft 0.22.1 loses an InstallSnapshot that arrives while this replica writes a
 * snapshot of its own: legacyHandleUpdateSnapshot parks it in legacy.snapshot_pending, and
 * takeSnapshotCb sets that to NULL before reading it, then persists NULL (src/legacy.c,
 * lines 528-534: a crash). So such a message waits here until the replica's own snapshot
 * is written, and is delivered at the next tick (a newer one replaces it meanwhile). */
/* A Holdfast snapshot that is only a reference to the sender's LMDB ("HFSTREF1", see
 * persistence/lmdb_env.hpp): never installable elsewhere. libraft would persist it and cut
 * the log before the state machine could refuse it, and the replica would then refuse its
 * own snapshot at every start. It is dropped; the leader sends again after its timeout. */
static int is_reference(const struct raft_message *m) {
  const struct raft_buffer *d = &m->install_snapshot.data;
  return d->len == 20 && d->base != NULL && memcmp(d->base, "HFSTREF1", 8) == 0;
}

static void drop_install(struct raft_message *m) {
  raft_configuration_close(&m->install_snapshot.conf);
  raft_free(m->install_snapshot.data.base);
}

static void on_recv(struct raft_io *io, struct raft_message *m) {
  struct hf_node *n = node_of(io);
  char *address;
  if (m->type == RAFT_INSTALL_SNAPSHOT && is_reference(m)) {
    drop_install(m);
    return;
  }
  if (m->type != RAFT_INSTALL_SNAPSHOT || (!n->raft.legacy.snapshot_taking && !n->holding)) {
    n->recv(io, m);
    return;
  }
  address = raft_malloc(strlen(m->server_address) + 1);
  if (address == NULL) { /* dropped: the leader sends it again */
    drop_install(m);
    return;
  }
  held_free(n);
  strcpy(address, m->server_address);
  n->held = *m; /* raft_uv reuses *m once this returns; the buffers it points at are ours */
  n->held.server_address = address;
  n->held_address = address;
  n->holding = 1;
}

static void on_tick(struct raft_io *io) {
  struct hf_node *n = node_of(io);
  n->tick(io);
  if (n->holding && !n->raft.legacy.snapshot_taking) {
    struct raft_message m = n->held;
    char *address = n->held_address;
    n->holding = 0;
    n->held_address = NULL;
    n->recv(io, &m); /* takes the buffers (or frees them when closing) */
    raft_free(address);
  }
}

/* -- snapshots sent to followers -------------------------------------------- */

struct hf_get {
  struct hf_node *n;
  struct raft_io_snapshot_get inner; /* what raft_uv answers */
  struct raft_io_snapshot_get *outer; /* libraft's request */
  raft_io_snapshot_get_cb cb;
  struct raft_snapshot *snapshot;
  uv_work_t work;
  int status;
  struct raft_buffer out;
};

int hf_put(void *sink, const char *bytes, size_t len) {
  struct hf_get *g = sink;
  g->out.base = raft_malloc(len > 0 ? len : 1);
  if (g->out.base == NULL) return 1;
  memcpy(g->out.base, bytes, len);
  g->out.len = len;
  return 0;
}

static void node_really_close(struct hf_node *n);

static void free_snapshot(struct raft_snapshot *s) {
  unsigned i;
  raft_configuration_close(&s->configuration);
  for (i = 0; i < s->n_bufs; ++i) raft_free(s->bufs[i].base);
  raft_free(s->bufs);
  raft_free(s);
}

/* A load that is not answered: libraft's callback cannot take a failure (it frees the
 * message's configuration and data, which sendSnapshot left uninitialized), so the send is
 * dropped instead, leaking libraft's small send request; the follower's progress stays in
 * snapshot mode until libraft's install timeout, then it is sent again. */
static void drop_load(struct hf_get *g, struct raft_snapshot *s) {
  if (s != NULL) free_snapshot(s);
  free(g);
}


static void ship_work(uv_work_t *w) { /* a pool thread */
  struct hf_get *g = w->data;
  struct raft_buffer *b = &g->snapshot->bufs[0];
  g->status = g->n->ship(g->n->ship_data, g->snapshot->index, b->base, b->len, g);
}

static void ship_done(uv_work_t *w, int status) {
  struct hf_get *g = w->data;
  struct hf_node *n = g->n;
  (void)status;
  /* Only the state read out is sent: what was stored may be a reference (see is_reference). */
  if (g->status == 0 && !n->closing) {
    raft_free(g->snapshot->bufs[0].base);
    g->snapshot->bufs[0] = g->out;
    g->cb(g->outer, g->snapshot, 0);
    free(g);
  } else {
    raft_free(g->out.base);
    drop_load(g, g->snapshot);
  }
  if (--n->shipping == 0 && n->closing) node_really_close(n);
}

static void on_snapshot_got(struct raft_io_snapshot_get *inner, struct raft_snapshot *s, int status) {
  struct hf_get *g = inner->data;
  struct hf_node *n = g->n;
  if (n->ship == NULL) {
    g->cb(g->outer, s, status);
    free(g);
    return;
  }
  /* Failed, closing, or a ship under way (libraft re-sends to a follower while it catches
   * up: one read-out and one send of the state at a time, on one pool thread). */
  if (status != 0 || s == NULL || s->n_bufs != 1 || n->closing || n->shipping > 0) {
    drop_load(g, s);
    return;
  }
  g->snapshot = s;
  g->work.data = g;
  if (uv_queue_work(n->loop, &g->work, ship_work, ship_done) != 0) {
    drop_load(g, s);
    return;
  }
  ++n->shipping;
}

static int node_snapshot_get(struct raft_io *io, struct raft_io_snapshot_get *req, raft_io_snapshot_get_cb cb) {
  struct hf_node *n = node_of(io);
  struct hf_get *g = calloc(1, sizeof *g);
  int rv;
  if (g == NULL) return RAFT_NOMEM;
  g->n = n;
  g->outer = req;
  g->cb = cb;
  g->inner.data = g;
  rv = n->uv_snapshot_get(io, &g->inner, on_snapshot_got);
  if (rv != 0) free(g);
  return rv;
}

void hf_node_set_ship(struct hf_node *n, hf_ship_fn ship, void *data) {
  n->ship = ship;
  n->ship_data = data;
}

static int node_start(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick, raft_io_recv_cb recv) {
  struct hf_node *n = node_of(io);
  n->tick = tick;
  n->recv = recv;
  return n->uv_start(io, msecs, on_tick, on_recv);
}

struct hf_node *hf_node_create(struct uv_loop_s *loop, const char *dir, struct raft_uv_transport *transport,
                               unsigned long long id, const char *address, struct raft_fsm *fsm, char *error) {
  struct hf_node *n = calloc(1, sizeof *n);
  int rv;
  if (n == NULL) {
    snprintf(error, 256, "out of memory");
    return NULL;
  }
  rv = raft_uv_init(&n->io, loop, dir, transport);
  if (rv != 0) {
    snprintf(error, 256, "raft_uv_init %.100s: %.140s", dir, n->io.errmsg);
    free(n);
    return NULL;
  }
  /* Never: libraft would set a damaged segment aside and start without its entries, and
   * a replica that had acknowledged them could then vote for a leader that lacks them. A
   * damaged log stops the start with why; the operator replaces the replica. */
  raft_uv_set_auto_recovery(&n->io, false);
  n->uv_start = n->io.start;
  n->io.start = node_start;
  n->uv_snapshot_get = n->io.snapshot_get;
  n->io.snapshot_get = node_snapshot_get;
  n->loop = loop;
  rv = raft_init(&n->raft, &n->io, fsm, id, address);
  if (rv != 0) {
    snprintf(error, 256, "raft_init: %s", raft_errmsg(&n->raft));
    raft_uv_close(&n->io);
    free(n);
    return NULL;
  }
  return n;
}

struct raft *hf_node_raft(struct hf_node *n) { return &n->raft; }

int hf_node_bootstrap(struct hf_node *n, const unsigned long long *ids, const char *const *addresses,
                      unsigned count, char *error) {
  struct raft_configuration conf;
  unsigned i;
  int rv;
  raft_configuration_init(&conf);
  for (i = 0; i < count; ++i) {
    rv = raft_configuration_add(&conf, ids[i], addresses[i], RAFT_VOTER);
    if (rv != 0) {
      snprintf(error, 256, "configuration: %s", raft_strerror(rv));
      raft_configuration_close(&conf);
      return -1;
    }
  }
  rv = raft_bootstrap(&n->raft, &conf);
  raft_configuration_close(&conf);
  if (rv == RAFT_CANTBOOTSTRAP) return 1;
  if (rv != 0) {
    snprintf(error, 256, "bootstrap: %s%s%s", raft_strerror(rv), raft_errmsg(&n->raft)[0] ? ": " : "",
             raft_errmsg(&n->raft));
    return -1;
  }
  return 0;
}

int hf_node_start(struct hf_node *n, unsigned election_timeout_ms, unsigned heartbeat_ms, int pre_vote,
                  unsigned snapshot_threshold, unsigned snapshot_trailing, char *error) {
  int rv;
  raft_set_election_timeout(&n->raft, election_timeout_ms);
  raft_set_heartbeat_timeout(&n->raft, heartbeat_ms);
  raft_set_pre_vote(&n->raft, pre_vote != 0);
  if (snapshot_threshold > 0) {
    raft_set_snapshot_threshold(&n->raft, snapshot_threshold);
    raft_set_snapshot_trailing(&n->raft, snapshot_trailing);
  }
  rv = raft_start(&n->raft);
  if (rv != 0) {
    snprintf(error, 256, "start: %s%s%s", raft_strerror(rv), raft_errmsg(&n->raft)[0] ? ": " : "",
             raft_errmsg(&n->raft));
    return -1;
  }
  n->started = 1;
  return 0;
}

static void node_closed(struct raft *r) {
  struct hf_node *n = (struct hf_node *)r; /* raft is the first member */
  void (*done)(void *) = n->done;
  void *data = n->done_data;
  raft_uv_close(&n->io);
  held_free(n);
  free(n);
  if (done != NULL) done(data);
}

static void node_really_close(struct hf_node *n) { raft_close(&n->raft, node_closed); }

void hf_node_close(struct hf_node *n, void (*done)(void *data), void *data) {
  n->done = done;
  n->done_data = data;
  n->closing = 1;
  if (n->shipping == 0) node_really_close(n); /* else once the last ship is done */
}

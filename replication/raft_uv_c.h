/* libraft's disk and network layer (raft/uv.h: raft_uv over a libuv loop, with a custom
 * raft_uv_transport) behind plain C types; raft_uv_c.c is the only file that includes it.
 * Every call on the thread that runs `loop`. */
#ifndef HOLDFAST_REPLICATION_RAFT_UV_C_H
#define HOLDFAST_REPLICATION_RAFT_UV_C_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

struct raft;
struct raft_fsm;
struct raft_uv_transport;
struct uv_loop_s;
struct uv_stream_s;

/* How Raft connections are made (the node carries them over mutual TLS). */
typedef struct hf_transport_callbacks {
  void *data;
  /* Start accepting: connections arrive through hf_transport_accepted. 0: ok. */
  int (*listen)(void *data);
  /* Dial server `id` at `address`; answer with hf_transport_connected(token, ...), once,
   * on the loop's thread, later (never from inside this call). */
  void (*connect)(void *data, void *token, unsigned long long id, const char *address);
  /* Stop accepting and dialing. No hf_transport_* call may follow. */
  void (*close)(void *data);
} hf_transport_callbacks;

struct raft_uv_transport *hf_transport_create(const hf_transport_callbacks *callbacks);
void hf_transport_destroy(struct raft_uv_transport *t);
/* A stream for a connected socket `fd` (its ownership passes to libraft), or NULL. */
struct uv_stream_s *hf_stream_open(struct uv_loop_s *loop, int fd);
/* The answer to a connect: `stream` from hf_stream_open, or NULL when the dial failed. */
void hf_transport_connected(void *token, struct uv_stream_s *stream);
/* The answer to a connect the transport is closing under: libraft waits for it. */
void hf_transport_canceled(void *token);
/* An incoming connection from server `id` at `address`. */
void hf_transport_accepted(struct raft_uv_transport *t, unsigned long long id, const char *address,
                           struct uv_stream_s *stream);

struct hf_node;
/* A raft instance on `dir` (raft_uv) with `fsm` and `transport`. NULL and `error` (256
 * bytes) on failure. */
struct hf_node *hf_node_create(struct uv_loop_s *loop, const char *dir, struct raft_uv_transport *transport,
                               unsigned long long id, const char *address, struct raft_fsm *fsm, char *error);
struct raft *hf_node_raft(struct hf_node *n);
/* The group's first configuration, written only into a directory that has none: 0 written,
 * 1 already there, else an error (in `error`). */
int hf_node_bootstrap(struct hf_node *n, const unsigned long long *ids, const char *const *addresses,
                      unsigned count, char *error);
int hf_node_start(struct hf_node *n, unsigned election_timeout_ms, unsigned heartbeat_ms, int pre_vote,
                  unsigned snapshot_threshold, unsigned snapshot_trailing, char *error);
/* Sending a snapshot to a follower: `ship` runs on a libuv pool thread with the snapshot
 * libraft loaded (its index and bytes) and answers what to send instead through hf_put
 * (then 0); nonzero: nothing is sent now (libraft sends again after its install timeout).
 * One ship at a time; closing waits for it. */
typedef int (*hf_ship_fn)(void *data, unsigned long long index, const char *bytes, size_t len, void *sink);
void hf_node_set_ship(struct hf_node *n, hf_ship_fn ship, void *data);
/* From ship: the bytes to send (copied). 0, or nonzero: no memory. */
int hf_put(void *sink, const char *bytes, size_t len);
/* Closes the raft instance and its disk and network layer; `done` runs (on the loop) once
 * the memory is released and the loop may stop. */
void hf_node_close(struct hf_node *n, void (*done)(void *data), void *data);

#ifdef __cplusplus
}
#endif

#endif

/* The part of libraft's API the replica uses, behind plain C types.
 *
 * raft.h does not compile as C++ (its ABI checks define structs inside sizeof), so the
 * only file that includes it is raft_c.c; C++ sees `struct raft` and `struct raft_fsm` as
 * opaque. */
#ifndef HOLDFAST_REPLICATION_RAFT_C_H
#define HOLDFAST_REPLICATION_RAFT_C_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

struct raft;
struct raft_fsm;

/* What raft_c.c calls back into. Every call on the raft loop's thread. */
typedef struct hf_fsm_callbacks {
  void *data;
  /* One committed command entry at `index` (an entry not in hf_apply's framing is skipped
   * on every replica alike, and counted by malformed). */
  void (*apply)(void *data, unsigned long long index, const char *bytes, size_t len);
  /* The whole state: `*bytes` stays valid until snapshot_done. 0, or nonzero: no memory. */
  int (*snapshot)(void *data, const char **bytes, size_t *len);
  void (*snapshot_done)(void *data);
  /* 0: restored; nonzero: refused (malformed). */
  int (*restore)(void *data, const char *bytes, size_t len);
  /* After every step of the engine. */
  void (*stepped)(void *data);
  /* A committed entry that is not a framed command, at `index`: skipped. */
  void (*malformed)(void *data, unsigned long long index);
} hf_fsm_callbacks;

/* A raft_fsm (version 2) calling `callbacks`, which must outlive it. NULL: no memory. */
struct raft_fsm *hf_fsm_create(const hf_fsm_callbacks *callbacks);
void hf_fsm_destroy(struct raft_fsm *fsm);
/* Routes the engine's step callback of `r` to callbacks->stepped. */
void hf_attach(struct raft *r, struct raft_fsm *fsm);
void hf_detach(struct raft *r);

enum { HF_UNAVAILABLE = 0, HF_FOLLOWER, HF_CANDIDATE, HF_LEADER };

typedef struct hf_raft_info {
  int state;
  unsigned long long id, term, commit_index, last_applied, last_index, leader_id;
  const char *leader_address; /* NULL when no leader is known */
} hf_raft_info;
void hf_info(struct raft *r, hf_raft_info *out);
unsigned long long hf_last_applied(struct raft *r);

/* A server's match index (leader only: nonzero return when unknown). */
int hf_match_index(struct raft *r, unsigned long long id, unsigned long long *match);

/* The address the current configuration gives server `id` (any role), or NULL. */
const char *hf_server_address(struct raft *r, unsigned long long id);

void hf_set_snapshot_policy(struct raft *r, unsigned threshold, unsigned trailing);

/* Outcomes of a submission. HF_SUBMITTED is hf_apply's "accepted": the callback follows. */
enum { HF_COMMITTED = 0, HF_SUBMITTED = 0, HF_NOT_LEADER, HF_LEADERSHIP_LOST, HF_FAILED,
       HF_SHUTDOWN, HF_IO_FAILED };
typedef void (*hf_apply_cb)(void *data, int outcome);
/* Appends `bytes` as one command entry. Returns HF_SUBMITTED (cb fires later, once), or
 * without calling cb: a refusal (HF_NOT_LEADER, HF_FAILED: nothing was appended), or
 * HF_IO_FAILED: the entry reached the engine's log but the local disk or network refused it
 * at once; it may still commit, and this replica cannot be trusted to go on. */
int hf_apply(struct raft *r, const char *bytes, size_t len, hf_apply_cb cb, void *data);

/* Asks the leader `r` to hand leadership to voter `id` (raft_transfer): 0, and `cb` runs
 * once (on the loop) when `id` leads, the attempt timed out (an election timeout), or the
 * instance closes; or libraft's error code without calling it (see hf_strerror). */
int hf_transfer(struct raft *r, unsigned long long id, void (*cb)(void *data), void *data);
const char *hf_strerror(int rv);

/* The current configuration's servers, at most `max`; `address` stays valid until the
 * configuration next changes (read it on the loop). */
enum { HF_ROLE_VOTER = 0, HF_ROLE_STANDBY, HF_ROLE_SPARE };
typedef struct hf_server {
  unsigned long long id;
  int role;
  const char *address;
} hf_server;
unsigned hf_servers(struct raft *r, hf_server *out, unsigned max);
/* Nonzero while the configuration hf_servers gives is not committed yet. */
int hf_configuration_pending(struct raft *r);

/* A configuration change on the leader `r`: HF_CHANGE_ADD adds server `id` at `address` as
 * a spare (raft_add), HF_CHANGE_PROMOTE makes spare or standby `id` a voter once its log
 * caught up with the leader's (raft_assign: rounds of replication, each shorter than an
 * election timeout at the end), HF_CHANGE_REMOVE removes `id` (raft_remove). 0, and `cb`
 * runs once on the loop with 0 when the new configuration is committed, else libraft's
 * code (leadership lost, the promoted server did not catch up, closing); or libraft's code
 * without calling it (not the leader, another change under way, unknown id, duplicate id
 * or address). */
enum { HF_CHANGE_ADD = 0, HF_CHANGE_PROMOTE, HF_CHANGE_REMOVE };
int hf_change(struct raft *r, int kind, unsigned long long id, const char *address,
              void (*cb)(void *data, int status), void *data);

#ifdef __cplusplus
}
#endif

#endif

/* libraft's in-process test fixture (raft/fixture.h) behind plain C types: raft.h does not
 * compile as C++. Server indexes are 0-based, as in the fixture. */
#ifndef HOLDFAST_TESTS_FIXTURE_C_H
#define HOLDFAST_TESTS_FIXTURE_C_H

#ifdef __cplusplus
extern "C" {
#endif

struct raft;
struct raft_fsm;
struct hf_fixture;

struct hf_fixture *hf_fixture_new(void);
void hf_fixture_free(struct hf_fixture *f);
/* Adds a server whose FSM is `fsm`; returns its raft instance (NULL on failure). */
struct raft *hf_fixture_grow(struct hf_fixture *f, struct raft_fsm *fsm);
/* Every server a voter, bootstrapped and started. 0 on success. */
int hf_fixture_bootstrap_and_start(struct hf_fixture *f);
void hf_fixture_step(struct hf_fixture *f);
unsigned long long hf_fixture_time(struct hf_fixture *f);
int hf_fixture_alive(struct hf_fixture *f, unsigned i);
void hf_fixture_kill(struct hf_fixture *f, unsigned i);
void hf_fixture_revive(struct hf_fixture *f, unsigned i);
/* Both directions. */
void hf_fixture_disconnect(struct hf_fixture *f, unsigned i, unsigned j);
void hf_fixture_reconnect(struct hf_fixture *f, unsigned i, unsigned j);
/* The i'th server's disk fails after `delay` more requests, `repeat` times. */
void hf_fixture_io_fault(struct hf_fixture *f, unsigned i, int delay, int repeat);

#ifdef __cplusplus
}
#endif

#endif

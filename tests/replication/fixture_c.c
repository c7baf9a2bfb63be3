#include "fixture_c.h"

#include <stdlib.h>

#include <raft/fixture.h>

struct hf_fixture {
  struct raft_fixture f;
};

struct hf_fixture *hf_fixture_new(void) {
  struct hf_fixture *f = calloc(1, sizeof *f);
  if (f != NULL && raft_fixture_init(&f->f) != 0) {
    free(f);
    return NULL;
  }
  return f;
}

void hf_fixture_free(struct hf_fixture *f) {
  raft_fixture_close(&f->f);
  free(f);
}

static void quiet_emit(struct raft_tracer *t, int type, const void *info) {
  (void)t;
  (void)type;
  (void)info;
}
static struct raft_tracer quiet = {NULL, 2, quiet_emit};

/* The fixture traces every event of every server to stderr; HOLDFAST_RAFT_TRACE keeps it. */
struct raft *hf_fixture_grow(struct hf_fixture *f, struct raft_fsm *fsm) {
  struct raft *r;
  if (raft_fixture_grow(&f->f, fsm) != 0) return NULL;
  r = raft_fixture_get(&f->f, raft_fixture_n(&f->f) - 1);
  if (getenv("HOLDFAST_RAFT_TRACE") == NULL) r->tracer = &quiet;
  return r;
}

int hf_fixture_bootstrap_and_start(struct hf_fixture *f) {
  struct raft_configuration conf;
  int rv = raft_fixture_configuration(&f->f, raft_fixture_n(&f->f), &conf);
  if (rv != 0) return rv;
  rv = raft_fixture_bootstrap(&f->f, &conf);
  raft_configuration_close(&conf);
  if (rv != 0) return rv;
  return raft_fixture_start(&f->f);
}

void hf_fixture_step(struct hf_fixture *f) { raft_fixture_step(&f->f); }
unsigned long long hf_fixture_time(struct hf_fixture *f) { return raft_fixture_time(&f->f); }
int hf_fixture_alive(struct hf_fixture *f, unsigned i) { return raft_fixture_alive(&f->f, i); }
void hf_fixture_kill(struct hf_fixture *f, unsigned i) { raft_fixture_kill(&f->f, i); }
void hf_fixture_revive(struct hf_fixture *f, unsigned i) { raft_fixture_revive(&f->f, i); }

void hf_fixture_disconnect(struct hf_fixture *f, unsigned i, unsigned j) {
  raft_fixture_disconnect(&f->f, i, j);
  raft_fixture_disconnect(&f->f, j, i);
}

void hf_fixture_reconnect(struct hf_fixture *f, unsigned i, unsigned j) {
  raft_fixture_reconnect(&f->f, i, j);
  raft_fixture_reconnect(&f->f, j, i);
}

void hf_fixture_io_fault(struct hf_fixture *f, unsigned i, int delay, int repeat) {
  raft_fixture_io_fault(&f->f, i, delay, repeat);
}

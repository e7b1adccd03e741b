/* decisions.h - the decision log of a node's policy: every placement,
 * balancing move and ushering, with its reason and outcome.
 *
 * The log lives in <rundir>/sched-decisions.jsonl, one JSON object a line
 * (the fields of sched.proto's Decision), so it outlives the policy
 * daemon: the next one -- after a swap, a crash -- reads it back, goes on
 * numbering where it stopped and finds the node round robin chose last.
 * A decision whose outcome comes later (a migration) is written twice
 * under the same seq, when made (outcome "") and when it ended; the later
 * line wins when the file is read. The newest SCHED_LOG_KEEP decisions are
 * kept in memory for Request{log}; once the file passes SCHED_LOG_MAX_FILE
 * bytes it is rewritten with only those (a temp file renamed over it).
 *
 * Writing is best effort: a decision that could not be written is still
 * made, kept in memory and published; the caller logs why.
 */
#ifndef SCHED_DECISIONS_H
#define SCHED_DECISIONS_H

#include <stddef.h>
#include <stdint.h>

#include "policy.h"
#include "sched.pb-c.h"

#define SCHED_LOG_KEEP 1024
#define SCHED_LOG_MAX_FILE (1u << 20)

typedef struct sched_entry {
    uint64_t seq;                 /* this node's counter, from 1 */
    uint64_t time_ms;             /* unix ms it was made */
    uint32_t node;                /* the node that decided */
    char policy[16];
    char kind[16];                /* "place", "balance", "usher" */
    char gpid[SCHED_GPID_MAX];    /* "" for a placement */
    uint32_t from, to;
    char reason[SCHED_REASON_MAX];
    char outcome[256];            /* "ok", "failed: ...", "" pending */
} sched_entry_t;

typedef struct sched_log sched_log_t;

/* Opens the log at path, reading what is in it (a missing file is an empty
 * log; a line that does not parse is skipped and counted). *ret is the
 * caller's, freed with sched_log_free. 0 or -errno (-ENOMEM). */
int sched_log_open(const char *path, sched_log_t **ret);
sched_log_t *sched_log_free(sched_log_t *log);   /* NULL-safe; NULL */

/* Lines of the file that did not parse when it was opened. */
size_t sched_log_skipped(const sched_log_t *log);

/* Adds e with the next seq and now as its time, appends it to the file.
 * *ret (may be NULL) points at the stored entry, valid until the next
 * add. 0, or -errno when the file could not be written (the entry is
 * kept and *ret set all the same). */
int sched_log_add(sched_log_t *log, const sched_entry_t *e,
                  const sched_entry_t **ret);

/* Sets the outcome of decision seq and appends it again. -ENOENT if seq is
 * no longer kept; else as sched_log_add. */
int sched_log_set_outcome(sched_log_t *log, uint64_t seq, const char *outcome,
                          const sched_entry_t **ret);

/* The newest decisions with seq > after, at most max, oldest first, into
 * out[] (pointers valid until the next add). Returns their number. */
size_t sched_log_since(const sched_log_t *log, uint64_t after, size_t max,
                       const sched_entry_t **out);

/* The node of the newest placement, 0 if none is kept. */
uint32_t sched_log_last_placed(const sched_log_t *log);

/* The entry as a Decision whose strings point into e. */
void sched_entry_proto(const sched_entry_t *e, Cairn__Sched__Decision *out);

#endif

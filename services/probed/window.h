/* window.h - the few peers' vectors a node knows (openMosix's window).
 *
 * At most `cap` entries, one per node, each the newest vector heard of
 * that node: a vector replaces the entry of its node only with a higher
 * seq (the node's own counter), so a relayed old copy never undoes a
 * fresher one. A vector of a node not in the window enters it; when the
 * window is full the entry born longest ago leaves -- unless the newcomer
 * is older still, then it does not enter. An entry's birth is when its
 * vector was sampled, as far as this node can tell: the time it arrived
 * less the age it had then (the gossip computes it from the sender's
 * sampled_ms), so a relayed vector is as old here as it was there.
 * window_age drops entries older than max_age; window_forget a node that
 * died or left.
 *
 * Pure: no clock of its own (every call takes now, monotonic ms), no I/O,
 * so it is unit-tested without a daemon.
 */
#ifndef PROBED_WINDOW_H
#define PROBED_WINDOW_H

#include <stddef.h>
#include <stdint.h>

#include "loadvec.h"

#define WINDOW_MAX 255

typedef struct window_entry {
    loadvec_t v;            /* the node's newest vector (no jobs) */
    uint64_t born_ms;       /* monotonic ms its sample was taken, estimated */
    uint32_t from;          /* the node that gossiped it here */
} window_entry_t;

typedef struct window window_t;

/* A window of at most cap (1..WINDOW_MAX) entries; NULL on ENOMEM or a
 * bad cap. */
window_t *window_new(size_t cap);
window_t *window_free(window_t *w);   /* NULL-safe; returns NULL */

/* Changes the cap; a smaller one drops the oldest entries. */
void window_set_cap(window_t *w, size_t cap);
size_t window_cap(const window_t *w);
size_t window_size(const window_t *w);

/* Merges v (its jobs are not kept), gossiped by `from`, `age_ms` old on
 * arrival at now_ms. 1 when it entered or replaced an entry, 0 when it was
 * not newer than what the window has (or too old to enter a full one). */
int window_merge(window_t *w, const loadvec_t *v, uint32_t from,
                 uint64_t age_ms, uint64_t now_ms);

/* Drops the entries born more than max_age_ms before now_ms; returns how
 * many. */
size_t window_age(window_t *w, uint64_t now_ms, uint64_t max_age_ms);

/* Drops node's entry, if any. */
void window_forget(window_t *w, uint32_t node);

/* The entry of node, or NULL. */
const window_entry_t *window_find(const window_t *w, uint32_t node);

/* Pointers to the entries, newest first, in out (room for window_cap);
 * returns their number. Valid until the window changes. */
size_t window_list(const window_t *w, const window_entry_t **out);

#endif

/* dump.h - the dump side of the ghost engine: check and checkpoint a
 * running, unmodified process tree into an image stream (image.h).
 *
 * ghost_check looks only at /proc and changes nothing. ghost_dump seizes
 * every thread of the tree, checks again on the frozen tree, reads the
 * state, writes the image to out_fd and then detaches (leave_running) or
 * kills the tree with SIGKILL once the image is written and fsync'ed.
 */
#ifndef GHOST_DUMP_H
#define GHOST_DUMP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "cairn/error.h"
#include "lazy.h"
#include "reasons.h"

struct ghost_owner;   /* owner.h */
struct ghost_dump_stats;

#define GHOST_MAX_ROUNDS 64u    /* pre-copy rounds at most (round 0 included) */

/* What ghost_dump_opts_t.hold decides. */
enum { GHOST_HOLD_RESUME = 0, GHOST_HOLD_KILL = 1, GHOST_HOLD_SERVE = 2 };

typedef struct ghost_dump_opts {
    bool leave_running;     /* detach afterwards instead of SIGKILL */
    bool pagemap_read;      /* find present pages by reading pagemap, as on
                               kernels without PAGEMAP_SCAN (< 6.7, Debian
                               12's own 6.1): tests that path anywhere */
    const struct ghost_owner *owner;  /* a user who is not root asks: every
                               process of the tree must be theirs (owner.h),
                               checked before and again once it is frozen;
                               NULL: root asks, no such rule */
    uint64_t ghost_file_max; /* an unlinked open file's contents go into the
                               image up to this many bytes, a bigger one is
                               refused; 0: GHOST_FILE_MAX_DEFAULT
                               (ghostfile.h) */
    bool probe_eventfds;    /* probe whether each eventfd is a semaphore even
                               where fdinfo says (it does from Linux 6.2):
                               tests the older kernels' path anywhere */
    bool precopy;           /* copy while the tree runs, tracking its writes
                               (track.h), then freeze and write only what
                               changed since (docs/ghost.md, "Pre-copy") */
    uint32_t rounds;        /* pre-copy: rounds at most, round 0 included
                               (1..GHOST_MAX_ROUNDS) */
    uint64_t round_until;   /* pre-copy: freeze once a round copied at most
                               this many bytes */
    /* Set: once the image is completely written the tree stays frozen and
     * hold(hold_data, stats) decides its fate -- GHOST_HOLD_KILL kills it,
     * GHOST_HOLD_RESUME lets it go running (leave_running is then
     * ignored), GHOST_HOLD_SERVE (postcopy) serves its lazy pages on
     * pages_fd first (lazy_serve), then kills it, or lets it go if the
     * holder says `resume` on hold_fd meanwhile (its target never ran) or
     * after a page source that broke. It is called once, only after a
     * successful write, and may take as long as it likes (ghost-dump
     * --hold-fd waits for ghostd's word there). */
    int (*hold)(void *hold_data, const struct ghost_dump_stats *stats);
    void *hold_data;        /* for hold */
    bool postcopy;          /* the pages of private anonymous memory are
                               listed, not copied: they are served later
                               (lazy.h; docs/ghost.md, "Post-copy") */
    int pages_fd;           /* postcopy: the page source */
    int hold_fd;            /* postcopy: the holder's words while serving */
    /* Incremental checkpoints (ghost-dump --serve-fd, docs/ghost.md): the
     * caller's long-lived write tracking of the tree (track.h; not
     * precopy). The frozen part registers what is new, copies what it
     * must and write-protects every page of the tracked mappings again,
     * so the next checkpoint sees only what is written after this one. */
    struct track *track;
    bool delta;             /* with track: a page nothing wrote since the
                               last checkpoint is a kept_pages record naming
                               the parent's copy (image version 4) */
    const char *parent;     /* delta: the parent's file name, same directory */
    uint64_t parent_id;     /* delta: the parent's image_id */
    uint64_t image_id;      /* this image's id (header), 0: none */
    ghost_reasons_t *reasons; /* out, when not NULL: every refusal the check
                               found (reasons.h), the first being the error;
                               emptied when the dump is not refused */
} ghost_dump_opts_t;

/* Where the tree's stop went, step by step (ghost_dump_stats_t.steps; in
 * the JSON as "steps_us"): their sum is about frozen_us. */
typedef struct ghost_dump_steps {
    uint64_t seize_us;      /* every thread stopped (freeze_us) */
    uint64_t check_us;      /* the check again on the frozen tree, the ids
                               inside a job, the memfds its fds hold */
    uint64_t state_us;      /* header, process and thread records: /proc
                               reads and injected syscalls */
    uint64_t vmas_us;       /* the vma records */
    uint64_t pages_us;      /* page tables walked, pages copied, kept runs */
    uint64_t files_us;      /* fds, pipes, memfd objects */
    uint64_t end_us;        /* the end record, the stream flushed, the file
                               cut where the image ends */
    uint64_t sync_us;       /* fsync of the image while frozen: only when
                               the tree is killed or held after (else it
                               follows the thaw: durable_us) */
    uint64_t release_us;    /* threads put back and let go (or killed) */
} ghost_dump_steps_t;

typedef struct ghost_dump_stats {
    bool refused;           /* set on every failure: true if the process was
                               refused before anything changed (exit 2) */
    bool left_running;      /* the tree runs on (after success or failure) */
    uint64_t image_bytes;   /* bytes of the stream */
    uint64_t pages;         /* pages written */
    uint32_t processes;     /* processes in the image */
    uint32_t threads;       /* threads in the image */
    uint64_t freeze_us;     /* first seize until every thread stopped */
    uint64_t dump_us;       /* from then until the image is fully written */
    uint32_t copy_threads;  /* anonymous pages copied in place into the image
                               file by this many threads; 0: streamed */
    uint32_t stopped;       /* processes in a job-control stop (SIGSTOP, ^Z) */
    uint64_t frozen_us;     /* the tree stopped for the image: first seize
                               until let go or killed */
    bool began;             /* the output was written to (pre-copy rounds do
                               before the freeze's refusals) */
    uint32_t rounds;        /* pre-copy rounds; 0 without pre-copy */
    uint64_t round_bytes[GHOST_MAX_ROUNDS]; /* page bytes of each round */
    uint64_t precopy_bytes; /* their sum: copied while the tree ran */
    uint64_t kept_pages;    /* pages of the frozen part a round's copy holds */
    uint64_t track_us;      /* the stop that gave the tree its userfaultfds */
    bool held;              /* opts->hold ran: the tree waited, frozen */
    bool killed;            /* the tree was killed after the dump */
    uint32_t untracked;     /* opts->track: processes of the tree it does not
                               track (born since): copied whole, and the
                               tracking must start again to follow them */
    bool job;               /* the tree was a job: pid 1 of a pid namespace of
                               its own, with its own mount namespace; the
                               image names every process by its pid inside */
    uint64_t lazy_pages;    /* postcopy: pages listed, not copied (the
                               ranges' extent: whole vmas) */
    uint64_t lazy_resident; /* postcopy: of them, about how many the tree
                               held (what they take on the target) */
    bool served;            /* postcopy: the holder said serve */
    lazy_serve_stats_t serve; /* what serving did */
    bool serve_broken;      /* the page source failed before every page was
                               sent (serve_error says why) */
    cairn_error_t serve_error;
    ghost_dump_steps_t steps; /* the frozen part, step by step */
    /* The same stop seen from the dumper's thread (its schedstat): on a CPU,
     * waiting for one, and the rest, asleep -- waiting for the frozen
     * threads to run (the seize, injected syscalls) or for its own
     * helpers. cpu + runqueue is what a dumper alone would take here. */
    uint64_t dumper_cpu_us, dumper_runqueue_us, dumper_asleep_us;
    uint64_t durable_us;    /* the image file's fsync once the tree ran again
                               (leave_running without a hold); 0 if none */
} ghost_dump_stats_t;

/* The refusal checks, on /proc only: the tree rooted at pid exists, is not
 * a zombie, a kernel thread, ourselves or already traced, has only vmas
 * and fds the engine can restore, and (opts->owner) is the owner's. 0 if
 * checkpointable; otherwise -errno with code NOT_FOUND,
 * FAILED_PRECONDITION, UNSUPPORTED or PERMISSION_DENIED and the precise
 * reason (which pid, which fd or vma, what kind, whose): the first of
 * every reason found, which opts->reasons lists when given. */
int ghost_check(pid_t pid, const ghost_dump_opts_t *opts, cairn_error_t *err);

/* Checkpoints the tree rooted at pid into out_fd (a file, pipe or socket;
 * the caller owns it and fsyncs nothing: ghost_dump truncates a regular
 * file where the image ends, so one may be written over, and fsyncs it --
 * before killing the tree, or once it runs again when it is left running:
 * either way it returns 0 only once the image is durable). On success
 * fills *stats. On failure sets
 * stats->refused and stats->left_running and returns -errno with err set;
 * the tree is detached and left running whenever possible. */
int ghost_dump(pid_t pid, const ghost_dump_opts_t *opts, int out_fd,
               ghost_dump_stats_t *stats, cairn_error_t *err);

#endif

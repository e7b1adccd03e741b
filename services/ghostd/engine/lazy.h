/* lazy.h - post-copy: pages that come after the process runs (lazy.c).
 *
 * A post-copy dump (ghost-dump --postcopy) writes an image without the
 * contents of private anonymous memory: each such vma is listed whole as
 * lazy_pages records (ghost.proto), without walking its page tables at
 * the freeze -- but for the few pages the restore itself touches before
 * the tree runs (lazy_hot_pages: each thread's rseq area, clear-tid word,
 * stack under its sp, TLS), which go in the image as pages. The tree
 * stays frozen; once told `serve` it answers page requests and pushes
 * the lazy ranges in address order on the *page source* fd P, finding
 * which of their pages it holds as it goes (PAGEMAP_SCAN): a page it
 * holds goes as bytes, a run it never touched as a ZERO frame (no
 * bytes); then it is killed. A post-copy restore (ghost-restore
 * --pages-fd P) maps those ranges empty, registers them with a
 * userfaultfd made in each restored process (MISSING mode), lets the
 * tree run, and a page server (a thread of ghost-restore) fills them: a
 * fault asks the source for its page, a push is copied in where it is
 * still missing, a ZERO run is left to read as zeros. docs/ghost.md,
 * "Post-copy", says why and what it costs.
 *
 * The protocol on P (a stream socket or a pipe pair: anything that
 * carries bytes in order both ways; ghostd bridges it between nodes).
 * Every frame is a lazy_frame_t (24 bytes, little endian) and, for PAGES
 * and ERROR, `len` bytes after it:
 *
 *   target -> source  START {}                       every process is ready
 *                                                    for its pages: push
 *                     REQ   {pid, addr, n_pages}     send me these pages
 *                     END   {}                       every lazy page is in
 *                                                    place: stop
 *   source -> target  PAGES {pid, addr, n_pages, len = n_pages * 4096}
 *                           + the bytes               an answer or a push
 *                     ZERO  {pid, addr, n_pages}     a push: these pages
 *                                                    were never touched at
 *                                                    the source: they read
 *                                                    as zeros (no bytes)
 *                     ERROR {pid, addr, n_pages, len} + a message: the
 *                           source cannot give them (bad request, a page
 *                           it cannot read): the target fails
 *                     END   {}                       every lazy page was
 *                                                    sent (PAGES or ZERO)
 *                                                    at least once
 *
 * pid is the process's pid as the image names it (Process.pid: inside
 * the job for a job), addr page aligned, 1 <= n_pages <= LAZY_MAX_PAGES
 * (a ZERO frame: up to LAZY_MAX_ZERO), every page inside one lazy_pages
 * record's range. A page may come more than once (asked for while a push
 * of it was under way): the target keeps the first. An answer to a REQ
 * is always PAGES (a page the source never touched reads as zeros).
 * Requests are answered before the next push, so a fault waits at most
 * for the push frame under way and what the socket holds. The source
 * pushes only after START: until then the target cannot take pages (its
 * processes are not registered yet) and pushes would sit in the socket
 * ahead of the answers to its first faults; and the target says it only
 * once its tree runs, so that the transfer does not slow down the
 * restore's last steps (the freeze). The target's rule stands: END from
 * the source while some lazy page never came (by PAGES or ZERO) fails
 * the restore, and a tree with holes never runs.
 */
#ifndef GHOST_LAZY_H
#define GHOST_LAZY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "cairn/error.h"

#define LAZY_PAGE 4096u
#define LAZY_MAX_PAGES 256u        /* pages in one frame: 1 MiB */
#define LAZY_MAX_MESSAGE 240u      /* bytes of an ERROR frame's message */
#define LAZY_MAX_ZERO (1u << 30)   /* pages in one ZERO frame: 4 TiB */

enum lazy_frame_type {
    LAZY_REQ = 1,                  /* target -> source */
    LAZY_PAGES = 2,                /* source -> target, + the bytes */
    LAZY_ERROR = 3,                /* source -> target, + a message */
    LAZY_END = 4,                  /* either way */
    LAZY_START = 5,                /* target -> source */
    LAZY_ZERO = 6,                 /* source -> target, no bytes */
};

typedef struct lazy_frame {
    uint32_t type;                 /* enum lazy_frame_type */
    uint32_t pid;                  /* the process, as the image names it */
    uint64_t addr;                 /* first page */
    uint32_t n_pages;              /* pages from addr */
    uint32_t len;                  /* bytes after this header */
} lazy_frame_t;

/* Writes a frame and its len payload bytes (payload may be NULL when len
 * is 0), whole; -errno (-EPIPE: the other side is gone). */
int lazy_frame_write(int fd, const lazy_frame_t *f, const void *payload);

/* Reads one frame header, whole: 0, -EPIPE at the end of the stream
 * (before any of it), -EPROTO for a header no side sends, -errno. */
int lazy_frame_read(int fd, lazy_frame_t *f);

/* Reads exactly len bytes: 0, -EPIPE if the stream ends first, -errno. */
int lazy_read_full(int fd, void *buf, size_t len);

/* ---- runs: what is left to send, or to come ---------------------------- */

typedef struct lazy_run {
    uint64_t a, b;                 /* [a, b), page aligned */
} lazy_run_t;

/* Sorted, disjoint runs of addresses: a set of pages kept as ranges, so
 * that a whole vma (a thread's 8 MiB stack, a 1 TiB reservation) costs
 * one entry, not a bit per page. */
typedef struct lazy_runs {
    lazy_run_t *v;
    size_t n, cap;
    uint64_t bytes;                /* of every run */
} lazy_runs_t;

/* Adds [a, b), disjoint from every run (merged with an adjacent one).
 * 0 or -ENOMEM. */
int lazy_runs_put(lazy_runs_t *s, uint64_t a, uint64_t b);

/* Removes [a, b) from the runs; the bytes removed into *ret_cut (may be
 * NULL). 0 or -ENOMEM (a run split in two; s unchanged then). */
int lazy_runs_cut(lazy_runs_t *s, uint64_t a, uint64_t b, uint64_t *ret_cut);

/* The first run that ends past addr (it holds addr if it starts at or
 * before it), or NULL. */
const lazy_run_t *lazy_runs_next(const lazy_runs_t *s, uint64_t addr);

/* The run holding addr, or NULL. */
const lazy_run_t *lazy_runs_at(const lazy_runs_t *s, uint64_t addr);

void lazy_runs_free(lazy_runs_t *s);

/* ---- dump: which pages the restore touches before the tree runs -------- */

struct dump_proc;

/* The pages of p's threads that the restore's own steps touch before the
 * tree runs (the kernel's rseq update, the cached tid the restorer
 * fixes) or that the tree touches first (the stack under each sp, the TLS
 * at fs_base): sorted, each once, into *ret (the caller frees). In the
 * image as pages, they never wait for a round trip to the source. 0 or
 * -ENOMEM. */
int lazy_hot_pages(const struct dump_proc *p, uint64_t **ret, size_t *ret_n);

/* About how many pages of private anonymous memory pid holds (resident
 * or swapped: /proc/PID/status, no page-table walk): what its lazy pages
 * will take on the target. 0 if it cannot be read. */
uint64_t lazy_resident_pages(pid_t pid);

/* ---- source: the frozen tree serves its pages (ghost-dump) ------------- */

typedef struct lazy_src lazy_src_t;

lazy_src_t *lazy_src_new(void);                  /* NULL on ENOMEM */
lazy_src_t *lazy_src_free(lazy_src_t *s);        /* NULL-safe; NULL */

/* A lazy range [addr, addr + len) of the process whose pid here is pid
 * and in the image vpid: listed in the image, served later (its pages
 * held then, the others answered ZERO). Ranges of a process come in
 * ascending order. 0 or -ENOMEM. */
int lazy_src_add(lazy_src_t *s, pid_t pid, uint32_t vpid, uint64_t addr, uint64_t len);

/* Pages listed so far (the ranges' extent, held or not). */
uint64_t lazy_src_pages(const lazy_src_t *s);

/* How serving ended. */
typedef enum lazy_serve_end {
    LAZY_SERVED,                   /* every page sent; the target is
                                      done or gone: the tree must die */
    LAZY_BROKEN,                   /* P failed before every page was sent
                                      (err says why): the target fails;
                                      the holder decides (resume or kill) */
    LAZY_RESUMED,                  /* the holder said `resume`: the target
                                      never ran, the tree may run again */
} lazy_serve_end_t;

typedef struct lazy_serve_stats {
    uint64_t pages;                /* lazy pages of the image (extent) */
    uint64_t requested;            /* pages sent because the target asked */
    uint64_t pushed;               /* pages sent in the background */
    uint64_t absent;               /* pages pushed as ZERO: never touched */
    uint64_t requests;             /* REQ frames answered */
    uint64_t serve_us;             /* from `serve` until it ended */
    bool target_done;              /* the target said END */
} lazy_serve_stats_t;

/* Serves the pages of s on pages_fd until every one was sent and the
 * target said END or closed its end, reading the frozen processes'
 * memory (process_vm_readv, /proc/PID/mem where that fails); meanwhile a
 * line `resume` on hold_fd (-1: none) stops it: LAZY_RESUMED. Never
 * fails in a way that needs undoing: the verdict, *st and err (for
 * LAZY_BROKEN) say what happened. */
lazy_serve_end_t lazy_serve(lazy_src_t *s, int pages_fd, int hold_fd, lazy_serve_stats_t *st,
                            cairn_error_t *err);

/* The holder's next line on fd (blocking): true if it is `resume`; any
 * other line, an error or the end is no. */
bool lazy_hold_resumes(int fd);

/* ---- target: the page server of a restored tree (ghost-restore) -------- */

typedef struct lazy_srv lazy_srv_t;

/* A server for n_procs processes on page source pages_fd (the caller's)
 * that takes their userfaultfds from sock (taken over: closed by
 * lazy_srv_finish; still the caller's if this fails). NULL on ENOMEM. */
lazy_srv_t *lazy_srv_new(int pages_fd, int sock, size_t n_procs);

/* Process index (image order) has the lazy range [addr, addr + len);
 * its pid in the image is vpid. Before lazy_srv_start, in ascending order
 * per process. 0 or -ENOMEM. */
int lazy_srv_add(lazy_srv_t *s, size_t index, uint32_t vpid, uint64_t addr, uint64_t len);

/* Starts the serving thread. The processes with lazy ranges send their
 * userfaultfd on the other end of sock (lazy_child_send). */
int lazy_srv_start(lazy_srv_t *s, cairn_error_t *err);

/* The tree is let go (called right before: a fault after it is not an
 * early one): the source may push from now on (START goes once every
 * process is registered, which it is by then). Until this, only faults
 * are served: pushes would take the CPUs and the page tables from the
 * restore's last steps, which the tree waits for. */
void lazy_srv_push(lazy_srv_t *s);

/* An fd that becomes readable once the server has ended (every lazy page
 * in place, or failed). */
int lazy_srv_done_fd(const lazy_srv_t *s);

typedef struct lazy_srv_stats {
    uint64_t pages;                /* lazy pages of the image (extent) */
    uint64_t received;             /* of them, arrived (bytes or ZERO) */
    uint64_t absent;               /* of them, ZERO: never touched */
    uint64_t early_faults;         /* faults before the tree ran: the
                                      restore waited for their pages */
    uint64_t faults;               /* page faults reported by the kernel */
    uint64_t requested;            /* pages asked for because of a fault */
    uint64_t zero;                 /* faults outside the image's pages:
                                      zero pages (new memory) */
    uint64_t dropped;              /* pages the tree unmapped or dropped
                                      before they came */
    uint64_t forks;                /* processes forked while serving */
    uint64_t serve_us;             /* from the start until it ended */
} lazy_srv_stats_t;

/* Stops the server if it still runs (a restore that failed), joins it
 * and frees it: 0 if every lazy page was put in place, else -errno and
 * err. *st (may be NULL) gets the figures. NULL-safe. */
int lazy_srv_finish(lazy_srv_t *s, bool stop, lazy_srv_stats_t *st, cairn_error_t *err);

/* In a restored process's libc stage: its userfaultfd (MISSING faults,
 * and the events that change its memory: fork, mremap, madvise,
 * munmap), sent with index on sock; the fd stays open in the process
 * (the restorer registers the lazy vmas with it, then closes it).
 * The fd, or -errno. */
int lazy_child_uffd(int sock, uint32_t index);

#endif

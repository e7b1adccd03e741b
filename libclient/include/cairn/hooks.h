/* cairn/hooks.h - page-fault regions and process events, from the kernel
 * module /dev/cairn when it is there, else from userfaultfd and the proc
 * connector: one interface, so dsmd and ghostd never know which serves them.
 *
 * Backends. cairn_hooks_open() picks `kmod` when /dev/cairn exists and
 * `user` otherwise; the environment variable CAIRN_HOOKS=kmod|user forces
 * one (then a backend that cannot run is an error, never a fallback).
 * docs/hooks.md says what each backend does and what it cannot do.
 *
 * Page-fault regions. cairn_region_new() maps `size` bytes of missing
 * pages in the calling process. A thread touching a missing page sleeps
 * while the region's server -- whoever calls cairn_region_dispatch(),
 * usually a thread of its own or a daemon's loop polling
 * cairn_region_fd() -- answers with cairn_region_serve() (the page's
 * bytes: the thread resumes) or cairn_region_fail() (the thread gets
 * SIGBUS). A page served CAIRN_HOOKS_SERVE_RDONLY reports the first write to it
 * as a fault with CAIRN_HOOKS_FAULT_WP and holds the writer until
 * cairn_region_upgrade() (or a fail). cairn_region_drop() makes pages
 * missing again (their next touch faults), cairn_region_protect() makes
 * writable pages read-only again: with these a write-invalidate DSM runs
 * on a region (invalidate = drop, downgrade = protect). A fault still
 * unanswered after the region's timeout is failed with -ETIMEDOUT by the
 * next dispatch (user backend) or by the module itself (kmod).
 *
 * Process events. A cairn_proc_watch_t reports fork, exec and exit of the
 * processes it is subscribed to: a pid (and, with tree, every process
 * forked below it after the subscription), or a cgroup directory (and the
 * cgroups below it). Events that could not be delivered are never silent:
 * a CAIRN_PROC_LOST record says how many were lost before the next one
 * (user backend: counted from the proc connector's sequence numbers, so
 * lost events may be of any process of the machine; kmod: the module's
 * count of the reader's own records), and stats count them too.
 *
 * Threads. A cairn_hooks_t, a region and a watch are each used by one
 * thread at a time, except that any thread may touch a region's memory
 * (that is the point) and cairn_region_serve/fail/upgrade/drop/protect
 * may be called from any thread while another dispatches.
 *
 * Errors: 0 or a negative errno; err (may be NULL) gets a code and a
 * message for every failure of the calls that take one. Never logs.
 */
#ifndef CAIRN_HOOKS_H
#define CAIRN_HOOKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cairn/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cairn_hooks cairn_hooks_t;
typedef struct cairn_hooks_region cairn_region_t;
typedef struct cairn_proc_watch cairn_proc_watch_t;

typedef enum cairn_hooks_backend {
    CAIRN_HOOKS_USER = 1,   /* userfaultfd + the netlink proc connector */
    CAIRN_HOOKS_KMOD = 2,   /* /dev/cairn */
} cairn_hooks_backend_t;

/* Opens the backend CAIRN_HOOKS names, else kmod if /dev/cairn exists,
 * else user. *ret is the caller's (cairn_hooks_free); untouched on
 * failure: -EINVAL (CAIRN_HOOKS holds another word), -ENODEV (kmod forced
 * and no /dev/cairn), -EPROTO (the module speaks another API version). */
int cairn_hooks_open(cairn_hooks_t **ret, cairn_error_t *err);

/* Opens that backend, whatever the environment says. */
int cairn_hooks_open_backend(cairn_hooks_backend_t b, cairn_hooks_t **ret, cairn_error_t *err);

/* Frees h; its regions and watches must be freed first. Accepts NULL,
 * returns NULL. */
cairn_hooks_t *cairn_hooks_free(cairn_hooks_t *h);

cairn_hooks_backend_t cairn_hooks_backend(const cairn_hooks_t *h);

/* "user" or "kmod"; static storage. */
const char *cairn_hooks_backend_name(cairn_hooks_backend_t b);

/* ---- page-fault regions ------------------------------------------------ */

#define CAIRN_HOOKS_PAGE 4096u          /* the unit of every offset below */
#define CAIRN_REGION_SIZE_MAX (1ull << 30)
#define CAIRN_REGION_TIMEOUT_MAX_MS 60000u

/* cairn_fault_t.flags */
#define CAIRN_HOOKS_FAULT_WRITE (1u << 0)     /* the access was a write */
#define CAIRN_HOOKS_FAULT_WP (1u << 1)        /* a write to a page served read-only */

/* One fault waiting for an answer. */
typedef struct cairn_hooks_fault {
    uint64_t offset;       /* page-aligned byte offset in the region */
    uint64_t addr;         /* the faulting address (informational) */
    uint32_t flags;        /* CAIRN_FAULT_* */
    uint32_t tid;          /* faulting thread, 0 where the kernel hides it */
} cairn_fault_t;

/* cairn_region_serve() flags */
#define CAIRN_HOOKS_SERVE_RDONLY (1u << 0)    /* report the page's first write */

typedef struct cairn_region_stats {
    uint64_t faults;       /* faults read (missing and write) */
    uint64_t wp_faults;    /* of which writes to read-only pages */
    uint64_t served;       /* pages served */
    uint64_t failed;       /* pages failed (by the server or the deadline) */
    uint64_t timed_out;    /* of which by the deadline */
} cairn_region_stats_t;

/* Maps size bytes (a multiple of CAIRN_HOOKS_PAGE, at most
 * CAIRN_REGION_SIZE_MAX) of missing pages; timeout_ms (1..
 * CAIRN_REGION_TIMEOUT_MAX_MS) is how long a fault may wait for its
 * answer. *ret is the caller's (cairn_region_free). -EINVAL for a bad
 * size or timeout; -EOPNOTSUPP when the kernel lacks what the backend
 * needs (said in err). */
int cairn_region_new(cairn_hooks_t *h, size_t size, unsigned timeout_ms,
                     cairn_region_t **ret, cairn_error_t *err);

/* Unmaps the region (a thread still touching it then gets SIGSEGV: stop
 * them first) and closes its server. Accepts NULL, returns NULL. */
cairn_region_t *cairn_region_free(cairn_region_t *r);

void *cairn_region_addr(const cairn_region_t *r);
size_t cairn_region_size(const cairn_region_t *r);

/* A descriptor that polls readable while a fault waits; the region's. */
int cairn_region_fd(const cairn_region_t *r);

/* Called once per fault read; it answers now (serve/fail/upgrade) or
 * later from any thread. A negative return stops the dispatch and is
 * returned by it; the fault stays unanswered until the deadline. */
typedef int (*cairn_fault_fn)(cairn_region_t *r, const cairn_fault_t *f, void *userdata);

/* Waits up to timeout_ms (0: not at all, -1: forever) for faults, calls
 * fn for each one read, and fails those that waited past the deadline.
 * Returns how many faults fn was called for (0 on timeout), or a
 * negative errno. Concurrent faults on one page are reported once. */
int cairn_region_dispatch(cairn_region_t *r, int timeout_ms, cairn_fault_fn fn, void *userdata);

/* Installs the page at offset with the CAIRN_HOOKS_PAGE bytes at src and
 * wakes its waiters. -EEXIST: the page is there already (not changed);
 * -EINVAL: offset outside or unaligned, unknown flags. */
int cairn_region_serve(cairn_region_t *r, uint64_t offset, const void *src, unsigned flags);

/* Makes a page served read-only writable and wakes its writers.
 * -ENOENT: the page is missing. */
int cairn_region_upgrade(cairn_region_t *r, uint64_t offset);

/* The faults on the page get SIGBUS; error (a negative errno) is the
 * reason, counted. The page stays failed until dropped. */
int cairn_region_fail(cairn_region_t *r, uint64_t offset, int error);

/* Makes [offset, offset + len) missing again, its contents gone. */
int cairn_region_drop(cairn_region_t *r, uint64_t offset, uint64_t len);

/* Makes the present pages of [offset, offset + len) read-only: their next
 * write faults with CAIRN_HOOKS_FAULT_WP. -EOPNOTSUPP on a kmod of API
 * version 1 (no CAIRN_IOC_PROTECT: drop and serve read-only instead). */
int cairn_region_protect(cairn_region_t *r, uint64_t offset, uint64_t len);

void cairn_region_stats(const cairn_region_t *r, cairn_region_stats_t *ret);

/* ---- process events ---------------------------------------------------- */

typedef enum cairn_proc_type {
    CAIRN_PROC_FORK = 1,   /* pid/tid: the child; ppid: the parent */
    CAIRN_PROC_EXEC = 2,   /* comm: the new program's name where known */
    CAIRN_PROC_EXIT = 3,   /* exit_code as wait(2) reports it */
    CAIRN_PROC_LOST = 4,   /* lost: events dropped before the next one */
} cairn_proc_type_t;

#define CAIRN_PROC_THREAD (1u << 0)    /* flags: a thread, not a process */

typedef struct cairn_proc_event {
    uint32_t type;         /* cairn_proc_type_t */
    uint32_t flags;        /* CAIRN_PROC_THREAD */
    pid_t pid;             /* process (thread group) id */
    pid_t tid;             /* thread id */
    pid_t ppid;            /* parent's process id, 0 where unknown */
    int exit_code;         /* EXIT only */
    uint64_t time_ns;      /* CLOCK_MONOTONIC at the event */
    uint64_t lost;         /* LOST only */
    char comm[16];         /* NUL-terminated, "" where unknown */
} cairn_proc_event_t;

typedef struct cairn_proc_stats {
    uint64_t delivered;    /* events returned */
    uint64_t lost;         /* events lost (see LOST above) */
    uint64_t unresolved;   /* user: processes gone before their cgroup
                            * was read, whose events were judged by
                            * their parent's, or dropped when it was
                            * unknown too */
    uint64_t filtered;     /* user: events of processes not subscribed */
} cairn_proc_stats_t;

#define CAIRN_PROC_SUBS_MAX 64

/* A watch with no subscription yet. *ret is the caller's
 * (cairn_proc_watch_free). -EPERM: the proc connector needs
 * CAP_NET_ADMIN. */
int cairn_proc_watch_new(cairn_hooks_t *h, cairn_proc_watch_t **ret, cairn_error_t *err);

cairn_proc_watch_t *cairn_proc_watch_free(cairn_proc_watch_t *w);

/* Subscribes to pid's events (tree: and its descendants'). -ESRCH: no
 * such process; -ENOSPC: CAIRN_PROC_SUBS_MAX subscriptions already. */
int cairn_proc_watch_pid(cairn_proc_watch_t *w, pid_t pid, bool tree, cairn_error_t *err);

/* Subscribes to the processes of the cgroup directory path (a v1 or v2
 * hierarchy for user; v2 only for kmod: -EOPNOTSUPP) and of the cgroups
 * below it. -ENOENT: no such cgroup. */
int cairn_proc_watch_cgroup(cairn_proc_watch_t *w, const char *path, cairn_error_t *err);

/* A descriptor that polls readable while events may be waiting. */
int cairn_proc_watch_fd(const cairn_proc_watch_t *w);

/* Reads up to n events, waiting up to timeout_ms (0, -1 forever) for the
 * first. Returns how many (0 on timeout) or a negative errno. */
int cairn_proc_watch_read(cairn_proc_watch_t *w, cairn_proc_event_t *ev, size_t n,
                          int timeout_ms);

void cairn_proc_watch_stats(const cairn_proc_watch_t *w, cairn_proc_stats_t *ret);

#ifdef __cplusplus
}
#endif
#endif

/* hooks-private.h - what the hooks backends share (cairn/hooks.h).
 *
 * A region and a watch carry a table of their backend's operations; the
 * public calls in hooks.c check arguments, keep the pending-fault list
 * (one report per page, the deadline of the user backend) and the stats,
 * and call the table. hooks-uffd.c and hooks-cnproc.c are the user
 * backend, hooks-kmod.c the module's.
 */
#ifndef CAIRN_HOOKS_PRIVATE_H
#define CAIRN_HOOKS_PRIVATE_H

#include <pthread.h>

#include "cairn/hooks.h"

#define CAIRN_DEVICE_PATH "/dev/cairn"   /* CAIRN_DEVICE of the UAPI */

struct cairn_hooks {
    cairn_hooks_backend_t backend;
    int dev_fd;            /* /dev/cairn (kmod), -1 for user */
};

typedef struct hooks_region_ops {
    /* Reads up to n faults without waiting: how many, or -errno. */
    int (*read)(cairn_region_t *r, cairn_fault_t *f, size_t n);
    int (*serve)(cairn_region_t *r, uint64_t off, const void *src, unsigned flags);
    int (*upgrade)(cairn_region_t *r, uint64_t off);
    int (*fail)(cairn_region_t *r, uint64_t off, int error);
    int (*drop)(cairn_region_t *r, uint64_t off, uint64_t len);
    int (*protect)(cairn_region_t *r, uint64_t off, uint64_t len);
    void (*close)(cairn_region_t *r);   /* unmaps, closes the fds */
    bool expires;          /* the library enforces the deadline */
} hooks_region_ops_t;

/* A fault read and not answered yet. */
typedef struct hooks_pending {
    uint64_t key;          /* offset | 1 for a write-protect fault */
    uint64_t since_ns;     /* when it was read */
} hooks_pending_t;

struct cairn_hooks_region {
    const hooks_region_ops_t *ops;
    uint8_t *addr;         /* the mapping, size bytes */
    size_t size;
    unsigned timeout_ms;
    int fd;                /* polled for faults: userfaultfd or server fd */
    int mem_fd;            /* user: the memfd behind the mapping; kmod: -1 */
    pthread_mutex_t lock;  /* pending and st, for answers from any thread */
    hooks_pending_t *pending;
    size_t n_pending, cap_pending;
    cairn_region_stats_t st;
};

typedef struct hooks_proc_ops {
    /* Reads up to n events without waiting: how many, or -errno. */
    int (*read)(cairn_proc_watch_t *w, cairn_proc_event_t *ev, size_t n);
    int (*pid)(cairn_proc_watch_t *w, pid_t pid, bool tree, cairn_error_t *err);
    int (*cgroup)(cairn_proc_watch_t *w, const char *path, cairn_error_t *err);
    void (*close)(cairn_proc_watch_t *w);
} hooks_proc_ops_t;

struct cairn_proc_watch {
    const hooks_proc_ops_t *ops;
    int fd;                /* polled: netlink socket or /dev/cairn reader */
    size_t n_subs;
    cairn_proc_stats_t st;
    void *be;              /* the backend's state */
};

/* Each sets up r's ops, addr, fd and mem_fd (hooks.c the rest). */
int hooks_uffd_region(cairn_hooks_t *h, cairn_region_t *r, cairn_error_t *err);
int hooks_kmod_region(cairn_hooks_t *h, cairn_region_t *r, cairn_error_t *err);

/* Each sets up w's ops, fd and be. */
int hooks_cnproc_watch(cairn_hooks_t *h, cairn_proc_watch_t *w, cairn_error_t *err);
int hooks_kmod_watch(cairn_hooks_t *h, cairn_proc_watch_t *w, cairn_error_t *err);

/* user: a short-lived child exits on each online CPU, so that each
 * CPU's next proc connector message (and any gap before it) shows. */
void hooks_exit_on_every_cpu(void);

/* kmod: opens and checks /dev/cairn (its API version). */
int hooks_kmod_open(int *ret_fd, cairn_error_t *err);

/* A userfaultfd of this process with `features` (kernel-mode faults where
 * the system allows them, else user-mode only); -EOPNOTSUPP with err
 * naming `needs` when the kernel lacks a feature. hooks-uffd.c; libcairn's
 * DSM segments (dsm.c) use it too. */
int hooks_uffd_open(uint64_t features, const char *needs, int *ret, cairn_error_t *err);

#endif

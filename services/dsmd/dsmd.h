/* dsmd.h - private umbrella of the dsmd daemon: distributed shared memory
 * segments, sequentially consistent, served by the node's dsmd to the
 * processes of the node through userfaultfd (README.md has the design and
 * the consistency argument).
 *
 * The modules, each behind this header:
 *   segment.c   the segments this node holds: a memfd each (one copy of
 *               every page for all the node's processes), the per-page
 *               state, owner hint and copyset, and the attachments (a
 *               process's mapping and its userfaultfd) with the kernel
 *               operations on them: install, protect, punch, poison;
 *   fdsock.c    the local socket processes open and attach through
 *               (SOCK_SEQPACKET, SCM_RIGHTS for the memfd and userfaultfd);
 *   coherence.c faults, page requests, grants, redirects, invalidations;
 *   directory.c the home's directory (open, rm) and the cluster-wide ls
 *               and show.
 * Everything runs on the skeleton's loop, one thread: a page's state only
 * changes between two callbacks.
 */
#ifndef DSMD_H
#define DSMD_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "cairn/error.h"
#include "dsmd.pb-c.h"
#include "peer.h"
#include "service.h"
#include "view.h"

#define DSM_PAGE 4096u
#define DSM_NAME_MAX 255
#define DSM_NODE_WORDS 4          /* copyset bits: node ids 0..255 */
#define DSM_CALL_MS 2000          /* one page request or invalidation */
#define DSM_HOPS_MAX 64           /* redirects before a page is given up */

typedef enum dsm_state {
    DSM_INVALID = 0,   /* no copy here */
    DSM_READ = 1,      /* a read copy: mapped write-protected */
    DSM_WRITE = 2,     /* owned writable: no other copy anywhere */
    DSM_LOST = 3,      /* its owner died with the only copy: SIGBUS */
} dsm_state_t;

typedef struct dsm_seg dsm_seg_t;
typedef struct dsm_attach dsm_attach_t;
typedef struct dsmd dsmd_t;

/* A fault waiting for its page. */
typedef struct dsm_waiter {
    struct dsm_waiter *next;
    dsm_attach_t *at;         /* NULL once its process detached */
    uint64_t addr;            /* page address in that process */
    bool write;
} dsm_waiter_t;

/* A remote request held until the page's own request completes. */
typedef struct dsm_held {
    struct dsm_held *next;
    cairn_deferred_t *deferred;
    bool invalidate;          /* an invalidation, else a page request */
    bool write;
    uint32_t requester;       /* page request: who asks; invalidation: new owner */
    uint32_t hops;
} dsm_held_t;

/* What a page is doing now; only pages with activity have one. */
typedef struct dsm_pending {
    dsm_waiter_t *waiters;    /* local faults, oldest first */
    dsm_held_t *held;         /* remote requests, oldest first */
    bool asking;              /* our page request is on the wire */
    bool asking_write;
    uint32_t hops;
    int recovers;             /* recoveries asked for this request */
    size_t acks_left;         /* invalidations sent, not acknowledged */
    bool acks_failed;
} dsm_pending_t;

typedef struct dsm_page {
    uint8_t state;            /* dsm_state_t */
    uint32_t hint;            /* probable owner; this node when owner */
    uint64_t copyset[DSM_NODE_WORDS];   /* owner: nodes with read copies */
    dsm_pending_t *pend;
} dsm_page_t;

/* A process's mapping of a segment. */
struct dsm_attach {
    dsm_attach_t *next;       /* in the segment's list */
    dsmd_t *d;
    dsm_seg_t *seg;
    int uffd;                 /* the process's userfaultfd (ours now) */
    int64_t watch;            /* loop watch on uffd */
    uint64_t addr;            /* base of the mapping in the process */
    pid_t pid;
    bool rdonly;              /* a read-only (private) mapping: no write-protect
                               * mode, and every fault is a read */
    struct dsm_conn *conn;    /* the socket it attached through */
};

struct dsm_seg {
    dsm_seg_t *next;
    char *name;
    uint64_t size, npages, generation;
    uint32_t uid, gid, mode, creator;
    int memfd;
    dsm_page_t *pages;
    dsm_attach_t *attached;
    uint64_t faults, fetches, invalidations;
    uint64_t prefetched;      /* fetched by read-ahead, before any fault */
    uint64_t seq_next;        /* the page after the last read fault */
    uint32_t streak;          /* consecutive pages read in a row */
    bool removed;             /* rm arrived: freed once nothing refers to it */
};

/* A directory entry at the home (the protobuf Segment is the record). */
typedef struct dsm_dirent {
    struct dsm_dirent *next;
    Cairn__Dsmd__Segment rec;  /* name and nodes owned by the entry */
    uint32_t nodes[CAIRN_VIEW_MAX_NODES];
} dsm_dirent_t;

struct dsmd {
    cairn_service_t *svc;
    uint32_t self;
    uint64_t mem_limit;       /* the node's memory: the largest segment */
    cairn_view_t *view;
    cairn_peers_t *peers;
    dsm_seg_t *segs;
    dsm_dirent_t *dir;        /* the entries this node is home of */
    int listen_fd;            /* <rundir>/dsmd.fd.sock */
    int64_t listen_watch;
    char *sock_path;
    struct dsm_conn *conns;
    uint64_t next_conn;
    struct dsm_gather *gathers;   /* ls/show fanned out */
    struct dsm_recovery *recoveries;  /* at the home: pages being recovered */
    uint64_t next_recovery;
    uint64_t next_gather;
};

extern const cairn_service_ops_t dsmd_ops;
void dsmd_done(dsmd_t *d);
/* A handler's answer Reply{done} (dsmd-manager.c). */
int dsm_reply_done(cairn_request_t *req);

/* ---- segment.c ----------------------------------------------------------- */

/* Names: 1..255 bytes, no '/', no control characters. */
bool dsm_name_ok(const char *name);
dsm_seg_t *dsm_seg_find(dsmd_t *d, const char *name);
/* Makes this node's part of a segment from its directory entry: a memfd of
 * its size, every page owned by the creator (owned writable here when that
 * is this node). -errno with err. */
int dsm_seg_new(dsmd_t *d, const Cairn__Dsmd__Segment *rec, dsm_seg_t **ret,
                cairn_error_t *err);
/* Unlinks and frees seg (its attachments must be gone). */
void dsm_seg_free(dsmd_t *d, dsm_seg_t *seg);
/* Page i's pending record, made on demand (NULL on ENOMEM). */
dsm_pending_t *dsm_page_pend(dsm_page_t *pg);
/* Frees the pending record when nothing waits any more. */
void dsm_page_settle(dsm_page_t *pg);
void dsm_copyset_add(dsm_page_t *pg, uint32_t node);
bool dsm_copyset_has(const dsm_page_t *pg, uint32_t node);

/* Kernel side. Every process of the node maps the same memfd. */
int dsm_page_read(dsm_seg_t *seg, uint64_t page, void *buf);         /* pread */
int dsm_page_write(dsm_seg_t *seg, uint64_t page, const void *buf);  /* pwrite */
/* Punches the page out of the memfd: gone from every process (their next
 * touch faults), its memory freed. */
int dsm_page_punch(dsm_seg_t *seg, uint64_t page);
/* Write-protects (on) or unprotects the page in every attached process. */
int dsm_page_protect_all(dsm_seg_t *seg, uint64_t page, bool on);
/* Answers the fault of one process at addr from the page as the state
 * says (read-only for READ); 0 or -errno (-ENOENT: the process unmapped
 * it, nothing to answer). */
int dsm_fault_answer(dsm_seg_t *seg, dsm_attach_t *at, uint64_t addr, uint64_t page);
/* Maps the read copies [first, first + n) (all in the memfd) write-
 * protected in every attached process ahead of their faults: a read-ahead
 * costs no fault per page. Pages mapped there already are left. */
int dsm_pages_map_all(dsm_seg_t *seg, uint64_t first, uint64_t n);
/* Maps [first, first + n) in one process (write-protected when wp): the
 * node holds every page of the run in that state. */
int dsm_pages_map(dsm_attach_t *at, uint64_t first, uint64_t n, bool wp);
/* The fault gets SIGBUS (the page is lost). */
int dsm_fault_poison(dsm_attach_t *at, uint64_t addr);
/* Adds a process's mapping; takes uffd. */
int dsm_attach_add(dsmd_t *d, dsm_seg_t *seg, int uffd, uint64_t addr, pid_t pid, bool rdonly,
                   struct dsm_conn *conn, dsm_attach_t **ret, cairn_error_t *err);
/* Removes it (its socket closed): its waiting faults are forgotten. */
void dsm_attach_remove(dsmd_t *d, dsm_attach_t *at);
size_t dsm_seg_processes(const dsm_seg_t *seg);

/* ---- fdsock.c ------------------------------------------------------------ */

int dsm_fdsock_start(dsmd_t *d, cairn_error_t *err);
void dsm_fdsock_stop(dsmd_t *d);
/* The home answered an open asked for conn (rec NULL: code/message). */
void dsm_fdsock_opened(dsmd_t *d, uint64_t conn_id, const Cairn__Dsmd__Segment *rec,
                       bool created, int code, const char *message);

/* ---- coherence.c --------------------------------------------------------- */

/* A fault read from a process's userfaultfd. */
void dsm_fault(dsmd_t *d, dsm_attach_t *at, uint64_t addr, bool write);
int dsm_handle_page(void *ctx, cairn_request_t *req);
int dsm_handle_invalidate(void *ctx, cairn_request_t *req);
/* A recovery's questions to this node: the page's state and whether it
 * owns it; make its read copy the owner (-ESTALE: no copy any more); mark
 * it lost (refused, logged, when a copy is here). */
void dsm_page_probe(dsmd_t *d, dsm_seg_t *seg, uint64_t page, uint32_t *state, bool *owner);
int dsm_page_promote(dsmd_t *d, dsm_seg_t *seg, uint64_t page, const uint32_t *copyset, size_t n);
void dsm_page_lose(dsmd_t *d, dsm_seg_t *seg, uint64_t page, const char *why);

/* ---- recover.c ---------------------------------------------------------- */

/* The home's answer to a page nobody leads to: owner (this node's id when
 * it was promoted here), 0 when lost; code != 0 when the recovery could
 * not finish. Runs from the loop, once. */
typedef void (*dsm_recovered_fn)(dsmd_t *d, void *ud, uint32_t owner, int code,
                                 const char *message);
/* At the home: asks every alive member for the page and answers fn (a
 * recovery of the same page under way is joined). */
void dsm_recover_run(dsmd_t *d, const char *name, uint64_t generation, uint64_t page,
                     dsm_recovered_fn fn, void *ud);
void dsm_recover_free(dsmd_t *d);
int dsm_handle_recover(void *ctx, cairn_request_t *req);
int dsm_handle_probe(void *ctx, cairn_request_t *req);
int dsm_handle_promote(void *ctx, cairn_request_t *req);

/* ---- directory.c --------------------------------------------------------- */

/* Asks the home for name's entry (made when flags say CREATE); the answer
 * goes to dsm_fdsock_opened(conn_id). */
void dsm_dir_open(dsmd_t *d, uint64_t conn_id, const char *name, uint64_t size,
                  uint32_t flags, uint32_t mode, uint32_t uid, uint32_t gid);
int dsm_handle_open(void *ctx, cairn_request_t *req);
int dsm_handle_ls(void *ctx, cairn_request_t *req);
int dsm_handle_show(void *ctx, cairn_request_t *req);
int dsm_handle_rm(void *ctx, cairn_request_t *req);
/* The view changed: entries move to their new homes. */
void dsm_dir_view(dsmd_t *d);
void dsm_dir_free(dsmd_t *d);
/* Whether uid/gid may read (want 4) or write (2) a segment of that owner
 * and mode; root may do anything. */
bool dsm_may(uint32_t uid, uint32_t gid, uint32_t owner, uint32_t group, uint32_t mode,
             unsigned want);

#endif

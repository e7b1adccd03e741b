/* ghostd.h - private umbrella of the ghostd daemon.
 *
 * ghostd checkpoints and restarts processes on its node. It never touches a
 * target process itself: each request runs one helper program of the engine
 * (engine/ghost-dump or engine/ghost-restore) as a child, so a hostile
 * process or image can only take a helper down, never the daemon. A request
 * runs one helper: validated, spawned, its reply deferred, the helper's one JSON
 * line collected from a pipe the loop watches, the helper reaped by polling
 * waitpid (the skeleton owns the signals, so there is no SIGCHLD here), and
 * its exit status mapped to a Status. See docs/ghost.md for the contract.
 *
 * Who may ask (docs/ghost.md, "Who may checkpoint and restart what"):
 * root, on anything; a user (over ipc, from the kernel; from a member
 * node over CURVE, as it vouches), on what is theirs. ghostd checks what
 * it can see cheaply (whose the process is) and hands the user to the
 * helper (--as UID:GID), which holds the whole tree, frozen, or the whole
 * image to the rule and works with the user's file rights.
 */
#ifndef GHOSTD_H
#define GHOSTD_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <jansson.h>

#include "ghostd.pb-c.h"
#include "placement.h"
#include "service.h"
#include "spool.h"

#define GHOSTD_MAX_HELPERS 32          /* helpers running at once */
#define GHOSTD_MAX_TRACKERS 16         /* of which restart-ckpt.c's trackers, at most:
                                          requests keep the other half */
#define GHOSTD_OUTPUT_MAX 65536           /* bytes of helper output kept */
#define GHOSTD_DEFAULT_DEADLINE_MS 120000 /* when Header.deadline_ms is 0 */
#define GHOSTD_MAX_DEADLINE_MS 3600000    /* one hour, like the CLI's cap */
#define GHOSTD_IMAGE_NAME "image.ghost"   /* the image inside a DIR */

typedef enum ghostd_kind {
    GHOSTD_CHECKPOINT,
    GHOSTD_RESTART,
    GHOSTD_LAUNCH,             /* ghost-init: a job cairn run starts (jobs.h) */
} ghostd_kind_t;

struct ghostd;
struct ghostd_job;
struct ghostd_jobs;

/* One running helper and the request it answers. */
typedef struct ghostd_helper {
    struct ghostd *gd;         /* the daemon this job belongs to */
    bool used;                 /* slot taken */
    ghostd_kind_t kind;        /* which helper, which reply */
    pid_t helper;              /* the helper's pid (also its process group) */
    int out_fd;                /* read end of the helper's stdout, -1 closed */
    int64_t watch;             /* loop watch on out_fd, 0 if none */
    int64_t poll_timer;        /* waitpid poll, repeating */
    int64_t deadline_timer;    /* kills the helper, answers TIMEOUT */
    cairn_deferred_t *deferred; /* the request to answer; owned */
    uint32_t pid;              /* checkpoint: the target process */
    bool leave_running;        /* checkpoint: --leave-running */
    bool in_place;             /* checkpoint: --in-place */
    bool exited;               /* the helper exited (did its own cleanup) */
    bool new_pid;              /* restart: --new-pid */
    bool check_only;           /* either: the helper's --check (nothing written) */
    bool for_user;             /* a user who is not root asked: the helper
                                  runs with --as UID:GID (engine/owner.h) */
    uint32_t uid, gid;         /* for_user: who asked */
    char as_arg[24];           /* for_user: "UID:GID" */
    char dir[4096];            /* image directory */
    char image[4200];          /* DIR/image.ghost */
    char scope[64];            /* restart: the scope asked for, "" if none */
    char out[GHOSTD_OUTPUT_MAX]; /* helper stdout collected so far */
    size_t out_len;            /* bytes in out */
    bool truncated;            /* the helper printed more than out holds */
    uint64_t started_ms;       /* monotonic, when spawned */
    /* A helper another module drives (migrate.c) instead of a request:
     * on_output runs after each read of new output, on_exit once the
     * helper is reaped (waitpid's status), instead of a reply; the slot
     * is freed right after on_exit returns. */
    void (*on_output)(struct ghostd_helper *j);
    void (*on_exit)(struct ghostd_helper *j, int status);
    void *hook_data;           /* for the hooks */
    struct ghostd_job *job;    /* LAUNCH: the job being launched (jobs.c's) */
    bool launched;             /* LAUNCH: jobs.c took the job and answered */
} ghostd_helper_t;

typedef struct ghostd {
    cairn_service_t *svc;                 /* the skeleton; set in start */
    ghostd_helper_t helpers[GHOSTD_MAX_HELPERS]; /* running helpers */
    ghostd_spool_t spool;                 /* <rundir>/ghost: default image dirs */
    ghostd_placement_t placement;         /* where restored trees go */
    struct migrate *migrate;              /* migrations in and out (migrate.h) */
    struct ghostd_jobs *jobs;             /* the jobs cairn run started (jobs.h) */
    struct restart *restart;              /* checkpoints, replicas, restarts (restart.h) */
    struct place_hold *hold;              /* runs without a node: the policy
                                             asked, held (place-hold.h) */
} ghostd_t;

/* The skeleton's view of ghostd: name, message types, handler table. */
extern const cairn_service_ops_t ghostd_ops;

/* Kills (SIGKILL to the helper's process group) and reaps every running
 * helper, answering its request UNAVAILABLE; frees the job table (the
 * jobs run on). Safe to call twice. */
void ghostd_done(ghostd_t *gd);

/* For modules that run helpers of their own (migrate.c). Runs helper
 * `kind` with argv[1..] (argv[0] is set here) in a free slot, its stdout
 * watched, reaped by the poll, killed at deadline_ms; fds[i] becomes fd
 * 3 + i in the helper (the caller keeps its copies); deadline_ms 0: none
 * (restart-ckpt.c's trackers stay). The caller sets the hooks on *ret before
 * the loop runs again. -EBUSY when every slot is
 * taken, -ENOENT no helper program; err says why. */
int ghostd_helper_start(ghostd_t *gd, ghostd_kind_t kind, char *argv[],
                        const int *fds, size_t n_fds, uint64_t deadline_ms,
                        ghostd_helper_t **ret, cairn_error_t *err);

/* SIGKILLs the helper's process group (it is reaped by the poll). */
void ghostd_helper_kill(ghostd_helper_t *j);

/* Line `index` of helper j's output (0 the first) as a JSON object, NULL
 * when there is no such line or it is not an object; index -1: the last
 * line that is one. The caller owns the result. */
json_t *ghostd_helper_line(const ghostd_helper_t *j, int index);

/* v's integer field key when it is positive, else 0 (absent, not an
 * integer, or not above 0). */
uint64_t ghostd_json_u64(json_t *v, const char *key);

/* The Status a finished helper's exit means (docs/ghost.md, the helpers'
 * contract): its code, and the message in buf. v is its JSON error line
 * or NULL. */
int ghostd_helper_error(const ghostd_helper_t *j, int status, json_t *v,
                        char *buf, size_t size);

/* The caller is a user the ownership rule holds (not root). */
bool ghostd_for_user(const cairn_caller_t *c);

/* Whose a live process is (s_process_owner: its uid when its four uids
 * agree, else root), and its gid; -ENOENT when it is gone. */
int ghostd_process_owner(uint32_t pid, uint32_t *ret_uid, uint32_t *ret_gid,
                         cairn_error_t *err);
/* Runs the helper of `kind` (argv[0] is filled in; argv[1..] its
 * arguments) with envp as its environment (NULL: ghostd's) for req, whose
 * reply it defers: the generic path (docs/ghost.md, the helpers'
 * contract) answers failures; a LAUNCH's success line goes to
 * ghostd_jobs_launched, and a LAUNCH that did not succeed to
 * ghostd_jobs_launch_failed when its slot is freed. job: the LAUNCH's job,
 * else NULL: once deferred, the job is the helper's (launched or
 * dropped there); on -errno it stays the caller's. CAIRN_REPLY_DEFERRED,
 * or -errno with err set (BUSY when every slot is taken; nothing runs). */
int ghostd_helper_request(ghostd_t *gd, cairn_request_t *req, ghostd_kind_t kind,
                           char *argv[], char *const envp[], struct ghostd_job *job,
                           const cairn_caller_t *caller, cairn_error_t *err);

/* Whether pid is a running helper's (jobs.c reaps every other child). */
bool ghostd_helper_running(const ghostd_t *gd, pid_t pid);

/* Counts one checkpoint, restore or migration ("checkpoint", "restore",
 * "migration") that ended with `result` ("ok", "failed") and its image's
 * bytes, in ghostd's metrics (docs/metrics.md). */
void ghostd_metrics_op(ghostd_t *gd, const char *op, const char *result,
                       uint64_t bytes);

/* Whether a LAUNCH helper runs now (its reaper may be our child any
 * moment, not yet known to the job table). */
bool ghostd_launch_running(const ghostd_t *gd);

#endif

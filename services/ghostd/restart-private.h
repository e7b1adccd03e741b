/* restart-private.h - what the three files of restart on failure share:
 * the three tables and the helpers they all use. restart.h is the
 * module's interface; nothing outside restart*.c includes this file.
 *
 *  - restart.c: the restarts (the scan of dead nodes' jobs, a restore
 *    from the replica here, a job marked lost, stale copies fenced) and
 *    the module's lifecycle;
 *  - restart-ckpt.c: the checkpoints of this node's jobs (the tick, the
 *    tracker, the transfer to the replica, replicas dropped elsewhere);
 *  - restart-replica.c: the replica's side (transfers coming in, drops).
 *
 * Ownership: restart_t (gd->restart) owns its view, peers, chunk buffer,
 * the checkpoint list and the in and restore slots; a checkpoint owns
 * its timer, tracker command pipe and open file (its helpers are
 * ghostd's); an in slot owns its .part file's fd.
 */
#ifndef GHOSTD_RESTART_PRIVATE_H
#define GHOSTD_RESTART_PRIVATE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <jansson.h>

#include "ghostd.h"
#include "peer.h"
#include "restart.h"
#include "util/cleanup.h"
#include "view.h"

CAIRN_DEFINE_CLEANUP(restart_json_decrefp, json_t *, json_decref);

#define RESTART_MAX_RESTORES 4     /* restores from replicas at once */
#define RESTART_MAX_CHAIN 64       /* files of a chain (the tracker compacts at 17) */
#define RESTART_FILE_MAX 32        /* "image.ghost.N" */

typedef char restart_name_t[RESTART_FILE_MAX];

typedef enum { CK_IDLE, CK_DUMPING, CK_SENDING } restart_ck_state_t;

/* A job of this node checkpointed every `every_s`. */
typedef struct restart_ckpt {
    struct restart *r;
    char gpid[GHOSTD_GPID_MAX];
    uint32_t every_s;
    int64_t timer;                /* the tick, repeating */
    restart_ck_state_t state;
    bool gone;                    /* the job ended: free once nothing is due */
    ghostd_helper_t *dump;        /* ghost-dump while it runs (full, untracked) */
    /* the tracker (incremental checkpoints): ghost-dump --serve-fd 3 */
    ghostd_helper_t *tracker;     /* NULL when none runs */
    int cmd_fd;                   /* its fd 3's other end, -1 none */
    bool untracked;               /* said once: no tracker slot, full dumps */
    bool moving;                  /* migrating away: no checkpoints */
    uint64_t began_ms;            /* unix ms the tick began */
    uint64_t began_mono;          /* monotonic ms, for the log */
    uint64_t frozen_us, image_bytes;
    bool full;                    /* this checkpoint's image is full */
    /* This checkpoint's chain (the tracker's answer), the full image
     * first; n_chain 0: a whole image.ghost (untracked). The files
     * chain[send_from ..] are sent, one transfer each. */
    restart_name_t chain[RESTART_MAX_CHAIN];
    size_t n_chain, send_from, send_at;
    /* What replica held_by holds for sure: held[0 .. n_held) */
    uint32_t held_by;
    restart_name_t held[RESTART_MAX_CHAIN];
    size_t n_held;
    bool resent;                  /* this checkpoint sends the whole chain again */
    int fail_code;                /* the replica's refusal */
    /* the transfer of one file */
    char id[128];
    int fd;                       /* the file, -1 closed */
    uint64_t size, off;           /* file bytes, bytes sent */
    uint64_t sent_bytes;          /* this checkpoint's, all files */
    uint64_t seq;                 /* next chunk */
    unsigned in_flight;           /* chunks unanswered */
    bool last_sent, failed;
    uint32_t replica, prev_replica; /* now, and the last whole one's */
    unsigned calls;               /* peer callbacks due */
    uint64_t done, failures;      /* checkpoints replicated, failed */
    struct restart_ckpt *next;
} restart_ckpt_t;

/* A replica coming in. */
typedef struct restart_in {
    bool used;
    char id[128];
    char gpid[GHOSTD_GPID_MAX];
    restart_name_t file;                /* image.ghost.N, "" a whole image.ghost */
    uint32_t from;
    int fd;                       /* <file>.part */
    uint64_t next_seq, written;
    uint64_t touched_ms;          /* monotonic */
} restart_in_t;

/* A restore from a replica under way. */
typedef struct restart_restore {
    struct restart *r;
    bool used;
    char gpid[GHOSTD_GPID_MAX];
    ghostd_helper_t *rst;
} restart_restore_t;

typedef struct restart {
    ghostd_t *gd;
    cairn_view_t *view;           /* the alive ghostds, quorum */
    cairn_peers_t *peers;         /* to them */
    restart_ckpt_t *ckpts;        /* this node's checkpointed jobs */
    unsigned trackers;            /* of them, with a tracker running */
    restart_in_t in[RESTART_MAX_IN];
    restart_restore_t restores[RESTART_MAX_RESTORES];
    int64_t scan_timer;
    unsigned scans;
    char ckpt_dir[3072];          /* <spool>/ckpt */
    char replica_dir[3072];       /* <spool>/replicas */
    uint8_t *buf;                 /* RESTART_CHUNK: one chunk's bytes */
} restart_t;

/* ---- restart.c ---- */

cairn_loop_t *restart_loop(const restart_t *r);
/* This node's id. */
uint32_t restart_self(const restart_t *r);
/* mkdir that logs a failure (but EEXIST) and goes on. */
void restart_mkdir(const char *path, mode_t mode);
/* Removes dir and the files restart*.c and a tracker make in it
 * (image.ghost, image.ghost.N, their .part, the symlink's temporary,
 * job.json). */
void restart_remove_dir(const char *dir);
/* name is image.ghost.N (N decimal, no sign, at most 19 digits). */
bool restart_file_name_ok(const char *name);

/* ---- restart-ckpt.c ---- */

/* Tells c's tracker to stop: the end of its fd 3 (it answers "stopped"
 * and exits). */
void restart_tracker_stop(restart_ckpt_t *c);
/* Closes the file c is sending, if open. */
void restart_ckpt_close(restart_ckpt_t *c);

/* ---- restart-replica.c ---- */

/* Drops a transfer coming in: its .part file removed, the slot freed. */
void restart_in_abandon(restart_t *r, restart_in_t *in);
/* The transfer under way for gpid, or NULL. */
restart_in_t *restart_in_find_gpid(restart_t *r, const char *gpid);

#endif

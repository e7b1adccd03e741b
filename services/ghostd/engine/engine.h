/* engine.h - the private umbrella of the ghost engine: the types that the
 * orchestrators (dump.c, restore.c) share with the files of each object
 * kind.
 *
 * The engine is cut by object kind, as CRIU's is: each kind keeps its dump
 * side and its restore side in one file with a small header of its own
 * (seize, mem, pages, files, pipes, shmem, signals, creds, threads, tree),
 * so a change to how a kind is saved sits next to how it comes back. dump.c
 * and restore.c only run the phases. Here is what more than one kind
 * needs to see: the frozen tree and the output of a dump, the loaded
 * image and the plan of a restore. Each kind's own state is its own
 * struct, owned by its file; the orchestrators hold them side by side.
 */
#ifndef GHOST_ENGINE_H
#define GHOST_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <sys/user.h>

#include "cairn/error.h"
#include "dump.h"
#include "ghost.pb-c.h"
#include "image.h"
#include "proc/proc.h"
#include "restorer/restorer.h"

/* ---- dump -------------------------------------------------------------- */

#define DUMP_SCRATCH 64   /* bytes of stack scratch for injected calls */

/* One thread of a seized process. */
typedef struct dump_thread {
    pid_t tid;
    pid_t vtid;                       /* its tid as the image names it: inside
                                         a job's pid namespace (ns.c) */
    bool seized;                      /* PTRACE_SEIZE succeeded */
    bool stopped;                     /* in a ptrace stop we caused */
    bool injected;                    /* ran an injected syscall */
    bool mask_set;                    /* sigmask replaced by all-blocked */
    bool scratch_saved;               /* scratch bytes saved */
    int stop_sig;                     /* its job-control stop, 0 if none */
    struct user_regs_struct regs;     /* as the interrupt found them */
    uint64_t sigmask;                 /* as the interrupt found it */
    uint64_t clear_tid;               /* its clear-tid word (threads.c) */
    uint64_t rseq;                    /* its rseq area, 0 if none */
    uint32_t rseq_len;
    uint64_t scratch;                 /* scratch address in the tracee */
    uint8_t scratch_orig[DUMP_SCRATCH]; /* its original bytes */
} dump_thread_t;

/* One process of the tree. */
typedef struct dump_proc {
    pid_t pid;
    pid_t parent;          /* parent inside the tree, 0 for the root */
    pid_t vpid, vpgid, vsid; /* pid, group and session as the image names
                              them: inside a job's pid namespace, 0 for
                              one led from outside it (ns.c) */
    dump_thread_t *t;      /* threads, leader first */
    size_t nt;
    uint64_t vdso_syscall; /* address of a `syscall` instruction, 0 if none */
    proc_vmas_t vm;        /* its vmas, as the frozen tree's check read them */
    int32_t session_keyring; /* its leader's session keyring serial, 0 until
                              its threads are collected (procstate.c) */
} dump_proc_t;

/* The tree being dumped, as seize.c froze it. */
typedef struct dump_tree {
    dump_proc_t *p;        /* processes, parents before children */
    size_t np;
} dump_tree_t;

/* The tree's namespaces, as the check found them (ns.c). */
typedef struct dump_ns {
    bool job;              /* the root is pid 1 of a pid namespace of its own
                              (one below the dumper's) with a mount namespace
                              of its own: every pid is written as inside */
    uint64_t pid_ns;       /* the root's pid namespace (inode) */
    uint64_t mnt_ns;       /* the root's mount namespace (inode) */
    uint64_t node_ns[7];   /* the dumper's (the node's) user, net, ipc, uts,
                              cgroup, time and time_for_children namespaces
                              (ns.c's s_node_ns order; 0: the kernel has none) */
} dump_ns_t;

/* Where the image goes (dump.c). */
typedef struct dump_out {
    ghost_writer_t *w;     /* the image stream */
    uint32_t page_size;
    uint64_t pages;        /* pages written so far (kept ones too) */
    uint64_t kept;         /* of them, kept_pages: a pre-copy round's copy */
    bool began;            /* the header was written */
    bool borrowed;         /* w is the caller's (pre-copy rounds wrote first) */
} dump_out_t;

/* The state of each concern, owned by its file (opaque elsewhere). */
typedef struct mem_seen mem_seen_t;       /* mem.c: vmas read before */
typedef struct pages_dump pages_dump_t;   /* pages.c: page ring, copies */
typedef struct files_dump files_dump_t;   /* files.c: fds and their files */
typedef struct pipes_dump pipes_dump_t;   /* pipes.c: pipes written */
typedef struct shmem_dump shmem_dump_t;   /* shmem.c: memfd objects */
struct track;                             /* track.h: pre-copy write tracking */

/* One dump: each concern's state, owned by its file, side by side. */
typedef struct dump_ctx {
    const ghost_dump_opts_t *opts;
    const mem_seen_t *seen; /* what the check before the freeze read */
    ghost_reasons_t *reasons; /* the frozen tree's check files its refusals
                               here (reasons.h) */
    dump_tree_t tree;      /* processes and threads, as frozen (seize.c) */
    dump_ns_t ns;          /* the tree's namespaces, as frozen (ns.c) */
    dump_out_t out;        /* the image (dump.c) */
    pages_dump_t *pages;   /* NULL until the image is begun */
    files_dump_t *files;
    pipes_dump_t *pipes;
    shmem_dump_t *shmem;
    struct inetsk_dump *inet; /* inetsk.c: connections in repair mode; NULL
                              until the first */
    struct track *track;   /* pre-copy: what the tree wrote since the last
                              round (not owned); NULL: stop-and-copy */
    struct lazy_src *lazy; /* post-copy: the lazy ranges listed (lazy.h);
                              NULL: every page is copied */
    uint64_t lazy_resident; /* post-copy: pages the tree held, about */
} dump_ctx_t;

/* Whether s ends with suf. */
static inline bool engine_has_suffix(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* ---- restore ----------------------------------------------------------- */

#define RST_PAGE 4096ull
#define RST_ALIGN(x, a) (((x) + (a) - 1) & ~((uint64_t)(a) - 1))
#define RST_TASK_SIZE 0x7ffffffff000ull
/* A run's off with this bit: its pages are in place at its vaddr, in our
 * own memory (restore-inplace.h), not in the staging fd. */
#define RST_PLACED (1ull << 63)

typedef Cairn__Ghost__Record rst_rec_t;

/* A growable array of record pointers (owned). */
typedef struct rst_recs {
    rst_rec_t **v;         /* records */
    size_t n, cap;         /* used, allocated */
} rst_recs_t;

/* One process of the image: its records and where its pages are. */
typedef struct rst_proc {
    rst_rec_t *process;    /* Record{process} */
    rst_recs_t threads, vmas, fds;
    struct gr_run *runs;   /* page data in the staging memfd, by vaddr */
    size_t n_runs, cap_runs;
    struct gr_run *lazy;   /* post-copy: lazy pages, ascending (off unused) */
    size_t n_lazy, cap_lazy;
    int parent;            /* index of the parent process, -1 for the root */
} rst_proc_t;

/* Object pages of one memfd, staged: [offset, offset + len) of object
 * shmid is at staging offset off. */
typedef struct rst_objrun {
    uint64_t shmid, offset, len, off;
} rst_objrun_t;

/* The image as loaded: records, page runs and the staging memfd. */
typedef struct rst_image {
    rst_rec_t *header;     /* Record{header} */
    rst_rec_t *end;        /* Record{end} */
    rst_proc_t *procs;     /* in image order: parents before children */
    size_t n_procs;        /* processes read so far */
    rst_recs_t ghost_files;   /* Record{ghost_file}: unlinked files' bytes
                                 (ghostfile.c) */
    int staging_fd;        /* memfd holding every page, or the image file */
    uint64_t staging_len;  /* bytes used in it (memfd only) */
    bool direct;           /* staging_fd is the image file: raw bytes at
                              their file offsets */
    bool check_only;       /* ghost_restore_check: raw bytes skipped,
                              never staged */
    uint64_t pages;        /* pages read (object pages included) */
    uint64_t bytes;        /* stream bytes consumed */
    rst_objrun_t *objruns; /* object pages of memfds, in stream order */
    size_t n_objruns, cap_objruns;
    struct pages_rounds *rounds;  /* pages.c: pre-copy copies, NULL if none */
    uint32_t n_rounds;     /* pre-copy round records read */
    uint64_t lazy_pages;   /* post-copy: pages listed lazy (in pages too) */
    bool chain;            /* a delta's parents were loaded (chain.c): their
                              pages are in rounds, the staging is a memfd */
    uint32_t chain_len;    /* images in the chain, the delta itself included */
    struct inplace *inplace;  /* restore-inplace.c: pages read into place,
                                 NULL when they are all staged */
} rst_image_t;

typedef struct rst_tree rst_tree_t;

/* The plan of one process: its region and what lives in it. */
typedef struct rst_plan {
    rst_tree_t *tree;      /* the whole restore (helper fds, pipes...) */
    uint8_t *region;       /* the mapped region */
    uint64_t region_len;
    uint64_t used;         /* bump allocator over the region */
    struct gr_args *args;
    uint64_t xcr0;         /* features the sigframe xsave restores */
    uint32_t xsave_max;    /* this CPU's xsave size for xcr0 */
    uint32_t xsave_user;   /* the size a sigframe may restore: xcr0's
                              features but the dynamic ones (AMX tile
                              data), which a process has only on request */
    uint64_t xdynamic;     /* those dynamic features (XFD) */
    uint64_t leader_mask;  /* the leader's target sigmask */
} rst_plan_t;

/* The whole restore: one plan per process and what they share. Every
 * helper fd (files of vmas, memfds, pipes, the exe, the staging memfd,
 * the control pipes) is above every fd of every process of the image,
 * opened here before anything is made, and inherited down the tree. */
struct rst_tree {
    rst_image_t *im;       /* the image */
    rst_plan_t *plans;     /* [n_procs] */
    struct tree_job *jobs; /* tree.c: session and group, [n_procs] */
    int *helpers;          /* every helper fd, ascending after planning */
    size_t n_helpers, cap_helpers;
    int base_fd;           /* lowest helper fd */
    struct pipes_rst *pipes;   /* pipes.c: one pipe per pipe_id */
    struct shmem_rst *shm;     /* shmem.c: one memfd per shared object */
    struct files_rst *files;   /* files.c: shared open file descriptions */
    struct ghostfile_rst *ghosts; /* ghostfile.c: one helper per unlinked file */
    struct tty_rst *tty;       /* tty.c: one master per pty of the image */
    struct unixsk_rst *unixsk; /* unixsk.c: one socket per inode */
    int32_t *pids;         /* MAP_SHARED: restored pid of every process, as
                              it sees itself (inside the job for a job) */
    int32_t *host_pids;    /* the same on the node, as the tracer sees them
                              (ns.c; NULL until known: the same as pids
                              unless job) */
    bool job;              /* a job image: a fresh pid and mount namespace */
    pid_t caller_pgrp;     /* our process group (for "outside" groups) */
    bool new_pid;          /* --new-pid */
    bool pread_pages;      /* ghost_restore_opts_t.pread_pages */
    bool for_user;         /* a user's image (ghost_restore_opts_t.owner):
                              what the kernel grants on a capability the
                              restorer keeps but the user lacks is made
                              without it (fanotify.c) */
    int staging_fd;        /* helper: the staging memfd */
    int status_r, status_w;   /* status pipe: failures of any process */
    int go_r, go_w;           /* the root waits on go_r until seized */
    int ready_r, ready_w;     /* each process: one byte after phase 1 */
    int sync_r, sync_w;       /* then one byte each: all exist, go on */
    struct lazy_srv *lazy;    /* post-copy: the page server (lazysrv.c),
                                 NULL otherwise */
    int lazy_sock;            /* helper: its socket, for the processes */
    uint64_t synced_us;       /* when every process passed the barrier */
    uint64_t held_us;         /* when every thread was held */
    struct ghost_verify *verify; /* the verifier's findings (verify.h);
                                    NULL: --no-verify */
    uint64_t verify_us;       /* the verifier's time */
};

/* -EBADMSG, INVALID_ARGUMENT: "bad image: what (at byte at)". */
int rst_bad(cairn_error_t *err, const char *what, uint64_t at);

/* len bytes aligned to align in pl's region (bump allocator); NULL when
 * the region is full. */
void *rst_alloc(rst_plan_t *pl, size_t len, size_t align);

/* Moves fd above every image fd and files it as a helper of t (fd is
 * closed, even on failure): the helper fd, or -errno. */
int rst_helper(rst_tree_t *t, int fd, cairn_error_t *err);

/* Files rec (owned from then on) in r: 0 or -ENOMEM. */
int rst_recs_add(rst_recs_t *r, rst_rec_t *rec);

/* Frees every record, run and the staging fd; im is empty afterwards. */
void rst_image_free(rst_image_t *im);

/* base_fd above every fd of every process; the control pipes; the pid
 * table every process writes its restored pid into. */
int rst_tree_ctl(rst_tree_t *t, cairn_error_t *err);

/* Helper fds the tree will hold at most: for the close lists. */
size_t rst_helpers_bound(const rst_image_t *im);
/* Fd records of every process of the image: bounds the tree's tables. */
size_t rst_n_fds(const rst_image_t *im);

/* Unmaps the regions, closes every helper and control fd, frees every
 * kind's state; t is empty afterwards. */
void rst_tree_free(rst_tree_t *t);

/* Reports a failure of a child's libc stage on the status pipe and exits. */
void rst_child_fail(const rst_plan_t *pl, int e, int fd, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 4, 5)));

#endif

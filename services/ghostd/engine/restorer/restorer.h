/* restorer.h - the argument block between ghost-restore and its libc-free
 * restorer blob (x86_64).
 *
 * Design: ghost-restore (normal C) decides everything it can before the
 * jump: it maps one anonymous "region" at an address free in the target
 * layout and writes into it the blob's code, this argument block (with all
 * arrays it points to, absolute pointers: the region never moves), one
 * crafted rt_sigframe per thread (ucontext + 64-byte aligned xsave area),
 * the blob's stacks and a scratch window for moving [vvar]/[vdso]. The blob
 * only has to execute: unmap everything outside `keep`, move the vdso, map
 * every target vma, pread the pages from the staging memfd, set the mm
 * layout, per-thread kernel state and timers, stop itself with SIGSTOP so
 * ghost-restore (its ptrace tracer) knows it is about to jump back, and
 * rt_sigreturn. ghost-restore then unmaps the region through the gadget at
 * GR_GADGET_OFFSET (a `syscall` instruction) and detaches.
 *
 * This header is included by freestanding code: fixed-width types only.
 */
#ifndef GHOST_RESTORER_H
#define GHOST_RESTORER_H

#include <stdint.h>

#define GR_ARGS_MAGIC 0x43524e52455354ull   /* "CRNREST" */
#define GR_GADGET_OFFSET 8                   /* `syscall; ud2` in the blob */
#define GR_MAX_KEEP 8                        /* vdso/vvar pieces to move */
#define GR_STACK_SIZE (64 * 1024)            /* per blob thread */

/* What the blob was doing when it failed (gr_status.stage). */
enum gr_stage {
    GR_STAGE_OK = 0,
    GR_STAGE_CHILD,        /* libc stage in the child (message set) */
    GR_STAGE_UNMAP,        /* munmap of the old address space */
    GR_STAGE_VDSO,         /* mremap of vdso/vvar (arg: index) */
    GR_STAGE_MMAP,         /* mmap of a target vma (arg: vma start) */
    GR_STAGE_PAGES,        /* pread of pages (arg: vaddr) */
    GR_STAGE_MPROTECT,     /* final protection (arg: vma start) */
    GR_STAGE_MM_MAP,       /* prctl(PR_SET_MM_MAP) */
    GR_STAGE_RLIMIT,       /* prlimit64 (arg: resource) */
    GR_STAGE_THREAD,       /* per-thread kernel state (arg: tid) */
    GR_STAGE_CLONE,        /* clone3 of a thread (arg: tid) */
    GR_STAGE_SIGQUEUE,     /* re-queue of a pending signal (arg: signo) */
    GR_STAGE_ITIMER,       /* setitimer (arg: which) */
    GR_STAGE_SIGRETURN,    /* rt_sigreturn returned (arg: tid) */
    GR_STAGE_CREDS,        /* credentials (arg: step << 32 | tid) */
    GR_STAGE_SECCOMP,      /* a seccomp filter (arg: index << 32 | tid) */
    GR_STAGE_UFFD,         /* registering a lazy vma (arg: vma start) */
    GR_STAGE_LOCK,         /* a POSIX file lock (arg: fd << 32 | index) */
    GR_STAGE_VMA_FLAGS,    /* madvise, mlock, mseal or the anon name of a
                              vma (arg: vma start) */
    GR_STAGE_TSTATE,       /* a thread's settings (arg: step << 32 | tid;
                              step 13: the process's MDWE, by the leader) */
    GR_STAGE_TIMER,        /* a POSIX timer (arg: step << 32 | timer id) */
};

/* gr_vma.flags: the state of a vma beyond its mapping, put back once its
 * pages are in (madvise, mlock2, mseal, PR_SET_VMA_ANON_NAME). */
#define GR_VMA_DONTDUMP    (1u << 0)   /* MADV_DONTDUMP */
#define GR_VMA_DONTFORK    (1u << 1)   /* MADV_DONTFORK */
#define GR_VMA_WIPEONFORK  (1u << 2)   /* MADV_WIPEONFORK */
#define GR_VMA_HUGEPAGE    (1u << 3)   /* MADV_HUGEPAGE */
#define GR_VMA_NOHUGEPAGE  (1u << 4)   /* MADV_NOHUGEPAGE */
#define GR_VMA_MERGEABLE   (1u << 5)   /* MADV_MERGEABLE */
#define GR_VMA_SEQUENTIAL  (1u << 6)   /* MADV_SEQUENTIAL */
#define GR_VMA_RANDOM      (1u << 7)   /* MADV_RANDOM */
#define GR_VMA_LOCK        (1u << 8)   /* mlock2 */
#define GR_VMA_LOCKONFAULT (1u << 9)   /* mlock2(MLOCK_ONFAULT) */
#define GR_VMA_SEAL        (1u << 10)  /* mseal */

/* One record on the status pipe: written by the child or the blob when a
 * step fails, just before it exits. */
struct gr_status {
    int32_t stage;         /* enum gr_stage */
    int32_t err;           /* positive errno */
    uint64_t arg;          /* stage-specific detail, see enum gr_stage */
    int32_t pid;           /* the failing process (its pid now) */
    int32_t pad;
    char msg[240];         /* NUL-terminated, from the child stage only */
};

struct gr_range {
    uint64_t start;        /* page aligned */
    uint64_t end;          /* exclusive */
};

/* A target vma as the blob maps it. */
struct gr_vma {
    uint64_t start;        /* address, page aligned */
    uint64_t end;          /* exclusive */
    uint64_t pgoff;        /* file offset in bytes */
    int32_t fd;            /* file / memfd to map, -1 for anonymous */
    uint32_t prot;         /* final PROT_* */
    uint32_t map_prot;     /* PROT_* while pages are copied in */
    uint32_t map_flags;    /* MAP_PRIVATE/SHARED | MAP_ANONYMOUS | MAP_GROWSDOWN */
    uint32_t lazy;         /* 1: holds post-copy pages: registered with the
                              process's userfaultfd (gr_args.uffd_fd) */
    uint32_t placed;       /* 1: inherited mapped read-write with its pages
                              in place (restore-inplace.h): kept, not mapped
                              again; only its protection is set */
    uint32_t flags;        /* GR_VMA_*: 0 for a plain vma (no syscall) */
    uint32_t pad;
    uint64_t anon_name;    /* "[anon:NAME]": NAME, in the region; 0: none */
};

/* Page data of [vaddr, vaddr + len) at `off` in the staging memfd. */
struct gr_run {
    uint64_t vaddr;
    uint64_t len;
    uint64_t off;
};

/* A special mapping to move: [from, from + len) -> to (two-phase, through
 * the scratch window, so overlapping old and new places never collide). */
struct gr_move {
    uint64_t from;
    uint64_t to;
    uint64_t len;
};

struct gr_rlimit {
    uint32_t resource;     /* RLIMIT_* */
    uint32_t pad;
    uint64_t cur;
    uint64_t max;
};

/* A pending signal to queue again just before rt_sigreturn. */
struct gr_sigq {
    int32_t signo;
    int32_t thread;        /* 0: process-wide (rt_sigqueueinfo); else 1 +
                              the index in gr_args.threads (its tid is only
                              known after clone3 with a new pid) */
    uint8_t info[128];     /* siginfo_t as dumped */
};

struct gr_itimer {
    int32_t which;         /* ITIMER_* */
    int32_t pad;
    int64_t interval_sec, interval_usec;
    int64_t value_sec, value_usec;
};

/* The kernel's struct prctl_mm_map. */
struct gr_mm_map {
    uint64_t start_code, end_code, start_data, end_data;
    uint64_t start_brk, brk, start_stack;
    uint64_t arg_start, arg_end, env_start, env_end;
    uint64_t auxv;         /* pointer into the region */
    uint32_t auxv_size;
    uint32_t exe_fd;
};

/* The kernel's struct sched_attr (SCHED_ATTR_SIZE_VER0). */
struct gr_sched_attr {
    uint32_t size, policy;
    uint64_t flags;
    int32_t nice;
    uint32_t priority;
    uint64_t runtime, deadline, period;
};

/* A thread's settings outside registers and signals (procstate.c), set
 * by the thread itself before its seccomp filters and credentials. */
struct gr_tstate {
    uint32_t has;          /* 0: an image without them: nothing is set */
    uint32_t affinity_len; /* bytes at affinity, 0: left as inherited */
    char comm[16];         /* PR_SET_NAME */
    uint64_t timer_slack;  /* PR_SET_TIMERSLACK, 0: left */
    struct gr_sched_attr sched;   /* sched_setattr */
    uint64_t affinity;     /* the cpu mask, in the region */
    int32_t ioprio;        /* ioprio_set, 0: left */
    int32_t pdeathsig;     /* PR_SET_PDEATHSIG, 0: none */
    int32_t mce_kill;      /* PR_MCE_KILL_SET, -1: the default */
    int32_t tsc;           /* PR_SET_TSC, 0: left */
    int32_t io_flusher;    /* PR_SET_IO_FLUSHER 1, 0: left */
    int32_t spec_ssb;      /* PR_SET_SPECULATION_CTRL, 0: left */
    int32_t spec_ib;
    int32_t pad;
};

/* A POSIX timer to make again with its id (procstate.c). */
struct gr_timer {
    int32_t id;            /* the timer_t the program holds */
    int32_t clock;
    int32_t notify;        /* sigev_notify */
    int32_t signo;
    uint64_t value;        /* sigev_value */
    int32_t thread;        /* SIGEV_THREAD_ID: 1 + index in gr_args.threads */
    int32_t pad;
    int64_t interval_sec, interval_nsec;
    int64_t value_sec, value_nsec;   /* 0, 0: disarmed */
};

/* Per-thread state the blob sets before the thread's rt_sigreturn. */
struct gr_thread {
    int32_t tid;           /* set_tid for clone3; 0 = any (new pid); the
                              blob stores the actual tid here */
    int32_t leader;        /* 1 for the thread group leader */
    uint64_t fs_base, gs_base;
    uint64_t clear_tid;    /* set_tid_address */
    uint64_t robust, robust_len;
    uint64_t rseq, rseq_len, rseq_sig;   /* rseq == 0: none */
    uint64_t frame;        /* the rt_sigframe: pretcode, then ucontext */
    uint64_t stack_top;    /* blob stack for this thread, 16-aligned */
    int32_t done;          /* futex: 1 once the thread's state is set */
    int32_t old_tid;       /* the tid at the dump */
    uint32_t fix_tid;      /* 1: the int32 at clear_tid holding old_tid is
                              the thread library's cached tid: set it to the
                              new one (a new pid; clear_tid in writable
                              memory) */
    uint32_t pad;
    struct gr_tstate st;   /* its settings (procstate.c) */
};

/* Who every thread becomes before it enters the program. */
struct gr_creds {
    uint32_t has;          /* 0: keep the restorer's (an image without them) */
    uint32_t uid[4], gid[4];   /* real, effective, saved, fs */
    uint32_t n_groups;
    uint32_t securebits;
    uint32_t no_new_privs;
    uint32_t dumpable;     /* 0 or 1 are set; anything else is left */
    uint32_t cap_last;     /* /proc/sys/kernel/cap_last_cap */
    uint64_t cap_inh, cap_prm, cap_eff, cap_bnd, cap_amb;
    uint32_t *groups;
};

/* A seccomp filter every thread installs (classic BPF). */
struct gr_seccomp {
    uint64_t prog;         /* struct sock_filter[len], in the region */
    uint32_t len;          /* instructions */
    uint32_t flags;        /* SECCOMP_FILTER_FLAG_* */
};

/* A POSIX file lock the blob takes after it closed the helpers (which
 * would drop it: locks.c). type..len are struct flock's layout, so the
 * blob passes &type to fcntl(F_SETLK). */
struct gr_lock {
    int32_t fd;
    int32_t pad;
    int16_t type;          /* F_RDLCK / F_WRLCK */
    int16_t whence;        /* SEEK_SET */
    int32_t pad2;
    int64_t start, len;    /* len 0: to the end of the file */
    int32_t pid;           /* unused (l_pid) */
    int32_t pad3;
};

/* The argument block. Every pointer points into the region. */
struct gr_args {
    uint64_t magic;                 /* GR_ARGS_MAGIC */
    uint64_t unmap_end;             /* unmap [0, unmap_end) minus keep[] */
    struct gr_range *keep;          /* sorted: the region, vdso/vvar pieces,
                                       the placed vmas */
    uint32_t n_keep;
    uint32_t n_moves;
    struct gr_move moves[GR_MAX_KEEP];
    uint64_t scratch;               /* start of the vdso scratch window */
    uint32_t drop_specials;         /* 1: the target had no vdso: unmap ours */
    int32_t staging_fd;             /* memfd with the page data */
    int32_t status_fd;              /* write end of the status pipe */
    uint32_t n_vmas, n_runs, n_rlimits, n_sigq, n_itimers, n_close;
    uint32_t n_threads;
    uint32_t has_mm;
    struct gr_vma *vmas;
    struct gr_run *runs;
    struct gr_rlimit *rlimits;
    struct gr_sigq *sigq;
    struct gr_itimer *itimers;
    int32_t *close_fds;             /* helper fds to close before the jump */
    struct gr_thread *threads;      /* [0] is the leader */
    struct gr_mm_map mm;
    int32_t pid;                    /* tgid after restore (for sigqueue) */
    int32_t threads_left;           /* futex: non-leaders not yet done */
    struct gr_creds creds;
    uint32_t n_seccomp;             /* filters, oldest first */
    uint32_t pad2;
    struct gr_seccomp *seccomp;
    uint64_t copy_stack_top;        /* the page copy's helper thread's stack;
                                       0: the leader copies alone */
    uint64_t copy_next;             /* next chunk of the page runs to copy */
    int32_t copy_busy;              /* futex: 1 while the helper runs (the
                                       kernel clears it at the helper's exit) */
    int32_t pad3;
    uint64_t copy_buf[2];           /* GR_COPY_BUF bytes each, in the region:
                                       pages pass through here on their way
                                       in ([0] the leader's, [1] the helper's) */
    uint32_t copy_pread;            /* set once process_vm_writev is refused:
                                       pread straight into place from then on */
    uint32_t pad4;
    /* Post-copy (lazy.h): the process's userfaultfd, made in its libc
     * stage (-1: none), with which the blob registers every lazy vma once
     * the other pages are in, before anything could touch them; then it
     * says so on lazy_sock (uint32 lazy_index | GR_LAZY_READY: the page
     * server may fill them from then on) and closes the userfaultfd. */
    int32_t uffd_fd;
    int32_t lazy_sock;              /* the page server's socket (a helper) */
    uint32_t lazy_index;            /* this process's index in the image */
    uint32_t pad5;
    /* issue 16, files: POSIX locks, taken after the helpers are closed */
    uint32_t n_locks;
    uint32_t pad6;
    struct gr_lock *locks;
    uint32_t n_timers;              /* POSIX timers, made by the leader once
                                       every thread exists (procstate.c) */
    uint32_t mdwe;                  /* PR_SET_MDWE once the vmas have their
                                       protections, 0: none (procstate.c) */
    struct gr_timer *timers;
};

/* The blob's word on gr_args.lazy_sock: its lazy vmas are registered. */
#define GR_LAZY_READY 0x80000000u

/* The page runs are copied in chunks of this size, taken in turn by the
 * leader and (copy_stack_top) one helper thread. */
#define GR_COPY_CHUNK (4ull << 20)

/* Each copying thread reads the staging fd into its own buffer of this
 * size and writes it into place with process_vm_writev (restorer.c). */
#define GR_COPY_BUF (1ull << 20)

#endif

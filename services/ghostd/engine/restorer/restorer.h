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
#define GR_MAX_KEEP 8                        /* region + vdso/vvar pieces */
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
};

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
    uint32_t pad;
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

/* The argument block. Every pointer points into the region. */
struct gr_args {
    uint64_t magic;                 /* GR_ARGS_MAGIC */
    uint64_t unmap_end;             /* unmap [0, unmap_end) minus keep[] */
    struct gr_range keep[GR_MAX_KEEP];
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

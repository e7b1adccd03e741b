/* proc/proc.h - readers of /proc/PID: the engine, ghostd, probed and the
 * schedulers link this library alone, without the checkpoint engine.
 *
 * Each reader parses one /proc file into a plain struct the caller owns;
 * none keeps state between calls, so the restore side can use them on its
 * own address space (pid 0 means "self"). All return 0 or -errno with a
 * cairn_error_t saying which file and why; ret_ outputs are untouched on
 * failure.
 */
#ifndef CAIRN_PROC_H
#define CAIRN_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cairn/error.h"

/* smaps VmFlags the engine cares about (a subset, as bits). */
#define PROC_VMF_GROWSDOWN (1u << 0)   /* gd */
#define PROC_VMF_IO        (1u << 1)   /* io: VM_IO */
#define PROC_VMF_PFNMAP    (1u << 2)   /* pf: VM_PFNMAP */
#define PROC_VMF_DONTDUMP  (1u << 3)   /* dd */
#define PROC_VMF_SHARED    (1u << 4)   /* sh */
#define PROC_VMF_NORESERVE (1u << 5)   /* nr: MAP_NORESERVE, not accounted */
/* What madvise/mlock/mmap set and a restore puts back (ghost images keep
 * these bits: never renumber them). */
#define PROC_VMF_DONTCOPY  (1u << 6)   /* dc: MADV_DONTFORK */
#define PROC_VMF_WIPEONFORK (1u << 7)  /* wf: MADV_WIPEONFORK */
#define PROC_VMF_HUGEPAGE  (1u << 8)   /* hg: MADV_HUGEPAGE */
#define PROC_VMF_NOHUGEPAGE (1u << 9)  /* nh: MADV_NOHUGEPAGE */
#define PROC_VMF_MERGEABLE (1u << 10)  /* mg: MADV_MERGEABLE (KSM) */
#define PROC_VMF_LOCKED    (1u << 11)  /* lo: mlock, MAP_LOCKED */
#define PROC_VMF_LOCKONFAULT (1u << 12) /* lf: mlock2(MLOCK_ONFAULT) */
#define PROC_VMF_DROPPABLE (1u << 13)  /* dp: MAP_DROPPABLE */
#define PROC_VMF_SEQREAD   (1u << 14)  /* sr: MADV_SEQUENTIAL */
#define PROC_VMF_RANDREAD  (1u << 15)  /* rr: MADV_RANDOM */
#define PROC_VMF_SEALED    (1u << 16)  /* sl: mseal */
/* What the mapping may take (mprotect): the access its file was opened
 * with, for a shared file mapping. */
#define PROC_VMF_MAYREAD   (1u << 17)  /* mr */
#define PROC_VMF_MAYWRITE  (1u << 18)  /* mw */
#define PROC_VMF_MAYEXEC   (1u << 19)  /* me */
/* What the engine cannot put back (mem.c refuses each, by name). */
#define PROC_VMF_HUGETLB   (1u << 20)  /* ht: hugetlbfs */
#define PROC_VMF_SHADOWSTK (1u << 22)  /* ss: shadow stack */
#define PROC_VMF_PKEY      (1u << 23)  /* ProtectionKey: a key other than 0 */
#define PROC_VMF_UNKNOWN   (1u << 24)  /* a flag not in the table below */
#define PROC_VMF_MAYBE_GUARD (1u << 25) /* gu: MADV_GUARD_INSTALL was used here */
#define PROC_VMF_ACCOUNT   (1u << 26)  /* ac: commit-accounted (was writable private) */
#define PROC_VMF_HAVE      (1u << 31)  /* the VmFlags line was present */

/* One line of /proc/PID/maps (plus VmFlags when read from smaps). */
typedef struct proc_vma {
    uint64_t start;        /* first byte */
    uint64_t end;          /* one past the last byte */
    uint32_t prot;         /* PROT_READ | PROT_WRITE | PROT_EXEC */
    bool shared;           /* 's' (MAP_SHARED) rather than 'p' */
    uint64_t pgoff;        /* file offset in bytes */
    uint64_t dev;          /* makedev(major, minor) */
    uint64_t ino;          /* inode, 0 for anonymous */
    char path[512];        /* path or [name], "" for anonymous */
    uint32_t vmflags;      /* PROC_VMF_*, 0 unless read from smaps */
    char vmflags_text[128]; /* the VmFlags line as is ("rd wr mr mw me ac"),
                               "" unless read from smaps */
    char unknown_flag[4];  /* PROC_VMF_UNKNOWN: the first such flag's name */
} proc_vma_t;

/* A list of vmas; free with proc_vmas_free. */
typedef struct proc_vmas {
    proc_vma_t *v;         /* array, ascending addresses */
    size_t n;              /* entries */
} proc_vmas_t;

/* The fields of /proc/PID/stat the engine uses. */
typedef struct proc_stat {
    char state;            /* R S D T t Z X I ... */
    pid_t ppid, pgid, sid;
    uint32_t tty_nr;       /* controlling terminal (its encoding in stat:
                              minor's low byte, major, minor's rest), 0 */
    pid_t tpgid;           /* that terminal's foreground group, -1 */
    unsigned long flags;   /* PF_* (PF_KTHREAD = 0x00200000) */
    int exit_signal;       /* field 38: the signal its parent gets at its
                              exit (SIGCHLD for a fork) */
    uint64_t start_code, end_code, start_stack;     /* fields 26-28 */
    uint64_t start_data, end_data, start_brk;       /* fields 45-47 */
    uint64_t arg_start, arg_end, env_start, env_end; /* fields 48-51 */
    char comm[64];         /* between the parentheses */
} proc_stat_t;

/* The fields of /proc/PID/status the engine uses. */
typedef struct proc_status {
    pid_t tgid;            /* Tgid: the process a thread id belongs to */
    pid_t tracer_pid;      /* TracerPid */
    uint32_t umask;        /* Umask (0 if the line is missing) */
    bool has_umask;        /* the Umask line was present */
    int threads;           /* Threads */
    uint64_t sig_ign;      /* SigIgn: signals ignored (bit N-1: signal N) */
    uint64_t sig_cgt;      /* SigCgt: signals with a handler */
    bool has_sig;          /* both lines were present */
} proc_status_t;

/* Credentials from /proc/PID/status (PID may be a thread id). */
typedef struct proc_creds {
    uint32_t uid[4], gid[4];   /* real, effective, saved, fs */
    uint32_t *groups;          /* supplementary, malloc'ed: proc_creds_free */
    size_t n_groups;
    uint64_t cap_inh, cap_prm, cap_eff, cap_bnd, cap_amb;
    bool no_new_privs;
    int seccomp;               /* Seccomp: 0 none, 1 strict, 2 filter */
} proc_creds_t;

/* The fields of /proc/PID/fdinfo/N the engine uses. */
typedef struct proc_fdinfo {
    int64_t pos;           /* pos */
    int32_t flags;         /* flags (octal in the file), O_CLOEXEC included */
    uint64_t ino;          /* ino, 0 if absent */
} proc_fdinfo_t;

/* Reads /proc/PID/maps (with_flags: /proc/PID/smaps, also filling
 * vmflags). pid 0 reads /proc/self. Caller frees with proc_vmas_free. */
int proc_read_vmas(pid_t pid, bool with_flags, proc_vmas_t *ret, cairn_error_t *err);
void proc_vmas_free(proc_vmas_t *v);
/* Parses one maps line into *ret; -EINVAL if it is not one. */
int proc_parse_maps_line(const char *line, proc_vma_t *ret);

int proc_read_stat(pid_t pid, proc_stat_t *ret, cairn_error_t *err);
/* Whether a task in this state (proc_stat_t.state) has exited and only
 * waits to be reaped: a zombie, or dead. */
bool proc_state_exited(char state);
/* Whether sig stops a process by default (job control: the stop that
 * /proc shows as state T). */
bool proc_stop_signal(int sig);
/* With creds (may be NULL), also the credentials from the same read; the
 * caller frees them with proc_creds_free. -EBADMSG if a line is missing. */
int proc_read_status(pid_t pid, proc_status_t *ret, proc_creds_t *creds,
                     cairn_error_t *err);
int proc_read_fdinfo(pid_t pid, int fd, proc_fdinfo_t *ret, cairn_error_t *err);
/* The same from fdinfo text already read (proc_read_fdinfo_text):
 * 0, or -EBADMSG if it lacks pos or flags (*ret untouched). */
int proc_parse_fdinfo(const char *text, proc_fdinfo_t *ret);
/* The whole text of /proc/PID/fdinfo/FD (caller frees), for the lines of
 * one kind of fd. */
int proc_read_fdinfo_text(pid_t pid, int fd, char **ret, cairn_error_t *err);
/* The value after "Key:" at the start of a line of a /proc text (status,
 * fdinfo), or NULL; text may point just past an earlier match, to find
 * the next line with the same key. */
const char *proc_field(const char *text, const char *key);
/* How many lines of text start with "Key:" (fdinfo's "tfd", "lock",
 * "inotify wd", ... one line each). */
size_t proc_field_count(const char *text, const char *key);
/* "/proc/PID/NAME", or "/proc/self/NAME" for pid 0, into buf. */
void proc_path(char *buf, size_t size, pid_t pid, const char *name);
/* /proc/PID/limits: soft and hard value of each of the n resources
 * (RLIMIT_CPU = 0 ...), RLIM_INFINITY for "unlimited". One read, no
 * capability needed (prlimit(2) on another user's process needs
 * CAP_SYS_RESOURCE); -EBADMSG if fewer than n lines parse. */
int proc_read_limits(pid_t pid, uint64_t (*ret)[2], size_t n, cairn_error_t *err);

void proc_creds_free(proc_creds_t *c);
/* Same ids, groups (in order), capability sets and no_new_privs. */
bool proc_creds_equal(const proc_creds_t *a, const proc_creds_t *b);

/* /proc/PID/personality (hex). */
int proc_read_personality(pid_t pid, uint32_t *ret, cairn_error_t *err);

/* Whole small file (auxv, comm, ...) into a malloc'ed buffer the caller
 * frees; *ret_len bytes, NUL-terminated for convenience. */
int proc_read_file(pid_t pid, const char *name, char **ret, size_t *ret_len,
                   cairn_error_t *err);

/* readlink of /proc/PID/NAME (e.g. "cwd", "exe", "fd/3") into buf. */
int proc_readlink(pid_t pid, const char *name, char *buf, size_t size,
                  cairn_error_t *err);

/* Sorted list of numbers in a /proc directory: "task" (tids) or "fd".
 * Caller frees *ret. */
int proc_list_dir(pid_t pid, const char *dir, int **ret, size_t *ret_n,
                  cairn_error_t *err);

/* Children of every thread of pid (/proc/PID/task/T/children), sorted,
 * duplicates removed. Caller frees *ret. */
int proc_list_children(pid_t pid, pid_t **ret, size_t *ret_n, cairn_error_t *err);

/* Reads [addr, addr+len) of pid into dst: process_vm_readv when readable,
 * then /proc/PID/mem (mem_fd, the caller's) for what that could not read
 * (PROT_NONE, ...). Returns the bytes read from addr on, a multiple of 4096:
 * short where a page cannot be read at all. Safe from several threads. */
size_t proc_read_mem(pid_t pid, int mem_fd, bool readable, uint64_t addr, void *dst,
                     size_t len);

#endif

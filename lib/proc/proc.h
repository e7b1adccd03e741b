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
    unsigned long flags;   /* PF_* (PF_KTHREAD = 0x00200000) */
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
/* The whole text of /proc/PID/fdinfo/FD (caller frees), for the lines of
 * one kind of fd. */
int proc_read_fdinfo_text(pid_t pid, int fd, char **ret, cairn_error_t *err);
/* The value after "Key:" at the start of a line of a /proc text (status,
 * fdinfo), or NULL; text may point just past an earlier match, to find
 * the next line with the same key. */
const char *proc_field(const char *text, const char *key);
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

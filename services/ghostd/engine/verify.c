/* verify.c - the restore's verifier (verify.h): each restored process's
 * /proc view against what its image recorded, while every thread is held.
 *
 * One check per area (s_checks): the memory map, the fds, the status
 * lines of every thread (credentials, capabilities, NoNewPrivs, Seccomp,
 * SigBlk; SigIgn, SigCgt, Umask, THP_enabled of the process), the rest of
 * the process (rlimits, personality, cwd, comm, oom_score_adj, POSIX
 * timers). Each kind of difference is a piece of s_pieces, the one table
 * that says whether it is fatal or cosmetic and why (docs/ghost.md,
 * "Inventory"): a helper that lands the restore of a piece, or finds one
 * harmless, changes one row.
 *
 * Cost: it runs inside a migration's freeze. Every /proc file is read
 * once: status per thread, maps (or smaps) once per process, fdinfo once
 * per fd. smaps walks the page tables (about 12 ms a GiB), so it is read
 * only where VmFlags tell what maps cannot: a vma whose recorded flags
 * hold more than its maps line implies, or a shared file mapping (its
 * "mw" says with which access the file was reopened).
 *
 * Dump side: the pieces of /proc no restorer reads (oom_score_adj, THP,
 * POSIX timers, thread names) are recorded in the verifier's blocks of
 * ghost.proto, so that a restore that drops them fails here.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "inetsk.h"
#include "mem.h"
#include "tty.h"
#include "procstate.h"
#include "unixsk.h"
#include "verify.h"

/* ---- the severity of each piece ----------------------------------------- */

typedef enum {
    V_VMA,          /* a vma missing, extra, or of another range / prot /
                       sharing / path / offset */
    V_VMA_MERGED,   /* adjacent vmas the kernel may merge came back merged
                       (or split) */
    V_SHMEM_LOOK,   /* shared anonymous memory shows as a memfd */
    V_VMFLAGS,      /* smaps VmFlags (madvise, mlock, ...) */
    V_VMFLAG_AC,    /* VmFlags "ac" only */
    V_VMFLAG_UFFD,  /* VmFlags um/uw of post-copy's lazy ranges */
    V_FD,           /* an fd missing or extra */
    V_FD_KIND,      /* an fd of another kind or path */
    V_FD_FLAGS,     /* fd status flags (O_NONBLOCK, O_APPEND, access) */
    V_FD_POS,       /* fd offset */
    V_FD_MODE,      /* a memfd's mode */
    V_CREDS,        /* ids, groups, capabilities, NoNewPrivs, Seccomp */
    V_SIGMASK,      /* a thread's blocked signals */
    V_SIGACTIONS,   /* signals ignored or caught */
    V_RLIMIT,
    V_PERSONALITY,
    V_UMASK,
    V_CWD,
    V_COMM,         /* the process's name */
    V_THREAD_COMM,  /* a thread's name (PR_SET_NAME, pthread_setname_np) */
    V_THREADS,      /* a thread missing or extra */
    V_OOM,          /* oom_score_adj */
    V_THP,          /* PR_SET_THP_DISABLE */
    V_TIMERS,       /* POSIX timers */
    V_NPIECES
} s_piece_t;

/* Whether each piece is cosmetic, and why (docs/ghost.md's inventory
 * argues each row). Rows whose restore another area of issue 16 is
 * landing are fatal: until it lands, the restore of such state fails
 * here rather than lose it. V_VMFLAGS is cosmetic until the memory
 * area lands (glibc's thread stacks' guard pages are "nh": it failed
 * every threaded restore); V_OOM, which failed every restore through
 * ghostd (its helpers run at +1000, which the tree inherits), is fatal
 * again since procstate.c restores it. */
static const struct {
    const char *name;
    bool cosmetic;
    const char *why;
} s_pieces[V_NPIECES] = {
    [V_VMA] = { "vma", false, "the program's memory" },
    [V_VMA_MERGED] = { "vma merged", true,
                       "same range, protection and flags: only the count of lines differs" },
    [V_SHMEM_LOOK] = { "vma shmem name", true,
                       "contents and sharing restored; the name in maps differs (memory area)" },
    [V_VMFLAGS] = { "VmFlags", false, "madvise, mlock, mseal: restored (memory area)" },
    [V_VMFLAG_AC] = { "VmFlags ac", true, "overcommit accounting only" },
    [V_VMFLAG_UFFD] = { "VmFlags uffd", true,
                        "post-copy: registered while pages are lazy, until they all came" },
    [V_FD] = { "fd", false, "an open file" },
    [V_FD_KIND] = { "fd kind", false, "an open file" },
    [V_FD_FLAGS] = { "fd flags", false, "pipe flags per description: issue 16 files area" },
    [V_FD_POS] = { "fd pos", false, "the file offset" },
    [V_FD_MODE] = { "fd mode", false, "memfd mode: issue 16 memory area" },
    [V_CREDS] = { "creds", false, "who the process is" },
    [V_SIGMASK] = { "SigBlk", false, "blocked signals" },
    [V_SIGACTIONS] = { "SigIgn/SigCgt", false, "signal dispositions" },
    [V_RLIMIT] = { "rlimit", false, "resource limits" },
    [V_PERSONALITY] = { "personality", false, "execution domain" },
    [V_UMASK] = { "umask", false, "file creation mask" },
    [V_CWD] = { "cwd", false, "working directory" },
    [V_COMM] = { "comm", false, "the process's name" },
    [V_THREAD_COMM] = { "thread comm", false, "a thread's name (procstate.c)" },
    [V_THREADS] = { "threads", false, "a thread" },
    [V_OOM] = { "oom_score_adj", false, "the OOM killer's preference (procstate.c)" },
    [V_THP] = { "THP disable", false, "PR_SET_THP_DISABLE (procstate.c)" },
    [V_TIMERS] = { "POSIX timers", false, "timer_create (procstate.c)" },
};

/* ---- differences -------------------------------------------------------- */

void ghost_verify_differ(ghost_verify_t *v, const rst_proc_t *pr, bool cosmetic,
                         const char *what, const char *want, const char *got)
{
    if (cosmetic)
        v->n_cosmetic++;
    else
        v->n_fatal++;
    if (v->n >= GHOST_VERIFY_MAX)
        return;
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 8;
        ghost_verify_diff_t *nv = realloc(v->v, cap * sizeof(*nv));
        if (!nv)
            return;   /* counted, not kept: the error still says how many */
        v->v = nv, v->cap = cap;
    }
    ghost_verify_diff_t *d = &v->v[v->n++];
    d->pid = pr && pr->process ? pr->process->process->pid : 0;
    d->cosmetic = cosmetic;
    snprintf(d->what, sizeof(d->what), "%s", what);
    snprintf(d->want, sizeof(d->want), "%s", want);
    snprintf(d->got, sizeof(d->got), "%s", got);
}

/* One difference of piece p, what printf-style. */
static void __attribute__((format(printf, 6, 7)))
s_differ(ghost_verify_t *v, const rst_proc_t *pr, s_piece_t p, const char *want,
         const char *got, const char *fmt, ...)
{
    char what[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    ghost_verify_differ(v, pr, s_pieces[p].cosmetic, what, want, got);
}

/* Numbers as text, for want and got. */
static void s_differ_u(ghost_verify_t *v, const rst_proc_t *pr, s_piece_t p, uint64_t want,
                       uint64_t got, bool hex, const char *what)
{
    char w[32], g[32];
    snprintf(w, sizeof(w), hex ? "%#" PRIx64 : "%" PRIu64, want);
    snprintf(g, sizeof(g), hex ? "%#" PRIx64 : "%" PRIu64, got);
    s_differ(v, pr, p, w, g, "%s", what);
}

void ghost_verify_free(ghost_verify_t *v)
{
    if (!v)
        return;
    free(v->v);
    *v = (ghost_verify_t){ 0 };
}

/* ---- memory ------------------------------------------------------------- */

/* A vma as both sides show it. */
typedef struct s_vma {
    uint64_t start, end, pgoff;
    uint32_t prot;
    bool shared;
    const char *path;
    const char *flags;       /* VmFlags text, "" if unknown */
    bool anon_shared;        /* the image says shared anonymous memory */
} s_vma_t;

/* Flags a maps line (prot, sharing, growth, kind) already implies, or
 * the restore cannot help: their presence alone does not need smaps. */
static bool s_flag_implied(const char *f)
{
    static const char *const implied[] = { "rd", "wr", "ex", "sh", "mr", "mw", "me", "ms",
                                           "gd", "ac", "sd", "nr" };
    for (size_t i = 0; i < sizeof(implied) / sizeof(implied[0]); i++)
        if (strncmp(f, implied[i], 2) == 0)
            return true;
    return false;
}

/* Whether flag f (two letters) is in the VmFlags text s. */
static bool s_has_flag(const char *s, const char *f)
{
    for (const char *p = s; (p = strstr(p, f)); p += 2)
        if ((p == s || p[-1] == ' ') && (p[2] == ' ' || p[2] == '\0'))
            return true;
    return false;
}

/* Whether the image's vmas need smaps to be checked (see the top). */
static bool s_needs_smaps(const rst_proc_t *pr)
{
    for (size_t i = 0; i < pr->vmas.n; i++) {
        const Cairn__Ghost__Vma *m = pr->vmas.v[i]->vma;
        if (!m->smaps_flags || !m->smaps_flags[0] || m->kind == CAIRN__GHOST__VMA_KIND__VMA_VDSO ||
            m->kind == CAIRN__GHOST__VMA_KIND__VMA_VVAR ||
            m->kind == CAIRN__GHOST__VMA_KIND__VMA_VSYSCALL)
            continue;
        if (m->kind == CAIRN__GHOST__VMA_KIND__VMA_FILE_SHARED ||
            m->kind == CAIRN__GHOST__VMA_KIND__VMA_MEMFD)
            return true;
        for (const char *p = m->smaps_flags; *p; p += strcspn(p, " "), p += strspn(p, " "))
            if (!s_flag_implied(p))
                return true;
    }
    return false;
}

/* Whether the kernel may merge b into a (adjacent, the same in all else). */
static bool s_mergeable(const s_vma_t *a, const s_vma_t *b)
{
    bool anon = !a->path[0] || a->path[0] == '[';
    return a->end == b->start && a->prot == b->prot && a->shared == b->shared &&
           strcmp(a->path, b->path) == 0 && strcmp(a->path, "[vdso]") != 0 &&
           strncmp(a->path, "[vvar", 5) != 0 &&
           (anon || b->pgoff == a->pgoff + (a->end - a->start));
}

/* The run of mergeable vmas from v[*i] on, as one vma; *i moves past it,
 * *ret_n counts its members. */
static s_vma_t s_run(const s_vma_t *v, size_t n, size_t *i, size_t *ret_n)
{
    s_vma_t r = v[*i];
    size_t k = *i + 1;
    while (k < n && s_mergeable(&v[k - 1], &v[k]))
        r.end = v[k++].end;
    *ret_n = k - *i;
    *i = k;
    return r;
}

/* VmFlags of one run: each flag that differs, by its severity. */
static void s_cmp_vmflags(const rst_proc_t *pr, const s_vma_t *w, const s_vma_t *g, bool lazy,
                          ghost_verify_t *v)
{
    char want[192] = "", got[192] = "";
    bool uffd = false, other = false;
    for (int side = 0; side < 2; side++) {
        const char *a = side ? g->flags : w->flags, *b = side ? w->flags : g->flags;
        char *out = side ? got : want;
        for (const char *p = a; *p; p += strcspn(p, " "), p += strspn(p, " ")) {
            char f[3] = { p[0], p[1], '\0' };
            if (s_has_flag(b, f) || strcmp(f, "sd") == 0)
                continue;   /* sd: soft-dirty marks what was written since
                               clear_refs; the restore writes every page */
            if (side == 0 && (strcmp(f, "um") == 0 || strcmp(f, "uw") == 0 ||
                              strcmp(f, "ui") == 0))
                continue;   /* in the image: the dumper's own registration
                               (pre-copy's write tracking) -- a program's
                               own userfaultfd is refused as an fd */
            if (strcmp(f, "ac") == 0)
                ;   /* cosmetic when alone */
            else if (lazy && (strcmp(f, "um") == 0 || strcmp(f, "uw") == 0))
                uffd = true;
            else
                other = true;
            size_t l = strlen(out);
            snprintf(out + l, 192 - l, "%s%s", l ? " " : "", f);
        }
    }
    if (!want[0] && !got[0])
        return;
    s_piece_t p = other ? V_VMFLAGS : uffd ? V_VMFLAG_UFFD : V_VMFLAG_AC;
    char wl[192], gl[192];
    snprintf(wl, sizeof(wl), "%s (+%s)", w->flags, want[0] ? want : "-");
    snprintf(gl, sizeof(gl), "%s (+%s)", g->flags, got[0] ? got : "-");
    s_differ(v, pr, p, wl, gl, "vma %#" PRIx64 "-%#" PRIx64 " %s", w->start, w->end,
             s_pieces[p].name);
}

static void s_vma_text(const s_vma_t *m, char *buf, size_t size)
{
    snprintf(buf, size, "%#" PRIx64 "-%#" PRIx64 " %c%c%c%c %#" PRIx64 " %s", m->start, m->end,
             (m->prot & PROT_READ) ? 'r' : '-', (m->prot & PROT_WRITE) ? 'w' : '-',
             (m->prot & PROT_EXEC) ? 'x' : '-', m->shared ? 's' : 'p', m->pgoff,
             m->path[0] ? m->path : "anonymous");
}

/* One run of the image against the restored one at the same place. */
static void s_cmp_run(const rst_proc_t *pr, const s_vma_t *w, size_t wn, const s_vma_t *g,
                      size_t gn, bool flags, bool lazy, ghost_verify_t *v)
{
    char a[192], b[192];
    bool look = w->anon_shared && w->start == g->start && w->end == g->end &&
                w->prot == g->prot && w->shared == g->shared;
    if (look && (strcmp(w->path, g->path) != 0 || w->pgoff != g->pgoff)) {
        s_vma_text(w, a, sizeof(a)), s_vma_text(g, b, sizeof(b));
        s_differ(v, pr, V_SHMEM_LOOK, a, b, "vma %#" PRIx64 " name", w->start);
    } else if (w->start != g->start || w->end != g->end || w->prot != g->prot ||
               w->shared != g->shared || strcmp(w->path, g->path) != 0 ||
               w->pgoff != g->pgoff) {
        s_vma_text(w, a, sizeof(a)), s_vma_text(g, b, sizeof(b));
        s_differ(v, pr, V_VMA, a, b, "vma %#" PRIx64, w->start);
        return;
    }
    if (wn != gn) {
        snprintf(a, sizeof(a), "%zu vmas", wn), snprintf(b, sizeof(b), "%zu vmas", gn);
        s_differ(v, pr, V_VMA_MERGED, a, b, "vma %#" PRIx64 "-%#" PRIx64 " merged", w->start,
                 w->end);
    }
    if (flags && w->flags[0] && g->flags[0])
        s_cmp_vmflags(pr, w, g, lazy, v);
}

/* The image's vmas and the live ones (as s_vma_t), each run of
 * mergeable vmas compared as one. */
static void s_cmp_vmas(const rst_proc_t *pr, const s_vma_t *w, size_t nw, const s_vma_t *g,
                       size_t ng, bool flags, bool lazy, ghost_verify_t *v)
{
    size_t i = 0, j = 0;
    while (i < nw || j < ng) {
        size_t wn = 0, gn = 0, i0 = i, j0 = j;
        char a[192];
        if (j >= ng || (i < nw && w[i].end <= g[j].start)) {
            s_run(w, nw, &i, &wn);
            s_vma_text(&w[i0], a, sizeof(a));
            s_differ(v, pr, V_VMA, a, "absent", "vma %#" PRIx64, w[i0].start);
        } else if (i >= nw || g[j].end <= w[i].start) {
            s_run(g, ng, &j, &gn);
            s_vma_text(&g[j0], a, sizeof(a));
            s_differ(v, pr, V_VMA, "absent", a, "vma %#" PRIx64, g[j0].start);
        } else {
            s_vma_t rw = s_run(w, nw, &i, &wn), rg = s_run(g, ng, &j, &gn);
            s_cmp_run(pr, &rw, wn, &rg, gn, flags, lazy, v);
        }
    }
}

/* The memory map of pid against the image's vmas. */
static int s_check_memory(const rst_image_t *im, const rst_proc_t *pr, pid_t pid,
                          ghost_verify_t *v, cairn_error_t *err)
{
    bool flags = s_needs_smaps(pr);
    proc_vmas_t live = { 0 };
    int r = proc_read_vmas(pid, flags, &live, err);
    if (r < 0)
        return r;
    s_vma_t *w = calloc(pr->vmas.n + 1, sizeof(*w)), *g = calloc(live.n + 1, sizeof(*g));
    if (!w || !g) {
        free(w), free(g), proc_vmas_free(&live);
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    }
    for (size_t i = 0; i < pr->vmas.n; i++) {
        const Cairn__Ghost__Vma *m = pr->vmas.v[i]->vma;
        w[i] = (s_vma_t){ m->start, m->end, m->pgoff, m->prot, (m->flags & MAP_SHARED) != 0,
                          m->path, m->smaps_flags ? m->smaps_flags : "",
                          m->kind == CAIRN__GHOST__VMA_KIND__VMA_ANON_SHARED };
        if (!w[i].path[0] || w[i].path[0] == '[')   /* maps shows no offset */
            w[i].pgoff = w[i].anon_shared ? w[i].pgoff : 0;
    }
    for (size_t i = 0; i < live.n; i++) {
        const proc_vma_t *m = &live.v[i];
        g[i] = (s_vma_t){ m->start, m->end, m->pgoff, m->prot, m->shared, m->path,
                          m->vmflags_text, false };
    }
    s_cmp_vmas(pr, w, pr->vmas.n, g, live.n, flags, im->header->header->lazy, v);
    free(w), free(g);
    proc_vmas_free(&live);
    return 0;
}

/* ---- fds ---------------------------------------------------------------- */

/* What readlink of an fd of kind k starts with ("" to compare the path
 * as recorded, NULL for a kind this table does not know: its area's
 * check looks at it). */
static const char *s_fd_link(Cairn__Ghost__FdKind k)
{
    switch (k) {
    case CAIRN__GHOST__FD_KIND__FD_REGULAR:
    case CAIRN__GHOST__FD_KIND__FD_CHAR_DEVICE:
    case CAIRN__GHOST__FD_KIND__FD_DIRECTORY:
        return "";
    case CAIRN__GHOST__FD_KIND__FD_PIPE:
        return "pipe:[";
    case CAIRN__GHOST__FD_KIND__FD_MEMFD:
        return "/memfd:";
    case CAIRN__GHOST__FD_KIND__FD_EVENTFD:
        return "anon_inode:[eventfd]";
    case CAIRN__GHOST__FD_KIND__FD_TIMERFD:
        return "anon_inode:[timerfd]";
    case CAIRN__GHOST__FD_KIND__FD_SIGNALFD:
        return "anon_inode:[signalfd]";
    case CAIRN__GHOST__FD_KIND__FD_EPOLL:
        return "anon_inode:[eventpoll]";
    case CAIRN__GHOST__FD_KIND__FD_INOTIFY:
        return "anon_inode:inotify";
    default:
        return NULL;
    }
}

/* The kernel's O_LARGEFILE on x86_64 (the libc's is 0 there). */
#define S_O_LARGEFILE 0100000

/* Whether the kind has an offset of its own to keep. */
static bool s_fd_has_pos(Cairn__Ghost__FdKind k)
{
    return k == CAIRN__GHOST__FD_KIND__FD_REGULAR || k == CAIRN__GHOST__FD_KIND__FD_DIRECTORY ||
           k == CAIRN__GHOST__FD_KIND__FD_MEMFD;
}

/* One fd of the image, open as f->fd in pid. */
static int s_check_fd(const rst_proc_t *pr, pid_t pid, const Cairn__Ghost__Fd *f,
                      ghost_verify_t *v, cairn_error_t *err)
{
    char name[32], link[512], a[64], b[64];
    snprintf(name, sizeof(name), "fd/%d", f->fd);
    int r = proc_readlink(pid, name, link, sizeof(link), err);
    proc_fdinfo_t fi;
    if (r == 0)
        r = proc_read_fdinfo(pid, f->fd, &fi, err);
    if (r < 0)
        return r;
    const char *want = s_fd_link(f->kind);
    bool kind_ok = !want || (want[0] ? strncmp(link, want, strlen(want)) == 0
                                     : strcmp(link, f->path) == 0);
    if (!kind_ok)
        s_differ(v, pr, V_FD_KIND, want[0] ? want : f->path, link, "fd %d", f->fd);
    /* O_LARGEFILE: every file of a 64-bit process is large, whether the
     * flag shows or not (open() sets it, a reopened device may not) */
    int32_t wflags = (f->flags | (f->cloexec ? O_CLOEXEC : 0)) & ~S_O_LARGEFILE;
    if ((fi.flags & ~S_O_LARGEFILE) != wflags) {
        snprintf(a, sizeof(a), "%#o", (unsigned)wflags);
        snprintf(b, sizeof(b), "%#o", (unsigned)fi.flags);
        s_differ(v, pr, V_FD_FLAGS, a, b, "fd %d flags", f->fd);
    }
    if (kind_ok && s_fd_has_pos(f->kind) && fi.pos != f->pos) {
        snprintf(name, sizeof(name), "fd %d pos", f->fd);
        s_differ_u(v, pr, V_FD_POS, (uint64_t)f->pos, (uint64_t)fi.pos, false, name);
    }
    struct stat st;
    snprintf(link, sizeof(link), "/proc/%d/fd/%d", (int)pid, f->fd);
    if (f->mode && f->kind == CAIRN__GHOST__FD_KIND__FD_MEMFD) {
        if (stat(link, &st) < 0)
            return cairn_error_set(err, -errno, CAIRN_SYSTEM, "verify: stat %s: %s", link,
                                   strerror(errno));
        if ((st.st_mode & 07777) != (f->mode & 07777)) {
            snprintf(a, sizeof(a), "%04o", f->mode & 07777);
            snprintf(b, sizeof(b), "%04o", (unsigned)(st.st_mode & 07777));
            s_differ(v, pr, V_FD_MODE, a, b, "fd %d mode", f->fd);
        }
    }
    return 0;
}

/* fd, open in pid, is not in the image. */
static void s_extra_fd(const rst_proc_t *pr, pid_t pid, int fd, ghost_verify_t *v)
{
    char name[32], link[512] = "?";
    snprintf(name, sizeof(name), "fd/%d", fd);
    proc_readlink(pid, name, link, sizeof(link), NULL);
    s_differ(v, pr, V_FD, "closed", link, "fd %d", fd);
}

/* The fds of pid: the image's numbers, no more, each as recorded. */
static int s_check_fds(const rst_image_t *im, const rst_proc_t *pr, pid_t pid,
                       ghost_verify_t *v, cairn_error_t *err)
{
    (void)im;
    int *live = NULL;
    size_t n = 0;
    int r = proc_list_dir(pid, "fd", &live, &n, err);
    size_t j = 0;
    for (size_t i = 0; r == 0 && i < pr->fds.n; i++) {
        const Cairn__Ghost__Fd *f = pr->fds.v[i]->fd;
        while (j < n && live[j] < f->fd)   /* both ascending */
            s_extra_fd(pr, pid, live[j++], v);
        if (j < n && live[j] == f->fd) {
            j++;
            r = s_check_fd(pr, pid, f, v, err);
        } else {
            s_differ(v, pr, V_FD, f->path && f->path[0] ? f->path : "open", "closed", "fd %d",
                     f->fd);
        }
    }
    for (; r == 0 && j < n; j++)
        s_extra_fd(pr, pid, live[j], v);
    free(live);
    return r;
}

/* ---- status: every thread ----------------------------------------------- */

/* The lines of one status file the verifier reads. */
typedef struct s_status {
    uint32_t uid[4], gid[4];
    char groups[192];
    uint64_t cap[5];         /* CapInh CapPrm CapEff CapBnd CapAmb */
    int nnp, seccomp;
    uint64_t sigblk, sigign, sigcgt;
    int umask;               /* -1: no line */
    int thp_enabled;         /* -1: no line */
    uint32_t nstid;          /* NSpid's last: the id in its own namespace */
} s_status_t;

static const char *const s_caps[5] = { "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb" };

static uint64_t s_num(const char *text, const char *key, int base, uint64_t dflt)
{
    const char *p = proc_field(text, key);
    return p ? strtoull(p, NULL, base) : dflt;
}

/* "a b c d" after key into v[4]. */
static void s_four(const char *text, const char *key, uint32_t v[4])
{
    const char *p = proc_field(text, key);
    for (int i = 0; i < 4; i++) {
        char *end = NULL;
        v[i] = p ? (uint32_t)strtoul(p, &end, 10) : 0;
        p = p ? end : NULL;
    }
}

static int s_read_status(pid_t tid, s_status_t *s, cairn_error_t *err)
{
    char *buf = NULL;
    int r = proc_read_file(tid, "status", &buf, NULL, err);
    if (r < 0)
        return r;
    *s = (s_status_t){ .umask = -1, .thp_enabled = -1 };
    s_four(buf, "Uid", s->uid);
    s_four(buf, "Gid", s->gid);
    const char *g = proc_field(buf, "Groups");
    if (g) {   /* "\t0 1 2 \n": the numbers, one space apart */
        size_t k = 0;
        for (g += strspn(g, " \t"); *g && *g != '\n' && k + 1 < sizeof(s->groups); g++)
            if (*g != '\t' && !(*g == ' ' && (g[1] == '\n' || g[1] == ' ')))
                s->groups[k++] = *g;
        s->groups[k] = '\0';
    }
    for (int i = 0; i < 5; i++)
        s->cap[i] = s_num(buf, s_caps[i], 16, 0);
    s->nnp = (int)s_num(buf, "NoNewPrivs", 10, 0);
    s->seccomp = (int)s_num(buf, "Seccomp", 10, 0);
    s->sigblk = s_num(buf, "SigBlk", 16, 0);
    s->sigign = s_num(buf, "SigIgn", 16, 0);
    s->sigcgt = s_num(buf, "SigCgt", 16, 0);
    s->umask = proc_field(buf, "Umask") ? (int)s_num(buf, "Umask", 8, 0) : -1;
    s->thp_enabled = proc_field(buf, "THP_enabled") ? (int)s_num(buf, "THP_enabled", 10, 0) : -1;
    const char *ns = proc_field(buf, "NSpid");
    if (ns) {
        const char *end = ns + strcspn(ns, "\n");
        while (end > ns && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        const char *last = end;
        while (last > ns && last[-1] != ' ' && last[-1] != '\t')
            last--;
        s->nstid = (uint32_t)strtoul(last, NULL, 10);
    }
    free(buf);
    return 0;
}

/* The credentials of one thread against the image's. */
static void s_cmp_creds(const rst_proc_t *pr, uint32_t tid, const s_status_t *s,
                        ghost_verify_t *v)
{
    const Cairn__Ghost__Process *p = pr->process->process;
    const Cairn__Ghost__Creds *c = p->creds;
    char what[64], a[192], b[192];
    if (c && c->n_uid == 4 && c->n_gid == 4) {
        for (int i = 0; i < 4; i++) {
            snprintf(what, sizeof(what), "thread %u %s %d", tid, "uid", i);
            if (c->uid[i] != s->uid[i])
                s_differ_u(v, pr, V_CREDS, c->uid[i], s->uid[i], false, what);
            snprintf(what, sizeof(what), "thread %u %s %d", tid, "gid", i);
            if (c->gid[i] != s->gid[i])
                s_differ_u(v, pr, V_CREDS, c->gid[i], s->gid[i], false, what);
        }
        a[0] = '\0';
        for (size_t i = 0; i < c->n_groups; i++) {
            size_t l = strlen(a);
            snprintf(a + l, sizeof(a) - l, "%s%u", i ? " " : "", c->groups[i]);
        }
        if (strcmp(a, s->groups) != 0) {
            snprintf(b, sizeof(b), "%s", s->groups);
            s_differ(v, pr, V_CREDS, a, b, "thread %u groups", tid);
        }
        const uint64_t want[5] = { c->cap_inh, c->cap_prm, c->cap_eff, c->cap_bnd, c->cap_amb };
        for (int i = 0; i < 5; i++) {
            snprintf(what, sizeof(what), "thread %u %s", tid, s_caps[i]);
            if (want[i] != s->cap[i])
                s_differ_u(v, pr, V_CREDS, want[i], s->cap[i], true, what);
        }
        snprintf(what, sizeof(what), "thread %u NoNewPrivs", tid);
        if ((int)c->no_new_privs != s->nnp)
            s_differ_u(v, pr, V_CREDS, c->no_new_privs, (uint64_t)s->nnp, false, what);
    }
    int seccomp = p->n_seccomp ? 2 : 0;
    snprintf(what, sizeof(what), "thread %u Seccomp", tid);
    if (seccomp != s->seccomp)
        s_differ_u(v, pr, V_CREDS, (uint64_t)seccomp, (uint64_t)s->seccomp, false, what);
}

/* Signals ignored and caught, from the image's sigactions. */
static void s_sigsets(const Cairn__Ghost__Process *p, uint64_t *ign, uint64_t *cgt)
{
    *ign = *cgt = 0;
    for (size_t i = 0; i < p->n_sigactions; i++) {
        const Cairn__Ghost__SigAction *sa = p->sigactions[i];
        if (sa->signo < 1 || sa->signo > 64)
            continue;
        if (sa->handler == 1)
            *ign |= 1ull << (sa->signo - 1);
        else if (sa->handler > 1)
            *cgt |= 1ull << (sa->signo - 1);
    }
}

/* The process-wide lines, from the leader's status. */
static void s_cmp_process_status(const rst_proc_t *pr, const s_status_t *s, ghost_verify_t *v)
{
    const Cairn__Ghost__Process *p = pr->process->process;
    uint64_t ign, cgt;
    s_sigsets(p, &ign, &cgt);
    if (ign != s->sigign)
        s_differ_u(v, pr, V_SIGACTIONS, ign, s->sigign, true, "SigIgn");
    if (cgt != s->sigcgt)
        s_differ_u(v, pr, V_SIGACTIONS, cgt, s->sigcgt, true, "SigCgt");
    if (s->umask >= 0 && (uint32_t)s->umask != p->umask) {
        char a[16], b[16];
        snprintf(a, sizeof(a), "%04o", p->umask), snprintf(b, sizeof(b), "%04o", s->umask);
        s_differ(v, pr, V_UMASK, a, b, "umask");
    }
    if (p->verify_recorded && s->thp_enabled >= 0 && p->thp_disabled != (s->thp_enabled == 0))
        s_differ(v, pr, V_THP, p->thp_disabled ? "disabled" : "enabled",
                 s->thp_enabled == 0 ? "disabled" : "enabled", "THP (PR_SET_THP_DISABLE)");
}

/* A thread's name, with its newline gone. */
static int s_read_comm(pid_t tid, char *buf, size_t size, cairn_error_t *err)
{
    char *s = NULL;
    int r = proc_read_file(tid, "comm", &s, NULL, err);
    if (r < 0)
        return r;
    s[strcspn(s, "\n")] = '\0';
    snprintf(buf, size, "%s", s);
    free(s);
    return 0;
}

/* One thread of the image, live as tid. */
static int s_check_thread(const rst_proc_t *pr, const Cairn__Ghost__Thread *th, pid_t tid,
                          const s_status_t *s, ghost_verify_t *v, cairn_error_t *err)
{
    char what[64];
    s_cmp_creds(pr, th->tid, s, v);
    snprintf(what, sizeof(what), "thread %u SigBlk", th->tid);
    if (th->sigmask != s->sigblk)
        s_differ_u(v, pr, V_SIGMASK, th->sigmask, s->sigblk, true, what);
    if (!th->comm || !th->comm[0])
        return 0;
    char comm[64];
    int r = s_read_comm(tid, comm, sizeof(comm), err);
    if (r == 0 && strcmp(comm, th->comm) != 0)
        s_differ(v, pr, th->leader ? V_COMM : V_THREAD_COMM, th->comm, comm, "thread %u comm",
                 th->tid);
    return r;
}

/* Every thread of pid: its status (and the process-wide lines from the
 * leader's), matched to the image's threads by their id in their own pid
 * namespace, or in order (leader first) when the restore gave new ids. */
static int s_check_threads(const rst_image_t *im, const rst_proc_t *pr, pid_t pid,
                           ghost_verify_t *v, cairn_error_t *err)
{
    (void)im;
    int *tids = NULL;
    size_t n = 0;
    int r = proc_list_dir(pid, "task", &tids, &n, err);
    s_status_t *st = r == 0 ? calloc(n + 1, sizeof(*st)) : NULL;
    if (r == 0 && !st)
        r = cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    size_t leader = 0;
    for (size_t i = 0; r == 0 && i < n; i++) {
        r = s_read_status(tids[i], &st[i], err);
        if (tids[i] == pid)
            leader = i;
    }
    if (r == 0 && n != pr->threads.n) {
        s_differ_u(v, pr, V_THREADS, pr->threads.n, n, false, "threads");
    } else if (r == 0) {
        bool by_id = true;   /* every image tid found as one's own id */
        for (size_t i = 0; by_id && i < pr->threads.n; i++) {
            bool found = false;
            for (size_t k = 0; !found && k < n; k++)
                found = st[k].nstid == pr->threads.v[i]->thread->tid;
            by_id = found;
        }
        for (size_t i = 0, next = 0; r == 0 && i < pr->threads.n; i++) {
            const Cairn__Ghost__Thread *th = pr->threads.v[i]->thread;
            size_t k = leader;
            if (by_id)
                for (k = 0; k < n && st[k].nstid != th->tid; k++)
                    ;
            else if (!th->leader) {
                next += next == leader;
                k = next++;
            }
            if (k < n)
                r = s_check_thread(pr, th, tids[k], &st[k], v, err);
        }
        s_cmp_process_status(pr, &st[leader], v);
    }
    free(st);
    free(tids);
    return r;
}

/* ---- the rest of the process -------------------------------------------- */

/* /proc/PID/timers with each notify line's pid or tid left out (a
 * restore with new pids keeps the timers as they were), its timers in
 * order of their ids. */
static void s_timers_norm(const char *text, char *out, size_t size)
{
    size_t k = 0;
    for (const char *p = text; p && *p && k + 1 < size; p++) {
        out[k++] = *p;
        if ((strncmp(p, "pid.", 4) == 0 || strncmp(p, "tid.", 4) == 0) && k + 4 < size) {
            memcpy(out + k, p + 1, 3), k += 3, p += 4;
            while (*p >= '0' && *p <= '9')
                p++;
            p--;
        }
    }
    out[k] = '\0';
}

static int s_check_rest(const rst_image_t *im, const rst_proc_t *pr, pid_t pid,
                        ghost_verify_t *v, cairn_error_t *err)
{
    (void)im;
    const Cairn__Ghost__Process *p = pr->process->process;
    uint64_t lim[RLIM_NLIMITS][2];
    char buf[4096], buf2[4096];
    int r = proc_read_limits(pid, lim, RLIM_NLIMITS, err);
    for (size_t i = 0; r == 0 && i < p->n_rlimits; i++) {
        const Cairn__Ghost__Rlimit *l = p->rlimits[i];
        if (l->resource >= RLIM_NLIMITS)
            continue;
        snprintf(buf, sizeof(buf), "rlimit %u", l->resource);
        if (l->cur != lim[l->resource][0] || l->max != lim[l->resource][1]) {
            char a[64], b[64];
            snprintf(a, sizeof(a), "%" PRIu64 " %" PRIu64, l->cur, l->max);
            snprintf(b, sizeof(b), "%" PRIu64 " %" PRIu64, lim[l->resource][0],
                     lim[l->resource][1]);
            s_differ(v, pr, V_RLIMIT, a, b, "%s", buf);
        }
    }
    uint32_t pers = 0;
    if (r == 0)
        r = proc_read_personality(pid, &pers, err);
    if (r == 0 && pers != p->personality)
        s_differ_u(v, pr, V_PERSONALITY, p->personality, pers, true, "personality");
    if (r == 0 && p->cwd && p->cwd[0])
        r = proc_readlink(pid, "cwd", buf, sizeof(buf), err);
    if (r == 0 && p->cwd && p->cwd[0] && strcmp(buf, p->cwd) != 0)
        s_differ(v, pr, V_CWD, p->cwd, buf, "cwd");
    if (r == 0)
        r = s_read_comm(pid, buf, sizeof(buf), err);
    if (r == 0 && p->comm && strcmp(buf, p->comm) != 0)
        s_differ(v, pr, V_COMM, p->comm, buf, "comm");
    if (r < 0 || !p->verify_recorded)
        return r;
    char *text = NULL;
    if ((r = proc_read_file(pid, "oom_score_adj", &text, NULL, err)) < 0)
        return r;
    int oom = atoi(text);
    free(text);
    if (oom != p->oom_score_adj) {
        snprintf(buf, sizeof(buf), "%d", p->oom_score_adj), snprintf(buf2, sizeof(buf2), "%d", oom);
        s_differ(v, pr, V_OOM, buf, buf2, "oom_score_adj");
    }
    if ((r = proc_read_file(pid, "timers", &text, NULL, err)) < 0)
        return r;
    s_timers_norm(p->timers ? p->timers : "", buf, sizeof(buf));
    s_timers_norm(text, buf2, sizeof(buf2));
    free(text);
    if (strcmp(buf, buf2) != 0) {
        for (char *c = buf; *c; c++)
            *c = *c == '\n' ? ';' : *c;
        for (char *c = buf2; *c; c++)
            *c = *c == '\n' ? ';' : *c;
        s_differ(v, pr, V_TIMERS, buf[0] ? buf : "none", buf2[0] ? buf2 : "none", "timers");
    }
    return 0;
}

/* ---- the tree ----------------------------------------------------------- */

typedef int (*s_check_fn)(const rst_image_t *im, const rst_proc_t *pr, pid_t pid,
                          ghost_verify_t *v, cairn_error_t *err);

/* The memory area's memfd state (mode, seals, size: verify-mem.c). */
static int s_check_memfds(const rst_image_t *im, const rst_proc_t *pr, pid_t pid,
                          ghost_verify_t *v, cairn_error_t *err)
{
    (void)im;
    return mem_verify(pr, pid, v, err);
}

/* Each area's comparison; a new area adds its line (its function in its
 * own file). */
static const s_check_fn s_checks[] = {
    s_check_memory, s_check_fds, s_check_threads, s_check_rest, s_check_memfds,
    tty_verify,
    procstate_verify,   /* procstate.c: scheduling, affinity, ioprio, core-dump filter */
    inetsk_verify,
    unixsk_verify,
};

int ghost_verify_tree(const rst_image_t *im, const pid_t *pids, ghost_verify_t *v,
                      cairn_error_t *err)
{
    for (size_t i = 0; i < im->n_procs; i++)
        for (size_t k = 0; k < sizeof(s_checks) / sizeof(s_checks[0]); k++) {
            int r = s_checks[k](im, &im->procs[i], pids[i], v, err);
            if (r < 0)
                return cairn_error_append(err, r, " (verifying process %u)",
                                          im->procs[i].process->process->pid);
        }
    if (v->n_fatal == 0)
        return 0;
    const ghost_verify_diff_t *d = NULL;
    for (size_t i = 0; !d && i < v->n; i++)
        d = v->v[i].cosmetic ? NULL : &v->v[i];
    if (!d || !err)
        return cairn_error_set(err, -EPROTO, CAIRN_INTERNAL,
                               "verify: %zu differences between the image and the "
                               "restored tree", v->n_fatal);
    /* the first in full, the others by name while the line has room */
    int r = cairn_error_set(err, -EPROTO, CAIRN_INTERNAL,
                            "verify: process %u: %s: the image has %s, the restored "
                            "process %s", d->pid, d->what, d->want, d->got);
    size_t named = 1;
    for (const ghost_verify_diff_t *e = d + 1; e < v->v + v->n; e++)
        if (!e->cosmetic && strlen(err->message) + strlen(e->what) + 96 < sizeof(err->message)) {
            cairn_error_append(err, r, "; process %u: %s", e->pid, e->what);
            named++;
        }
    return cairn_error_append(err, r, " (%zu more differences; --no-verify skips this "
                              "check)", v->n_fatal - named);
}

/* ---- dump side ---------------------------------------------------------- */

int ghost_verify_collect_process(pid_t pid, Cairn__Ghost__Process *pr, char **ret_timers,
                                 cairn_error_t *err)
{
    char *text = NULL;
    int r = proc_read_file(pid, "oom_score_adj", &text, NULL, err);
    if (r < 0)
        return r;
    pr->oom_score_adj = atoi(text);
    free(text);
    if ((r = proc_read_file(pid, "status", &text, NULL, err)) < 0)
        return r;
    const char *thp = proc_field(text, "THP_enabled");
    pr->thp_disabled = thp && strtol(thp, NULL, 10) == 0;
    free(text);
    if ((r = proc_read_file(pid, "timers", &text, NULL, err)) < 0)
        return r;
    pr->timers = text;
    pr->verify_recorded = true;
    *ret_timers = text;
    return 0;
}

int ghost_verify_collect_thread(pid_t tid, char *comm, size_t size, Cairn__Ghost__Thread *th,
                                cairn_error_t *err)
{
    int r = s_read_comm(tid, comm, size, err);
    if (r == 0)
        th->comm = comm;
    return r;
}

/* proc/proc.c - readers of /proc/PID files (proc.h).
 *
 * Design: each reader opens its file, parses it completely and closes it;
 * no reader keeps state. Text files are read whole with proc_read_file
 * (they are small, except smaps, which grows as needed), then parsed line
 * by line. pid 0 means /proc/self so the restore side can parse its own
 * maps. /proc/PID/stat is parsed from the last ')' because comm may hold
 * spaces and parentheses.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <unistd.h>

#include "proc.h"
#include "util/array.h"
#include "util/cleanup.h"
#include "util/fileio.h"

void proc_path(char *buf, size_t size, pid_t pid, const char *name)
{
    if (pid == 0)
        snprintf(buf, size, "/proc/self/%s", name);
    else
        snprintf(buf, size, "/proc/%d/%s", (int)pid, name);
}

static int s_sys(cairn_error_t *err, int e, const char *what, const char *path)
{
    return cairn_error_set(err, -e, e == ENOENT || e == ESRCH ? CAIRN_NOT_FOUND
                                                              : CAIRN_SYSTEM,
                           "%s %s: %s", what, path, strerror(e));
}

int proc_read_file(pid_t pid, const char *name, char **ret, size_t *ret_len,
                   cairn_error_t *err)
{
    _cleanup_close_ int fd = -1;
    char path[128];
    int r;

    proc_path(path, sizeof(path), pid, name);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return s_sys(err, errno, "cannot open", path);
    r = cairn_read_fd(fd, 0, ret, ret_len);
    if (r < 0)
        return s_sys(err, -r, "cannot read", path);
    return 0;
}

int proc_readlink(pid_t pid, const char *name, char *buf, size_t size,
                  cairn_error_t *err)
{
    char path[128];
    proc_path(path, sizeof(path), pid, name);
    ssize_t n = readlink(path, buf, size - 1);
    if (n < 0)
        return s_sys(err, errno, "cannot readlink", path);
    if ((size_t)n >= size - 1)
        return cairn_error_set(err, -ENAMETOOLONG, CAIRN_UNSUPPORTED,
                               "%s: target longer than %zu bytes", path, size - 2);
    buf[n] = '\0';
    return 0;
}

/* ---- maps / smaps ------------------------------------------------------ */

int proc_parse_maps_line(const char *line, proc_vma_t *ret)
{
    proc_vma_t v = { 0 };
    char perms[8];
    unsigned maj, min;
    unsigned long long ino;
    int off = 0;
    if (sscanf(line, "%" SCNx64 "-%" SCNx64 " %7s %" SCNx64 " %x:%x %llu%n",
               &v.start, &v.end, perms, &v.pgoff, &maj, &min, &ino, &off) != 7)
        return -EINVAL;
    if (strlen(perms) != 4 || v.end <= v.start)
        return -EINVAL;
    v.prot = (perms[0] == 'r' ? PROT_READ : 0) | (perms[1] == 'w' ? PROT_WRITE : 0) |
             (perms[2] == 'x' ? PROT_EXEC : 0);
    v.shared = perms[3] == 's';
    v.dev = makedev(maj, min);
    v.ino = ino;
    const char *p = line + off;
    while (*p == ' ' || *p == '\t')
        p++;
    size_t n = strcspn(p, "\n");
    if (n >= sizeof(v.path))
        return -ENAMETOOLONG;
    memcpy(v.path, p, n);
    v.path[n] = '\0';
    *ret = v;
    return 0;
}

/* Every VmFlags mnemonic the kernel prints (Documentation/filesystems/
 * proc.rst): those the engine acts on as bits, those it has no use for
 * (the protection, already in the maps line; accounting, soft-dirty and
 * driver flags) as 0. A flag not listed sets PROC_VMF_UNKNOWN, so a new
 * kernel's flag is refused by name rather than lost. */
static const struct { char f[3]; uint32_t bit; } s_vmflag_names[] = {
    { "gd", PROC_VMF_GROWSDOWN }, { "io", PROC_VMF_IO },
    { "pf", PROC_VMF_PFNMAP }, { "dd", PROC_VMF_DONTDUMP },
    { "sh", PROC_VMF_SHARED }, { "nr", PROC_VMF_NORESERVE },
    { "dc", PROC_VMF_DONTCOPY }, { "wf", PROC_VMF_WIPEONFORK },
    { "hg", PROC_VMF_HUGEPAGE }, { "nh", PROC_VMF_NOHUGEPAGE },
    { "mg", PROC_VMF_MERGEABLE }, { "lo", PROC_VMF_LOCKED },
    { "lf", PROC_VMF_LOCKONFAULT }, { "dp", PROC_VMF_DROPPABLE },
    { "sr", PROC_VMF_SEQREAD }, { "rr", PROC_VMF_RANDREAD },
    { "sl", PROC_VMF_SEALED }, { "mr", PROC_VMF_MAYREAD },
    { "mw", PROC_VMF_MAYWRITE }, { "me", PROC_VMF_MAYEXEC },
    { "ht", PROC_VMF_HUGETLB },
    { "ss", PROC_VMF_SHADOWSTK }, { "gu", PROC_VMF_MAYBE_GUARD },
    { "ac", PROC_VMF_ACCOUNT },
    { "rd", 0 }, { "wr", 0 }, { "ex", 0 }, { "ms", 0 },
    { "sd", 0 }, { "de", 0 }, { "mm", 0 }, { "dw", 0 }, { "sf", 0 },
    { "ar", 0 }, { "mp", 0 },
    /* A userfaultfd's ranges: the engine's own (pre-copy's write-protect
     * tracking, post-copy's missing pages while they are served); a
     * program's own uffd is an fd, refused as one of an unknown kind. */
    { "um", 0 }, { "uw", 0 }, { "ui", 0 },
};

static uint32_t s_parse_vmflags(const char *p, char unknown[4])
{
    uint32_t bits = PROC_VMF_HAVE;
    while (*p && *p != '\n') {
        while (*p == ' ')
            p++;
        size_t n = strcspn(p, " \n");
        bool known = n == 0;
        for (size_t i = 0; !known && i < sizeof(s_vmflag_names) / sizeof(s_vmflag_names[0]); i++)
            if (n == 2 && strncmp(p, s_vmflag_names[i].f, 2) == 0) {
                bits |= s_vmflag_names[i].bit;
                known = true;
            }
        if (!known && !(bits & PROC_VMF_UNKNOWN)) {
            bits |= PROC_VMF_UNKNOWN;
            snprintf(unknown, 4, "%.*s", (int)(n < 3 ? n : 3), p);
        }
        p += n;
    }
    return bits;
}

static int s_vmas_push(proc_vmas_t *l, size_t *cap, const proc_vma_t *v)
{
    if (CAIRN_GROW(l->v, *cap, l->n + 1, 64) < 0)
        return -ENOMEM;
    l->v[l->n++] = *v;
    return 0;
}

/* One line: a new vma, a VmFlags line for the last one, or another smaps
 * field (ignored). */
static int s_vmas_line(proc_vmas_t *l, size_t *cap, const char *line)
{
    if (strncmp(line, "VmFlags:", 8) == 0) {
        if (l->n > 0) {
            proc_vma_t *v = &l->v[l->n - 1];
            const char *p = line + 8 + strspn(line + 8, " ");
            v->vmflags |= s_parse_vmflags(line + 8, v->unknown_flag);
            snprintf(v->vmflags_text, sizeof(v->vmflags_text), "%.*s",
                     (int)strcspn(p, "\n"), p);
            for (size_t n = strlen(v->vmflags_text); n > 0 && v->vmflags_text[n - 1] == ' ';)
                v->vmflags_text[--n] = '\0';   /* the kernel ends it with a space */
        }
        return 0;
    }
    /* Printed before VmFlags, only where the CPU has protection keys. */
    if (strncmp(line, "ProtectionKey:", 14) == 0) {
        if (l->n > 0 && strtoul(line + 14, NULL, 10) != 0)
            l->v[l->n - 1].vmflags |= PROC_VMF_PKEY;
        return 0;
    }
    proc_vma_t v;
    if (proc_parse_maps_line(line, &v) < 0)
        return 0;   /* an smaps "Key: value" line */
    return s_vmas_push(l, cap, &v);
}

int proc_read_vmas(pid_t pid, bool with_flags, proc_vmas_t *ret, cairn_error_t *err)
{
    char *buf = NULL;
    int r = proc_read_file(pid, with_flags ? "smaps" : "maps", &buf, NULL, err);
    if (r < 0)
        return r;
    proc_vmas_t l = { 0 };
    size_t cap = 0;
    for (char *line = buf; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        r = s_vmas_line(&l, &cap, line);
        if (r < 0)
            break;
        line = nl ? nl + 1 : NULL;
    }
    free(buf);
    if (r < 0) {
        proc_vmas_free(&l);
        return cairn_error_set(err, r, CAIRN_SYSTEM, "out of memory reading maps");
    }
    *ret = l;
    return 0;
}

void proc_vmas_free(proc_vmas_t *v)
{
    if (!v)
        return;
    free(v->v);
    v->v = NULL;
    v->n = 0;
}

/* ---- stat / status / fdinfo -------------------------------------------- */

/* Field n (1-based, counting pid as 1 and comm as 2) after the ')'. */
static int s_stat_fields(const char *after, uint64_t *f, int nf)
{
    /* after points at " S ppid ...", i.e. field 3 onwards */
    const char *p = after;
    for (int i = 3; i <= nf; i++) {
        while (*p == ' ')
            p++;
        if (!*p)
            return -EINVAL;
        if (i == 3) {
            f[i] = (uint64_t)(unsigned char)*p;
            p++;
            continue;
        }
        char *end;
        f[i] = (uint64_t)strtoll(p, &end, 10);
        if (end == p)
            return -EINVAL;
        p = end;
    }
    return 0;
}

static void s_stat_fill(proc_stat_t *s, const uint64_t *f)
{
    s->state = (char)f[3];
    s->ppid = (pid_t)f[4];
    s->pgid = (pid_t)f[5];
    s->sid = (pid_t)f[6];
    s->tty_nr = (uint32_t)f[7];
    s->tpgid = (pid_t)(int64_t)f[8];
    s->flags = (unsigned long)f[9];
    s->start_code = f[26];
    s->end_code = f[27];
    s->start_stack = f[28];
    s->exit_signal = (int)(int64_t)f[38];
    s->start_data = f[45];
    s->end_data = f[46];
    s->start_brk = f[47];
    s->arg_start = f[48];
    s->arg_end = f[49];
    s->env_start = f[50];
    s->env_end = f[51];
}

int proc_read_stat(pid_t pid, proc_stat_t *ret, cairn_error_t *err)
{
    char *buf = NULL;
    int r = proc_read_file(pid, "stat", &buf, NULL, err);
    if (r < 0)
        return r;
    char *open_p = strchr(buf, '('), *close_p = strrchr(buf, ')');
    uint64_t f[53] = { 0 };
    proc_stat_t s = { 0 };
    if (!open_p || !close_p || close_p < open_p ||
        s_stat_fields(close_p + 1, f, 51) < 0) {
        free(buf);
        return cairn_error_set(err, -EBADMSG, CAIRN_INTERNAL,
                               "/proc/%d/stat does not parse", (int)pid);
    }
    size_t n = (size_t)(close_p - open_p - 1);
    if (n >= sizeof(s.comm))
        n = sizeof(s.comm) - 1;
    memcpy(s.comm, open_p + 1, n);
    s_stat_fill(&s, f);
    free(buf);
    *ret = s;
    return 0;
}

const char *proc_field(const char *text, const char *key)
{
    size_t kl = strlen(key);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, key, kl) == 0 && p[kl] == ':')
            return p + kl + 1;
    return NULL;
}

size_t proc_field_count(const char *text, const char *key)
{
    size_t n = 0;
    for (const char *l = proc_field(text, key); l; l = proc_field(l, key))
        n++;
    return n;
}

/* "a b c d" into v[4]; false unless there are exactly four numbers. */
static bool s_four(const char *line, uint32_t v[4])
{
    char *end = NULL;
    for (int i = 0; i < 4; i++) {
        unsigned long x = strtoul(line, &end, 10);
        if (end == line || x > UINT32_MAX)
            return false;
        v[i] = (uint32_t)x;
        line = end;
    }
    while (*line == ' ' || *line == '\t')
        line++;
    return *line == '\n' || *line == '\0';
}

/* The numbers of a "Groups:" line (its rest) into a malloc'ed array. */
static int s_groups(const char *line, uint32_t **ret, size_t *ret_n)
{
    _cleanup_free_ uint32_t *g = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        while (*line == ' ' || *line == '\t')
            line++;
        if (*line < '0' || *line > '9')
            break;
        char *end = NULL;
        unsigned long x = strtoul(line, &end, 10);
        if (CAIRN_GROW(g, cap, n + 1, 16) < 0)
            return -ENOMEM;
        g[n++] = (uint32_t)x;
        line = end;
    }
    *ret = TAKE_PTR(g);
    *ret_n = n;
    return 0;
}

/* The credential lines of a status file's text into *ret. */
static int s_parse_creds(pid_t pid, const char *buf, proc_creds_t *ret, cairn_error_t *err)
{
    proc_creds_t c = { 0 };
    static const char *const caps[] = { "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb" };
    uint64_t *capv[] = { &c.cap_inh, &c.cap_prm, &c.cap_eff, &c.cap_bnd, &c.cap_amb };
    const char *v, *groups = NULL, *missing = NULL;
    if (!(v = proc_field(buf, "Uid")) || !s_four(v, c.uid))
        missing = "Uid";
    else if (!(v = proc_field(buf, "Gid")) || !s_four(v, c.gid))
        missing = "Gid";
    else if (!(groups = proc_field(buf, "Groups")))
        missing = "Groups";
    for (size_t i = 0; !missing && i < 5; i++) {
        if (!(v = proc_field(buf, caps[i])))
            missing = caps[i];
        else
            *capv[i] = strtoull(v, NULL, 16);
    }
    if (missing)
        return cairn_error_set(err, -EBADMSG, CAIRN_INTERNAL,
                               "/proc/%d/status: no valid %s line", (int)pid, missing);
    if (s_groups(groups, &c.groups, &c.n_groups) < 0)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    if ((v = proc_field(buf, "NoNewPrivs")))
        c.no_new_privs = strtol(v, NULL, 10) != 0;
    if ((v = proc_field(buf, "Seccomp")))
        c.seccomp = (int)strtol(v, NULL, 10);
    *ret = c;
    return 0;
}

void proc_creds_free(proc_creds_t *c)
{
    if (!c)
        return;
    free(c->groups);
    c->groups = NULL;
    c->n_groups = 0;
}

bool proc_creds_equal(const proc_creds_t *a, const proc_creds_t *b)
{
    return memcmp(a->uid, b->uid, sizeof(a->uid)) == 0 &&
           memcmp(a->gid, b->gid, sizeof(a->gid)) == 0 && a->n_groups == b->n_groups &&
           (a->n_groups == 0 || memcmp(a->groups, b->groups, a->n_groups * sizeof(uint32_t)) == 0) &&
           a->cap_inh == b->cap_inh && a->cap_prm == b->cap_prm && a->cap_eff == b->cap_eff &&
           a->cap_bnd == b->cap_bnd && a->cap_amb == b->cap_amb &&
           a->no_new_privs == b->no_new_privs;
}

bool proc_state_exited(char state)
{
    return state == 'Z' || state == 'X';
}

bool proc_stop_signal(int sig)
{
    return sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU;
}

int proc_read_status(pid_t pid, proc_status_t *ret, proc_creds_t *creds,
                     cairn_error_t *err)
{
    char *buf = NULL;
    int r = proc_read_file(pid, "status", &buf, NULL, err);
    if (r < 0)
        return r;
    proc_status_t s = { 0 };
    const char *v = proc_field(buf, "TracerPid");
    if (!v) {
        free(buf);
        return cairn_error_set(err, -EBADMSG, CAIRN_INTERNAL,
                               "/proc/%d/status has no TracerPid", (int)pid);
    }
    s.tracer_pid = (pid_t)strtol(v, NULL, 10);
    if ((v = proc_field(buf, "Tgid")))
        s.tgid = (pid_t)strtol(v, NULL, 10);
    if ((v = proc_field(buf, "Umask"))) {
        s.umask = (uint32_t)strtoul(v, NULL, 8);
        s.has_umask = true;
    }
    if ((v = proc_field(buf, "Threads")))
        s.threads = (int)strtol(v, NULL, 10);
    const char *ign = proc_field(buf, "SigIgn"), *cgt = proc_field(buf, "SigCgt");
    if (ign && cgt) {
        s.sig_ign = strtoull(ign, NULL, 16);
        s.sig_cgt = strtoull(cgt, NULL, 16);
        s.has_sig = true;
    }
    r = creds ? s_parse_creds(pid, buf, creds, err) : 0;
    free(buf);
    if (r == 0)
        *ret = s;
    return r;
}

int proc_read_fdinfo_text(pid_t pid, int fd, char **ret, cairn_error_t *err)
{
    char name[64];
    snprintf(name, sizeof(name), "fdinfo/%d", fd);
    return proc_read_file(pid, name, ret, NULL, err);
}

int proc_parse_fdinfo(const char *text, proc_fdinfo_t *ret)
{
    const char *pos = proc_field(text, "pos"), *flags = proc_field(text, "flags");
    if (!pos || !flags)
        return -EBADMSG;
    proc_fdinfo_t f = { 0 };
    f.pos = strtoll(pos, NULL, 10);
    f.flags = (int32_t)strtol(flags, NULL, 8);
    const char *ino = proc_field(text, "ino");
    f.ino = ino ? strtoull(ino, NULL, 10) : 0;
    *ret = f;
    return 0;
}

int proc_read_fdinfo(pid_t pid, int fd, proc_fdinfo_t *ret, cairn_error_t *err)
{
    char *buf = NULL;
    int r = proc_read_fdinfo_text(pid, fd, &buf, err);
    if (r < 0)
        return r;
    r = proc_parse_fdinfo(buf, ret);
    free(buf);
    if (r < 0)
        return cairn_error_set(err, r, CAIRN_INTERNAL,
                               "/proc/%d/fdinfo/%d lacks pos or flags", (int)pid, fd);
    return 0;
}

/* One value column of /proc/PID/limits: "unlimited" or a decimal. */
static bool s_limit_value(const char *tok, uint64_t *ret)
{
    if (strcmp(tok, "unlimited") == 0) {
        *ret = UINT64_MAX;   /* RLIM_INFINITY */
        return true;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(tok, &end, 10);
    if (errno || end == tok || *end)
        return false;
    *ret = v;
    return true;
}

/* The kernel prints a header line, then one line per resource in
 * resource order: the name left-justified in 25 columns and a space,
 * then soft and hard limit, then (for some) the unit. Names contain
 * spaces, so the values are found by column, not by field. */
#define S_LIMITS_NAME_COLS 26
int proc_read_limits(pid_t pid, uint64_t (*ret)[2], size_t n, cairn_error_t *err)
{
    char *buf = NULL;
    int r = proc_read_file(pid, "limits", &buf, NULL, err);
    if (r < 0)
        return r;
    uint64_t (*v)[2] = calloc(n ? n : 1, sizeof(*v));
    size_t got = 0;
    char *save = NULL, *line = strtok_r(buf, "\n", &save);   /* the header */
    while (v && got < n && (line = strtok_r(NULL, "\n", &save))) {
        char soft[32], hard[32];
        if (strlen(line) <= S_LIMITS_NAME_COLS ||
            sscanf(line + S_LIMITS_NAME_COLS, "%31s %31s", soft, hard) != 2 ||
            !s_limit_value(soft, &v[got][0]) || !s_limit_value(hard, &v[got][1]))
            break;
        got++;
    }
    free(buf);
    if (!v)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    if (got < n) {
        free(v);
        return cairn_error_set(err, -EBADMSG, CAIRN_INTERNAL,
                               "/proc/%d/limits: %zu of %zu limits parse", (int)pid, got, n);
    }
    memcpy(ret, v, n * sizeof(*v));
    free(v);
    return 0;
}

int proc_read_personality(pid_t pid, uint32_t *ret, cairn_error_t *err)
{
    char *buf = NULL;
    int r = proc_read_file(pid, "personality", &buf, NULL, err);
    if (r < 0)
        return r;
    char *end;
    unsigned long v = strtoul(buf, &end, 16);
    bool ok = end != buf;
    free(buf);
    if (!ok)
        return cairn_error_set(err, -EBADMSG, CAIRN_INTERNAL,
                               "/proc/%d/personality does not parse", (int)pid);
    *ret = (uint32_t)v;
    return 0;
}

/* ---- directories ------------------------------------------------------- */

static int s_cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static int s_push_int(int **v, size_t *n, size_t *cap, int x)
{
    if (CAIRN_GROW(*v, *cap, *n + 1, 16) < 0)
        return -ENOMEM;
    (*v)[(*n)++] = x;
    return 0;
}

int proc_list_dir(pid_t pid, const char *dir, int **ret, size_t *ret_n,
                  cairn_error_t *err)
{
    char path[128];
    proc_path(path, sizeof(path), pid, dir);
    DIR *d = opendir(path);
    if (!d)
        return s_sys(err, errno, "cannot open", path);
    int *v = NULL, r = 0;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while (r == 0 && (e = readdir(d)))
        if (isdigit((unsigned char)e->d_name[0]))
            r = s_push_int(&v, &n, &cap, atoi(e->d_name));
    closedir(d);
    if (r < 0) {
        free(v);
        return cairn_error_set(err, r, CAIRN_SYSTEM, "out of memory listing %s", path);
    }
    if (n)
        qsort(v, n, sizeof(int), s_cmp_int);
    *ret = v;
    *ret_n = n;
    return 0;
}

/* Appends the pids of one children file to v. */
static int s_read_children(pid_t pid, int tid, int **v, size_t *n, size_t *cap)
{
    char name[64], *buf = NULL;
    snprintf(name, sizeof(name), "task/%d/children", tid);
    int r = proc_read_file(pid, name, &buf, NULL, NULL);
    if (r == -ENOENT || r == -ESRCH)
        return 0;   /* the thread exited meanwhile */
    if (r < 0)
        return r;
    char *p = buf, *end;
    for (long c; r == 0 && (c = strtol(p, &end, 10), end != p); p = end)
        r = s_push_int(v, n, cap, (int)c);
    free(buf);
    return r;
}

int proc_list_children(pid_t pid, pid_t **ret, size_t *ret_n, cairn_error_t *err)
{
    int *tids = NULL, *v = NULL;
    size_t nt = 0, n = 0, cap = 0;
    int r = proc_list_dir(pid, "task", &tids, &nt, err);
    if (r < 0)
        return r;
    for (size_t i = 0; r == 0 && i < nt; i++)
        r = s_read_children(pid, tids[i], &v, &n, &cap);
    free(tids);
    if (r < 0) {
        free(v);
        return cairn_error_set(err, r, CAIRN_SYSTEM,
                               "cannot read children of %d: %s", (int)pid, strerror(-r));
    }
    if (n)
        qsort(v, n, sizeof(int), s_cmp_int);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (k == 0 || v[k - 1] != v[i])
            v[k++] = v[i];
    *ret = (pid_t *)v;
    *ret_n = k;
    return 0;
}

size_t proc_read_mem(pid_t pid, int mem_fd, bool readable, uint64_t addr, void *dst,
                     size_t len)
{
    uint8_t *d = dst;
    size_t got = 0;
    if (readable) {
        struct iovec l = { d, len }, rv = { (void *)(uintptr_t)addr, len };
        ssize_t k = process_vm_readv(pid, &l, 1, &rv, 1, 0);
        got = k > 0 ? (size_t)k : 0;
    }
    while (got < len) {
        ssize_t k = pread(mem_fd, d + got, len - got, (off_t)(addr + got));
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    return got & ~(size_t)4095;
}

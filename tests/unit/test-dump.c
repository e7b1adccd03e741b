/* test-dump.c - the dump side of the ghost engine (engine/dump.c and the
 * ghost-dump program) on small processes this test forks itself.
 *
 * The main child sets known state (a patterned mapping, a file at a known
 * offset, a pipe to itself with unread data, a SIGUSR1 handler, SIGUSR2
 * blocked, SIGTRAP ignored, umask 027, cwd /tmp, an altstack,
 * RLIMIT_NOFILE 512 and RLIMIT_STACK unlimited), then
 * blocks in read(2) on a control pipe. We dump it with leave_running,
 * decode the image with the reader and check the recorded values, then
 * wake it: it checks that its pipe data and memory are intact and that the
 * interrupted read restarted and returned the control byte, and exits 0.
 * Refusal cases (a socket, a ptraced child, a zombie) must exit 2 and leave
 * the process as it was; without --leave-running the process is killed.
 * A parent and its forked child sharing open files (a dup, inherited fds)
 * and a memfd must have each sharing fd name the first fd it shares with,
 * and the memfd's data extents written once as object pages; a sealed
 * memfd is refused. So are strict seccomp (before the freeze), a seccomp
 * filter notifying a supervisor (after it: exit 1, left running) and a
 * thread with credentials of its own. ghost-dump --in-place writes over an
 * image and ends the file with the new one; a refusal leaves the old one
 * whole, a failed write removes it. An epoll instance shared across a
 * fork is refused before the freeze. A process whose controlling terminal
 * belongs to a session led from outside its tree is refused (a job
 * checkpointed without its shell); its session leader's tree is not, and
 * /proc says which terminal and foreground group they have.
 *
 * Every file a test makes (images, the children's files) is in a
 * directory of its own, made by the suite's init (mkdtemp) and removed by
 * its fini: two runs at once never share a path, and none is left behind.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <linux/netlink.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#include "dump.h"
#include "image.h"
#include "proc/proc.h"

#define MAP_LEN (16 * 4096)
#define FILE_POS 1234
#define PIPE_DATA "ghost-data"
#define CTL_FD 100
#define READY_FD 101

static char s_altstack[65536];

static char s_dir[64];   /* this test's directory, "" before s_suite_init */

/* path/name inside this test's directory, in one of 8 buffers used in
 * turn: enough for one expression; copy a path that must last longer. */
static const char *s_tmp(const char *name)
{
    static char ring[8][PATH_MAX];
    static unsigned next;
    char *p = ring[next++ % 8];

    snprintf(p, PATH_MAX, "%s/%s", s_dir, name);
    return p;
}

static void s_suite_init(void)
{
    snprintf(s_dir, sizeof(s_dir), "/tmp/ghost-test-dump.XXXXXX");
    cr_assert_not_null(mkdtemp(s_dir), "mkdtemp: %s", strerror(errno));
}

static int s_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path) < 0 ? -1 : 0;
}

/* Pass or fail, the directory goes with what is in it. */
static void s_suite_fini(void)
{
    if (s_dir[0] && nftw(s_dir, s_rm, 16, FTW_DEPTH | FTW_PHYS) < 0)
        fprintf(stderr, "test-dump: cannot remove %s: %s\n", s_dir, strerror(errno));
}

TestSuite(dump, .init = s_suite_init, .fini = s_suite_fini);

static void s_handler(int sig, siginfo_t *si, void *uc)
{
    (void)sig, (void)si, (void)uc;
}

static uint8_t s_pat(size_t i)
{
    return (uint8_t)(i * 7 + 3);
}

/* Drops the test runner's shared arena (a deleted /dev/shm file the engine
 * rightly refuses) from a forked child. */
static void s_drop_runner_maps(void)
{
    proc_vmas_t vm = { 0 };
    if (proc_read_vmas(0, false, &vm, NULL) < 0)
        _exit(9);
    for (size_t i = 0; i < vm.n; i++)
        if (strncmp(vm.v[i].path, "/dev/shm/", 9) == 0)
            munmap((void *)(uintptr_t)vm.v[i].start, vm.v[i].end - vm.v[i].start);
    proc_vmas_free(&vm);
}

/* Only the fds we choose: /dev/null on 0-2, the control and ready pipes. */
static void s_child_fds(int ctl, int ready)
{
    s_drop_runner_maps();
    dup2(ctl, CTL_FD);
    dup2(ready, READY_FD);
    int nul = open("/dev/null", O_RDWR);
    dup2(nul, 0), dup2(nul, 1), dup2(nul, 2);
    syscall(SYS_close_range, 3, CTL_FD - 1, 0);
    syscall(SYS_close_range, READY_FD + 1, ~0u, 0);
}

static void s_child_state(uint8_t **map, int *file_fd, int p[2])
{
    *map = mmap((void *)0x5a0000000000ul, MAP_LEN, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    for (size_t i = 0; i < MAP_LEN; i++)
        (*map)[i] = s_pat(i);
    *file_fd = open(s_tmp("dump.file"), O_RDWR | O_CREAT | O_TRUNC, 0600);
    char z[4096] = { 0 };
    if (write(*file_fd, z, sizeof(z)) != sizeof(z))
        _exit(10);
    lseek(*file_fd, FILE_POS, SEEK_SET);
    if (pipe(p) < 0 || write(p[1], PIPE_DATA, strlen(PIPE_DATA)) < 0)
        _exit(11);
    struct sigaction sa = { .sa_sigaction = s_handler, .sa_flags = SA_SIGINFO | SA_RESTART };
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGTRAP, SIG_IGN);   /* a forced SIGTRAP would reset it */
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGUSR2);
    sigprocmask(SIG_SETMASK, &m, NULL);
    umask(027);
    if (chdir("/tmp") < 0)
        _exit(12);
    stack_t ss = { .ss_sp = s_altstack, .ss_size = sizeof(s_altstack) };
    sigaltstack(&ss, NULL);
    struct rlimit rl = { 512, 4096 };
    setrlimit(RLIMIT_NOFILE, &rl);
    struct rlimit st = { RLIM_INFINITY, RLIM_INFINITY };
    setrlimit(RLIMIT_STACK, &st);
}

/* The child: set state, say ready, block in read, then check itself. */
static void s_child(int ctl, int ready)
{
    s_child_fds(ctl, ready);
    uint8_t *map;
    int file_fd, p[2];
    s_child_state(&map, &file_fd, p);
    if (write(READY_FD, "R", 1) != 1)
        _exit(13);
    close(READY_FD);
    char c = 0;
    ssize_t k = read(CTL_FD, &c, 1);          /* interrupted by the dump */
    if (k != 1 || c != 'G')
        _exit(20);
    char buf[64] = { 0 };
    if (read(p[0], buf, sizeof(buf)) != (ssize_t)strlen(PIPE_DATA) ||
        strcmp(buf, PIPE_DATA) != 0)
        _exit(21);
    for (size_t i = 0; i < MAP_LEN; i++)
        if (map[i] != s_pat(i))
            _exit(22);
    if (lseek(file_fd, 0, SEEK_CUR) != FILE_POS)
        _exit(23);
    _exit(0);
}

typedef struct child {
    pid_t pid;
    int ctl;     /* write end of the control pipe */
} child_t;

static child_t s_spawn(void)
{
    int ctl[2], ready[2];
    cr_assert_eq(pipe(ctl), 0);
    cr_assert_eq(pipe(ready), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0)
        s_child(ctl[0], ready[1]);
    close(ctl[0]);
    close(ready[1]);
    char c;
    cr_assert_eq(read(ready[0], &c, 1), 1, "child ready");
    close(ready[0]);
    usleep(50000);   /* let it reach read(2) */
    return (child_t){ pid, ctl[1] };
}

/* Wakes the child and returns its exit code. */
static int s_finish(child_t *c)
{
    cr_assert_eq(write(c->ctl, "G", 1), 1);
    close(c->ctl);
    int st;
    cr_assert_eq(waitpid(c->pid, &st, 0), c->pid);
    cr_assert(WIFEXITED(st), "child status %#x", st);
    return WEXITSTATUS(st);
}

/* ---- decoding the image ------------------------------------------------ */

typedef struct seen {
    bool header, process, thread, vma, end;
    bool pages_ok;          /* the patterned mapping was dumped intact */
    bool file_ok, pipe_ok;  /* the fds were recorded as set */
    uint64_t pages;
} seen_t;

static void s_check_process(const Cairn__Ghost__Process *p, seen_t *s)
{
    s->process = true;
    cr_assert_eq(p->umask, 027);
    cr_assert_str_eq(p->cwd, "/tmp");
    cr_assert_eq(p->n_sigactions, 64);
    const Cairn__Ghost__SigAction *sa = p->sigactions[SIGUSR1 - 1];
    cr_assert_eq(sa->signo, SIGUSR1);
    cr_assert_eq(sa->handler, (uint64_t)(uintptr_t)s_handler);
    cr_assert(sa->flags & SA_SIGINFO);
    cr_assert(sa->flags & SA_RESTART);
    cr_assert_eq(p->sigactions[SIGUSR2 - 1]->handler, 0, "SIG_DFL");
    cr_assert_eq(p->sigactions[SIGTRAP - 1]->handler, (uint64_t)(uintptr_t)SIG_IGN);
    cr_assert_eq(p->n_rlimits, RLIM_NLIMITS);
    cr_assert_eq(p->rlimits[RLIMIT_NOFILE]->cur, 512);
    cr_assert_eq(p->rlimits[RLIMIT_NOFILE]->max, 4096);
    cr_assert_eq(p->rlimits[RLIMIT_STACK]->cur, RLIM_INFINITY);
    cr_assert_eq(p->rlimits[RLIMIT_STACK]->max, RLIM_INFINITY);
    cr_assert_eq(p->n_itimers, 3);
    cr_assert_gt(p->mm->brk, 0);
    cr_assert_geq(p->mm->brk, p->mm->start_brk);
    cr_assert_gt(p->mm->auxv.len, 0);
    cr_assert_gt(p->mm->arg_end, p->mm->arg_start);
}

static void s_check_thread(const Cairn__Ghost__Thread *t, pid_t pid, seen_t *s)
{
    s->thread = true;
    cr_assert_eq(t->tid, (uint32_t)pid);
    cr_assert(t->leader);
    cr_assert_eq(t->sigmask, 1ull << (SIGUSR2 - 1));
    cr_assert_eq(t->altstack_sp, (uint64_t)(uintptr_t)s_altstack);
    cr_assert_eq(t->altstack_size, sizeof(s_altstack));
    cr_assert_eq(t->syscall_nr, SYS_read, "stopped in read(2)");
    cr_assert_eq(t->syscall_ret, -512, "ERESTARTSYS");
    cr_assert_eq(t->regs.len, 27 * 8);
    cr_assert_geq(t->xsave.len, 576);
    cr_assert_gt(t->fs_base, 0);
    cr_assert_gt(t->clear_tid_addr, 0, "glibc sets the clear-tid address");
    cr_assert_gt(t->robust_list, 0, "glibc registers a robust list");
}

static void s_check_fd(const Cairn__Ghost__Fd *f, seen_t *s)
{
    if (f->kind == CAIRN__GHOST__FD_KIND__FD_REGULAR &&
        strcmp(f->path, s_tmp("dump.file")) == 0) {
        cr_assert_eq(f->pos, FILE_POS);
        cr_assert_eq(f->flags & O_ACCMODE, O_RDWR);
        s->file_ok = true;
    }
    if (f->kind == CAIRN__GHOST__FD_KIND__FD_PIPE && f->pipe_data.len > 0) {
        cr_assert(!f->pipe_write_end);
        cr_assert_eq(f->pipe_data.len, strlen(PIPE_DATA));
        cr_assert_eq(memcmp(f->pipe_data.data, PIPE_DATA, strlen(PIPE_DATA)), 0);
        s->pipe_ok = true;
    }
}

static void s_check_pages(ghost_reader_t *r, const Cairn__Ghost__Pages *pg, seen_t *s)
{
    size_t len = pg->n_pages * 4096;
    uint8_t *buf = malloc(len);
    cairn_error_t err;
    cr_assert_eq(ghost_read_raw(r, buf, len, &err), 0, "%s", err.message);
    s->pages += pg->n_pages;
    if (pg->vaddr <= 0x5a0000000000ul && pg->vaddr + len >= 0x5a0000000000ul + MAP_LEN) {
        size_t off = 0x5a0000000000ul - pg->vaddr;
        for (size_t i = 0; i < MAP_LEN; i++)
            cr_assert_eq(buf[off + i], s_pat(i), "byte %zu", i);
        s->pages_ok = true;
    }
    free(buf);
}

static void s_check_record(ghost_reader_t *r, const Cairn__Ghost__Record *rec, pid_t pid,
                           seen_t *s)
{
    switch (rec->r_case) {
    case CAIRN__GHOST__RECORD__R_HEADER:
        s->header = true;
        cr_assert_eq(rec->header->root_pid, (uint32_t)pid);
        cr_assert_eq(rec->header->page_size, 4096);
        cr_assert_eq(rec->header->n_processes, 1);
        break;
    case CAIRN__GHOST__RECORD__R_PROCESS: s_check_process(rec->process, s); break;
    case CAIRN__GHOST__RECORD__R_THREAD: s_check_thread(rec->thread, pid, s); break;
    case CAIRN__GHOST__RECORD__R_VMA:
        if (rec->vma->start == 0x5a0000000000ul) {
            cr_assert_eq(rec->vma->end, 0x5a0000000000ul + MAP_LEN);
            cr_assert_eq(rec->vma->kind, CAIRN__GHOST__VMA_KIND__VMA_ANON_PRIVATE);
            cr_assert_eq(rec->vma->prot, PROT_READ | PROT_WRITE);
            cr_assert(rec->vma->dumped);
            s->vma = true;
        }
        break;
    case CAIRN__GHOST__RECORD__R_PAGES: s_check_pages(r, rec->pages, s); break;
    case CAIRN__GHOST__RECORD__R_FD: s_check_fd(rec->fd, s); break;
    case CAIRN__GHOST__RECORD__R_END:
        s->end = true;
        cr_assert_eq(rec->end->total_pages, s->pages);
        break;
    default: cr_assert_fail("unexpected record kind %d", rec->r_case);
    }
}

/* Reads the image in fd from its start, record by record, handing each
 * to fn (which must read a pages record's raw bytes). */
static void s_each_record(int fd, void (*fn)(ghost_reader_t *, Cairn__Ghost__Record *, void *),
                          void *ctx)
{
    lseek(fd, 0, SEEK_SET);
    ghost_reader_t *r = ghost_reader_new(fd);
    for (;;) {
        Cairn__Ghost__Record *rec = NULL;
        cairn_error_t err;
        cr_assert_eq(ghost_read_record(r, &rec, &err), 0, "%s", err.message);
        if (!rec)
            break;
        fn(r, rec, ctx);
        cairn__ghost__record__free_unpacked(rec, NULL);
    }
    ghost_reader_free(r);
}

typedef struct {
    pid_t pid;
    seen_t s;
} s_decoding_t;

static void s_decode_one(ghost_reader_t *r, Cairn__Ghost__Record *rec, void *ctx)
{
    s_decoding_t *d = ctx;
    s_check_record(r, rec, d->pid, &d->s);
}

static seen_t s_decode(int fd, pid_t pid)
{
    s_decoding_t d = { pid, { 0 } };
    s_each_record(fd, s_decode_one, &d);
    return d.s;
}

/* /proc/PID/status of pid into buf. */
static void s_read_status(pid_t pid, char *buf, size_t size)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    size_t n = fread(buf, 1, size - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/* SigIgn and SigCgt of pid, as /proc prints them. */
static void s_dispositions(pid_t pid, char *out, size_t size)
{
    char buf[4096];
    s_read_status(pid, buf, sizeof(buf));
    const char *ign = strstr(buf, "SigIgn:"), *cgt = strstr(buf, "SigCgt:");
    cr_assert(ign && cgt);
    snprintf(out, size, "%.24s %.24s", ign, cgt);
}

static void s_assert_running_untraced(pid_t pid)
{
    char buf[4096];
    s_read_status(pid, buf, sizeof(buf));
    cr_assert(strstr(buf, "TracerPid:\t0\n") != NULL, "not traced any more");
    cr_assert(strstr(buf, "State:\tS") != NULL || strstr(buf, "State:\tR") != NULL,
              "running or sleeping");
}

/* Dumps the state child, leaving it running, and checks the image and
 * the child (pagemap_read: the path of kernels without PAGEMAP_SCAN). */
static void s_records_state(bool pagemap_read)
{
    if (geteuid() != 0)
        cr_skip_test("needs root for ptrace of children");
    child_t c = s_spawn();
    FILE *img = tmpfile();
    ghost_dump_opts_t o = { .leave_running = true, .pagemap_read = pagemap_read };
    ghost_dump_stats_t st;
    cairn_error_t err;
    char before[64], after[64];
    s_dispositions(c.pid, before, sizeof(before));
    int r = ghost_dump(c.pid, &o, fileno(img), &st, &err);
    cr_assert_eq(r, 0, "%s", err.message);
    cr_assert(st.left_running);
    s_dispositions(c.pid, after, sizeof(after));
    cr_assert_str_eq(after, before, "the injections left every disposition as it was");
    cr_assert_eq(st.processes, 1);
    cr_assert_eq(st.threads, 1);
    cr_assert_gt(st.pages, MAP_LEN / 4096);
    cr_assert_eq((off_t)st.image_bytes, lseek(fileno(img), 0, SEEK_END));
    s_assert_running_untraced(c.pid);
    seen_t s = s_decode(fileno(img), c.pid);
    cr_assert(s.header && s.process && s.thread && s.vma && s.end);
    cr_assert(s.pages_ok, "patterned mapping dumped");
    cr_assert(s.file_ok, "file at its offset");
    cr_assert(s.pipe_ok, "pipe contents recorded");
    cr_assert_eq(s.pages, st.pages);
    fclose(img);
    cr_assert_eq(s_finish(&c), 0, "the child found its state intact after the dump");
}

Test(dump, records_state_and_leaves_running, .timeout = 60)
{
    s_records_state(false);
}

/* Under ASan the child carries the sanitizer's 14 TiB shadow reservation,
 * and reading pagemap costs a few ns per page of it, populated or not: 13
 * s on this idle VM, 60 s on a loaded one, hence the longer timeout
 * (docs/ghost.md, Debian 12's kernel). */
Test(dump, records_state_reading_pagemap, .timeout = 120)
{
    s_records_state(true);
}

Test(dump, twice_in_a_row, .timeout = 60)
{
    if (geteuid() != 0)
        cr_skip_test("needs root");
    child_t c = s_spawn();
    for (int i = 0; i < 2; i++) {
        FILE *img = tmpfile();
        ghost_dump_opts_t o = { .leave_running = true };
        ghost_dump_stats_t st;
        cairn_error_t err;
        cr_assert_eq(ghost_dump(c.pid, &o, fileno(img), &st, &err), 0, "%s", err.message);
        seen_t s = s_decode(fileno(img), c.pid);
        cr_assert(s.end && s.pipe_ok && s.pages_ok);
        fclose(img);
    }
    cr_assert_eq(s_finish(&c), 0);
}

/* ---- the program ------------------------------------------------------- */

static const char *s_ghost_dump(void)
{
    static char path[4096];
    const char *b = getenv("CAIRN_BUILD");
    snprintf(path, sizeof(path), "%s/services/ghostd/engine/ghost-dump", b ? b : "build");
    return path;
}

/* Runs ghost-dump with args; its stdout into out, exit code returned. */
static int s_run(const char *args, char *out, size_t size)
{
    char cmd[8192];
    snprintf(cmd, sizeof(cmd), "%s %s", s_ghost_dump(), args);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t n = fread(out, 1, size - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    cr_assert(WIFEXITED(st), "ghost-dump status %#x", st);
    return WEXITSTATUS(st);
}

/* Skips a pages record's bytes; notes the end record. */
static void s_skim_one(ghost_reader_t *r, Cairn__Ghost__Record *rec, void *ctx)
{
    cairn_error_t err;
    if (rec->r_case == CAIRN__GHOST__RECORD__R_PAGES) {
        size_t len = rec->pages->n_pages * 4096;
        void *b = malloc(len);
        cr_assert_eq(ghost_read_raw(r, b, len, &err), 0, "%s", err.message);
        free(b);
    }
    *(bool *)ctx |= rec->r_case == CAIRN__GHOST__RECORD__R_END;
}

/* The image at path reads record by record, pages included, to its end. */
static void s_assert_whole_image(const char *path)
{
    int fd = open(path, O_RDONLY);
    cr_assert_geq(fd, 0);
    bool end = false;
    s_each_record(fd, s_skim_one, &end);
    cr_assert(end);
    close(fd);
}

/* A child with fds 0-2 on /dev/null and nothing else, that runs setup
 * (if any: 0 or it exits 1) and then pauses forever. */
static pid_t s_spawn_pausing(int (*setup)(void))
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        /* Dies with the test's worker: a failed assertion skips
         * s_end_child, and a setup may keep the child busy (s_fork_forever). */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        s_drop_runner_maps();
        int nul = open("/dev/null", O_RDWR);
        dup2(nul, 0), dup2(nul, 1), dup2(nul, 2);
        syscall(SYS_close_range, 3, ~0u, 0);
        if (setup && setup() < 0)
            _exit(1);
        for (;;)
            pause();
    }
    usleep(100000);
    return pid;
}

/* Kills and reaps a child of s_spawn_pausing. */
static void s_end_child(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* A socket kind the engine does not restore (a netlink socket: a unix
 * socketpair is restored now). */
static int s_open_socket(void)
{
    return socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
}

static void s_stat_line(pid_t pid, char *buf, size_t size)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    size_t n = fread(buf, 1, size - 1, f);
    buf[n] = '\0';
    fclose(f);
    /* keep pid, comm, state, ppid, pgrp, session only */
    char *p = strrchr(buf, ')');
    int spaces = 0;
    for (; p && *p; p++)
        if (*p == ' ' && ++spaces == 5) {
            *p = '\0';
            break;
        }
    /* Running, sleeping and in disk sleep are one state here: a loaded
     * machine (CI runs tests side by side, under ASan) may find a child
     * still on its way into pause() before the dump and in it after.
     * Stopped, traced or dead stay apart. */
    char *st = strrchr(buf, ')');
    if (st && st[1] == ' ' && (st[2] == 'R' || st[2] == 'D'))
        st[2] = 'S';
}

static void s_refused(pid_t pid, const char *want_code, const char *want_msg)
{
    char before[512], after[512], out[4096], args[256];
    /* A file left by an earlier failed run would read as this one's. */
    unlink(s_tmp("refused.img"));
    s_stat_line(pid, before, sizeof(before));
    snprintf(args, sizeof(args), "--pid %d --out %s", (int)pid, s_tmp("refused.img"));
    cr_assert_eq(s_run(args, out, sizeof(out)), 2, "%s", out);
    cr_assert(strstr(out, want_code) != NULL, "%s", out);
    cr_assert(strstr(out, want_msg) != NULL, "%s", out);
    cr_assert_eq(access(s_tmp("refused.img"), F_OK), -1, "no file left");
    cr_assert_eq(access(s_tmp("refused.img.part"), F_OK), -1, "no partial file");
    snprintf(args, sizeof(args), "--pid %d --check", (int)pid);
    cr_assert_eq(s_run(args, out, sizeof(out)), 2, "%s", out);
    s_stat_line(pid, after, sizeof(after));
    cr_assert_str_eq(before, after, "process state unchanged: '%s' then '%s'", before, after);
}

/* A pausing child prepared by setup is refused like s_refused says, runs
 * on untraced, and is killed afterwards. */
static void s_refused_child(int (*setup)(void), const char *want_code, const char *want_msg)
{
    pid_t pid = s_spawn_pausing(setup);
    s_refused(pid, want_code, want_msg);
    s_assert_running_untraced(pid);
    s_end_child(pid);
}

/* An epoll watching a pipe, then a fork: parent and child hold one
 * instance (the child dies with its parent). */
static int s_fork_with_epoll(void)
{
    int p[2], ep = epoll_create1(0);
    struct epoll_event ev = { .events = EPOLLIN };
    if (ep < 0 || pipe(p) < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev) < 0)
        return -1;
    pid_t k = fork();
    if (k == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        for (;;)
            pause();
    }
    return k > 0 ? 0 : -1;
}

Test(dump, refuses_epoll_shared_across_fork, .timeout = 60)
{
    if (geteuid() != 0)
        cr_skip_test("needs root");
    s_refused_child(s_fork_with_epoll, "\"unsupported\"", "are one epoll instance");
}

static void *s_other_uid_thread(void *arg)
{
    (void)arg;
    /* The raw syscall changes this thread only (libc's setresuid would
     * broadcast it to every thread). */
    if (syscall(SYS_setresuid, 65534, 65534, 65534) != 0)
        _exit(1);
    for (;;)
        pause();
    return NULL;
}

static int s_start_other_uid_thread(void)
{
    pthread_t th;
    return pthread_create(&th, NULL, s_other_uid_thread, NULL) == 0 ? 0 : -1;
}

/* A thread that is someone else than its process: the image holds one set
 * of credentials, so the dump refuses instead of restoring it as the
 * leader. */
Test(dump, refuses_threads_with_other_credentials, .timeout = 60)
{
    if (geteuid() != 0)
        cr_skip_test("needs root (setresuid)");
    s_refused_child(s_start_other_uid_thread, "\"unsupported\"",
                    "credentials other than its leader's");
}

/* Strict seccomp: only read/write/exit/sigreturn, so it blocks in read()
 * of a pipe nobody writes. */
static int s_enter_strict_seccomp(void)
{
    int p[2];
    char c;
    if (pipe(p) < 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT) < 0)
        return -1;
    for (;;)
        if (read(p[0], &c, 1) < 0)
            return -1;
}

/* Strict mode allows none of the syscalls a dump injects or a restore
 * makes: refused before anything changes. */
Test(dump, refuses_strict_seccomp, .timeout = 60)
{
    if (geteuid() != 0)
        cr_skip_test("needs root");
    s_refused_child(s_enter_strict_seccomp, "\"unsupported\"", "strict seccomp mode");
}

/* A filter that hands getpriority to a supervisor (whose listener fd it
 * then closes): the supervisor cannot come back with it. Only ptrace can
 * read filters, so this is a failure after the freeze: exit 1, the
 * process detached and running. */
static int s_user_notif_filter(void)
{
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getpriority, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = { sizeof f / sizeof f[0], f };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return -1;
    long fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
                      SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
    return fd < 0 ? -1 : close((int)fd);
}

Test(dump, refuses_user_notif_seccomp_filter, .timeout = 60)
{
    if (geteuid() != 0)
        cr_skip_test("needs root");
    pid_t pid = s_spawn_pausing(s_user_notif_filter);
    char out[4096], args[256];
    snprintf(args, sizeof(args), "--pid %d --out %s --leave-running", (int)pid,
             s_tmp("notif.img"));
    cr_assert_eq(s_run(args, out, sizeof(out)), 1, "%s", out);
    cr_assert(strstr(out, "notifies a supervisor") != NULL, "%s", out);
    cr_assert(strstr(out, "left running") != NULL, "%s", out);
    cr_assert_eq(access(s_tmp("notif.img"), F_OK), -1, "no file left");
    s_assert_running_untraced(pid);
    s_end_child(pid);
}

Test(dump, refuses_socket, .timeout = 60)
{
    s_refused_child(s_open_socket, "\"unsupported\"", "is a socket (socket:[");
}

/* A child writing into a pipe whose read end only we (outside its tree)
 * hold: it could never be reconnected at restart, so it is refused before
 * anything changes, not after the child was killed. */
Test(dump, refuses_pipe_to_outside_the_tree, .timeout = 60)
{
    int p[2];
    cr_assert_eq(pipe(p), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        s_drop_runner_maps();
        int nul = open("/dev/null", O_RDWR);
        dup2(nul, 0), dup2(nul, 2);
        dup2(p[1], 1);   /* like `prog | less`: stdout to an outside reader */
        syscall(SYS_close_range, 3, ~0u, 0);
        for (;;)
            pause();
    }
    close(p[1]);
    usleep(50000);
    s_refused(pid, "\"unsupported\"", "fd 1 is the write end of pipe");
    s_assert_running_untraced(pid);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(p[0]);
}

Test(dump, refuses_ptraced, .timeout = 60)
{
    pid_t pid = s_spawn_pausing(NULL);
    cr_assert_eq(ptrace(PTRACE_SEIZE, pid, 0, 0), 0);
    char want[64];
    snprintf(want, sizeof(want), "already traced by %d", (int)getpid());
    s_refused(pid, "\"failed-precondition\"", want);
    cr_assert_eq(ptrace(PTRACE_INTERRUPT, pid, 0, 0), 0);
    cr_assert_eq(waitpid(pid, NULL, __WALL), pid);
    cr_assert_eq(ptrace(PTRACE_DETACH, pid, 0, 0), 0);
    s_assert_running_untraced(pid);
    s_end_child(pid);
}

Test(dump, refuses_zombie, .timeout = 60)
{
    pid_t pid = fork();
    if (pid == 0)
        _exit(0);
    usleep(50000);
    s_refused(pid, "\"failed-precondition\"", "is a zombie");
    waitpid(pid, NULL, 0);
}

/* A child that exited and that its parent never reaps. */
static int s_leave_zombie(void)
{
    pid_t k = fork();
    if (k == 0)
        _exit(0);
    return k > 0 ? 0 : -1;
}

/* A zombie below the root that stays one is refused (after the check has
 * looked again for a while, s_check_tree), the tree untouched. */
Test(dump, refuses_zombie_child, .timeout = 60)
{
    s_refused_child(s_leave_zombie, "\"failed-precondition\"", "is a zombie");
}

/* A child sharing its parent's memory (clone with CLONE_VM, as a vfork
 * child before exec) that pauses forever. */
static int s_clone_vm_child(void *arg)
{
    (void)arg;
    for (;;)
        pause();
    return 0;
}

static int s_leave_clone_vm_child(void)
{
    static uint8_t stack[64 * 1024] __attribute__((aligned(16)));
    return clone(s_clone_vm_child, stack + sizeof(stack), CLONE_VM | SIGCHLD, NULL) > 0
               ? 0 : -1;
}

/* Two processes of one memory cannot come back as one: refused (after
 * the check has looked again for a while, as for a vfork child about to
 * exec), the tree untouched. */
Test(dump, refuses_child_sharing_memory, .timeout = 60)
{
    if (geteuid() != 0)
        cr_skip_test("needs root");
    s_refused_child(s_leave_clone_vm_child, "\"unsupported\"",
                    "shares its memory with its parent");
}

Test(dump, not_found_and_usage, .timeout = 60)
{
    char out[4096];
    cr_assert_eq(s_run("--pid 2000000000 --check", out, sizeof(out)), 100, "%s", out);
    cr_assert_eq(s_run("--pid 4000000 --check", out, sizeof(out)), 2, "%s", out);
    cr_assert(strstr(out, "\"not-found\"") != NULL, "%s", out);
    cr_assert_eq(s_run("--out x", out, sizeof(out)), 100, "%s", out);
    cr_assert(strstr(out, "\"usage\"") != NULL, "%s", out);
}

Test(dump, kills_without_leave_running, .timeout = 60)
{
    if (geteuid() != 0)
        cr_skip_test("needs root");
    pid_t pid = s_spawn_pausing(NULL);
    char out[4096], args[256];
    snprintf(args, sizeof(args), "--pid %d --out %s", (int)pid, s_tmp("kill.img"));
    cr_assert_eq(s_run(args, out, sizeof(out)), 0, "%s", out);
    cr_assert(strstr(out, "\"left_running\":false") != NULL, "%s", out);
    cr_assert(strstr(out, "\"processes\":1") != NULL, "%s", out);
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "killed after the dump");
    s_assert_whole_image(s_tmp("kill.img"));
    unlink(s_tmp("kill.img"));
}

/* A parent whose children come and go all the time, as a shell loop's
 * commands do: forks a child that exits at once and reaps it, forever
 * (or until the test's worker exits: s_spawn_pausing). */
static int s_fork_forever(void)
{
    for (;;) {
        pid_t c = fork();
        if (c == 0)
            _exit(0);
        if (c < 0 || waitpid(c, NULL, 0) < 0)
            return -1;
    }
}

/* A child that exits while the tree is checked or frozen, or is a zombie
 * its parent has not reaped yet, is no reason to fail: the check and the
 * dump look again (without that, 16 of 20 dumps of this tree failed with
 * "no process N", "process N is a zombie" or "cannot seize thread N"). */
Test(dump, children_that_come_and_go, .timeout = 60)
{
    if (geteuid() != 0)
        cr_skip_test("needs root");
    pid_t pid = s_spawn_pausing(s_fork_forever);
    char out[4096], args[256];
    snprintf(args, sizeof(args), "--pid %d --check", (int)pid);
    for (int i = 0; i < 8; i++)
        cr_assert_eq(s_run(args, out, sizeof(out)), 0, "check %d: %s", i, out);
    snprintf(args, sizeof(args), "--pid %d --out %s --leave-running", (int)pid,
             s_tmp("churn.img"));
    for (int i = 0; i < 8; i++) {
        cr_assert_eq(s_run(args, out, sizeof(out)), 0, "dump %d: %s", i, out);
        s_assert_whole_image(s_tmp("churn.img"));
    }
    unlink(s_tmp("churn.img"));
    s_assert_running_untraced(pid);
    s_end_child(pid);
}

/* An image of pausing children: written over an 8 MiB file of 0xff, it
 * ends where the image ends and reads whole. */
static void s_fill_file(const char *path, size_t len, uint8_t byte)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cr_assert_geq(fd, 0);
    uint8_t b[65536];
    memset(b, byte, sizeof(b));
    for (size_t off = 0; off < len; off += sizeof(b))
        cr_assert_eq(write(fd, b, sizeof(b)), (ssize_t)sizeof(b));
    close(fd);
}

static off_t s_file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

/* As root: a pausing child (after setup) and the file img, len bytes of
 * byte, for it to be written over. */
static pid_t s_in_place_start(const char *img, int (*setup)(void), size_t len, uint8_t byte)
{
    if (geteuid() != 0)
        cr_skip_test("needs root");
    pid_t pid = s_spawn_pausing(setup);
    s_fill_file(img, len, byte);
    return pid;
}

Test(dump, in_place_writes_over_an_image_and_ends_it_there, .timeout = 60)
{
    char IMG[sizeof(s_dir) + 32];
    snprintf(IMG, sizeof(IMG), "%s", s_tmp("inplace.img"));
    /* junk longer than the image, so its end must be cut: 64 MiB (a
     * sanitizer build's child, a fork of this test, dumps to 8 MiB and
     * more) */
    pid_t pid = s_in_place_start(IMG, NULL, 64u << 20, 0xff);
    char out[4096], args[256];
    snprintf(args, sizeof(args), "--pid %d --out %s --in-place --leave-running", (int)pid,
             IMG);
    for (int i = 0; i < 2; i++) {   /* over the junk, then over its own image */
        cr_assert_eq(s_run(args, out, sizeof(out)), 0, "%s", out);
        long long bytes = -1;
        const char *b = strstr(out, "\"image_bytes\":");
        cr_assert(b && sscanf(b, "\"image_bytes\":%lld", &bytes) == 1, "%s", out);
        cr_assert_eq(s_file_size(IMG), (off_t)bytes, "the file ends with the image");
        cr_assert_lt(bytes, 64 << 20);
        s_assert_whole_image(IMG);
        cr_assert_eq(access(s_tmp("inplace.img.part"), F_OK), -1, "no .part in place");
    }
    s_end_child(pid);
    unlink(IMG);
}

/* Refused before the freeze: the image written over is left whole, and
 * none is made where there was none. */
Test(dump, in_place_refusal_keeps_the_image, .timeout = 60)
{
    char IMG[sizeof(s_dir) + 32];
    snprintf(IMG, sizeof(IMG), "%s", s_tmp("inplace.img"));
    pid_t pid = s_in_place_start(IMG, s_open_socket, 1u << 20, 0x5c);
    char out[4096], args[256];
    snprintf(args, sizeof(args), "--pid %d --out %s --in-place", (int)pid, IMG);
    cr_assert_eq(s_run(args, out, sizeof(out)), 2, "%s", out);
    cr_assert_eq(s_file_size(IMG), 1 << 20);
    uint8_t b[4096];
    int fd = open(IMG, O_RDONLY);
    cr_assert_eq(read(fd, b, sizeof(b)), (ssize_t)sizeof(b));
    close(fd);
    cr_assert(b[0] == 0x5c && b[4095] == 0x5c, "untouched");
    unlink(IMG);
    cr_assert_eq(s_run(args, out, sizeof(out)), 2, "%s", out);
    cr_assert_eq(access(IMG, F_OK), -1, "no file made by a refusal");
    s_end_child(pid);
}

/* A write that fails once the dump began (a file size limit: EFBIG with
 * SIGXFSZ ignored): exit 1, the process left running, and the image
 * written over removed rather than left half new. */
Test(dump, in_place_failure_removes_the_image, .timeout = 60)
{
    char IMG[sizeof(s_dir) + 32];
    snprintf(IMG, sizeof(IMG), "%s", s_tmp("inplace.img"));
    char removed[sizeof(s_dir) + 96];
    snprintf(removed, sizeof(removed), "the image written over at %s was removed", IMG);
    pid_t pid = s_in_place_start(IMG, NULL, 1u << 20, 0x5c);
    char out[4096], args[512];
    snprintf(args, sizeof(args), "--pid %d --out %s --in-place\" || exit $?", (int)pid,
             IMG);
    char cmd[8192];
    snprintf(cmd, sizeof(cmd), "sh -c \"trap '' XFSZ; ulimit -f 64; %s %s", s_ghost_dump(),
             args);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1, "status %#x: %s", st, out);
    cr_assert(strstr(out, removed), "%s", out);
    cr_assert(strstr(out, "left running"), "%s", out);
    cr_assert_eq(access(IMG, F_OK), -1, "removed");
    s_assert_running_untraced(pid);
    s_end_child(pid);
}

/* ---- shared open files and memfds -------------------------------------- */

#define SHARE_FILE s_tmp("dump.shared")
#define OBJ_SIZE ((1u << 20) + 100)   /* data at 0 (2 pages) and 1 MiB (100 bytes) */

static uint8_t s_obj_byte(uint64_t off)
{
    return off < 2 * 4096 ? s_pat((size_t)off) : off >= (1u << 20) ? (uint8_t)(off * 3) : 0;
}

/* fd 3 a file at offset 5, fd 42 its dup, fd 4 a memfd with two data
 * extents and a hole, also mapped; a forked child inherits them all. Both
 * pause. */
static void s_share_child(int ready)
{
    s_child_fds(ready, ready);
    int f = open(SHARE_FILE, O_RDWR | O_CREAT | O_TRUNC, 0600);
    int m = memfd_create("ghost-dump-memfd", 0);
    uint8_t buf[2 * 4096];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = s_obj_byte(i);
    if (f != 3 || m != 4 || dup2(f, 42) != 42 || lseek(f, 5, SEEK_SET) != 5 ||
        ftruncate(m, OBJ_SIZE) < 0 || pwrite(m, buf, sizeof(buf), 0) != sizeof(buf))
        _exit(30);
    for (size_t i = 0; i < 100; i++)
        buf[i] = s_obj_byte((1u << 20) + i);
    if (pwrite(m, buf, 100, 1u << 20) != 100 || lseek(m, 77, SEEK_SET) != 77)
        _exit(31);
    /* Mapped too: its pages are the object's, written once. */
    if (mmap(NULL, 2 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, m, 0) == MAP_FAILED)
        _exit(33);
    /* The ready pipe's read end is the test runner's, outside this tree:
     * once ready has been said, neither process keeps a write end (the
     * dump refuses a pipe it could not reconnect). */
    if (fork() == 0) {
        close(CTL_FD), close(READY_FD);
        for (;;)
            pause();
    }
    if (write(READY_FD, "R", 1) != 1)
        _exit(32);
    close(CTL_FD), close(READY_FD);
    for (;;)
        pause();
}

/* What the image says about the fds of the two processes. */
typedef struct shares_seen {
    pid_t pid[2];                 /* parent, child (image order) */
    Cairn__Ghost__Fd *fd[2][64];  /* by process and fd number 0-63 (owned) */
    uint8_t *obj;                 /* object pages, by offset */
    uint64_t obj_pages, obj_records, shmid, pages, total_pages;
    int memfd_vmas;               /* memfd mappings seen ... */
    int memfd_vmas_dumped;        /* ... saying their pages follow */
    uint64_t memfd_lo, memfd_hi;  /* the current process's memfd mapping */
    uint64_t memfd_vma_pages;     /* pages records inside such a mapping */
} shares_seen_t;

static void s_shares_object(ghost_reader_t *r, const Cairn__Ghost__ObjectPages *o,
                            shares_seen_t *s)
{
    cairn_error_t err;
    uint64_t len = o->n_pages * 4096;
    cr_assert(s->shmid == 0 || s->shmid == o->shmid, "one object");
    cr_assert_leq(o->offset + len, (uint64_t)OBJ_SIZE + 4096);
    s->shmid = o->shmid;
    cr_assert_eq(ghost_read_raw(r, s->obj + o->offset, len, &err), 0, "%s", err.message);
    s->obj_pages += o->n_pages;
    s->obj_records++;
}

static void s_shares_record(ghost_reader_t *r, Cairn__Ghost__Record *rec, shares_seen_t *s,
                            int *cur)
{
    cairn_error_t err;
    if (rec->r_case == CAIRN__GHOST__RECORD__R_PROCESS) {
        s->pid[++*cur] = (pid_t)rec->process->pid;
    } else if (rec->r_case == CAIRN__GHOST__RECORD__R_VMA &&
               rec->vma->kind == CAIRN__GHOST__VMA_KIND__VMA_MEMFD) {
        s->memfd_vmas++;
        s->memfd_vmas_dumped += rec->vma->dumped;
        s->memfd_lo = rec->vma->start, s->memfd_hi = rec->vma->end;
    } else if (rec->r_case == CAIRN__GHOST__RECORD__R_PAGES) {
        uint64_t a = rec->pages->vaddr;
        s->memfd_vma_pages += a >= s->memfd_lo && a < s->memfd_hi ? rec->pages->n_pages : 0;
        void *b = malloc(rec->pages->n_pages * 4096);
        cr_assert_eq(ghost_read_raw(r, b, rec->pages->n_pages * 4096, &err), 0, "%s",
                     err.message);
        s->pages += rec->pages->n_pages;
        free(b);
    } else if (rec->r_case == CAIRN__GHOST__RECORD__R_OBJECT_PAGES) {
        s_shares_object(r, rec->object_pages, s);
    } else if (rec->r_case == CAIRN__GHOST__RECORD__R_END) {
        s->total_pages = rec->end->total_pages;
    } else if (rec->r_case == CAIRN__GHOST__RECORD__R_FD && rec->fd->fd < 64) {
        s->fd[*cur][rec->fd->fd] = rec->fd;
        rec->fd = NULL;   /* kept */
        rec->r_case = CAIRN__GHOST__RECORD__R__NOT_SET;
    }
}

static shares_seen_t s_shares_decode(int fd)
{
    shares_seen_t s = { .obj = calloc(1, OBJ_SIZE + 4096) };
    int cur = -1;
    lseek(fd, 0, SEEK_SET);
    ghost_reader_t *r = ghost_reader_new(fd);
    for (;;) {
        Cairn__Ghost__Record *rec = NULL;
        cairn_error_t err;
        cr_assert_eq(ghost_read_record(r, &rec, &err), 0, "%s", err.message);
        if (!rec)
            break;
        s_shares_record(r, rec, &s, &cur);
        cairn__ghost__record__free_unpacked(rec, NULL);
    }
    ghost_reader_free(r);
    cr_assert_eq(cur, 1, "two processes");
    return s;
}

static void s_assert_shares(const Cairn__Ghost__Fd *f, pid_t pid, int fd)
{
    cr_assert_not_null(f);
    cr_assert(f->shares, "fd %d shares", f->fd);
    cr_assert_eq(f->shares_pid, (uint32_t)pid, "fd %d shares a fd of %d", f->fd, (int)pid);
    cr_assert_eq(f->shares_fd, fd, "fd %d shares fd %d", f->fd, fd);
}

Test(dump, records_shared_open_files_and_memfds, .timeout = 60)
{
    if (geteuid() != 0)
        cr_skip_test("needs root");
    int ready[2];
    char c, path[64];
    struct stat st;
    cr_assert_eq(pipe(ready), 0);
    pid_t pid = fork();
    if (pid == 0)
        s_share_child(ready[1]);
    close(ready[1]);
    cr_assert_eq(read(ready[0], &c, 1), 1, "child ready");
    usleep(50000);
    snprintf(path, sizeof(path), "/proc/%d/fd/4", (int)pid);
    cr_assert_eq(stat(path, &st), 0);
    FILE *img = tmpfile();
    ghost_dump_opts_t o = { .leave_running = true };
    ghost_dump_stats_t ds;
    cairn_error_t err;
    cr_assert_eq(ghost_dump(pid, &o, fileno(img), &ds, &err), 0, "%s", err.message);
    shares_seen_t s = s_shares_decode(fileno(img));
    kill(s.pid[1], SIGKILL);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    cr_assert_eq(s.pid[0], pid);
    Cairn__Ghost__Fd *const *p = s.fd[0], *const *k = s.fd[1];
    cr_assert(p[3] && !p[3]->shares && p[3]->pos == 5, "fd 3 owns its description");
    s_assert_shares(p[42], pid, 3);
    s_assert_shares(p[1], pid, 0);   /* 0-2: one /dev/null, dup'ed */
    s_assert_shares(k[3], pid, 3);   /* inherited across fork */
    s_assert_shares(k[42], pid, 3);
    s_assert_shares(k[4], pid, 4);
    cr_assert_eq(p[4]->kind, CAIRN__GHOST__FD_KIND__FD_MEMFD);
    cr_assert(!p[4]->shares);
    cr_assert_eq(p[4]->shmid, (uint64_t)st.st_ino);
    cr_assert_eq(p[4]->size, OBJ_SIZE);
    cr_assert_eq(p[4]->pos, 77);
    cr_assert_eq(s.shmid, (uint64_t)st.st_ino);
    cr_assert_eq(s.obj_pages, 3, "two data pages and the partial last one, holes skipped");
    for (uint64_t i = 0; i < OBJ_SIZE; i++)
        cr_assert_eq(s.obj[i], s_obj_byte(i), "object byte %llu", (unsigned long long)i);
    cr_assert_eq(s.total_pages, s.pages + s.obj_pages);
    cr_assert_eq(s.memfd_vmas, 2, "the mapping, in both processes");
    cr_assert_eq(s.memfd_vmas_dumped, 0, "a memfd an fd refers to: pages once, as its object's");
    cr_assert_eq(s.memfd_vma_pages, 0);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 64; j++)
            cairn__ghost__fd__free_unpacked(s.fd[i][j], NULL);
    free(s.obj);
    fclose(img);
    unlink(SHARE_FILE);
}

/* Many fds on one file, each its own open file description but for the
 * dups (files.c orders the descriptions of one file in a tree by kcmp):
 * every dup names the very fd it was dup'ed from, and no other fd of
 * that file shares anything. */
#define MANY_BASE 200
#define MANY_FDS 1500
#define MANY_DUPS 3000

static int s_many_fds(void)
{
    struct rlimit rl = { MANY_DUPS + MANY_FDS + 16, MANY_DUPS + MANY_FDS + 16 };
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        return -1;
    for (int i = 0; i < MANY_FDS; i++) {
        int fd = open("/dev/null", O_RDONLY);
        if (fd < 0 || dup2(fd, MANY_BASE + i) < 0 || close(fd) < 0)
            return -1;
        if (i % 3 == 0 && dup2(MANY_BASE + i, MANY_DUPS + i) < 0)
            return -1;
    }
    return 0;
}

typedef struct {
    pid_t pid;
    int owners, dups;
} s_many_count_t;

/* Checks one fd record of the many-fds image against how setup made it. */
static void s_many_one(ghost_reader_t *r, Cairn__Ghost__Record *rec, void *ctx)
{
    s_many_count_t *n = ctx;
    bool end = false;
    s_skim_one(r, rec, &end);
    const Cairn__Ghost__Fd *f = rec->r_case == CAIRN__GHOST__RECORD__R_FD ? rec->fd : NULL;
    if (f && f->fd >= MANY_BASE && f->fd < MANY_BASE + MANY_FDS) {
        cr_assert(!f->shares, "fd %d owns its description (shares fd %d)", f->fd,
                  f->shares_fd);
        n->owners++;
    } else if (f && f->fd >= MANY_DUPS) {
        cr_assert(f->shares, "fd %d shares", f->fd);
        cr_assert_eq(f->shares_fd, MANY_BASE + (f->fd - MANY_DUPS),
                     "fd %d shares fd %d, not %d", f->fd, f->shares_fd,
                     MANY_BASE + (f->fd - MANY_DUPS));
        cr_assert_eq(f->shares_pid, (uint32_t)n->pid);
        n->dups++;
    }
}

Test(dump, many_descriptions_of_one_file, .timeout = 120)
{
    if (geteuid() != 0)
        cr_skip_test("needs root");
    pid_t pid = s_spawn_pausing(s_many_fds);
    /* The last fd setup makes: its presence says setup is done. */
    char last[64];
    snprintf(last, sizeof(last), "/proc/%d/fd/%d", (int)pid,
             MANY_DUPS + (MANY_FDS - 1) / 3 * 3);
    for (int i = 0; i < 1000 && access(last, F_OK) < 0; i++)
        usleep(10000);
    cr_assert_eq(access(last, F_OK), 0, "child set up its fds");
    FILE *img = tmpfile();
    ghost_dump_opts_t o = { 0 };   /* killed by the dump */
    ghost_dump_stats_t ds;
    cairn_error_t err;
    cr_assert_eq(ghost_dump(pid, &o, fileno(img), &ds, &err), 0, "%s", err.message);
    s_end_child(pid);
    s_many_count_t n = { pid, 0, 0 };
    s_each_record(fileno(img), s_many_one, &n);
    fclose(img);
    cr_assert_eq(n.owners, MANY_FDS);
    cr_assert_eq(n.dups, (MANY_FDS + 2) / 3);
}

/* The state letter of /proc/PID/stat (running as sleeping: s_stat_line). */
static char s_proc_state(pid_t pid)
{
    char buf[512];
    s_stat_line(pid, buf, sizeof(buf));
    const char *p = strrchr(buf, ')');
    cr_assert(p && p[1] == ' ', "stat of %d", (int)pid);
    return p[2];
}

/* Reads the stop signal of the image's process record into *ctx. */
static void s_stop_one(ghost_reader_t *r, Cairn__Ghost__Record *rec, void *ctx)
{
    bool end = false;
    s_skim_one(r, rec, &end);
    if (rec->r_case == CAIRN__GHOST__RECORD__R_PROCESS)
        *(int *)ctx = (int)rec->process->stop_signal;
}

/* A stopped process (a shell's job stopped with SIGSTOP or ^Z) is dumped
 * -- the injected calls run although it is stopped -- its image says so,
 * and, left running, it is stopped still. */
Test(dump, stopped_process, .timeout = 60)
{
    if (geteuid() != 0)
        cr_skip_test("needs root");
    pid_t pid = s_spawn_pausing(NULL);
    cr_assert_eq(kill(pid, SIGSTOP), 0);
    for (int i = 0; i < 500 && s_proc_state(pid) != 'T'; i++)
        usleep(10000);
    cr_assert_eq(s_proc_state(pid), 'T');
    FILE *img = tmpfile();
    ghost_dump_opts_t o = { .leave_running = true };
    ghost_dump_stats_t ds;
    cairn_error_t err;
    cr_assert_eq(ghost_dump(pid, &o, fileno(img), &ds, &err), 0, "%s", err.message);
    int stop = -1;
    s_each_record(fileno(img), s_stop_one, &stop);
    fclose(img);
    cr_assert_eq(stop, SIGSTOP, "the image says the process was stopped");
    for (int i = 0; i < 100 && s_proc_state(pid) != 'T'; i++)
        usleep(10000);
    cr_assert_eq(s_proc_state(pid), 'T', "stopped still after the dump");
    cr_assert_eq(kill(pid, SIGCONT), 0);
    for (int i = 0; i < 500 && s_proc_state(pid) == 'T'; i++)
        usleep(10000);
    s_assert_running_untraced(pid);
    s_end_child(pid);
}

/* Seals are restored now (issue 16's memory area, ghost-state's
 * memory-memfd-seals); a hugetlb memfd is refused. */
Test(dump, refuses_hugetlb_memfd, .timeout = 60)
{
    int probe = memfd_create("ghost-probe", MFD_HUGETLB);
    if (probe < 0)
        cr_skip_test("no hugetlb memfds here: %s", strerror(errno));
    close(probe);
    int ready[2];
    char c;
    cr_assert_eq(pipe(ready), 0);
    pid_t pid = fork();
    if (pid == 0) {
        s_child_fds(ready[1], ready[1]);
        int m = memfd_create("ghost-huge", MFD_HUGETLB);
        if (m < 0 || write(READY_FD, "R", 1) != 1)
            _exit(1);
        for (;;)
            pause();
    }
    close(ready[1]);
    cr_assert_eq(read(ready[0], &c, 1), 1, "child ready");
    cairn_error_t err;
    int r = ghost_check(pid, NULL, &err);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    cr_assert_eq(r, -EOPNOTSUPP, "%d %s", r, err.message);
    cr_assert(strstr(err.message, "is a hugetlb memfd") != NULL, "%s", err.message);
}

/* A session on a pty: its leader took the slave as its controlling
 * terminal, its child (a job) is in the foreground. The job alone is
 * refused -- its session leader is outside its tree -- the leader's tree
 * is not, and /proc's tty_nr and tpgid say so. */
Test(dump, refuses_a_job_whose_session_is_led_outside, .timeout = 60)
{
    int ready[2], m = posix_openpt(O_RDWR | O_NOCTTY);
    char name[64];
    pid_t job = 0;
    cr_assert(m >= 0 && grantpt(m) == 0 && unlockpt(m) == 0);
    cr_assert_eq(ptsname_r(m, name, sizeof name), 0);
    cr_assert_eq(pipe(ready), 0);
    pid_t leader = fork();
    if (leader == 0) {   /* no pipe end kept: the tree must be checkable */
        int t;
        s_child_fds(ready[1], ready[1]);
        close(CTL_FD);
        if (setsid() < 0 || (t = open(name, O_RDWR)) < 0)
            _exit(1);
        pid_t c = fork();
        if (c == 0) {
            close(READY_FD);
            for (;;)
                pause();
        }
        if (c < 0 || setpgid(c, c) < 0 || tcsetpgrp(t, c) < 0 ||
            write(READY_FD, &c, sizeof c) != sizeof c)
            _exit(1);
        close(READY_FD);
        for (;;)
            pause();
    }
    close(ready[1]);
    cr_assert_eq(read(ready[0], &job, sizeof job), (ssize_t)sizeof job, "session ready");
    proc_stat_t st;
    cr_assert_eq(proc_read_stat(job, &st, NULL), 0);
    struct stat ts;
    cr_assert_eq(stat(name, &ts), 0);
    unsigned ma = (st.tty_nr >> 8) & 0xfff;
    unsigned mi = (st.tty_nr & 0xff) | ((st.tty_nr >> 12) & 0xfff00);
    cr_expect_eq(makedev(ma, mi), ts.st_rdev, "tty_nr %#x is %s", st.tty_nr, name);
    cr_expect_eq(st.tpgid, job, "tpgid %d, job %d", (int)st.tpgid, (int)job);
    cairn_error_t err;
    int r_job = ghost_check(job, NULL, &err);
    char why[sizeof err.message];
    snprintf(why, sizeof why, "%s", err.message);
    int r_leader = ghost_check(leader, NULL, &err);
    kill(job, SIGKILL);
    kill(leader, SIGKILL);
    waitpid(leader, NULL, 0);
    close(m);
    cr_assert_eq(r_job, -EOPNOTSUPP, "%d %s", r_job, why);
    cr_assert(strstr(why, "a session cannot be joined") != NULL, "%s", why);
    cr_assert_eq(r_leader, 0, "%d %s", r_leader, err.message);
}

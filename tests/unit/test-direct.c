/* test-direct.c - the dump's in-place page copy (engine/direct.c) against a
 * child this test forks: its memory, read with process_vm_readv (and
 * /proc/PID/mem for a PROT_NONE range), must land byte for byte at the
 * offsets ghost_write_pages_room gave, across batch boundaries and at file
 * offsets that are not page aligned, and read back through the image
 * reader. Also: which fds are refused (the caller streams instead), an
 * address the child has not mapped, and a filesystem that fills up.
 *
 * Each test mounts its own tmpfs in a private mount namespace (criterion
 * runs every test in a process of its own), so it needs root. The mount
 * point is a directory of its own (mkdtemp), and the test works there
 * (cwd): two runs at once never share it, and the suite's fini removes it.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "direct.h"
#include "image.h"

#define PAGE 4096u
#define S_BATCH (16u << 20)   /* small batches: the tests cross their edges */

static char s_dir[64];   /* this test's mount point, "" before s_mount */

/* A private tmpfs with these options at a new directory, made the cwd;
 * skips without root. */
static void s_mount(const char *opts)
{
    if (geteuid() != 0)
        cr_skip_test("needs root (a tmpfs of its own)");
    cr_assert_eq(unshare(CLONE_NEWNS), 0, "unshare: %s", strerror(errno));
    cr_assert_eq(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), 0);
    snprintf(s_dir, sizeof(s_dir), "/tmp/cairn-test-direct.XXXXXX");
    cr_assert_not_null(mkdtemp(s_dir), "mkdtemp: %s", strerror(errno));
    cr_assert_eq(mount("cairn-test", s_dir, "tmpfs", 0, opts), 0, "mount %s: %s", opts,
                 strerror(errno));
    cr_assert_eq(chdir(s_dir), 0);
}

/* Suite fini: the mount point goes, with what is mounted there (and in it:
 * MNT_DETACH takes the subtree), pass or fail. */
static void s_unmount(void)
{
    if (!s_dir[0])
        return;
    if (chdir("/") < 0 || umount2(s_dir, MNT_DETACH) < 0 || rmdir(s_dir) < 0)
        fprintf(stderr, "test-direct: cannot remove %s: %s\n", s_dir, strerror(errno));
}

TestSuite(direct, .fini = s_unmount);

static uint8_t s_pat(uint64_t i)
{
    return (uint8_t)(i * 13 + (i >> 12) + 5);
}

/* A child with len bytes of pattern at *ret_addr (the last pages
 * PROT_NONE when none_pages > 0) and nothing mapped in the hole_pages
 * after them; returns its pid. The mapping is made before the fork, so
 * the address is the same in both. The child dies with the test and
 * holds none of its output. */
static pid_t s_child(size_t len, size_t none_pages, size_t hole_pages, uint64_t *ret_addr)
{
    size_t all = len + hole_pages * PAGE;
    uint8_t *m = mmap(NULL, all, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq(m, MAP_FAILED);
    int ready[2];
    cr_assert_eq(pipe(ready), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int null = open("/dev/null", O_RDWR);
        dup2(null, 1);
        dup2(null, 2);
        if (hole_pages)
            munmap(m + len, hole_pages * PAGE);
        for (size_t i = 0; i < len; i++)   /* its own pages, not shared */
            m[i] = s_pat(i);
        if (none_pages)
            mprotect(m + len - none_pages * PAGE, none_pages * PAGE, PROT_NONE);
        if (write(ready[1], "r", 1) != 1)
            _exit(1);
        for (;;)
            pause();
    }
    char c;
    cr_assert_eq(read(ready[0], &c, 1), 1);
    close(ready[0]);
    close(ready[1]);
    munmap(m, all);
    *ret_addr = (uint64_t)(uintptr_t)m;
    return pid;
}

static void s_reap(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

static int s_open_mem(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    cr_assert_geq(fd, 0);
    return fd;
}

static void s_header(ghost_writer_t *w)
{
    Cairn__Ghost__ImageHeader h = CAIRN__GHOST__IMAGE_HEADER__INIT;
    h.version = GHOST_IMAGE_VERSION;
    h.page_size = PAGE;
    h.n_processes = 1;
    Cairn__Ghost__Record rec = CAIRN__GHOST__RECORD__INIT;
    rec.r_case = CAIRN__GHOST__RECORD__R_HEADER;
    rec.header = &h;
    cairn_error_t err;
    cr_assert_eq(ghost_write_record(w, &rec, &err), 0, "%s", err.message);
}

static void s_end(ghost_writer_t *w, uint64_t pages)
{
    Cairn__Ghost__End e = CAIRN__GHOST__END__INIT;
    e.total_pages = pages;
    e.total_bytes = ghost_writer_bytes(w);
    Cairn__Ghost__Record rec = CAIRN__GHOST__RECORD__INIT;
    rec.r_case = CAIRN__GHOST__RECORD__R_END;
    rec.end = &e;
    cairn_error_t err;
    cr_assert_eq(ghost_write_record(w, &rec, &err), 0, "%s", err.message);
    cr_assert_eq(ghost_writer_flush(w, &err), 0, "%s", err.message);
}

/* Reads the image back: every pages record's bytes must be the child's
 * pattern at that address (base: the child's mapping). Returns pages. */
static uint64_t s_verify(int fd, uint64_t base)
{
    cr_assert_eq(lseek(fd, 0, SEEK_SET), 0);
    ghost_reader_t *r = ghost_reader_new(fd);
    cairn_error_t err;
    uint64_t pages = 0;
    for (;;) {
        Cairn__Ghost__Record *rec = NULL;
        cr_assert_eq(ghost_read_record(r, &rec, &err), 0, "%s", err.message);
        if (!rec)
            break;
        if (rec->r_case == CAIRN__GHOST__RECORD__R_PAGES) {
            size_t n = rec->pages->n_pages * PAGE;
            uint8_t *b = malloc(n);
            cr_assert_eq(ghost_read_raw(r, b, n, &err), 0, "%s", err.message);
            uint64_t at = rec->pages->vaddr - base;
            for (size_t i = 0; i < n; i++)
                if (b[i] != s_pat(at + i))
                    cr_assert_fail("byte %zu of the run at %#llx differs", i,
                                   (unsigned long long)rec->pages->vaddr);
            free(b);
            pages += rec->pages->n_pages;
        }
        cairn__ghost__record__free_unpacked(rec, NULL);
    }
    ghost_reader_free(r);
    return pages;
}

/* One test's world: a child, its /proc/PID/mem, an image file on a tmpfs
 * of its own, a writer (header written) and a copier on it. */
typedef struct s_fix {
    pid_t pid;
    uint64_t base;         /* the child's patterned mapping */
    int mem, fd;
    ghost_writer_t *w;
    ghost_direct_t *d;
} s_fix_t;

/* mount_opts for the tmpfs; len, none_pages, hole_pages as s_child. */
static void s_setup(s_fix_t *f, const char *mount_opts, size_t len, size_t none_pages,
                    size_t hole_pages)
{
    s_mount(mount_opts);
    f->pid = s_child(len, none_pages, hole_pages, &f->base);
    f->mem = s_open_mem(f->pid);
    f->fd = open("image", O_RDWR | O_CREAT | O_TRUNC, 0600);
    cr_assert_geq(f->fd, 0);
    f->w = ghost_writer_new(f->fd);
    f->d = NULL;
    cairn_error_t err;
    cr_assert_eq(ghost_direct_new(f->fd, S_BATCH, &f->d, &err), 0, "%s", err.message);
    cr_assert_geq(ghost_direct_threads(f->d), 1);
    s_header(f->w);
}

static void s_teardown(s_fix_t *f)
{
    ghost_direct_free(f->d);
    ghost_writer_free(f->w);
    close(f->fd);
    close(f->mem);
    s_reap(f->pid);
}

/* Places [addr, addr+len) of pid as one pages record and queues it. */
static int s_room(ghost_writer_t *w, ghost_direct_t *d, pid_t pid, int mem, bool readable,
                  uint64_t addr, size_t len, cairn_error_t *err)
{
    uint64_t off = 0;
    int r = ghost_write_pages_room(w, addr, len / PAGE, PAGE, &off, err);
    return r < 0 ? r : ghost_direct_add(d, pid, mem, readable, addr, off, len, err);
}

/* 70 MiB (more than four batches) in runs of odd sizes, a normal record
 * between them so the rooms start at unaligned offsets, and a PROT_NONE
 * tail read through /proc/PID/mem. */
Test(direct, copies_in_place_across_batches, .timeout = 120)
{
    size_t len = 70u << 20, none = 3;
    s_fix_t f;
    s_setup(&f, "huge=always,size=512m", len, none, 0);
    cairn_error_t err;
    size_t runs[] = { 5 * PAGE, 3u << 20, (33u << 20) + 7 * PAGE };
    uint64_t at = f.base;
    for (size_t i = 0; i < 3; i++) {
        cr_assert_eq(s_room(f.w, f.d, f.pid, f.mem, true, at, runs[i], &err), 0, "%s",
                     err.message);
        at += runs[i];
    }
    size_t rest = (size_t)(f.base + len - at) - none * PAGE;
    cr_assert_eq(s_room(f.w, f.d, f.pid, f.mem, true, at, rest, &err), 0, "%s", err.message);
    at += rest;
    cr_assert_eq(s_room(f.w, f.d, f.pid, f.mem, false, at, none * PAGE, &err), 0, "%s",
                 err.message);
    cr_assert_eq(ghost_direct_flush(f.d, &err), 0, "%s", err.message);
    s_end(f.w, len / PAGE);
    cr_assert_eq(s_verify(f.fd, f.base), len / PAGE);
    s_teardown(&f);
}

/* An address the child has not mapped: the flush says which page, and
 * nothing pretends the room holds it. */
Test(direct, unreadable_page_fails_the_flush, .timeout = 60)
{
    s_fix_t f;
    s_setup(&f, "huge=always,size=64m", 4 * PAGE, 0, 4);
    cairn_error_t err;
    cr_assert_eq(s_room(f.w, f.d, f.pid, f.mem, true, f.base, 8 * PAGE, &err), 0, "%s",
                 err.message);
    cr_assert_eq(ghost_direct_flush(f.d, &err), -EIO);
    char want[64];
    snprintf(want, sizeof(want), "%#llx", (unsigned long long)(f.base + 4 * PAGE));
    cr_assert(strstr(err.message, "cannot read the page at") && strstr(err.message, want),
              "%s (want %s)", err.message, want);
    s_teardown(&f);
}

/* A tmpfs too small for the image: ENOSPC, named as such. */
Test(direct, full_filesystem_is_enospc, .timeout = 60)
{
    size_t len = 8u << 20;
    s_fix_t f;
    s_setup(&f, "huge=always,size=4m", len, 0, 0);
    cairn_error_t err;
    cr_assert_eq(s_room(f.w, f.d, f.pid, f.mem, true, f.base, len, &err), 0, "%s",
                 err.message);
    cr_assert_eq(ghost_direct_flush(f.d, &err), -ENOSPC, "%s", err.message);
    cr_assert(strstr(err.message, "cannot place page") != NULL, "%s", err.message);
    s_teardown(&f);
}

static void s_refused(int fd, const char *why)
{
    ghost_direct_t *d = (void *)1;
    cairn_error_t err;
    cr_assert_eq(ghost_direct_new(fd, 0, &d, &err), -EOPNOTSUPP, "%s", why);
    cr_assert(strstr(err.message, why) != NULL, "%s (want %s)", err.message, why);
    cr_assert_eq(d, (void *)1, "nothing returned on refusal");
}

/* What the dump streams to instead: a pipe, a file of a small-page
 * filesystem, a file not open read-write, an O_APPEND file. */
Test(direct, refuses_what_it_cannot_place_into, .timeout = 60)
{
    s_mount("huge=always,size=16m");
    int p[2];
    cr_assert_eq(pipe(p), 0);
    s_refused(p[1], "not a regular file");
    close(p[0]);
    close(p[1]);
    mkdir("small", 0700);
    cr_assert_eq(mount("cairn-small", "small", "tmpfs", 0, "huge=never"), 0);
    int fd = open("small/image", O_RDWR | O_CREAT | O_TRUNC, 0600);
    s_refused(fd, "small pages");
    close(fd);
    fd = open("image", O_WRONLY | O_CREAT | O_TRUNC, 0600);
    s_refused(fd, "reading and writing");
    close(fd);
    fd = open("image", O_RDWR | O_APPEND);
    s_refused(fd, "O_APPEND");
    close(fd);
    fd = open("image", O_RDWR);
    ghost_direct_t *d = NULL;
    cairn_error_t err;
    cr_assert_eq(ghost_direct_new(fd, 0, &d, &err), 0, "%s", err.message);
    cr_assert_eq(ghost_direct_flush(d, &err), 0, "an empty flush is fine");
    ghost_direct_free(d);
    close(fd);
}

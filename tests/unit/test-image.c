/* test-image.c - the ghost image stream (engine/image.c): a round trip of
 * every record kind and of raw page runs through a pipe (a writer thread
 * feeds it, the reader never seeks), and every way a stream can be bad:
 * truncated at every byte, bad magic, oversized length, a garbage record,
 * records out of order, data after the end - each -EBADMSG naming the
 * offset. A run written as a room and filled afterwards (the dump's in-place
 * copy) reads back like any other; a pipe has no room to leave. Long runs
 * start on a page of the stream (their pad is skipped by the reader); a
 * pad over a page is refused, and a stream without pads (version 1) reads.
 * Pre-copy rounds (a round record, pages naming their process) read before
 * the header, and are refused anywhere else, as are kept_pages before the
 * header and a round whose page size the header contradicts. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image.h"

#define PAGE 4096u

/* A little-endian u32 length. */
static void s_le32(uint8_t *p, uint32_t n)
{
    p[0] = n & 0xff;
    p[1] = (n >> 8) & 0xff;
    p[2] = (n >> 16) & 0xff;
    p[3] = (n >> 24) & 0xff;
}

static uint8_t *s_pattern(size_t n, uint8_t seed)
{
    uint8_t *p = malloc(n);
    cr_assert_not_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 31 + seed);
    return p;
}

static void s_write_rec(ghost_writer_t *w, Cairn__Ghost__Record *rec)
{
    cairn_error_t err;
    int r = ghost_write_record(w, rec, &err);
    cr_assert_eq(r, 0, "%s", err.message);
}

static void s_write_header(ghost_writer_t *w)
{
    Cairn__Ghost__ImageHeader h = CAIRN__GHOST__IMAGE_HEADER__INIT;
    h.version = GHOST_IMAGE_VERSION;
    h.kernel_release = "6.18-test";
    h.page_size = PAGE;
    h.root_pid = 4242;
    h.n_processes = 1;
    h.vdso_size = 8192;
    Cairn__Ghost__Record rec = CAIRN__GHOST__RECORD__INIT;
    rec.r_case = CAIRN__GHOST__RECORD__R_HEADER;
    rec.header = &h;
    s_write_rec(w, &rec);
}

static void s_write_process(ghost_writer_t *w)
{
    Cairn__Ghost__Rlimit rl = CAIRN__GHOST__RLIMIT__INIT, *rls[1] = { &rl };
    rl.resource = 7;
    rl.cur = 1024;
    rl.max = UINT64_MAX;
    Cairn__Ghost__SigAction sa = CAIRN__GHOST__SIG_ACTION__INIT, *sas[1] = { &sa };
    sa.signo = 10;
    sa.handler = 0x401000;
    sa.flags = 0x04000000;
    sa.mask = 1u << 3;
    uint8_t raw[128];
    memset(raw, 0xab, sizeof(raw));
    Cairn__Ghost__SigInfo si = CAIRN__GHOST__SIG_INFO__INIT, *sis[1] = { &si };
    si.raw.data = raw;
    si.raw.len = sizeof(raw);
    Cairn__Ghost__Itimer it = CAIRN__GHOST__ITIMER__INIT, *its[1] = { &it };
    it.which = 0;
    it.interval_ns = 5000000;
    it.value_ns = 1234567;
    uint8_t auxv[16] = { 6, 0, 0, 0, 0, 0, 0, 0, 0, 0x10 };
    Cairn__Ghost__MmLayout mm = CAIRN__GHOST__MM_LAYOUT__INIT;
    mm.start_brk = 0x600000;
    mm.brk = 0x621000;
    mm.auxv.data = auxv;
    mm.auxv.len = sizeof(auxv);
    mm.exe_path = "/usr/bin/sleep";
    Cairn__Ghost__Process p = CAIRN__GHOST__PROCESS__INIT;
    p.pid = 4242;
    p.pgid = 4242;
    p.comm = "sleep";
    p.cwd = "/tmp";
    p.umask = 027;
    p.n_rlimits = 1;
    p.rlimits = rls;
    p.n_sigactions = 1;
    p.sigactions = sas;
    p.n_shared_pending = 1;
    p.shared_pending = sis;
    p.mm = &mm;
    p.n_itimers = 1;
    p.itimers = its;
    p.n_threads = 1;
    Cairn__Ghost__Record rec = CAIRN__GHOST__RECORD__INIT;
    rec.r_case = CAIRN__GHOST__RECORD__R_PROCESS;
    rec.process = &p;
    s_write_rec(w, &rec);
}

static void s_write_thread(ghost_writer_t *w)
{
    uint8_t regs[216], xsave[2688];
    memset(regs, 0x11, sizeof(regs));
    memset(xsave, 0x22, sizeof(xsave));
    Cairn__Ghost__Rseq rs = CAIRN__GHOST__RSEQ__INIT;
    rs.addr = 0x7f0000001000;
    rs.len = 32;
    rs.signature = 0x53053053;
    Cairn__Ghost__Thread t = CAIRN__GHOST__THREAD__INIT;
    t.tid = 4243;
    t.leader = true;
    t.regs.data = regs;
    t.regs.len = sizeof(regs);
    t.xsave.data = xsave;
    t.xsave.len = sizeof(xsave);
    t.sigmask = 1ull << 9;
    t.fs_base = 0x7f00dead0000;
    t.rseq = &rs;
    t.syscall_nr = 35;
    t.syscall_ret = -516;
    Cairn__Ghost__Record rec = CAIRN__GHOST__RECORD__INIT;
    rec.r_case = CAIRN__GHOST__RECORD__R_THREAD;
    rec.thread = &t;
    s_write_rec(w, &rec);
}

static void s_write_vma_fd_end(ghost_writer_t *w, uint64_t total_pages)
{
    Cairn__Ghost__Vma v = CAIRN__GHOST__VMA__INIT;
    v.start = 0x10000;
    v.end = 0x10000 + 3 * PAGE;
    v.prot = 3;
    v.kind = CAIRN__GHOST__VMA_KIND__VMA_MEMFD;
    v.path = "/memfd:x (deleted)";
    v.shmid = 99;
    v.dumped = true;
    Cairn__Ghost__Record rec = CAIRN__GHOST__RECORD__INIT;
    rec.r_case = CAIRN__GHOST__RECORD__R_VMA;
    rec.vma = &v;
    s_write_rec(w, &rec);

    uint8_t data[5] = "hello";
    Cairn__Ghost__Fd f = CAIRN__GHOST__FD__INIT;
    f.fd = 3;
    f.kind = CAIRN__GHOST__FD_KIND__FD_PIPE;
    f.pipe_id = 777;
    f.pipe_data.data = data;
    f.pipe_data.len = 5;
    f.pos = -1;
    Cairn__Ghost__Record r2 = CAIRN__GHOST__RECORD__INIT;
    r2.r_case = CAIRN__GHOST__RECORD__R_FD;
    r2.fd = &f;
    s_write_rec(w, &r2);

    Cairn__Ghost__End e = CAIRN__GHOST__END__INIT;
    e.total_pages = total_pages;
    e.total_bytes = ghost_writer_bytes(w);
    Cairn__Ghost__Record r3 = CAIRN__GHOST__RECORD__INIT;
    r3.r_case = CAIRN__GHOST__RECORD__R_END;
    r3.end = &e;
    s_write_rec(w, &r3);
}

/* The full sample stream: header, process, thread, vma, two page runs (one
 * from two iovecs, one large), fd, end. With room (fd a file), the large
 * run is written as a room and filled with pwrite afterwards, as
 * ghost-dump's in-place copy does. */
static void s_write_sample_as(int fd, bool room)
{
    ghost_writer_t *w = ghost_writer_new(fd);
    cairn_error_t err;
    cr_assert_not_null(w);
    s_write_header(w);
    s_write_process(w);
    s_write_thread(w);
    uint8_t *a = s_pattern(3 * PAGE, 1);
    struct iovec two[2] = { { a, PAGE }, { a + PAGE, 2 * PAGE } };
    cr_assert_eq(ghost_write_pages(w, 0x10000, 3, PAGE, two, 2, &err), 0, "%s", err.message);
    size_t big = 600 * PAGE;
    uint8_t *b = s_pattern(big, 7);
    struct iovec one = { b, big };
    uint64_t before = ghost_writer_bytes(w), off = 0;
    if (room) {
        cr_assert_eq(ghost_write_pages_room(w, 0x200000, 600, PAGE, &off, &err), 0, "%s",
                     err.message);
        cr_assert_eq(ghost_writer_bytes(w), off + big, "the room ends the stream so far");
        cr_assert_gt(off, before, "the pages record precedes the room");
    } else {
        cr_assert_eq(ghost_write_pages(w, 0x200000, 600, PAGE, &one, 1, &err), 0, "%s",
                     err.message);
    }
    s_write_vma_fd_end(w, 603);
    cr_assert_eq(ghost_writer_flush(w, &err), 0, "%s", err.message);
    if (room)
        cr_assert_eq(pwrite(fd, b, big, (off_t)off), (ssize_t)big);
    free(a);
    free(b);
    ghost_writer_free(w);
}

static void s_write_sample(int fd)
{
    s_write_sample_as(fd, false);
}

static void *s_writer_thread(void *arg)
{
    int fd = (int)(intptr_t)arg;
    s_write_sample(fd);
    close(fd);
    return NULL;
}

static Cairn__Ghost__Record *s_next(ghost_reader_t *r, int kind)
{
    Cairn__Ghost__Record *rec = NULL;
    cairn_error_t err;
    int rc = ghost_read_record(r, &rec, &err);
    cr_assert_eq(rc, 0, "%s", err.message);
    cr_assert_not_null(rec);
    cr_assert_eq((int)rec->r_case, kind);
    return rec;
}

static void s_check_pages(ghost_reader_t *r, uint64_t vaddr, uint64_t n, uint8_t seed)
{
    Cairn__Ghost__Record *rec = s_next(r, CAIRN__GHOST__RECORD__R_PAGES);
    cr_assert_eq(rec->pages->vaddr, vaddr);
    cr_assert_eq(rec->pages->n_pages, n);
    uint8_t *got = malloc(n * PAGE), *want = s_pattern(n * PAGE, seed);
    cairn_error_t err;
    /* in two parts, to exercise the buffered and the direct path */
    cr_assert_eq(ghost_read_raw(r, got, 100, &err), 0, "%s", err.message);
    cr_assert_eq(ghost_read_raw(r, got + 100, n * PAGE - 100, &err), 0, "%s", err.message);
    cr_assert_eq(memcmp(got, want, n * PAGE), 0);
    free(got);
    free(want);
    cairn__ghost__record__free_unpacked(rec, NULL);
}

static void s_check_head(ghost_reader_t *r)
{
    Cairn__Ghost__Record *rec = s_next(r, CAIRN__GHOST__RECORD__R_HEADER);
    cr_assert_eq(rec->header->page_size, PAGE);
    cr_assert_str_eq(rec->header->kernel_release, "6.18-test");
    cr_assert_eq(rec->header->vdso_size, 8192);
    cairn__ghost__record__free_unpacked(rec, NULL);
    rec = s_next(r, CAIRN__GHOST__RECORD__R_PROCESS);
    Cairn__Ghost__Process *p = rec->process;
    cr_assert_eq(p->pid, 4242);
    cr_assert_str_eq(p->cwd, "/tmp");
    cr_assert_eq(p->umask, 027);
    cr_assert_eq(p->n_rlimits, 1);
    cr_assert_eq(p->rlimits[0]->max, UINT64_MAX);
    cr_assert_eq(p->sigactions[0]->handler, 0x401000);
    cr_assert_eq(p->shared_pending[0]->raw.len, 128);
    cr_assert_eq(p->itimers[0]->value_ns, 1234567);
    cr_assert_eq(p->mm->brk, 0x621000);
    cr_assert_eq(p->mm->auxv.len, 16);
    cr_assert_str_eq(p->mm->exe_path, "/usr/bin/sleep");
    cairn__ghost__record__free_unpacked(rec, NULL);
    rec = s_next(r, CAIRN__GHOST__RECORD__R_THREAD);
    cr_assert_eq(rec->thread->tid, 4243);
    cr_assert_eq(rec->thread->regs.len, 216);
    cr_assert_eq(rec->thread->xsave.len, 2688);
    cr_assert_eq(rec->thread->xsave.data[2687], 0x22);
    cr_assert_eq(rec->thread->rseq->signature, 0x53053053);
    cr_assert_eq(rec->thread->syscall_ret, -516);
    cairn__ghost__record__free_unpacked(rec, NULL);
}

static void s_check_tail(ghost_reader_t *r)
{
    Cairn__Ghost__Record *rec = s_next(r, CAIRN__GHOST__RECORD__R_VMA);
    cr_assert_eq(rec->vma->kind, CAIRN__GHOST__VMA_KIND__VMA_MEMFD);
    cr_assert_eq(rec->vma->shmid, 99);
    cairn__ghost__record__free_unpacked(rec, NULL);
    rec = s_next(r, CAIRN__GHOST__RECORD__R_FD);
    cr_assert_eq(rec->fd->pipe_id, 777);
    cr_assert_eq(rec->fd->pipe_data.len, 5);
    cr_assert_eq(memcmp(rec->fd->pipe_data.data, "hello", 5), 0);
    cr_assert_eq(rec->fd->pos, -1);
    cairn__ghost__record__free_unpacked(rec, NULL);
    uint64_t before_end = ghost_reader_bytes(r);
    rec = s_next(r, CAIRN__GHOST__RECORD__R_END);
    cr_assert_eq(rec->end->total_pages, 603);
    cr_assert_eq(rec->end->total_bytes, before_end);
    cairn__ghost__record__free_unpacked(rec, NULL);
    cairn_error_t err;
    Cairn__Ghost__Record *none = (void *)1;
    cr_assert_eq(ghost_read_record(r, &none, &err), 0, "%s", err.message);
    cr_assert_null(none, "after end: complete, no record");
}

/* Skips a pages record's raw bytes and checks that `at` (the stream offset
 * before the skip) is where they really are in `file_fd` (-1: not a file). */
static void s_skip_pages(ghost_reader_t *r, int file_fd, uint64_t vaddr,
                         uint64_t n, uint8_t seed)
{
    Cairn__Ghost__Record *rec = s_next(r, CAIRN__GHOST__RECORD__R_PAGES);
    cr_assert_eq(rec->pages->vaddr, vaddr);
    uint64_t at = ghost_reader_bytes(r);
    /* Long runs are padded to start on a page of the stream; short ones
     * follow their record at once. */
    if (n >= GHOST_ALIGN_MIN_PAGES)
        cr_assert(at % PAGE == 0 && rec->pages->pad > 0, "run of %llu pages at %llu",
                  (unsigned long long)n, (unsigned long long)at);
    else
        cr_assert_eq(rec->pages->pad, 0);
    cairn_error_t err;
    cr_assert_eq(ghost_skip_raw(r, n * PAGE, &err), 0, "%s", err.message);
    cr_assert_eq(ghost_reader_bytes(r), at + n * PAGE);
    if (file_fd >= 0) {
        uint8_t *got = malloc(n * PAGE), *want = s_pattern(n * PAGE, seed);
        cr_assert_eq(pread(file_fd, got, n * PAGE, (off_t)at), (ssize_t)(n * PAGE));
        cr_assert_eq(memcmp(got, want, n * PAGE), 0, "raw bytes are at the reported offset");
        free(got);
        free(want);
    }
    cairn__ghost__record__free_unpacked(rec, NULL);
}

/* Reads the sample stream from fd and checks every record; the pages are
 * read and compared, or (skip) skipped with ghost_skip_raw and, in a
 * regular file, found at the offsets it reports. */
static void s_read_sample(int fd, bool skip)
{
    struct stat st;
    int file_fd = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? fd : -1;
    ghost_reader_t *r = ghost_reader_new(fd);
    s_check_head(r);
    if (skip) {
        s_skip_pages(r, file_fd, 0x10000, 3, 1);
        s_skip_pages(r, file_fd, 0x200000, 600, 7);
    } else {
        s_check_pages(r, 0x10000, 3, 1);
        s_check_pages(r, 0x200000, 600, 7);
    }
    s_check_tail(r);
    ghost_reader_free(r);
}

/* The sample stream through a pipe a writer thread feeds: the reader never
 * seeks. */
static void s_read_sample_from_pipe(bool skip)
{
    int p[2];
    cr_assert_eq(pipe(p), 0);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, s_writer_thread, (void *)(intptr_t)p[1]), 0);
    s_read_sample(p[0], skip);
    pthread_join(th, NULL);
    close(p[0]);
}

Test(image, round_trip_through_pipe)
{
    s_read_sample_from_pipe(false);
}

/* The sample stream in memory (through a temporary file). */
static uint8_t *s_sample_bytes(size_t *ret_len)
{
    FILE *f = tmpfile();
    cr_assert_not_null(f);
    s_write_sample(fileno(f));
    off_t n = lseek(fileno(f), 0, SEEK_END);
    uint8_t *buf = malloc((size_t)n);
    cr_assert_eq(pread(fileno(f), buf, (size_t)n, 0), n);
    fclose(f);
    *ret_len = (size_t)n;
    return buf;
}

/* Reads a whole stream from memory; returns the first error (0 if the
 * stream is complete), with err filled. */
static int s_read_all(const uint8_t *buf, size_t len, cairn_error_t *err)
{
    FILE *f = tmpfile();
    cr_assert_eq(write(fileno(f), buf, len), (ssize_t)len);
    lseek(fileno(f), 0, SEEK_SET);
    ghost_reader_t *r = ghost_reader_new(fileno(f));
    int rc = 0;
    for (;;) {
        Cairn__Ghost__Record *rec = NULL;
        rc = ghost_read_record(r, &rec, err);
        if (rc < 0 || !rec)
            break;
        if (rec->r_case == CAIRN__GHOST__RECORD__R_PAGES) {
            size_t n = rec->pages->n_pages * PAGE;
            uint8_t *tmp = malloc(n);
            rc = ghost_read_raw(r, tmp, n, err);
            free(tmp);
        }
        cairn__ghost__record__free_unpacked(rec, NULL);
        if (rc < 0)
            break;
    }
    ghost_reader_free(r);
    fclose(f);
    return rc;
}

Test(image, truncated_anywhere_is_ebadmsg)
{
    size_t len;
    uint8_t *buf = s_sample_bytes(&len);
    cairn_error_t err;
    cr_assert_eq(s_read_all(buf, len, &err), 0, "%s", err.message);
    /* every cut inside records, and a sample of cuts inside page data */
    for (size_t cut = 0; cut < len; cut += (cut < 200 || len - cut < 400) ? 1 : 997) {
        int rc = s_read_all(buf, cut, &err);
        cr_assert_eq(rc, -EBADMSG, "cut at %zu gave %d", cut, rc);
        cr_assert_eq(err.code, CAIRN_INVALID_ARGUMENT);
        cr_assert(strstr(err.message, "offset") != NULL, "%s", err.message);
    }
    free(buf);
}

Test(image, bad_magic)
{
    size_t len;
    uint8_t *buf = s_sample_bytes(&len);
    buf[3] ^= 0x20;
    cairn_error_t err;
    cr_assert_eq(s_read_all(buf, len, &err), -EBADMSG);
    cr_assert(strstr(err.message, "magic") != NULL, "%s", err.message);
    free(buf);
}

Test(image, oversized_length)
{
    size_t len;
    uint8_t *buf = s_sample_bytes(&len);
    s_le32(buf + 8, GHOST_MAX_RECORD + 1);
    cairn_error_t err;
    cr_assert_eq(s_read_all(buf, len, &err), -EBADMSG);
    cr_assert(strstr(err.message, "length 1048577 at offset 8") != NULL, "%s", err.message);
    free(buf);
}

Test(image, garbage_record)
{
    uint8_t buf[64] = "CAIRNGH1";
    s_le32(buf + 8, 6);
    memset(buf + 12, 0xff, 6);     /* not protobuf */
    cairn_error_t err;
    cr_assert_eq(s_read_all(buf, 18, &err), -EBADMSG);
    cr_assert(strstr(err.message, "offset 8") != NULL, "%s", err.message);
    cr_assert(strstr(err.message, "does not decode") != NULL, "%s", err.message);
}

Test(image, records_out_of_order)
{
    /* a process before the header */
    int p[2];
    cr_assert_eq(pipe(p), 0);
    ghost_writer_t *w = ghost_writer_new(p[1]);
    s_write_process(w);
    cairn_error_t err;
    cr_assert_eq(ghost_writer_flush(w, &err), 0);
    ghost_writer_free(w);
    close(p[1]);
    ghost_reader_t *r = ghost_reader_new(p[0]);
    Cairn__Ghost__Record *rec = NULL;
    cr_assert_eq(ghost_read_record(r, &rec, &err), -EBADMSG);
    cr_assert(strstr(err.message, "before the header") != NULL, "%s", err.message);
    cr_assert_null(rec);
    ghost_reader_free(r);
    close(p[0]);
}

Test(image, data_after_end)
{
    size_t len;
    uint8_t *buf = s_sample_bytes(&len);
    uint8_t *more = malloc(len + 3);
    memcpy(more, buf, len);
    memcpy(more + len, "xyz", 3);
    cairn_error_t err;
    cr_assert_eq(s_read_all(more, len + 3, &err), -EBADMSG);
    cr_assert(strstr(err.message, "after the end") != NULL, "%s", err.message);
    free(buf);
    free(more);
}

Test(image, writer_refuses_bad_calls)
{
    int p[2];
    cr_assert_eq(pipe(p), 0);
    ghost_writer_t *w = ghost_writer_new(p[1]);
    uint8_t page[PAGE];
    struct iovec v = { page, PAGE };
    cairn_error_t err;
    cr_assert_eq(ghost_write_pages(w, 0, 2, PAGE, &v, 1, &err), -EINVAL);
    cr_assert_eq(ghost_write_pages(w, 0, 0, PAGE, &v, 0, &err), -EINVAL);
    Cairn__Ghost__Record empty = CAIRN__GHOST__RECORD__INIT;
    cr_assert_eq(ghost_write_record(w, &empty, &err), -EINVAL);
    /* A pipe has no place to leave room in: a clear error, not a stream
     * with a hole the reader would take for page data. */
    uint64_t off = 0;
    cr_assert_eq(ghost_write_pages_room(w, 0x200000, 4, PAGE, &off, &err), -ESPIPE);
    cr_assert(strstr(err.message, "room") != NULL, "%s", err.message);
    cr_assert_eq(ghost_writer_bytes(w), 8, "only the magic");
    ghost_writer_free(w);
    close(p[0]);
    close(p[1]);
    FILE *f = tmpfile();
    w = ghost_writer_new(fileno(f));
    cr_assert_eq(ghost_write_pages_room(w, 0x200000, 0, PAGE, &off, &err), -EINVAL,
                 "an empty room is refused");
    ghost_writer_free(w);
    fclose(f);
}

Test(image, raw_must_be_consumed)
{
    size_t len;
    uint8_t *buf = s_sample_bytes(&len);
    FILE *f = tmpfile();
    cr_assert_eq(write(fileno(f), buf, len), (ssize_t)len);
    lseek(fileno(f), 0, SEEK_SET);
    ghost_reader_t *r = ghost_reader_new(fileno(f));
    Cairn__Ghost__Record *rec = NULL;
    cairn_error_t err;
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(ghost_read_record(r, &rec, &err), 0, "%s", err.message);
        cairn__ghost__record__free_unpacked(rec, NULL);
    }
    /* 4th was the first pages record: its bytes are pending */
    cr_assert_eq(ghost_read_record(r, &rec, &err), -EINVAL);
    uint8_t big[4 * PAGE];
    cr_assert_eq(ghost_read_raw(r, big, sizeof(big), &err), -EINVAL, "more than pending");
    ghost_reader_free(r);
    fclose(f);
    free(buf);
}


/* An unlinked temporary file (a seekable image). */
static int s_tmpfd(void)
{
    char path[] = "/tmp/cairn-image.XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    unlink(path);
    return fd;
}

/* A file image: the skip seeks, and the offsets it reports are real. */
Test(image, skip_raw_in_a_file_seeks_to_the_right_place)
{
    int fd = s_tmpfd();
    s_write_sample(fd);
    cr_assert_eq(lseek(fd, 0, SEEK_SET), 0);
    s_read_sample(fd, true);
    close(fd);
}

/* A pipe cannot seek: the skip reads through, and the stream goes on. */
Test(image, skip_raw_through_a_pipe)
{
    s_read_sample_from_pipe(true);
}

/* A file cut inside page data: the skip says so instead of seeking past
 * the end. */
Test(image, skip_raw_past_the_end_of_a_file_is_ebadmsg)
{
    int fd = s_tmpfd();
    s_write_sample(fd);
    off_t size = lseek(fd, 0, SEEK_END);
    cr_assert_eq(ftruncate(fd, size / 2), 0);   /* inside the 600-page run */
    cr_assert_eq(lseek(fd, 0, SEEK_SET), 0);
    ghost_reader_t *r = ghost_reader_new(fd);
    s_check_head(r);
    s_skip_pages(r, fd, 0x10000, 3, 1);
    Cairn__Ghost__Record *rec = s_next(r, CAIRN__GHOST__RECORD__R_PAGES);
    cairn_error_t err;
    cr_assert_eq(ghost_skip_raw(r, 600 * PAGE, &err), -EBADMSG);
    cr_assert(strstr(err.message, "truncated") != NULL, "%s", err.message);
    cairn__ghost__record__free_unpacked(rec, NULL);
    ghost_reader_free(r);
    close(fd);
}


Test(image, room_filled_later_reads_back)
{
    int fd = s_tmpfd();
    s_write_sample_as(fd, true);
    cr_assert_eq(lseek(fd, 0, SEEK_SET), 0);
    s_read_sample(fd, false);
    close(fd);
}


/* A header, then a pages record of n_pages with the given pad, then pad
 * zero bytes and the raw pages (a hand-made stream: any pad, any place). */
static uint8_t *s_stream_with_pad(uint64_t n_pages, uint32_t pad, size_t *ret_len)
{
    FILE *f = tmpfile();
    ghost_writer_t *w = ghost_writer_new(fileno(f));
    s_write_header(w);
    cairn_error_t err;
    cr_assert_eq(ghost_writer_flush(w, &err), 0, "%s", err.message);
    ghost_writer_free(w);
    Cairn__Ghost__Pages pg = CAIRN__GHOST__PAGES__INIT;
    pg.vaddr = 0x400000;
    pg.n_pages = n_pages;
    pg.pad = pad;
    Cairn__Ghost__Record rec = CAIRN__GHOST__RECORD__INIT;
    rec.r_case = CAIRN__GHOST__RECORD__R_PAGES;
    rec.pages = &pg;
    size_t n = cairn__ghost__record__get_packed_size(&rec);
    size_t raw = pad + n_pages * PAGE;
    uint8_t *b = calloc(1, 4 + n + raw);
    s_le32(b, (uint32_t)n);
    cairn__ghost__record__pack(&rec, b + 4);
    uint8_t *pages = s_pattern(n_pages * PAGE, 5);
    memcpy(b + 4 + n + pad, pages, n_pages * PAGE);
    free(pages);
    cr_assert_eq(write(fileno(f), b, 4 + n + raw), (ssize_t)(4 + n + raw));
    free(b);
    *ret_len = (size_t)lseek(fileno(f), 0, SEEK_END);
    uint8_t *all = malloc(*ret_len);
    cr_assert_eq(pread(fileno(f), all, *ret_len, 0), (ssize_t)*ret_len);
    fclose(f);
    return all;
}

/* Reads the hand-made stream up to its pages: rc of the pages record, and
 * if it was read, the pages compared with what was written. */
static int s_read_padded(const uint8_t *buf, size_t len, uint64_t n_pages,
                         cairn_error_t *err)
{
    int p[2];
    cr_assert_eq(pipe(p), 0);
    cr_assert_lt(len, 60000u, "fits the pipe");
    cr_assert_eq(write(p[1], buf, len), (ssize_t)len);
    close(p[1]);
    ghost_reader_t *r = ghost_reader_new(p[0]);
    Cairn__Ghost__Record *rec = NULL;
    cr_assert_eq(ghost_read_record(r, &rec, err), 0, "%s", err->message);
    cairn__ghost__record__free_unpacked(rec, NULL);
    rec = NULL;
    int rc = ghost_read_record(r, &rec, err);
    if (rc == 0) {
        uint8_t *got = malloc(n_pages * PAGE), *want = s_pattern(n_pages * PAGE, 5);
        cr_assert_eq(ghost_read_raw(r, got, n_pages * PAGE, err), 0, "%s", err->message);
        cr_assert_eq(memcmp(got, want, n_pages * PAGE), 0, "the pad is not page data");
        free(got);
        free(want);
        cairn__ghost__record__free_unpacked(rec, NULL);
    }
    ghost_reader_free(r);
    close(p[0]);
    return rc;
}

Test(image, pad_is_skipped_and_bounded)
{
    cairn_error_t err;
    size_t len;
    uint8_t *b = s_stream_with_pad(2, 0, &len);   /* version 1: no pad */
    cr_assert_eq(s_read_padded(b, len, 2, &err), 0, "%s", err.message);
    free(b);
    b = s_stream_with_pad(2, 777, &len);          /* any pad up to a page */
    cr_assert_eq(s_read_padded(b, len, 2, &err), 0, "%s", err.message);
    free(b);
    b = s_stream_with_pad(2, PAGE + 1, &len);     /* more is garbage */
    cr_assert_eq(s_read_padded(b, len, 2, &err), -EBADMSG);
    cr_assert(strstr(err.message, "pads its pages") != NULL, "%s", err.message);
    free(b);
}

/* ---- pre-copy rounds (image version 3) ---------------------------------- */

static void s_write_round(ghost_writer_t *w, uint32_t round, uint32_t page_size)
{
    Cairn__Ghost__Round rd = CAIRN__GHOST__ROUND__INIT;
    rd.round = round;
    rd.page_size = page_size;
    Cairn__Ghost__Record rec = CAIRN__GHOST__RECORD__INIT;
    rec.r_case = CAIRN__GHOST__RECORD__R_ROUND;
    rec.round = &rd;
    s_write_rec(w, &rec);
}

static void s_write_kept(ghost_writer_t *w, uint64_t vaddr, uint64_t n)
{
    Cairn__Ghost__KeptPages k = CAIRN__GHOST__KEPT_PAGES__INIT;
    k.vaddr = vaddr;
    k.n_pages = n;
    Cairn__Ghost__Record rec = CAIRN__GHOST__RECORD__INIT;
    rec.r_case = CAIRN__GHOST__RECORD__R_KEPT_PAGES;
    rec.kept_pages = &k;
    s_write_rec(w, &rec);
}

/* Writes what fill writes into a temporary file and reads it all back:
 * the first error (0: complete), err filled. */
static int s_read_written(void (*fill)(ghost_writer_t *), cairn_error_t *err)
{
    FILE *f = tmpfile();
    ghost_writer_t *w = ghost_writer_new(fileno(f));
    fill(w);
    cr_assert_eq(ghost_writer_flush(w, err), 0);
    ghost_writer_free(w);
    off_t n = lseek(fileno(f), 0, SEEK_END);
    uint8_t *buf = malloc((size_t)n);
    cr_assert_eq(pread(fileno(f), buf, (size_t)n, 0), n);
    fclose(f);
    int rc = s_read_all(buf, (size_t)n, err);
    free(buf);
    return rc;
}

static void s_round_pages(ghost_writer_t *w, uint32_t pid, uint64_t vaddr, uint64_t n)
{
    uint8_t *data = s_pattern(n * PAGE, (uint8_t)vaddr);
    struct iovec v = { data, n * PAGE };
    cairn_error_t err;
    cr_assert_eq(ghost_write_round_pages(w, pid, vaddr, n, PAGE, &v, 1, &err), 0, "%s",
                 err.message);
    free(data);
}

static void s_end(ghost_writer_t *w)
{
    Cairn__Ghost__End e = CAIRN__GHOST__END__INIT;
    Cairn__Ghost__Record rec = CAIRN__GHOST__RECORD__INIT;
    rec.r_case = CAIRN__GHOST__RECORD__R_END;
    rec.end = &e;
    s_write_rec(w, &rec);
}

/* Two rounds (a long run, padded, and a short one), the header, a kept
 * record, the end: the stream reads whole. */
static void s_fill_rounds(ghost_writer_t *w)
{
    s_write_round(w, 0, PAGE);
    s_round_pages(w, 4242, 0x10000, 20);
    s_write_round(w, 1, PAGE);
    s_round_pages(w, 4242, 0x12000, 1);
    s_write_header(w);
    s_write_kept(w, 0x10000, 20);
    s_end(w);
}

Test(image, precopy_rounds_read_before_the_header)
{
    cairn_error_t err;
    cr_assert_eq(s_read_written(s_fill_rounds, &err), 0, "%s", err.message);
}

static void s_fill_round_pages_without_round(ghost_writer_t *w)
{
    s_round_pages(w, 4242, 0x10000, 1);
}

static void s_fill_round_after_header(ghost_writer_t *w)
{
    s_write_header(w);
    s_write_round(w, 0, PAGE);
}

static void s_fill_round_pages_after_header(ghost_writer_t *w)
{
    s_write_header(w);
    s_round_pages(w, 4242, 0x10000, 1);
}

static void s_fill_other_page_size(ghost_writer_t *w)
{
    s_write_round(w, 0, 2 * PAGE);
    s_write_header(w);
}

static void s_fill_kept_before_header(ghost_writer_t *w)
{
    s_write_round(w, 0, PAGE);
    s_write_kept(w, 0x10000, 1);
}

static void s_fill_process_in_rounds(ghost_writer_t *w)
{
    s_write_round(w, 0, PAGE);
    s_write_process(w);
}

Test(image, precopy_rounds_out_of_place_are_refused)
{
    static const struct {
        void (*fill)(ghost_writer_t *);
        const char *want;
    } bad[] = {
        { s_fill_round_pages_without_round, "pages record before the header" },
        { s_fill_round_after_header, "round record after the header" },
        { s_fill_round_pages_after_header, "names process 4242 after the header" },
        { s_fill_other_page_size, "header at offset" },
        { s_fill_kept_before_header, "before the header" },
        { s_fill_process_in_rounds, "before the header" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cairn_error_t err;
        cr_assert_eq(s_read_written(bad[i].fill, &err), -EBADMSG, "case %zu", i);
        cr_assert(strstr(err.message, bad[i].want) != NULL, "case %zu: %s", i, err.message);
    }
}

Test(image, round_pages_need_their_process)
{
    int fd = open("/dev/null", O_WRONLY);
    ghost_writer_t *w = ghost_writer_new(fd);
    uint8_t page[PAGE] = { 0 };
    struct iovec v = { page, PAGE };
    cairn_error_t err;
    cr_assert_eq(ghost_write_round_pages(w, 0, 0x10000, 1, PAGE, &v, 1, &err), -EINVAL);
    ghost_writer_free(w);
    close(fd);
}

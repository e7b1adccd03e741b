/* fuzz-ghost-image.c - fuzz target: the checkpoint image reader
 * (services/ghostd/engine/image.c), as ghost-restore reads an image.
 *
 * Input: the bytes of an image file ("CAIRNGH1", then records).
 *
 * Design. The input is read twice, from the two kinds of fd the reader
 * serves: a memfd (a regular file: skipped page data is seeked over,
 * checked against the file's size) and, when the input fits a pipe's
 * buffer, a pipe (no seeking: skipped data is read through). Each record
 * is read, checked to round-trip like a wire message, and its page data
 * consumed: read in chunks into a scratch buffer or skipped, chosen by a
 * bit of the record (vaddr or shmid) so the fuzzer drives both ways. The
 * reader must end in a documented way: the stream complete with every
 * byte consumed, or -EBADMSG. Pages are never allocated at the size a
 * record claims: a garbage run of 64 TiB must fail on the missing bytes.
 *
 * The memfd is made once and emptied for every input: a cache that does
 * not change any outcome (fuzz.h), and the one global state here.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "image.h"

#define S_MAX_RECORDS 100000 /* more than any input of max_len can hold */
#define S_PIPE_MAX    65536  /* a pipe's default capacity on Linux */

static int s_memfd = -1;

/* A regular file holding exactly the input, at offset 0. */
static int s_file_of(const uint8_t *data, size_t size)
{
    if (s_memfd < 0)
        s_memfd = memfd_create("fuzz-ghost-image", MFD_CLOEXEC);
    FUZZ_CHECK(s_memfd >= 0);
    FUZZ_CHECK(ftruncate(s_memfd, 0) == 0);
    FUZZ_CHECK(size == 0 || pwrite(s_memfd, data, size, 0) == (ssize_t)size);
    FUZZ_CHECK(lseek(s_memfd, 0, SEEK_SET) == 0);
    return s_memfd;
}

/* The read end of a pipe holding the input, its write end closed;
 * -1 when the input does not fit (a pipe may be smaller than its default
 * when the user holds many: the write end does not block). The caller
 * closes it. */
static int s_pipe_of(const uint8_t *data, size_t size)
{
    ssize_t n = 0;
    int p[2];

    if (size > S_PIPE_MAX)
        return -1;
    FUZZ_CHECK(pipe2(p, O_CLOEXEC) == 0);
    FUZZ_CHECK(fcntl(p[1], F_SETFL, O_NONBLOCK) == 0);
    if (size > 0)
        n = write(p[1], data, size);
    close(p[1]);
    if (n != (ssize_t)size) {
        close(p[0]);
        return -1;
    }
    return p[0];
}

/* Consumes len bytes of page data, read through a scratch buffer. */
static int s_read_pages(ghost_reader_t *r, uint64_t len, cairn_error_t *err)
{
    static uint8_t scratch[65536];
    int rc = 0;

    while (rc == 0 && len > 0) {
        size_t n = len < sizeof(scratch) ? (size_t)len : sizeof(scratch);
        rc = ghost_read_raw(r, scratch, n, err);
        len -= n;
    }
    return rc;
}

/* The page data after rec (none for most kinds), read or skipped. */
static int s_consume_raw(ghost_reader_t *r, const Cairn__Ghost__Record *rec,
                         uint32_t page_size, cairn_error_t *err)
{
    uint64_t n_pages = 0;
    bool skip = false;

    if (rec->r_case == CAIRN__GHOST__RECORD__R_PAGES) {
        n_pages = rec->pages->n_pages;
        skip = rec->pages->vaddr & page_size;
    } else if (rec->r_case == CAIRN__GHOST__RECORD__R_OBJECT_PAGES) {
        n_pages = rec->object_pages->n_pages;
        skip = rec->object_pages->shmid & 1;
    }
    if (n_pages == 0)
        return 0;
    /* The reader bounds a run (S_MAX_RAW_RUN): no overflow here. */
    FUZZ_CHECK(page_size != 0 && n_pages <= UINT64_MAX / page_size);
    if (skip)
        return ghost_skip_raw(r, (size_t)(n_pages * page_size), err);
    return s_read_pages(r, n_pages * page_size, err);
}

/* Reads the whole stream from fd; size is the stream's length. */
static void s_read_image(int fd, size_t size)
{
    ghost_reader_t *r = ghost_reader_new(fd);
    uint32_t page_size = 0;
    cairn_error_t err;
    int rc = 0;

    FUZZ_CHECK(r != NULL);
    for (int i = 0; i < S_MAX_RECORDS && rc == 0; i++) {
        Cairn__Ghost__Record *rec = NULL;
        rc = ghost_read_record(r, &rec, &err);
        if (rc < 0)
            break;
        if (!rec) { /* complete: after `end`, nothing but EOF */
            FUZZ_CHECK(ghost_reader_bytes(r) == size);
            break;
        }
        FUZZ_CHECK(rec->r_case != CAIRN__GHOST__RECORD__R__NOT_SET);
        if (rec->r_case == CAIRN__GHOST__RECORD__R_HEADER)
            page_size = rec->header->page_size;
        fuzz_check_round_trip(&rec->base, 0);
        rc = s_consume_raw(r, rec, page_size, &err);
        cairn__ghost__record__free_unpacked(rec, NULL);
    }
    /* A memfd or a pipe never fails a read: only the image is bad. */
    FUZZ_CHECK(rc == 0 || rc == -EBADMSG);
    FUZZ_CHECK(rc == 0 || err.code == CAIRN_INVALID_ARGUMENT);
    FUZZ_CHECK(ghost_reader_bytes(r) <= size);
    ghost_reader_free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    s_read_image(s_file_of(data, size), size);
    int fd = s_pipe_of(data, size);
    if (fd >= 0) {
        s_read_image(fd, size);
        close(fd);
    }
    return 0;
}

/* image.c - the checkpoint image stream: writer and reader (image.h).
 *
 * Design. The writer keeps one buffer for the magic and small records and
 * sends it together with page data in a single writev, so page bytes go
 * from the caller's iovecs (usually a process_vm_readv buffer) straight to
 * the fd without a copy; object_pages records (a memfd's contents) go out
 * the same way. The reader keeps a read-ahead buffer for record
 * headers and bodies; ghost_read_raw drains what is already buffered, then
 * reads the rest of a page run directly into the destination.
 *
 * Stream checks on the reading side, each -EBADMSG with the byte offset:
 * bad magic, a record length of 0 or over GHOST_MAX_RECORD, a body that
 * does not decode or decodes to an empty oneof, a pages or object_pages
 * record before the header (the page size is unknown) or whose raw run is
 * absurd, a second
 * header, a record after `end`, and a stream that ends before `end`.
 * Pre-copy rounds (image.h) come before the header: a round record gives
 * the page size (the same in every round and in the header), and only
 * rounds and their pages records, each naming its process, may come
 * before the header; after it a pages record names none, and a round is
 * refused. Once
 * `end` has been read, a further ghost_read_record returns 0 and NULL:
 * the stream is complete. The raw bytes after either must be read
 * with ghost_read_raw before the next record (a programmer's mistake
 * otherwise: -EINVAL).
 */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cairn/wire.h"
#include "image.h"

#define S_WBUF_SIZE (256u * 1024u)
#define S_RBUF_SIZE (GHOST_MAX_RECORD + 64u * 1024u)  /* a whole record fits */
#define S_IOV_BATCH 512
/* A pages record never covers more than this much raw data (a whole
 * vma of 64 TiB is refused as garbage rather than trusted). */
#define S_MAX_RAW_RUN (1ull << 46)

struct ghost_writer {
    int fd;                /* caller's fd */
    uint8_t *buf;          /* pending bytes: magic and small records */
    size_t len;            /* bytes used in buf */
    uint64_t bytes;        /* bytes accepted so far (buffered included) */
};

struct ghost_reader {
    int fd;                /* caller's fd */
    uint8_t *buf;          /* read-ahead */
    size_t pos;            /* next unread byte in buf */
    size_t len;            /* bytes valid in buf */
    uint64_t offset;       /* stream offset of buf[pos] */
    uint64_t raw_left;     /* raw page bytes still to read */
    uint32_t page_size;    /* from the header or a round record; 0 before */
    bool seen_round;       /* a round record was read */
    bool magic_ok;         /* magic read and checked */
    bool seen_header;      /* a header record was read */
    bool seen_end;         /* the end record was read */
};

/* ---- writer ------------------------------------------------------------ */

ghost_writer_t *ghost_writer_new(int fd)
{
    ghost_writer_t *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->buf = malloc(S_WBUF_SIZE);
    if (!w->buf) {
        free(w);
        return NULL;
    }
    w->fd = fd;
    memcpy(w->buf, GHOST_IMAGE_MAGIC, 8);
    w->len = 8;
    w->bytes = 8;
    return w;
}

ghost_writer_t *ghost_writer_free(ghost_writer_t *w)
{
    if (!w)
        return NULL;
    free(w->buf);
    free(w);
    return NULL;
}

uint64_t ghost_writer_bytes(const ghost_writer_t *w)
{
    return w ? w->bytes : 0;
}

/* Drops `n` written bytes from the front of iov[*first..cnt). */
static void s_iov_advance(struct iovec *iov, int cnt, int *first, size_t n)
{
    while (n > 0 && *first < cnt) {
        struct iovec *v = &iov[*first];
        if (n < v->iov_len) {
            v->iov_base = (uint8_t *)v->iov_base + n;
            v->iov_len -= n;
            return;
        }
        n -= v->iov_len;
        v->iov_len = 0;
        (*first)++;
    }
    while (*first < cnt && iov[*first].iov_len == 0)
        (*first)++;
}

/* Writes every byte of iov (modified in place), retrying short writes. */
static int s_writev_all(int fd, struct iovec *iov, int cnt, cairn_error_t *err)
{
    int first = 0;
    s_iov_advance(iov, cnt, &first, 0);
    while (first < cnt) {
        int n = cnt - first < S_IOV_BATCH ? cnt - first : S_IOV_BATCH;
        ssize_t k = writev(fd, iov + first, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return cairn_error_set(err, -errno, CAIRN_SYSTEM,
                                   "image write failed: %s", strerror(errno));
        if (k == 0)
            return cairn_error_set(err, -EIO, CAIRN_SYSTEM,
                                   "image write made no progress");
        s_iov_advance(iov, cnt, &first, (size_t)k);
    }
    return 0;
}

int ghost_writer_flush(ghost_writer_t *w, cairn_error_t *err)
{
    if (!w)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT, "no writer");
    if (w->len == 0)
        return 0;
    struct iovec v = { w->buf, w->len };
    int r = s_writev_all(w->fd, &v, 1, err);
    if (r < 0)
        return r;
    w->len = 0;
    return 0;
}

/* Appends a length-prefixed record to the buffer, flushing first if it
 * would not fit. */
static int s_buffer_record(ghost_writer_t *w, const Cairn__Ghost__Record *rec,
                           cairn_error_t *err)
{
    size_t n = cairn__ghost__record__get_packed_size(rec);
    if (n == 0 || n > GHOST_MAX_RECORD)
        return cairn_error_set(err, -EMSGSIZE, CAIRN_TOO_LARGE,
                               "image record of %zu bytes (limit %u)", n,
                               GHOST_MAX_RECORD);
    if (w->len + 4 + n > S_WBUF_SIZE) {
        int r = ghost_writer_flush(w, err);
        if (r < 0)
            return r;
    }
    uint8_t *dst = w->buf + w->len;
    uint8_t tmp[4] = { n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, (n >> 24) & 0xff };
    if (4 + n > S_WBUF_SIZE) {
        /* A record larger than the buffer goes out on its own. */
        uint8_t *big = malloc(4 + n);
        if (!big)
            return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
        memcpy(big, tmp, 4);
        cairn__ghost__record__pack(rec, big + 4);
        struct iovec v = { big, 4 + n };
        int r = s_writev_all(w->fd, &v, 1, err);
        free(big);
        if (r < 0)
            return r;
    } else {
        memcpy(dst, tmp, 4);
        cairn__ghost__record__pack(rec, dst + 4);
        w->len += 4 + n;
    }
    w->bytes += 4 + n;
    return 0;
}

int ghost_write_record(ghost_writer_t *w, const Cairn__Ghost__Record *rec,
                       cairn_error_t *err)
{
    if (!w || !rec)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "no writer or record");
    if (rec->r_case == CAIRN__GHOST__RECORD__R__NOT_SET)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "record with no kind set");
    if (rec->r_case == CAIRN__GHOST__RECORD__R_PAGES ||
        rec->r_case == CAIRN__GHOST__RECORD__R_OBJECT_PAGES)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "pages records go through ghost_write_pages or "
                               "ghost_write_object_pages");
    return s_buffer_record(w, rec, err);
}

static uint64_t s_iov_total(const struct iovec *iov, int iovcnt)
{
    uint64_t t = 0;
    for (int i = 0; i < iovcnt; i++)
        t += iov[i].iov_len;
    return t;
}

/* Sends the buffer and the page data in one writev series. */
static int s_send_with_pages(ghost_writer_t *w, const struct iovec *iov,
                             int iovcnt, cairn_error_t *err)
{
    struct iovec stack[64];
    struct iovec *v = stack;
    if (iovcnt + 1 > 64) {
        v = malloc(sizeof(*v) * (size_t)(iovcnt + 1));
        if (!v)
            return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    }
    v[0].iov_base = w->buf;
    v[0].iov_len = w->len;
    memcpy(v + 1, iov, sizeof(*v) * (size_t)iovcnt);
    int r = s_writev_all(w->fd, v, iovcnt + 1, err);
    if (v != stack)
        free(v);
    if (r == 0)
        w->len = 0;
    return r;
}

/* Appends n zero bytes to the buffer, flushing first if they would not fit. */
static int s_buffer_zeros(ghost_writer_t *w, size_t n, cairn_error_t *err)
{
    if (w->len + n > S_WBUF_SIZE) {
        int r = ghost_writer_flush(w, err);
        if (r < 0)
            return r;
    }
    memset(w->buf + w->len, 0, n);
    w->len += n;
    w->bytes += n;
    return 0;
}

/* Buffers rec, a pages or object_pages record whose pad field is *pad,
 * and that many zero bytes: set so the raw bytes that follow start at a
 * multiple of page_size in the stream, for runs long enough to be worth
 * it (image.h). The pad field is fixed32, so its value does not change
 * the record's size once it is present. */
static int s_buffer_raw_record(ghost_writer_t *w, const Cairn__Ghost__Record *rec,
                               uint32_t *pad, uint64_t n_pages, uint32_t page_size,
                               cairn_error_t *err)
{
    *pad = 0;
    if (n_pages >= GHOST_ALIGN_MIN_PAGES && page_size <= S_WBUF_SIZE / 2) {
        *pad = page_size;   /* present, for the size */
        uint64_t end = w->bytes + 4 + cairn__ghost__record__get_packed_size(rec);
        *pad = page_size - (uint32_t)(end % page_size);   /* 1 .. page_size */
    }
    int r = s_buffer_record(w, rec, err);
    if (r == 0 && *pad)
        r = s_buffer_zeros(w, *pad, err);
    return r;
}

/* Checks a pages run and buffers its record; its raw size into *ret_want. */
static int s_buffer_pages_record(ghost_writer_t *w, uint32_t pid, uint64_t vaddr,
                                 uint64_t n_pages, uint32_t page_size, uint64_t *ret_want,
                                 cairn_error_t *err)
{
    uint64_t want = n_pages * page_size;
    if (n_pages == 0 || want / page_size != n_pages || want > S_MAX_RAW_RUN)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "pages run of %llu pages is empty or too large",
                               (unsigned long long)n_pages);
    Cairn__Ghost__Pages p = CAIRN__GHOST__PAGES__INIT;
    p.vaddr = vaddr;
    p.n_pages = n_pages;
    p.pid = pid;
    Cairn__Ghost__Record rec = CAIRN__GHOST__RECORD__INIT;
    rec.r_case = CAIRN__GHOST__RECORD__R_PAGES;
    rec.pages = &p;
    *ret_want = want;
    return s_buffer_raw_record(w, &rec, &p.pad, n_pages, page_size, err);
}

/* A pages record (pid: 0, or the process of a pre-copy round) and its
 * bytes. */
static int s_write_pages(ghost_writer_t *w, uint32_t pid, uint64_t vaddr, uint64_t n_pages,
                         uint32_t page_size, const struct iovec *iov, int iovcnt,
                         cairn_error_t *err)
{
    if (!w || (iovcnt > 0 && !iov) || iovcnt < 0 || page_size == 0)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "bad pages arguments");
    uint64_t want = n_pages * page_size;
    if (s_iov_total(iov, iovcnt) != want)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "pages run of %llu bytes given %llu bytes of data",
                               (unsigned long long)want,
                               (unsigned long long)s_iov_total(iov, iovcnt));
    int r = s_buffer_pages_record(w, pid, vaddr, n_pages, page_size, &want, err);
    if (r < 0)
        return r;
    r = s_send_with_pages(w, iov, iovcnt, err);
    if (r < 0)
        return r;
    w->bytes += want;
    return 0;
}

int ghost_write_pages(ghost_writer_t *w, uint64_t vaddr, uint64_t n_pages,
                      uint32_t page_size, const struct iovec *iov, int iovcnt,
                      cairn_error_t *err)
{
    return s_write_pages(w, 0, vaddr, n_pages, page_size, iov, iovcnt, err);
}

int ghost_write_round_pages(ghost_writer_t *w, uint32_t pid, uint64_t vaddr,
                            uint64_t n_pages, uint32_t page_size,
                            const struct iovec *iov, int iovcnt, cairn_error_t *err)
{
    if (pid == 0)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "pre-copy pages without their process");
    return s_write_pages(w, pid, vaddr, n_pages, page_size, iov, iovcnt, err);
}

int ghost_write_pages_room(ghost_writer_t *w, uint64_t vaddr, uint64_t n_pages,
                           uint32_t page_size, uint64_t *ret_off, cairn_error_t *err)
{
    if (!w || !ret_off || page_size == 0)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "bad pages arguments");
    if (lseek(w->fd, 0, SEEK_CUR) < 0)   /* before anything is written */
        return cairn_error_set(err, -errno, CAIRN_SYSTEM,
                               "cannot leave room in the image: %s", strerror(errno));
    uint64_t want = 0;
    int r = s_buffer_pages_record(w, 0, vaddr, n_pages, page_size, &want, err);
    if (r == 0)
        r = ghost_writer_flush(w, err);
    if (r < 0)
        return r;
    /* The room is a hole until the caller fills it: the next record is
     * written after it, so only the file position moves. */
    off_t at = lseek(w->fd, 0, SEEK_CUR);
    if (at < 0 || lseek(w->fd, (off_t)want, SEEK_CUR) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM,
                               "cannot leave room in the image: %s", strerror(errno));
    *ret_off = (uint64_t)at;
    w->bytes += want;
    return 0;
}

int ghost_write_object_pages(ghost_writer_t *w, uint64_t shmid, uint64_t offset,
                             uint64_t n_pages, uint32_t page_size,
                             const struct iovec *iov, int iovcnt, cairn_error_t *err)
{
    uint64_t want = n_pages * page_size;
    if (!w || (iovcnt > 0 && !iov) || iovcnt < 0 || page_size == 0 ||
        n_pages == 0 || want / page_size != n_pages || want > S_MAX_RAW_RUN ||
        offset % page_size != 0 || s_iov_total(iov, iovcnt) != want)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "object pages run of %llu pages at %llu: bad "
                               "arguments", (unsigned long long)n_pages,
                               (unsigned long long)offset);
    Cairn__Ghost__ObjectPages p = CAIRN__GHOST__OBJECT_PAGES__INIT;
    p.shmid = shmid;
    p.offset = offset;
    p.n_pages = n_pages;
    Cairn__Ghost__Record rec = CAIRN__GHOST__RECORD__INIT;
    rec.r_case = CAIRN__GHOST__RECORD__R_OBJECT_PAGES;
    rec.object_pages = &p;
    int r = s_buffer_raw_record(w, &rec, &p.pad, n_pages, page_size, err);
    if (r == 0)
        r = s_send_with_pages(w, iov, iovcnt, err);
    if (r == 0)
        w->bytes += want;
    return r;
}

/* ---- reader ------------------------------------------------------------ */

ghost_reader_t *ghost_reader_new(int fd)
{
    ghost_reader_t *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->buf = malloc(S_RBUF_SIZE);
    if (!r->buf) {
        free(r);
        return NULL;
    }
    r->fd = fd;
    return r;
}

ghost_reader_t *ghost_reader_free(ghost_reader_t *r)
{
    if (!r)
        return NULL;
    free(r->buf);
    free(r);
    return NULL;
}

uint64_t ghost_reader_bytes(const ghost_reader_t *r)
{
    return r ? r->offset : 0;
}

/* read(2) retrying EINTR; returns bytes read, 0 at EOF, or -errno. */
static ssize_t s_read_some(int fd, void *dst, size_t len)
{
    for (;;) {
        ssize_t k = read(fd, dst, len);
        if (k >= 0)
            return k;
        if (errno != EINTR)
            return -errno;
    }
}

/* Makes at least `need` bytes available in buf[pos..len). Returns 0, or
 * -EBADMSG at EOF, or -errno. */
static int s_fill(ghost_reader_t *r, size_t need, cairn_error_t *err)
{
    if (r->len - r->pos >= need)
        return 0;
    memmove(r->buf, r->buf + r->pos, r->len - r->pos);
    r->len -= r->pos;
    r->pos = 0;
    while (r->len < need) {
        ssize_t k = s_read_some(r->fd, r->buf + r->len, S_RBUF_SIZE - r->len);
        if (k < 0)
            return cairn_error_set(err, (int)k, CAIRN_SYSTEM,
                                   "image read failed at offset %llu: %s",
                                   (unsigned long long)(r->offset + r->len),
                                   strerror((int)-k));
        if (k == 0)
            return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                                   "image truncated at offset %llu (%zu more bytes expected)",
                                   (unsigned long long)(r->offset + r->len),
                                   need - r->len);
        r->len += (size_t)k;
    }
    return 0;
}

static void s_consume(ghost_reader_t *r, size_t n)
{
    r->pos += n;
    r->offset += n;
}

static int s_read_magic(ghost_reader_t *r, cairn_error_t *err)
{
    int rc = s_fill(r, 8, err);
    if (rc < 0)
        return rc;
    if (memcmp(r->buf + r->pos, GHOST_IMAGE_MAGIC, 8) != 0)
        return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                               "not a ghost image: bad magic at offset 0");
    s_consume(r, 8);
    r->magic_ok = true;
    return 0;
}

/* True at a clean end of file (nothing buffered, read returns 0). */
static int s_at_eof(ghost_reader_t *r, cairn_error_t *err)
{
    if (r->len > r->pos)
        return 0;
    r->pos = r->len = 0;
    ssize_t k = s_read_some(r->fd, r->buf, S_RBUF_SIZE);
    if (k < 0)
        return cairn_error_set(err, (int)k, CAIRN_SYSTEM,
                               "image read failed at offset %llu: %s",
                               (unsigned long long)r->offset, strerror((int)-k));
    r->len = (size_t)k;
    return k == 0 ? 1 : 0;
}

/* A raw run's pad is at most a page. */
static int s_check_pad(const ghost_reader_t *r, uint32_t pad, uint64_t at,
                       cairn_error_t *err)
{
    if (pad > r->page_size)
        return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                               "record at offset %llu pads its pages with %u bytes "
                               "(page size %u)", (unsigned long long)at, pad,
                               r->page_size);
    return 0;
}

/* A page size the stream may use (a power of two), and the same as the
 * rounds' once one said it. */
static int s_check_page_size(const ghost_reader_t *r, uint32_t ps, const char *what,
                             uint64_t at, cairn_error_t *err)
{
    if (ps == 0 || (ps & (ps - 1)) != 0 || (r->page_size && ps != r->page_size))
        return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                               "%s at offset %llu has page size %u", what,
                               (unsigned long long)at, ps);
    return 0;
}

/* A pages record: its process named in a pre-copy round and only there. */
static int s_check_pages(const ghost_reader_t *r, const Cairn__Ghost__Pages *p, uint64_t at,
                         cairn_error_t *err)
{
    if (!r->seen_header && !r->seen_round)
        return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                               "pages record before the header at offset %llu",
                               (unsigned long long)at);
    if (!r->seen_header && p->pid == 0)
        return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                               "pre-copy pages record at offset %llu names no process",
                               (unsigned long long)at);
    if (r->seen_header && p->pid != 0)
        return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                               "pages record at offset %llu names process %u after the "
                               "header", (unsigned long long)at, p->pid);
    if (p->n_pages == 0 || p->n_pages > S_MAX_RAW_RUN / r->page_size)
        return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                               "pages record at offset %llu has %llu pages",
                               (unsigned long long)at, (unsigned long long)p->n_pages);
    return s_check_pad(r, p->pad, at, err);
}

/* Checks a decoded record against the stream's order rules. */
static int s_check_record(ghost_reader_t *r, const Cairn__Ghost__Record *rec,
                          uint64_t at, cairn_error_t *err)
{
    switch (rec->r_case) {
    case CAIRN__GHOST__RECORD__R_HEADER:
        if (r->seen_header)
            return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                                   "second header record at offset %llu",
                                   (unsigned long long)at);
        return s_check_page_size(r, rec->header->page_size, "header", at, err);
    case CAIRN__GHOST__RECORD__R_ROUND:
        if (r->seen_header)
            return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                                   "pre-copy round record after the header at offset %llu",
                                   (unsigned long long)at);
        return s_check_page_size(r, rec->round->page_size, "pre-copy round", at, err);
    case CAIRN__GHOST__RECORD__R_PAGES:
        return s_check_pages(r, rec->pages, at, err);
    case CAIRN__GHOST__RECORD__R_KEPT_PAGES:
        if (!r->seen_header)
            return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                                   "record at offset %llu before the header",
                                   (unsigned long long)at);
        if (rec->kept_pages->n_pages == 0 ||
            rec->kept_pages->n_pages > S_MAX_RAW_RUN / r->page_size)
            return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                                   "kept pages record at offset %llu has %llu pages",
                                   (unsigned long long)at,
                                   (unsigned long long)rec->kept_pages->n_pages);
        return 0;
    case CAIRN__GHOST__RECORD__R_OBJECT_PAGES: {
        uint64_t n = rec->object_pages->n_pages;
        if (!r->seen_header)
            return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                                   "object pages record before the header at offset %llu",
                                   (unsigned long long)at);
        if (n == 0 || n > S_MAX_RAW_RUN / r->page_size ||
            rec->object_pages->offset % r->page_size != 0)
            return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                                   "object pages record at offset %llu has %llu pages "
                                   "at object offset %llu", (unsigned long long)at,
                                   (unsigned long long)n,
                                   (unsigned long long)rec->object_pages->offset);
        return s_check_pad(r, rec->object_pages->pad, at, err);
    }
    case CAIRN__GHOST__RECORD__R__NOT_SET:
        return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                               "record at offset %llu has no kind",
                               (unsigned long long)at);
    default:
        if (!r->seen_header)
            return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                                   "record at offset %llu before the header",
                                   (unsigned long long)at);
        return 0;
    }
}

/* The zero bytes between rec and its raw pages (0 for other records). */
static uint32_t s_raw_pad(const Cairn__Ghost__Record *rec)
{
    return rec->r_case == CAIRN__GHOST__RECORD__R_PAGES ? rec->pages->pad
           : rec->r_case == CAIRN__GHOST__RECORD__R_OBJECT_PAGES ? rec->object_pages->pad
           : 0;
}

static void s_note_record(ghost_reader_t *r, const Cairn__Ghost__Record *rec)
{
    if (rec->r_case == CAIRN__GHOST__RECORD__R_HEADER) {
        r->seen_header = true;
        r->page_size = rec->header->page_size;
    } else if (rec->r_case == CAIRN__GHOST__RECORD__R_ROUND) {
        r->seen_round = true;
        r->page_size = rec->round->page_size;
    } else if (rec->r_case == CAIRN__GHOST__RECORD__R_PAGES) {
        r->raw_left = s_raw_pad(rec) + rec->pages->n_pages * r->page_size;
    } else if (rec->r_case == CAIRN__GHOST__RECORD__R_OBJECT_PAGES) {
        r->raw_left = s_raw_pad(rec) + rec->object_pages->n_pages * r->page_size;
    } else if (rec->r_case == CAIRN__GHOST__RECORD__R_END) {
        r->seen_end = true;
    }
}

/* Reads the u32 length at the current offset and checks it. */
static int s_read_length(ghost_reader_t *r, uint32_t *ret_len, cairn_error_t *err)
{
    uint64_t at = r->offset;
    int rc = s_fill(r, 4, err);
    if (rc < 0)
        return rc;
    const uint8_t *p = r->buf + r->pos;
    uint32_t n = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                 (uint32_t)p[3] << 24;
    if (n == 0 || n > GHOST_MAX_RECORD)
        return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                               "record length %u at offset %llu (limit %u)", n,
                               (unsigned long long)at, GHOST_MAX_RECORD);
    s_consume(r, 4);
    *ret_len = n;
    return 0;
}

/* Reads a whole record body of n bytes and decodes it. */
static int s_read_body(ghost_reader_t *r, uint32_t n, uint64_t at,
                       Cairn__Ghost__Record **ret, cairn_error_t *err)
{
    int rc = s_fill(r, n, err);
    if (rc < 0)
        return rc;
    /* Through the codec: it refuses what protobuf-c lets by (wire.c). */
    ProtobufCMessage *m = NULL;
    if (cairn_wire_decode_body(&cairn__ghost__record__descriptor,
                               r->buf + r->pos, n, 0, &m, NULL) < 0)
        return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                               "record at offset %llu (%u bytes) does not decode",
                               (unsigned long long)at, n);
    Cairn__Ghost__Record *rec = (Cairn__Ghost__Record *)m;
    rc = s_check_record(r, rec, at, err);
    if (rc < 0) {
        cairn__ghost__record__free_unpacked(rec, NULL);
        return rc;
    }
    s_consume(r, n);
    *ret = rec;
    return 0;
}

int ghost_read_record(ghost_reader_t *r, Cairn__Ghost__Record **ret,
                      cairn_error_t *err)
{
    if (!r || !ret)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "no reader or result pointer");
    if (r->raw_left > 0)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "%llu raw page bytes not read before the next record",
                               (unsigned long long)r->raw_left);
    int rc = r->magic_ok ? 0 : s_read_magic(r, err);
    if (rc < 0)
        return rc;
    if (r->seen_end) {
        rc = s_at_eof(r, err);
        if (rc < 0)
            return rc;
        if (rc == 0)
            return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                                   "data after the end record at offset %llu",
                                   (unsigned long long)r->offset);
        *ret = NULL;
        return 0;
    }
    uint64_t at = r->offset;
    uint32_t n = 0;
    rc = s_read_length(r, &n, err);
    if (rc < 0)
        return rc;
    Cairn__Ghost__Record *rec = NULL;
    rc = s_read_body(r, n, at, &rec, err);
    if (rc < 0)
        return rc;
    s_note_record(r, rec);
    /* The pad is part of the raw run for the reader's accounting; the
     * caller sees only the pages. */
    uint32_t pad = s_raw_pad(rec);
    rc = pad ? ghost_skip_raw(r, pad, err) : 0;
    if (rc < 0) {
        cairn__ghost__record__free_unpacked(rec, NULL);
        return rc;
    }
    *ret = rec;
    return 0;
}

int ghost_read_raw(ghost_reader_t *r, void *dst, size_t len, cairn_error_t *err)
{
    if (!r || (!dst && len))
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT, "bad raw read");
    if (len > r->raw_left)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "raw read of %zu bytes, only %llu pending", len,
                               (unsigned long long)r->raw_left);
    size_t have = r->len - r->pos;
    size_t take = have < len ? have : len;
    memcpy(dst, r->buf + r->pos, take);
    s_consume(r, take);
    r->raw_left -= take;
    uint8_t *p = (uint8_t *)dst + take;
    size_t left = len - take;
    while (left > 0) {
        ssize_t k = s_read_some(r->fd, p, left);
        if (k < 0)
            return cairn_error_set(err, (int)k, CAIRN_SYSTEM,
                                   "image read failed at offset %llu: %s",
                                   (unsigned long long)r->offset, strerror((int)-k));
        if (k == 0)
            return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                                   "image truncated at offset %llu inside page data "
                                   "(%zu more bytes expected)",
                                   (unsigned long long)r->offset, left);
        p += k;
        left -= (size_t)k;
        r->offset += (uint64_t)k;
        r->raw_left -= (uint64_t)k;
    }
    return 0;
}

/* Seeks past `left` bytes the read-ahead buffer no longer holds. */
static int s_seek_past(ghost_reader_t *r, uint64_t left, cairn_error_t *err)
{
    struct stat st;
    off_t at = lseek(r->fd, 0, SEEK_CUR);
    if (at < 0 || fstat(r->fd, &st) < 0 || !S_ISREG(st.st_mode))
        return -ESPIPE;
    if ((uint64_t)at + left > (uint64_t)st.st_size)
        return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                               "image truncated at offset %llu inside page data "
                               "(%llu more bytes expected)",
                               (unsigned long long)st.st_size,
                               (unsigned long long)((uint64_t)at + left - (uint64_t)st.st_size));
    if (lseek(r->fd, (off_t)left, SEEK_CUR) < 0)
        return -errno;
    r->offset += left;
    r->raw_left -= left;
    return 0;
}

int ghost_skip_raw(ghost_reader_t *r, size_t len, cairn_error_t *err)
{
    if (!r || len > r->raw_left)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT, "bad raw skip");
    size_t have = r->len - r->pos;
    size_t take = have < len ? have : len;
    s_consume(r, take);
    r->raw_left -= take;
    uint64_t left = len - take;
    if (left == 0)
        return 0;
    int ret = s_seek_past(r, left, err);
    if (ret != -ESPIPE)
        return ret;
    ret = 0;   /* not seekable: read through */
    static const size_t chunk = 1u << 20;
    uint8_t *scratch = malloc(chunk);
    if (!scratch)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    while (ret == 0 && left > 0) {
        size_t n = left < chunk ? (size_t)left : chunk;
        ret = ghost_read_raw(r, scratch, n, err);
        left -= n;
    }
    free(scratch);
    return ret;
}

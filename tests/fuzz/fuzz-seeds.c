/* fuzz-seeds.c - writes the fuzz targets' seed corpora (tests/fuzz/README.md).
 *
 *   fuzz-seeds DIR      writes DIR/<target>/seed-*; run from the source
 *                       root as `BUILD/tests/fuzz/fuzz-seeds tests/fuzz`
 *
 * The output is committed; this program is how it was made, and how a new
 * service gets its seeds (a row in fuzz-common.c's table is enough).
 *
 * Design. Messages are filled generically from their protobuf-c
 * descriptors, so every Request and Reply case of every service in the
 * table gets a seed with every field set (scalars non-zero, strings and
 * bytes non-empty, repeated fields with two elements, nested messages a
 * few levels deep): a seed then reaches each field's decoding at once,
 * and the fuzzer starts from messages a real peer could send. Images are
 * written with the engine's own writer (image.h), with a page size of 64
 * bytes where it does not matter so that page runs long enough to be
 * padded still make files of a few KB; each image is read back whole
 * before this program succeeds. The output is the same on every run (no
 * clock, no randomness), so a regenerated corpus diffs cleanly.
 *
 * A one-shot program: the output dir and the arena the filled messages
 * live in are its only state, two file statics; any failure is printed
 * and exits. Exit codes: 0 written, 1 failed, 100 usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cairn/wire.h"
#include "fuzz.h"
#include "image.h"
#include "util/cleanup.h"
#include "util/fileio.h"

#define S_DEPTH      4   /* nested messages filled this deep */
#define S_REPEAT     2   /* elements of a repeated field */
#define S_SMALL_PAGE 64u /* page size of the small images */

/* ---- an arena: everything a filled message points to ------------------- */

typedef struct s_chunk {
    struct s_chunk *next;
    max_align_t data[];
} s_chunk_t;

static s_chunk_t *s_arena; /* freed by s_arena_free */

static void *s_alloc(size_t size)
{
    s_chunk_t *c = calloc(1, sizeof(*c) + size);

    if (!c) {
        fprintf(stderr, "fuzz-seeds: out of memory\n");
        exit(1);
    }
    c->next = s_arena;
    s_arena = c;
    return c->data;
}

static void s_arena_free(void)
{
    while (s_arena) {
        s_chunk_t *next = s_arena->next;
        free(s_arena);
        s_arena = next;
    }
}

/* ---- filling a message from its descriptor ----------------------------- */

static void s_fill(ProtobufCMessage *m, int depth);

static size_t s_value_size(const ProtobufCFieldDescriptor *f)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: return sizeof(uint64_t);
    case PROTOBUF_C_TYPE_DOUBLE: return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING: return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES: return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE: return sizeof(ProtobufCMessage *);
    default: return sizeof(uint32_t); /* 32-bit ints, float, enum */
    }
}

/* A string a peer could send in this field: a path for a path. */
static char *s_string(const ProtobufCFieldDescriptor *f, unsigned k)
{
    char *s = s_alloc(96);

    if (strstr(f->name, "dir") || strstr(f->name, "path") ||
        strstr(f->name, "cwd") || strstr(f->name, "image"))
        snprintf(s, 96, "/tmp/cairn-fuzz/%s%u", f->name, k);
    else if (strstr(f->name, "address"))
        snprintf(s, 96, "10.0.%u.%u", k, f->id);
    else
        snprintf(s, 96, "%s-%u", f->name, k);
    return s;
}

/* Writes element k of field f at dst; a message only above the depth. */
static void s_value(const ProtobufCFieldDescriptor *f, void *dst, unsigned k,
                    int depth)
{
    uint64_t u = (1ull << 33) + f->id * 1000u + k; /* a multi-byte varint */
    int32_t i32 = -(int32_t)(f->id * 37u + k);     /* negative: 10 bytes */

    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32: memcpy(dst, &i32, 4); break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        memcpy(dst, &(uint32_t){ (uint32_t)u }, 4);
        break;
    case PROTOBUF_C_TYPE_FLOAT: memcpy(dst, &(float){ 1.5f * f->id }, 4); break;
    case PROTOBUF_C_TYPE_DOUBLE:
        memcpy(dst, &(double){ 2.5 * f->id }, 8);
        break;
    case PROTOBUF_C_TYPE_BOOL:
        memcpy(dst, &(protobuf_c_boolean){ 1 }, sizeof(protobuf_c_boolean));
        break;
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumDescriptor *e = f->descriptor;
        memcpy(dst, &e->values[e->n_values - 1].value, 4);
        break;
    }
    case PROTOBUF_C_TYPE_STRING: *(char **)dst = s_string(f, k); break;
    case PROTOBUF_C_TYPE_BYTES: {
        ProtobufCBinaryData *b = dst;
        b->len = 16;
        b->data = s_alloc(b->len);
        for (size_t i = 0; i < b->len; i++)
            b->data[i] = (uint8_t)(i * 7 + k);
        break;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessageDescriptor *d = f->descriptor;
        ProtobufCMessage *sub = NULL;
        if (depth < S_DEPTH) {
            sub = s_alloc(d->sizeof_message);
            protobuf_c_message_init(d, sub);
            s_fill(sub, depth + 1);
        }
        *(ProtobufCMessage **)dst = sub;
        break;
    }
    default: memcpy(dst, &u, 8); break; /* 64-bit ints */
    }
}

/* Sets field f of m: every element of a repeated field, a oneof member
 * with its case, a proto2/proto3-optional scalar with its has_ flag. */
static void s_fill_field(ProtobufCMessage *m, const ProtobufCFieldDescriptor *f,
                         int depth)
{
    char *base = (char *)m;

    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        size_t size = s_value_size(f);
        char *array = s_alloc(size * S_REPEAT);
        for (unsigned k = 0; k < S_REPEAT; k++)
            s_value(f, array + k * size, k, depth);
        if (f->type == PROTOBUF_C_TYPE_MESSAGE && !*(ProtobufCMessage **)array)
            return; /* too deep: no element at all, never NULL ones */
        memcpy(base + f->offset, &array, sizeof(array));
        memcpy(base + f->quantifier_offset, &(size_t){ S_REPEAT },
               sizeof(size_t));
        return;
    }
    s_value(f, base + f->offset, 0, depth);
    if (f->type == PROTOBUF_C_TYPE_MESSAGE && !*(void **)(base + f->offset))
        return; /* too deep: absent, and so is its oneof case */
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        memcpy(base + f->quantifier_offset, &f->id, sizeof(uint32_t));
    else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset &&
             f->type != PROTOBUF_C_TYPE_MESSAGE &&
             f->type != PROTOBUF_C_TYPE_STRING)
        memcpy(base + f->quantifier_offset, &(protobuf_c_boolean){ 1 },
               sizeof(protobuf_c_boolean));
}

/* Every field of m; of each oneof only its first member. */
static void s_fill(ProtobufCMessage *m, int depth)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;

    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        bool later_member = false;
        for (unsigned j = 0; j < i && (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF);
             j++)
            later_member |=
                (d->fields[j].flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
                d->fields[j].quantifier_offset == f->quantifier_offset;
        if (!later_member)
            s_fill_field(m, f, depth);
    }
}

/* A new message of type d with oneof member f (of d) filled and set. */
static ProtobufCMessage *s_with_case(const ProtobufCMessageDescriptor *d,
                                     const ProtobufCFieldDescriptor *f)
{
    ProtobufCMessage *m = s_alloc(d->sizeof_message);

    protobuf_c_message_init(d, m);
    for (unsigned i = 0; i < d->n_fields; i++)
        if (!(d->fields[i].flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
            s_fill_field(m, &d->fields[i], 0);
    s_fill_field(m, f, 0);
    return m;
}

/* ---- writing seeds ----------------------------------------------------- */

static const char *s_out; /* the output directory (argv[1]) */

/* Writes DIR/target/name from up to three pieces. */
static void s_write(const char *target, const char *name, const void *a,
                    size_t alen, const void *b, size_t blen, const void *c,
                    size_t clen)
{
    _cleanup_close_ int fd = -1;
    char path[4096];
    int r;

    snprintf(path, sizeof(path), "%s/%s", s_out, target);
    r = cairn_mkdir_p(path, 0755);
    snprintf(path, sizeof(path), "%s/%s/%s", s_out, target, name);
    if (r == 0) {
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        r = fd < 0 ? -errno : 0;
    }
    if (r == 0)
        r = cairn_write_all(fd, a, alen);
    if (r == 0)
        r = cairn_write_all(fd, b, blen);
    if (r == 0)
        r = cairn_write_all(fd, c, clen);
    if (r < 0) {
        fprintf(stderr, "fuzz-seeds: %s: %s\n", path, strerror(-r));
        exit(1);
    }
}

static uint8_t *s_pack(const ProtobufCMessage *m, size_t *len)
{
    uint8_t *buf = NULL;

    if (cairn_wire_pack(m, &buf, len) < 0) {
        fprintf(stderr, "fuzz-seeds: cannot pack a %s\n", m->descriptor->name);
        exit(1);
    }
    return buf;
}

/* fuzz-envelope's input: u16 header length, header, body. */
static void s_envelope(const char *name, const char *service, uint32_t type,
                       bool is_reply, const ProtobufCMessage *body)
{
    Cairn__Header h = CAIRN__HEADER__INIT;
    size_t hlen = 0, blen = 0;

    h.version = CAIRN_WIRE_VERSION;
    h.request_id = 0x5eed000000000001ull + type;
    h.source_node = is_reply ? 1 : 2;
    h.service = (char *)service;
    h.type = type;
    h.deadline_ms = is_reply ? 0 : 5000;
    h.is_reply = is_reply;
    _cleanup_free_ uint8_t *hbuf = s_pack(&h.base, &hlen);
    _cleanup_free_ uint8_t *bbuf = body ? s_pack(body, &blen) : NULL;
    uint8_t le[2] = { hlen & 0xff, hlen >> 8 };
    if (body)
        s_write("fuzz-envelope", name, le, 2, hbuf, hlen, bbuf, blen);
    else /* a lone header frame */
        s_write("fuzz-envelope", name, hbuf, hlen, NULL, 0, NULL, 0);
}

/* Every Request case of svc: fuzz-<svc>-request's input (type byte, body)
 * and a request envelope; every Reply case: a reply envelope. */
static void s_service_seeds(const fuzz_service_t *svc)
{
    const ProtobufCMessageDescriptor *rq = svc->request_desc;
    const ProtobufCMessageDescriptor *rp = svc->reply_desc;
    char target[128], name[160];

    snprintf(target, sizeof(target), "fuzz-%s-request", svc->name);
    for (unsigned i = 0; i < rq->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &rq->fields[i];
        ProtobufCMessage *m = s_with_case(rq, f);
        size_t len = 0;
        _cleanup_free_ uint8_t *buf = s_pack(m, &len);
        uint8_t type = (uint8_t)f->id;
        snprintf(name, sizeof(name), "seed-%s.bin", f->name);
        s_write(target, name, &type, 1, buf, len, NULL, 0);
        snprintf(name, sizeof(name), "seed-%s-%s.bin", svc->name, f->name);
        s_envelope(name, svc->name, f->id, false, m);
    }
    for (unsigned i = 0; i < rp->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &rp->fields[i];
        if (!(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
            continue;
        snprintf(name, sizeof(name), "seed-%s-reply-%s.bin", svc->name,
                 f->name);
        s_envelope(name, svc->name, f->id, true, s_with_case(rp, f));
    }
}

static void s_envelope_seeds(void)
{
    Cairn__Status st = CAIRN__STATUS__INIT;
    Cairn__ErrorReply er = CAIRN__ERROR_REPLY__INIT;

    st.code = CAIRN__STATUS_CODE__STATUS_DECODE_ERROR;
    st.message = "ClusterdRequest body of 3 bytes does not decode";
    er.status = &st;
    s_envelope("seed-error-reply.bin", "clusterd", 3, true, &er.base);
    s_envelope("seed-header-only.bin", "ghostd", 1, false, NULL);
    for (size_t i = 0; i < fuzz_n_services; i++)
        s_service_seeds(&fuzz_services[i]);
}

/* ---- images ------------------------------------------------------------ */

static void s_check(int r, const cairn_error_t *err, const char *what)
{
    if (r < 0) {
        fprintf(stderr, "fuzz-seeds: %s: %s\n", what, err->message);
        exit(1);
    }
}

/* A record of kind `id` (a Record oneof field number), every field set. */
static Cairn__Ghost__Record *s_record(uint32_t id)
{
    const ProtobufCMessageDescriptor *d = &cairn__ghost__record__descriptor;
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field(d, id);

    return (Cairn__Ghost__Record *)s_with_case(d, f);
}

static void s_write_header(ghost_writer_t *w, uint32_t page_size,
                           uint32_t n_processes)
{
    Cairn__Ghost__Record *rec = s_record(CAIRN__GHOST__RECORD__R_HEADER);
    cairn_error_t err;

    rec->header->version = GHOST_IMAGE_VERSION;
    rec->header->page_size = page_size;
    rec->header->n_processes = n_processes;
    s_check(ghost_write_record(w, rec, &err), &err, "header");
}

/* n pages of page_size at vaddr (its page_size bit: the target skips). */
static void s_write_pages(ghost_writer_t *w, uint64_t vaddr, uint64_t n,
                          uint32_t page_size)
{
    size_t len = n * page_size;
    struct iovec iov = { .iov_base = s_alloc(len), .iov_len = len };
    cairn_error_t err;

    memset(iov.iov_base, 0xa5, len);
    s_check(ghost_write_pages(w, vaddr, n, page_size, &iov, 1, &err), &err,
            "pages");
}

static void s_write_object_pages(ghost_writer_t *w, uint64_t shmid, uint64_t n,
                                 uint32_t page_size)
{
    size_t len = n * page_size;
    struct iovec iov = { .iov_base = s_alloc(len), .iov_len = len };
    cairn_error_t err;

    memset(iov.iov_base, 0x5a, len);
    s_check(ghost_write_object_pages(w, shmid, 0, n, page_size, &iov, 1, &err),
            &err, "object pages");
}

/* Every kind the writer has no call of its own for, filled. */
static void s_write_plain_records(ghost_writer_t *w)
{
    static const uint32_t kinds[] = { CAIRN__GHOST__RECORD__R_PROCESS,
                                      CAIRN__GHOST__RECORD__R_THREAD,
                                      CAIRN__GHOST__RECORD__R_VMA,
                                      CAIRN__GHOST__RECORD__R_FD };
    cairn_error_t err;

    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        s_check(ghost_write_record(w, s_record(kinds[i]), &err), &err,
                "record");
}

static void s_write_end(ghost_writer_t *w)
{
    cairn_error_t err;

    s_check(ghost_write_record(w, s_record(CAIRN__GHOST__RECORD__R_END), &err),
            &err, "end");
    s_check(ghost_writer_flush(w, &err), &err, "flush");
}

/* Reads path back whole, as fuzz-ghost-image does, or exits. */
static void s_verify_image(const char *path)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    ghost_reader_t *r = fd >= 0 ? ghost_reader_new(fd) : NULL;
    Cairn__Ghost__Record *rec = NULL;
    uint32_t page_size = 0;
    cairn_error_t err;
    int rc = r ? 0 : -ENOMEM;

    while (rc == 0 && (rc = ghost_read_record(r, &rec, &err)) == 0 && rec) {
        uint64_t n = rec->r_case == CAIRN__GHOST__RECORD__R_PAGES
                         ? rec->pages->n_pages
                     : rec->r_case == CAIRN__GHOST__RECORD__R_OBJECT_PAGES
                         ? rec->object_pages->n_pages
                         : 0;
        if (rec->r_case == CAIRN__GHOST__RECORD__R_HEADER)
            page_size = rec->header->page_size;
        if (n)
            rc = ghost_skip_raw(r, n * page_size, &err);
        cairn__ghost__record__free_unpacked(rec, NULL);
    }
    ghost_reader_free(r);
    if (rc < 0) {
        fprintf(stderr, "fuzz-seeds: %s does not read back: %s\n", path,
                rc == -ENOMEM ? "cannot open it" : err.message);
        exit(1);
    }
}

/* Writes DIR/fuzz-ghost-image/name with fn, then reads it back. */
static void s_image(const char *name, void (*fn)(ghost_writer_t *w))
{
    char path[4096];

    s_write("fuzz-ghost-image", name, NULL, 0, NULL, 0, NULL, 0);
    snprintf(path, sizeof(path), "%s/fuzz-ghost-image/%s", s_out, name);
    _cleanup_close_ int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
    ghost_writer_t *w = fd >= 0 ? ghost_writer_new(fd) : NULL;
    if (!w) {
        fprintf(stderr, "fuzz-seeds: %s: cannot write it\n", path);
        exit(1);
    }
    fn(w);
    ghost_writer_free(w);
    s_verify_image(path);
}

/* header and end: the smallest complete image. */
static void s_image_minimal(ghost_writer_t *w)
{
    s_write_header(w, 4096, 0);
    s_write_end(w);
}

/* One process with one real page. */
static void s_image_one_page(ghost_writer_t *w)
{
    s_write_header(w, 4096, 1);
    s_write_plain_records(w);
    s_write_pages(w, 0x400000, 1, 4096);
    s_write_end(w);
}

/* Every record kind; short and padded runs of pages and object pages,
 * read and skipped (fuzz-ghost-image.c), on 64-byte pages. */
static void s_image_every_kind(ghost_writer_t *w)
{
    uint32_t ps = S_SMALL_PAGE;

    s_write_header(w, ps, 1);
    s_write_plain_records(w);
    s_write_pages(w, 0x400000, 1, ps);
    s_write_pages(w, 0x400000 + ps, GHOST_ALIGN_MIN_PAGES, ps);
    s_write_object_pages(w, 2, 2, ps);
    s_write_object_pages(w, 3, GHOST_ALIGN_MIN_PAGES, ps);
    s_write_end(w);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR (writes DIR/<target>/seed-*)\n",
                argv[0]);
        return 100;
    }
    s_out = argv[1];
    s_envelope_seeds();
    s_image("seed-minimal.ghost", s_image_minimal);
    s_image("seed-one-page.ghost", s_image_one_page);
    s_image("seed-every-kind.ghost", s_image_every_kind);
    s_arena_free();
    return 0;
}

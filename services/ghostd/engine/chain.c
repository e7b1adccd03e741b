/* chain.c - the parents of a delta image (chain.h).
 *
 * Design. The delta's header is read (a delta opens with it: no pre-copy
 * rounds), then each parent's in turn, by the name the child gives in the
 * child's directory, until a full image: every file is opened and its id
 * checked before any page is staged, so a chain with a hole is refused at
 * once. Then the parents are read whole, oldest first, their pages staged
 * in the staging memfd the delta's own pages will join (an image file
 * cannot be its own staging area: there are several). A parent is only
 * ever read for its pages -- the processes, threads and fds that count
 * are the delta's -- but it is read to its End, so a cut one is refused.
 * A parent must belong to the delta's owner and be writable by nobody
 * else, as the image itself must (ghost-restore.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chain.h"
#include "pages.h"

/* One image of the chain. */
typedef struct s_link {
    int fd;
    char name[NAME_MAX + 1];
    uint64_t id;           /* its image_id, as its child named it */
} s_link_t;

/* err's message, prefixed with which parent it is about. */
static int s_about(cairn_error_t *err, int r, const char *name)
{
    if (!err)
        return r;
    char was[CAIRN_ERROR_MESSAGE_MAX];
    snprintf(was, sizeof(was), "%s", err->message);
    size_t at = (size_t)snprintf(err->message, sizeof(err->message), "parent image %.64s: ",
                                 name);
    size_t len = strlen(was);
    if (at < sizeof(err->message)) {
        len = len < sizeof(err->message) - at - 1 ? len : sizeof(err->message) - at - 1;
        memcpy(err->message + at, was, len);
        err->message[at + len] = '\0';
    }
    return r;
}

/* The header of the image on fd (read from offset 0, which fd is left
 * at): *ret, the caller's to free. */
static int s_read_header(int fd, rst_rec_t **ret, cairn_error_t *err)
{
    ghost_reader_t *r = ghost_reader_new(fd);
    if (!r)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    rst_rec_t *rec = NULL;
    int ret_r = ghost_read_record(r, &rec, err);
    ghost_reader_free(r);
    if (lseek(fd, 0, SEEK_SET) < 0 && ret_r == 0)
        ret_r = cairn_error_set(err, -errno, CAIRN_SYSTEM, "lseek: %s", strerror(errno));
    if (ret_r == 0 && rec->r_case != CAIRN__GHOST__RECORD__R_HEADER)
        ret_r = rst_bad(err, "first record is not the header", 0);
    if (ret_r < 0) {
        if (rec)
            cairn__ghost__record__free_unpacked(rec, NULL);
        return ret_r;
    }
    *ret = rec;
    return 0;
}

/* A parent's name: a plain file name, nothing that leaves the directory. */
static bool s_name_ok(const char *name)
{
    return name[0] && name[0] != '.' && !strchr(name, '/') && strlen(name) <= NAME_MAX;
}

/* Opens parent `name` beside the image (dir_fd), checks it is a regular
 * file of uid's writable by nobody else. */
static int s_open_parent(int dir_fd, const char *name, uid_t uid, int *ret_fd,
                         cairn_error_t *err)
{
    if (!s_name_ok(name))
        return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                               "bad image: parent name \"%.64s\"", name);
    int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return cairn_error_set(err, -errno, errno == ENOENT ? CAIRN_NOT_FOUND : CAIRN_SYSTEM,
                               "parent image %s: %s%s", name, strerror(errno),
                               errno == ENOENT ? " (the checkpoint chain is broken)" : "");
    struct stat st;
    int r = 0;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        r = cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                            "parent image %s is not a regular file", name);
    else if (st.st_uid != uid || (st.st_mode & 022))
        r = cairn_error_set(err, -EPERM, CAIRN_PERMISSION_DENIED,
                            "parent image %s is uid %u's, mode %04o: a chain's images are "
                            "all their owner's (uid %u), writable by nobody else",
                            name, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777),
                            (unsigned)uid);
    if (r < 0) {
        close(fd);
        return r;
    }
    *ret_fd = fd;
    return 0;
}

/* Every page of one parent into im->rounds. */
static int s_load_parent(rst_image_t *im, const s_link_t *l, cairn_error_t *err)
{
    ghost_reader_t *r = ghost_reader_new(l->fd);
    if (!r)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    uint32_t pid = 0;
    bool header = false, end = false;
    int ret = 0;
    while (ret == 0 && !end) {
        rst_rec_t *rec = NULL;
        ret = ghost_read_record(r, &rec, err);
        if (ret < 0)
            break;
        uint64_t at = ghost_reader_bytes(r);
        switch (rec->r_case) {
        case CAIRN__GHOST__RECORD__R_HEADER:
            if (header || rec->header->page_size != RST_PAGE)
                ret = rst_bad(err, "second header or another page size", at);
            header = true;
            break;
        case CAIRN__GHOST__RECORD__R_PROCESS:
            pid = rec->process->pid;
            break;
        case CAIRN__GHOST__RECORD__R_PAGES:
            ret = pid ? pages_chain_pages(im, pid, r, rec->pages, err)
                      : rst_bad(err, "pages before any process", at);
            break;
        case CAIRN__GHOST__RECORD__R_KEPT_PAGES:
            ret = pid ? pages_chain_kept(im, pid, rec->kept_pages, at, err)
                      : rst_bad(err, "kept pages before any process", at);
            break;
        case CAIRN__GHOST__RECORD__R_OBJECT_PAGES:
            ret = rec->object_pages->n_pages > (1ull << 36) / RST_PAGE
                      ? rst_bad(err, "object pages record with a bad range", at)
                      : ghost_skip_raw(r, rec->object_pages->n_pages * RST_PAGE, err);
            break;
        case CAIRN__GHOST__RECORD__R_ROUND:
            ret = rst_bad(err, "pre-copy rounds in a checkpoint chain", at);
            break;
        case CAIRN__GHOST__RECORD__R_END:
            end = true;
            break;
        default:
            break;   /* the delta's own records are the ones that count */
        }
        cairn__ghost__record__free_unpacked(rec, NULL);
    }
    if (ret == 0)
        ret = pages_chain_end(im, ghost_reader_bytes(r), err);
    ghost_reader_free(r);
    return ret < 0 ? s_about(err, ret, l->name) : 0;
}

/* The chain of the delta whose header is h, beside it in dir_fd: links
 * [0] the full image ... [n-1] the delta's parent. */
static int s_collect(int dir_fd, const Cairn__Ghost__ImageHeader *h, uid_t uid,
                     s_link_t *links, size_t *ret_n, cairn_error_t *err)
{
    size_t n = 0;
    char name[NAME_MAX + 1];
    uint64_t id = h->parent_id;
    snprintf(name, sizeof(name), "%s", h->parent);
    int r = 0;
    for (bool more = true; r == 0 && more;) {
        if (n == CHAIN_MAX - 1) {
            r = cairn_error_set(err, -ELOOP, CAIRN_INVALID_ARGUMENT,
                                "checkpoint chain longer than %u images", CHAIN_MAX);
            break;
        }
        s_link_t *l = &links[n];
        snprintf(l->name, sizeof(l->name), "%s", name);
        l->id = id;
        if ((r = s_open_parent(dir_fd, name, uid, &l->fd, err)) < 0)
            break;
        n++;
        rst_rec_t *rec = NULL;
        if ((r = s_read_header(l->fd, &rec, err)) < 0) {
            r = s_about(err, r, l->name);
            break;
        }
        const Cairn__Ghost__ImageHeader *ph = rec->header;
        if (ph->image_id != id)
            r = cairn_error_set(err, -EBADMSG, CAIRN_FAILED_PRECONDITION,
                                "parent image %s is not the one its child names (id "
                                "%016llx, not %016llx): the checkpoint chain is broken",
                                l->name, (unsigned long long)ph->image_id,
                                (unsigned long long)id);
        else if (ph->version != GHOST_IMAGE_VERSION && ph->version != GHOST_IMAGE_VERSION_DELTA)
            r = cairn_error_set(err, -EBADMSG, CAIRN_BAD_VERSION,
                                "parent image %s: version %u is not a checkpoint's",
                                l->name, ph->version);
        else if ((ph->version == GHOST_IMAGE_VERSION_DELTA) != (ph->parent && ph->parent[0]))
            r = cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                                "parent image %s: version %u %s a parent", l->name,
                                ph->version, ph->parent && ph->parent[0] ? "with" : "without");
        more = r == 0 && ph->parent && ph->parent[0];
        if (more) {
            snprintf(name, sizeof(name), "%s", ph->parent);
            id = ph->parent_id;
        }
        cairn__ghost__record__free_unpacked(rec, NULL);
    }
    /* Oldest first. */
    for (size_t i = 0; i < n / 2; i++) {
        s_link_t t = links[i];
        links[i] = links[n - 1 - i];
        links[n - 1 - i] = t;
    }
    *ret_n = n;
    return r;
}

/* The directory image_path is in, opened. */
static int s_open_dir(const char *image_path, int *ret, cairn_error_t *err)
{
    char dir[PATH_MAX];
    if (snprintf(dir, sizeof(dir), "%s", image_path) >= (int)sizeof(dir))
        return cairn_error_set(err, -ENAMETOOLONG, CAIRN_INVALID_ARGUMENT,
                               "%s: path too long", image_path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    *ret = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return *ret >= 0 ? 0
                     : cairn_error_set(err, -errno, CAIRN_SYSTEM, "cannot open %s: %s", dir,
                                       strerror(errno));
}

int chain_load(rst_image_t *im, int in_fd, const char *image_path, cairn_error_t *err)
{
    struct stat st;
    if (!image_path || fstat(in_fd, &st) < 0 || !S_ISREG(st.st_mode) ||
        lseek(in_fd, 0, SEEK_CUR) != 0)
        return 0;
    rst_rec_t *rec = NULL;
    int r = s_read_header(in_fd, &rec, err);
    if (r < 0)
        return 0;   /* the load proper says what is wrong with it */
    const Cairn__Ghost__ImageHeader *h = rec->header;
    if (h->version != GHOST_IMAGE_VERSION_DELTA || !h->parent || !h->parent[0]) {
        cairn__ghost__record__free_unpacked(rec, NULL);
        return 0;
    }
    s_link_t *links = calloc(CHAIN_MAX, sizeof(*links));
    size_t n = 0;
    int dir_fd = -1;
    r = links ? s_open_dir(image_path, &dir_fd, err)
              : cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    if (r == 0)
        r = s_collect(dir_fd, h, st.st_uid, links, &n, err);
    if (r == 0)
        r = pages_chain_begin(im, err);
    if (r == 0) {
        im->staging_fd = im->check_only ? fcntl(in_fd, F_DUPFD_CLOEXEC, 0)
                                        : memfd_create("ghost-staging", MFD_CLOEXEC);
        if (im->staging_fd < 0)
            r = cairn_error_set(err, -errno, CAIRN_SYSTEM, "memfd_create: %s",
                                strerror(errno));
    }
    for (size_t i = 0; r == 0 && i < n; i++)
        r = s_load_parent(im, &links[i], err);
    if (r == 0) {
        im->chain = true;
        im->chain_len = (uint32_t)n + 1;
    }
    for (size_t i = 0; links && i < n; i++)
        close(links[i].fd);
    free(links);
    if (dir_fd >= 0)
        close(dir_fd);
    cairn__ghost__record__free_unpacked(rec, NULL);
    return r;
}

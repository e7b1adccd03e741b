/* restart-replica.c - the replica's side of restart on failure
 * (restart.h, restart-private.h): checkpoints of other nodes' jobs
 * coming in, and dropped when their node says so.
 *
 * Design. One restart_in_t per transfer under way here: the .part file,
 * the next seq. Seq 0 of a new id replaces whatever the gpid had under
 * way; the last chunk puts the file into place -- a whole image over
 * image.ghost, a chain's file under its name and then named by the
 * image.ghost symlink when every file before it is here (else the sender
 * is told to send the chain whole) -- and writes the job's record beside
 * it. A transfer silent for RESTART_IN_IDLE_MS loses its slot to a new
 * one.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jobinfo.h"
#include "log.h"
#include "restart-private.h"
#include "util/clock.h"
#include "util/fileio.h"

/* ---- the replica's side ------------------------------------------------- */

static void s_in_free(restart_in_t *in)
{
    if (in->fd >= 0)
        close(in->fd);
    memset(in, 0, sizeof *in);
    in->fd = -1;
}

/* The .part file a transfer writes. */
static void s_in_part(const restart_t *r, const restart_in_t *in, char *buf, size_t size)
{
    snprintf(buf, size, "%s/%.31s/%s.part", r->replica_dir, in->gpid,
             in->file[0] ? in->file : GHOSTD_IMAGE_NAME);
}

/* Drops a transfer and its .part file. */
void restart_in_abandon(restart_t *r, restart_in_t *in)
{
    char part[PATH_MAX + 64];

    s_in_part(r, in, part, sizeof part);
    unlink(part);
    s_in_free(in);
}

restart_in_t *restart_in_find_gpid(restart_t *r, const char *gpid)
{
    for (size_t i = 0; i < RESTART_MAX_IN; i++)
        if (r->in[i].used && strcmp(r->in[i].gpid, gpid) == 0)
            return &r->in[i];
    return NULL;
}

/* A free slot, dropping transfers silent for RESTART_IN_IDLE_MS. */
static restart_in_t *s_in_claim(restart_t *r)
{
    uint64_t now = cairn_now_ms();

    for (size_t i = 0; i < RESTART_MAX_IN; i++)
        if (r->in[i].used && now > r->in[i].touched_ms + RESTART_IN_IDLE_MS)
            restart_in_abandon(r, &r->in[i]);
    for (size_t i = 0; i < RESTART_MAX_IN; i++)
        if (!r->in[i].used)
            return &r->in[i];
    return NULL;
}

static int s_reply_put(cairn_request_t *req, uint64_t seq, uint64_t written, bool complete)
{
    Cairn__Ghostd__Reply *reply = (Cairn__Ghostd__Reply *)cairn_request_reply(req);
    Cairn__Ghostd__ReplicaPutReply *pr = cairn_request_alloc(req, sizeof *pr);

    if (!pr)
        return cairn_request_fail(req, CAIRN_INTERNAL, "out of memory");
    cairn__ghostd__replica_put_reply__init(pr);
    pr->seq = seq;
    pr->written = written;
    pr->complete = complete;
    reply->msg_case = CAIRN__GHOSTD__REPLY__MSG_REPLICA_PUT_REPLY;
    reply->replica_put_reply = pr;
    return CAIRN_REPLY_NOW;
}

/* seq 0: a new image for p->gpid, replacing whatever was under way. */
static int s_in_begin(restart_t *r, cairn_request_t *req,
                      const Cairn__Ghostd__ReplicaPutRequest *p, uint32_t from,
                      restart_in_t **ret)
{
    char dir[PATH_MAX], part[PATH_MAX + 64];
    restart_in_t *in = restart_in_find_gpid(r, p->gpid);

    if (p->file && *p->file && !restart_file_name_ok(p->file))
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "replica_put: '%.64s' is "
                                  "no image.ghost.N", p->file);
    if (in)
        restart_in_abandon(r, in);
    if (!(in = s_in_claim(r)))
        return cairn_request_fail(req, CAIRN_BUSY, "node %u receives %d replicas "
                                  "already; try again later", restart_self(r), RESTART_MAX_IN);
    snprintf(dir, sizeof dir, "%s/%.31s", r->replica_dir, p->gpid);
    restart_mkdir(dir, 0700);
    snprintf(in->gpid, sizeof in->gpid, "%s", p->gpid);
    snprintf(in->file, sizeof in->file, "%s", p->file ? p->file : "");
    s_in_part(r, in, part, sizeof part);
    in->fd = open(part, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (in->fd < 0) {
        int e = errno;
        s_in_free(in);
        return cairn_request_fail(req, CAIRN_SYSTEM, "node %u: cannot make %s: %s",
                                  restart_self(r), part, strerror(e));
    }
    in->used = true;
    snprintf(in->id, sizeof in->id, "%s", p->id);
    in->from = from;
    *ret = in;
    return 0;
}

/* Whether the chain of a file's last chunk is one the replica can keep:
 * at most RESTART_MAX_CHAIN names image.ghost.N, the file last; NULL or why not. */
static const char *s_in_chain_bad(const restart_in_t *in, const Cairn__Ghostd__ReplicaPutRequest *p)
{
    if (!in->file[0])
        return p->n_chain ? "a chain names the files of image.ghost.N transfers only" : NULL;
    if (p->n_chain == 0 || p->n_chain > RESTART_MAX_CHAIN)
        return "the chain of an image.ghost.N holds 1 to 64 names";
    for (size_t i = 0; i < p->n_chain; i++)
        if (!p->chain[i] || !restart_file_name_ok(p->chain[i]))
            return "the chain names a file that is no image.ghost.N";
    if (strcmp(p->chain[p->n_chain - 1], in->file) != 0)
        return "the chain does not end with the file sent";
    return NULL;
}

/* dir/image.ghost names file now (a new symlink renamed over it), and
 * the files of older chains go: only now, with a whole chain named. */
static int s_in_point(const char *dir, const char *file,
                      const Cairn__Ghostd__ReplicaPutRequest *p)
{
    char tmp[PATH_MAX + 32], latest[PATH_MAX + 32], path[PATH_MAX + 300];

    snprintf(tmp, sizeof tmp, "%s/." GHOSTD_IMAGE_NAME ".link", dir);
    snprintf(latest, sizeof latest, "%s/" GHOSTD_IMAGE_NAME, dir);
    unlink(tmp);
    if (symlink(file, tmp) < 0 || rename(tmp, latest) < 0) {
        int e = -errno;
        unlink(tmp);
        return e;
    }
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));) {
        bool keep = !restart_file_name_ok(e->d_name);
        for (size_t i = 0; !keep && i < p->n_chain; i++)
            keep = strcmp(e->d_name, p->chain[i]) == 0;
        if (!keep) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
    }
    if (d)
        closedir(d);
    return 0;
}

/* The last chunk is written: the file goes into place -- a whole image
 * renamed over image.ghost, or a chain's file renamed to its name and,
 * when every file before it is here, named by the image.ghost symlink --
 * and the job's record beside it. */
static int s_in_complete(restart_t *r, cairn_request_t *req, restart_in_t *in,
                         const Cairn__Ghostd__ReplicaPutRequest *p)
{
    char dir[PATH_MAX], part[PATH_MAX + 64], image[PATH_MAX + 64], file[RESTART_FILE_MAX];
    ghostd_jobrec_t rec = { 0 };
    uint64_t seq = in->next_seq - 1, written = in->written;
    const char *bad = s_in_chain_bad(in, p);

    snprintf(dir, sizeof dir, "%s/%.31s", r->replica_dir, in->gpid);
    s_in_part(r, in, part, sizeof part);
    snprintf(file, sizeof file, "%s", in->file);
    snprintf(image, sizeof image, "%s/%s", dir, file[0] ? file : GHOSTD_IMAGE_NAME);
    int e = bad || !p->record ? -EBADMSG
                              : ghostd_jobrec_loads(p->record, strlen(p->record), &rec);
    if (e == 0 && strcmp(rec.gpid, in->gpid) != 0)
        e = -EBADMSG;
    if (e < 0) {
        ghostd_jobrec_clear(&rec);
        restart_in_abandon(r, in);
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "replica_put: %s", bad ? bad
                                  : "the last chunk's record is not the job's record");
    }
    rec.last_checkpoint_ms = p->checkpoint_ms;
    rec.replica = restart_self(r);
    if (fsync(in->fd) < 0 || rename(part, image) < 0)
        e = -errno;
    s_in_free(in);
    for (size_t i = 0; e == 0 && file[0] && i + 1 < p->n_chain; i++) {
        char parent[PATH_MAX + 64];
        struct stat st;
        snprintf(parent, sizeof parent, "%s/%s", dir, p->chain[i]);
        if (lstat(parent, &st) < 0 || !S_ISREG(st.st_mode)) {
            ghostd_jobrec_clear(&rec);
            return cairn_request_fail(req, CAIRN_FAILED_PRECONDITION, "node %u holds no "
                                      "%s of the chain of %s; send the chain whole",
                                      restart_self(r), p->chain[i], file);
        }
    }
    if (e == 0 && file[0])
        e = s_in_point(dir, file, p);
    if (e == 0)
        e = ghostd_jobrec_write(dir, &rec);
    if (e < 0) {
        ghostd_jobrec_clear(&rec);
        return cairn_request_fail(req, CAIRN_SYSTEM, "node %u: cannot keep the replica "
                                  "of %s: %s", restart_self(r), p->gpid, strerror(-e));
    }
    cairn_log_info("replica", "gpid=%s from=%u file=%s chain=%zu image_bytes=%llu "
                   "checkpoint_ms=%llu", rec.gpid, rec.node,
                   file[0] ? file : GHOSTD_IMAGE_NAME, p->n_chain,
                   (unsigned long long)written, (unsigned long long)p->checkpoint_ms);
    ghostd_jobrec_clear(&rec);
    return s_reply_put(req, seq, written, true);
}

int restart_handle_put(void *ctx, cairn_request_t *req)
{
    ghostd_t *gd = ctx;
    restart_t *r = gd->restart;
    const Cairn__Ghostd__Request *body = (const Cairn__Ghostd__Request *)cairn_request_body(req);
    const Cairn__Ghostd__ReplicaPutRequest *p = body->replica_put;
    const cairn_caller_t *c = cairn_request_caller(req);
    uint32_t node;
    uint64_t seqn;
    restart_in_t *in;

    if (!p || !p->id || !*p->id || strlen(p->id) >= sizeof r->in[0].id)
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "replica_put: no id");
    if (!p->gpid || ghostd_gpid_parse(p->gpid, &node, &seqn) < 0)
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "replica_put: '%.64s' "
                                  "is not a gpid", p->gpid ? p->gpid : "");
    if (c->kind != CAIRN_CALLER_NODE || c->node == restart_self(r))
        return cairn_request_fail(req, CAIRN_PERMISSION_DENIED, "replica_put: only "
                                  "another member node's ghostd keeps a replica here");
    if (p->data.len > RESTART_CHUNK)
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "replica_put: a chunk "
                                  "holds at most %u bytes", RESTART_CHUNK);
    in = restart_in_find_gpid(r, p->gpid);
    if (p->seq == 0) {
        int e = s_in_begin(r, req, p, c->node, &in);
        if (e != 0)
            return e;
    } else if (!in || strcmp(in->id, p->id) != 0 || in->from != c->node) {
        return cairn_request_fail(req, CAIRN_FAILED_PRECONDITION, "replica_put: no "
                                  "transfer %s under way here", p->id);
    } else if (p->seq != in->next_seq || strcmp(in->file, p->file ? p->file : "") != 0) {
        uint64_t want = in->next_seq;
        restart_in_abandon(r, in);
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "replica_put: chunk %llu "
                                  "where %llu was due; the transfer is dropped",
                                  (unsigned long long)p->seq, (unsigned long long)want);
    }
    if (cairn_write_all(in->fd, p->data.data, p->data.len) < 0) {
        int e = errno;
        restart_in_abandon(r, in);
        return cairn_request_fail(req, CAIRN_SYSTEM, "node %u: cannot write the replica: "
                                  "%s", restart_self(r), strerror(e));
    }
    in->written += p->data.len;
    in->next_seq++;
    in->touched_ms = cairn_now_ms();
    if (p->last)
        return s_in_complete(r, req, in, p);
    return s_reply_put(req, p->seq, in->written, false);
}

int restart_handle_drop(void *ctx, cairn_request_t *req)
{
    ghostd_t *gd = ctx;
    restart_t *r = gd->restart;
    const Cairn__Ghostd__Request *body = (const Cairn__Ghostd__Request *)cairn_request_body(req);
    const Cairn__Ghostd__ReplicaDropRequest *d = body->replica_drop;
    char dir[PATH_MAX];
    uint32_t node;
    uint64_t seq;

    if (!d || !d->gpid || ghostd_gpid_parse(d->gpid, &node, &seq) < 0)
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "replica_drop: no gpid");
    restart_in_t *in = restart_in_find_gpid(r, d->gpid);
    if (in)
        s_in_free(in);
    snprintf(dir, sizeof dir, "%s/%.31s", r->replica_dir, d->gpid);
    restart_remove_dir(dir);
    cairn_log_info("replica-dropped", "gpid=%s", d->gpid);
    return s_reply_put(req, 0, 0, false);
}

/* migrate-relay.c - a post-copy page source relayed between two ghostds
 * (migrate-relay.h has the design).
 *
 * Everything runs from the loop: P's readiness (POLLIN while the window
 * has room, POLLOUT while incoming bytes wait), the peer's answers
 * (cairn_peers, each with MIGRATE_CHUNK_MS) and a one-second keepalive
 * timer. A request is never answered from its own handler once deferred
 * (the skeleton still holds it): queued messages are written and answered
 * from the POLLOUT watch only.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zmq.h>

#include "log.h"
#include "migrate.h"
#include "migrate-relay.h"
#include "util/clock.h"

static cairn_loop_t *s_loop(const migrate_relay_t *r)
{
    return cairn_service_loop(r->svc);
}

static void s_unwatch(migrate_relay_t *r, int64_t *w)
{
    if (*w > 0)
        cairn_loop_remove(s_loop(r), *w);
    *w = 0;
}

static void s_changed(migrate_relay_t *r)
{
    if (r->on_change)
        r->on_change(r, r->owner);
}

/* Refuses every queued message with code/msg. */
static void s_drop_queue(migrate_relay_t *r, int code, const char *msg)
{
    for (; r->q_n; r->q_n--) {
        migrate_relay_msg_t *m = &r->q[r->q_head];
        if (m->d)
            cairn_deferred_fail(r->svc, m->d, code, msg);
        free(m->data);
        *m = (migrate_relay_msg_t){ 0 };
        r->q_head = (r->q_head + 1) % MIGRATE_RELAY_QUEUE;
    }
}

/* The timer and the fd go; the relay holds nothing more of the loop. */
static void s_shut(migrate_relay_t *r)
{
    s_unwatch(r, &r->rd_watch);
    s_unwatch(r, &r->wr_watch);
    if (r->timer > 0)
        cairn_loop_cancel_timer(s_loop(r), r->timer);
    r->timer = 0;
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
    r->rd_eof = r->wr_closed = true;
}

void migrate_relay_close(migrate_relay_t *r, const char *why)
{
    if (!r->svc || r->broken || migrate_relay_done(r))
        return;
    r->broken = true;
    if (!r->error[0])
        snprintf(r->error, sizeof r->error, "%s", why);
    s_drop_queue(r, CAIRN_UNAVAILABLE, r->error);
    s_shut(r);
    cairn_log_warn(0, "migrate-relay-broken", "id=%s peer=%u sent=%llu received=%llu "
                   "msg=\"%s\"", r->id, r->node, (unsigned long long)r->sent,
                   (unsigned long long)r->received, r->error);
}

bool migrate_relay_done(const migrate_relay_t *r)
{
    return r->svc && !r->broken && r->end_sent && !r->in_flight && r->peer_end &&
           !r->q_n && r->wr_closed;
}

bool migrate_relay_busy(const migrate_relay_t *r)
{
    return r->svc && (r->in_flight || (!r->broken && !migrate_relay_done(r)));
}

void migrate_relay_clear(migrate_relay_t *r)
{
    if (r->svc)
        s_shut(r);
    free(r->buf);
    *r = (migrate_relay_t){ .fd = -1 };
}

/* Once both ways ended the fd and timer go (once: the timer is the mark). */
static void s_maybe_done(migrate_relay_t *r)
{
    if (!migrate_relay_done(r) || !r->timer)
        return;
    s_shut(r);
    cairn_log_info("migrate-relay-done", "id=%s peer=%u sent=%llu received=%llu", r->id,
                   r->node, (unsigned long long)r->sent, (unsigned long long)r->received);
}

/* ---- outgoing: P to the peer ----------------------------------------------- */

static void s_read_watch(migrate_relay_t *r);

static void s_on_answer(void *userdata, uint32_t node, int code, const char *message,
                        ProtobufCMessage *reply)
{
    migrate_relay_t *r = userdata;
    char why[400];

    if (reply)
        protobuf_c_message_free_unpacked(reply, NULL);
    r->in_flight--;
    if (r->broken) {
        s_changed(r);   /* it may have been the last callback due */
        return;
    }
    if (code != CAIRN_OK && !migrate_relay_done(r)) {
        snprintf(why, sizeof why, "node %u %s the page source's bytes: %s", node,
                 code == CAIRN_TIMEOUT ? "did not take" : "refused", message);
        migrate_relay_close(r, why);
    } else {
        s_read_watch(r);
        s_maybe_done(r);
    }
    s_changed(r);
}

/* Sends data[0, len) as the next message (end: our last). */
static int s_send(migrate_relay_t *r, const uint8_t *data, size_t len, bool end)
{
    Cairn__Ghostd__MigratePagesRequest p = CAIRN__GHOSTD__MIGRATE_PAGES_REQUEST__INIT;
    Cairn__Ghostd__Request req = CAIRN__GHOSTD__REQUEST__INIT;

    p.id = r->id;
    p.to_target = r->to_target;
    p.seq = r->seq_out;
    p.data.data = (uint8_t *)data;
    p.data.len = len;
    p.end = end;
    req.msg_case = CAIRN__GHOSTD__REQUEST__MSG_MIGRATE_PAGES;
    req.migrate_pages = &p;
    int k = cairn_peers_call(r->peers, r->node, r->endpoint, &req.base, MIGRATE_CHUNK_MS,
                             s_on_answer, r);
    if (k < 0)
        return k;
    r->seq_out++;
    r->in_flight++;
    r->sent += len;
    r->last_sent_ms = cairn_now_ms();
    if (end)
        r->end_sent = true;
    return 0;
}

/* Reads what P has while the window allows, each read one message. */
static void s_pull(migrate_relay_t *r)
{
    while (!r->broken && !r->rd_eof && r->in_flight < MIGRATE_WINDOW) {
        ssize_t k = recv(r->fd, r->buf, MIGRATE_CHUNK, MSG_DONTWAIT);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (k <= 0)   /* the helper closed P (or it broke: the same end) */
            r->rd_eof = true;
        int e = s_send(r, r->buf, k > 0 ? (size_t)k : 0, k <= 0);
        if (e < 0) {
            char why[128];
            snprintf(why, sizeof why, "cannot send to node %u: %s", r->node, strerror(-e));
            migrate_relay_close(r, why);
            s_changed(r);
            return;
        }
    }
    s_read_watch(r);
}

static int s_on_readable(cairn_loop_t *loop, int fd, void *zsock, short revents,
                         void *userdata)
{
    migrate_relay_t *r = userdata;

    s_pull(r);
    if (r->rd_eof)
        s_changed(r);
    return 0;
}

/* P watched for reading exactly while there is room to send. */
static void s_read_watch(migrate_relay_t *r)
{
    bool want = !r->broken && !r->rd_eof && r->fd >= 0 && r->in_flight < MIGRATE_WINDOW;

    if (want && r->rd_watch <= 0)
        r->rd_watch = cairn_loop_add_fd(s_loop(r), r->fd, ZMQ_POLLIN, s_on_readable, r);
    else if (!want)
        s_unwatch(r, &r->rd_watch);
}

static int s_on_keepalive(cairn_loop_t *loop, int64_t timer_id, void *userdata)
{
    migrate_relay_t *r = userdata;

    if (r->broken || migrate_relay_done(r) || r->in_flight >= MIGRATE_WINDOW ||
        cairn_now_ms() - r->last_sent_ms < MIGRATE_RELAY_KEEPALIVE_MS)
        return 0;
    if (s_send(r, NULL, 0, false) < 0) {
        migrate_relay_close(r, "cannot send a keepalive");
        s_changed(r);
    }
    return 0;
}

/* ---- incoming: the peer's bytes into P --------------------------------------- */

/* Writes what P takes of m without blocking: false when P would block. A
 * helper gone (EPIPE) takes nothing more: its bytes are dropped -- there
 * is nobody to give them to, and our reading side ends the same way. */
static bool s_write(migrate_relay_t *r, migrate_relay_msg_t *m, const uint8_t *data)
{
    while (m->off < m->len && !r->wr_closed) {
        ssize_t k = send(r->fd, data + m->off, m->len - m->off, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return false;
        if (k < 0) {
            r->wr_closed = true;
            break;
        }
        m->off += (size_t)k;
        r->received += (uint64_t)k;
    }
    if (m->end && !r->wr_closed && shutdown(r->fd, SHUT_WR) == 0)
        r->wr_closed = true;
    if (m->end) {
        r->peer_end = true;
        r->wr_closed = true;
    }
    return true;
}

int migrate_chunk_reply(cairn_request_t *req, uint64_t seq, uint64_t written)
{
    Cairn__Ghostd__Reply *reply = (Cairn__Ghostd__Reply *)cairn_request_reply(req);
    Cairn__Ghostd__MigrateChunkReply *cr = cairn_request_alloc(req, sizeof *cr);

    if (!cr)
        return -ENOMEM;
    cairn__ghostd__migrate_chunk_reply__init(cr);
    cr->seq = seq;
    cr->written = written;
    reply->msg_case = CAIRN__GHOSTD__REPLY__MSG_MIGRATE_CHUNK_REPLY;
    reply->migrate_chunk_reply = cr;
    return CAIRN_REPLY_NOW;
}

void migrate_chunk_ack(cairn_service_t *svc, cairn_deferred_t **d, uint64_t seq,
                       uint64_t written)
{
    Cairn__Ghostd__MigrateChunkReply cr = CAIRN__GHOSTD__MIGRATE_CHUNK_REPLY__INIT;
    Cairn__Ghostd__Reply reply = CAIRN__GHOSTD__REPLY__INIT;

    cr.seq = seq;
    cr.written = written;
    reply.msg_case = CAIRN__GHOSTD__REPLY__MSG_MIGRATE_CHUNK_REPLY;
    reply.migrate_chunk_reply = &cr;
    cairn_deferred_reply(svc, *d, &reply.base);
    *d = NULL;
}

static int s_on_writable(cairn_loop_t *loop, int fd, void *zsock, short revents,
                         void *userdata)
{
    migrate_relay_t *r = userdata;

    while (r->q_n) {
        migrate_relay_msg_t *m = &r->q[r->q_head];
        if (!s_write(r, m, m->data))
            return 0;
        migrate_chunk_ack(r->svc, &m->d, m->seq, r->received);
        free(m->data);
        *m = (migrate_relay_msg_t){ 0 };
        r->q_head = (r->q_head + 1) % MIGRATE_RELAY_QUEUE;
        r->q_n--;
    }
    s_unwatch(r, &r->wr_watch);
    s_maybe_done(r);
    s_changed(r);
    return 0;
}

int migrate_relay_receive(migrate_relay_t *r, cairn_request_t *req,
                          const Cairn__Ghostd__MigratePagesRequest *p)
{
    migrate_relay_msg_t now = { .len = p->data.len, .seq = p->seq, .end = p->end };
    char why[256];

    if (!r->svc || r->broken)
        return cairn_request_fail(req, CAIRN_FAILED_PRECONDITION, "migration %s: the "
                                  "page relay on node %u is closed%s%s", p->id,
                                  r->svc ? cairn_service_node(r->svc)->id : 0,
                                  r->error[0] ? ": " : "", r->error);
    if (p->seq != r->seq_in || (r->peer_end && (p->data.len || p->end))) {
        snprintf(why, sizeof why, "page relay message %llu came where %llu was due%s",
                 (unsigned long long)p->seq, (unsigned long long)r->seq_in,
                 r->peer_end ? " (after the end)" : "");
        migrate_relay_close(r, why);
        s_changed(r);
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "%s", why);
    }
    if (p->data.len > MIGRATE_CHUNK || r->q_n == MIGRATE_RELAY_QUEUE)
        return cairn_request_fail(req, CAIRN_TOO_LARGE, "page relay message %llu: %zu "
                                  "bytes with %zu queued (at most %u bytes, %d messages)",
                                  (unsigned long long)p->seq, p->data.len, r->q_n,
                                  MIGRATE_CHUNK, MIGRATE_RELAY_QUEUE);
    r->seq_in++;
    if (!r->q_n && s_write(r, &now, p->data.data)) {
        int k = migrate_chunk_reply(req, p->seq, r->received);
        s_maybe_done(r);
        if (p->end)   /* the owner may clear r: nothing of it is read after */
            s_changed(r);
        return k;
    }
    /* What P did not take waits, answered from the POLLOUT watch. */
    migrate_relay_msg_t *m = &r->q[(r->q_head + r->q_n) % MIGRATE_RELAY_QUEUE];
    size_t rest = now.len - now.off;
    *m = now;
    m->data = malloc(rest ? rest : 1);
    m->d = m->data ? cairn_request_defer(req) : NULL;
    if (!m->d) {
        free(m->data);
        *m = (migrate_relay_msg_t){ 0 };
        migrate_relay_close(r, "out of memory");
        s_changed(r);
        return cairn_request_fail(req, CAIRN_INTERNAL, "out of memory");
    }
    if (rest)   /* an empty message (the end alone) has no data at all */
        memcpy(m->data, p->data.data + now.off, rest);
    m->len = rest;
    m->off = 0;
    r->q_n++;
    if (r->wr_watch <= 0)
        r->wr_watch = cairn_loop_add_fd(s_loop(r), r->fd, ZMQ_POLLOUT, s_on_writable, r);
    return CAIRN_REPLY_DEFERRED;
}

/* ---- opening ----------------------------------------------------------------- */

int migrate_relay_open(migrate_relay_t *r, cairn_service_t *svc, cairn_peers_t *peers,
                       uint32_t node, const char *endpoint, const char *id,
                       bool to_target, int fd, migrate_relay_fn on_change, void *owner)
{
    *r = (migrate_relay_t){ .fd = -1 };
    if (!(r->buf = malloc(MIGRATE_CHUNK))) {
        close(fd);
        return -ENOMEM;
    }
    r->svc = svc;
    r->peers = peers;
    r->node = node;
    snprintf(r->endpoint, sizeof r->endpoint, "%s", endpoint);
    snprintf(r->id, sizeof r->id, "%s", id);
    r->to_target = to_target;
    r->fd = fd;
    r->on_change = on_change;
    r->owner = owner;
    r->last_sent_ms = cairn_now_ms();
    r->timer = cairn_loop_add_timer(s_loop(r), MIGRATE_RELAY_KEEPALIVE_MS,
                                    MIGRATE_RELAY_KEEPALIVE_MS, s_on_keepalive, r);
    s_read_watch(r);
    if (r->timer <= 0 || r->rd_watch <= 0) {
        r->timer = r->timer > 0 ? r->timer : 0;
        migrate_relay_clear(r);
        return -ENOMEM;
    }
    cairn_log_info("migrate-relay", "id=%s peer=%u to_target=%d", id, node, (int)to_target);
    return 0;
}

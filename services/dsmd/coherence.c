/* coherence.c - write-invalidate coherence of a segment's pages between
 * the dsmds of the cluster: multiple readers, a single writer, ownership
 * found through probable-owner hints (Li and Hudak's dynamic distributed
 * manager, as Kerrighed's KDDM did).
 *
 * Per page and node: a state (invalid, read copy, owned writable, lost), a
 * hint (the probable owner; this node when it owns the page) and, at the
 * owner, the copyset (the nodes with read copies).
 *
 * A fault the page's state allows is answered at once. Otherwise the
 * fault waits on the page and the node asks its hint for the page: a node
 * that is not the owner answers with a redirect to its own hint (and,
 * for a write, takes the requester as its new hint: the requester is
 * about to own it); the owner answers a read with the page (downgrading
 * its own copy to read-only, the requester joins the copyset) and a write
 * with the page and the copyset, and gives the page up (punched out, the
 * hint is now the requester). A new owner invalidates every node of the
 * copyset and waits for all of them before any process of its node may
 * write: single writer, and every read copy gone before a write happens.
 *
 * Races. A page with our own request or invalidations in flight is
 * *busy*: remote page requests for it wait until it is done (the node is
 * about to be the owner or to hold a copy, so it is the right place to
 * wait); local faults wait on the page and are merged into its request.
 * An invalidation never waits for a request that holds a copy (the copy
 * is dropped, the grant brings the page), only for a read fetch without a
 * copy: the copy being invalidated is then the one in flight, granted
 * before the ownership moved, and it must be dropped after it lands.
 *
 * Failure. A request to a node that does not answer or is dead is sent
 * to the page's creator and then to every other alive member in turn: any
 * node whose hints lead to a living owner redirects there. When none
 * does, the owner died with the page: it is marked lost, its faults get
 * SIGBUS and the log names the segment and the page. Never silent.
 * (Recovering such a page from a surviving read copy is not built yet.)
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsmd.h"
#include "log.h"

/* A request on the wire, to find its page again when the reply comes. */
typedef struct s_call {
    dsmd_t *d;
    char *name;
    uint64_t generation, page;
    uint32_t target;
    uint32_t ahead;           /* read-ahead pages after `page`, marked asking */
} s_call_t;

#define S_AHEAD_MAX 64        /* the largest read-ahead window, in pages */

static void s_request(dsmd_t *d, dsm_seg_t *seg, uint64_t page, uint32_t to);
static void s_invalidate_copyset(dsmd_t *d, dsm_seg_t *seg, uint64_t page);
static void s_run_held(dsmd_t *d, dsm_seg_t *seg, uint64_t page);

static bool s_busy(const dsm_page_t *pg)
{
    return pg->pend && (pg->pend->asking || pg->pend->acks_left > 0);
}

static bool s_allows(const dsm_page_t *pg, bool write)
{
    return pg->state == DSM_WRITE || (pg->state == DSM_READ && !write);
}

static dsm_seg_t *s_seg_of(dsmd_t *d, const char *name, uint64_t generation)
{
    dsm_seg_t *s = dsm_seg_find(d, name);
    return s && s->generation == generation ? s : NULL;
}

/* ---- local faults --------------------------------------------------------- */

/* Answers every waiter the state now allows; the others start the page's
 * request: a write when one of them writes (a read copy upgraded), else a
 * read. */
static void s_answer_waiters(dsmd_t *d, dsm_seg_t *seg, uint64_t page)
{
    dsm_page_t *pg = &seg->pages[page];
    dsm_pending_t *p = pg->pend;
    bool need = false, need_write = false;
    for (dsm_waiter_t **wp = p ? &p->waiters : NULL; wp && *wp;) {
        dsm_waiter_t *w = *wp;
        if (w->at && pg->state == DSM_LOST) {
            dsm_fault_poison(w->at, w->addr);
        } else if (w->at && !s_allows(pg, w->write)) {
            need = true;
            need_write |= w->write;
            wp = &w->next;
            continue;
        } else if (w->at) {
            int e = dsm_fault_answer(seg, w->at, w->addr, page);
            if (e < 0 && e != -ENOENT)
                cairn_log_warn(e, "fault-answer", "segment=%s page=%" PRIu64 " pid=%d: %s",
                               seg->name, page, (int)w->at->pid, strerror(-e));
        }
        *wp = w->next;
        free(w);
    }
    if (!need || s_busy(pg) || pg->state == DSM_LOST)
        return;
    if (pg->hint == d->self) {
        s_invalidate_copyset(d, seg, page);   /* the owner's read copy, to write */
        return;
    }
    p->asking = true;
    p->asking_write = need_write;
    p->hops = 0;
    s_request(d, seg, page, pg->hint);
}

#define S_AROUND 16   /* pages mapped after one answered from this node's copy */

/* Fault-around, as the kernel does for files: the pages after `page`
 * that this node holds in the same state (a run of read copies, mapped
 * write-protected, or of owned pages) are mapped in the process now, so
 * a scan of local pages costs one fault per run, not one per page. */
static void s_fault_around(dsm_seg_t *seg, dsm_attach_t *at, uint64_t page)
{
    uint64_t q = page + 1, n = 0;
    if (q >= seg->npages)
        return;
    uint8_t state = seg->pages[q].state;
    if (state != DSM_READ && state != DSM_WRITE)
        return;
    while (n < S_AROUND && q + n < seg->npages && seg->pages[q + n].state == state &&
           !s_busy(&seg->pages[q + n]))
        n++;
    if (n > 0)
        dsm_pages_map(at, q, n, state == DSM_READ);
}

void dsm_fault(dsmd_t *d, dsm_attach_t *at, uint64_t addr, bool write)
{
    dsm_seg_t *seg = at->seg;
    if (addr < at->addr || addr >= at->addr + seg->size)
        return;
    uint64_t page = (addr - at->addr) / DSM_PAGE;
    dsm_page_t *pg = &seg->pages[page];
    seg->faults++;
    if (!write) {
        /* a run of reads of consecutive pages grows the read-ahead window */
        seg->streak = page == seg->seq_next ? seg->streak + 1 : 0;
        seg->seq_next = page + 1;
    }
    if (pg->state == DSM_LOST) {
        dsm_fault_poison(at, addr);
        return;
    }
    if (!s_busy(pg) && s_allows(pg, write)) {
        int e = dsm_fault_answer(seg, at, addr, page);
        if (e < 0 && e != -ENOENT)
            cairn_log_warn(e, "fault-answer", "segment=%s page=%" PRIu64 ": %s", seg->name,
                           page, strerror(-e));
        else
            s_fault_around(seg, at, page);
        return;
    }
    dsm_pending_t *p = dsm_page_pend(pg);
    dsm_waiter_t *w = p ? calloc(1, sizeof *w) : NULL;
    if (!w) {
        cairn_log_err(-ENOMEM, "fault", "segment=%s page=%" PRIu64 ": out of memory: SIGBUS",
                      seg->name, page);
        dsm_fault_poison(at, addr);
        return;
    }
    w->at = at;
    w->addr = addr;
    w->write = write;
    dsm_waiter_t **tail = &p->waiters;
    while (*tail)
        tail = &(*tail)->next;
    *tail = w;
    if (!s_busy(pg))
        s_answer_waiters(d, seg, page);   /* starts the request */
}

/* ---- losing a page ----------------------------------------------------------- */

static void s_fail_held(dsmd_t *d, dsm_page_t *pg, const char *why);

static void s_lose(dsmd_t *d, dsm_seg_t *seg, uint64_t page, const char *why)
{
    dsm_page_t *pg = &seg->pages[page];
    cairn_log_err(-EIO, "page-lost", "segment=%s page=%" PRIu64 " reason=\"%s\"", seg->name,
                  page, why);
    pg->state = DSM_LOST;
    dsm_page_punch(seg, page);
    if (pg->pend) {
        pg->pend->asking = false;
        pg->pend->acks_left = 0;
    }
    s_answer_waiters(d, seg, page);
    s_fail_held(d, pg, why);
    dsm_page_settle(pg);
}

/* ---- asking for a page -------------------------------------------------------- */

static void s_call_free(s_call_t *c)
{
    if (c)
        free(c->name);
    free(c);
}

static void s_recover(dsmd_t *d, dsm_seg_t *seg, uint64_t page, uint32_t failed,
                      const char *why);

/* The read-ahead pages of a request that did not bring them: free to be
 * asked for again (by their own waiters, if any came). */
static void s_ahead_release(dsmd_t *d, dsm_seg_t *seg, uint64_t first, uint32_t n)
{
    for (uint64_t q = first; q < first + n && q < seg->npages; q++) {
        dsm_page_t *pg = &seg->pages[q];
        if (!pg->pend || !pg->pend->asking)
            continue;
        pg->pend->asking = false;
        s_run_held(d, seg, q);
        s_answer_waiters(d, seg, q);
        dsm_page_settle(pg);
    }
}

/* Installs the read-ahead pages the owner sent as read copies and
 * releases the others. */
static void s_ahead_land(dsmd_t *d, dsm_seg_t *seg, uint64_t page, uint32_t n,
                         const Cairn__Dsmd__PageReply *pr)
{
    uint64_t run_first = 0, run_n = 0;
    for (size_t i = 0; i < pr->n_ahead_pages && (i + 1) * DSM_PAGE <= pr->ahead_data.len; i++) {
        uint64_t q = pr->ahead_pages[i];
        dsm_page_t *pg = q > page && q <= page + n && q < seg->npages ? &seg->pages[q] : NULL;
        if (!pg || !pg->pend || !pg->pend->asking || pg->state != DSM_INVALID)
            continue;
        if (dsm_page_write(seg, q, pr->ahead_data.data + i * DSM_PAGE) < 0)
            continue;   /* released below: a fault asks for it again */
        pg->state = DSM_READ;
        pg->hint = pr->owner;
        seg->fetches++;
        seg->prefetched++;
        pg->pend->asking = false;
        s_run_held(d, seg, q);
        s_answer_waiters(d, seg, q);
        dsm_page_settle(pg);
        /* the copies still here after their held requests, mapped in runs */
        if (pg->state == DSM_READ && run_n > 0 && q == run_first + run_n) {
            run_n++;
        } else {
            if (run_n)
                dsm_pages_map_all(seg, run_first, run_n);
            run_first = q;
            run_n = pg->state == DSM_READ;
        }
    }
    if (run_n)
        dsm_pages_map_all(seg, run_first, run_n);
    s_ahead_release(d, seg, page + 1, n);
}

static void s_on_page_reply(void *ud, uint32_t node, int code, const char *message,
                            ProtobufCMessage *reply)
{
    s_call_t *c = ud;
    dsmd_t *d = c->d;
    dsm_seg_t *seg = s_seg_of(d, c->name, c->generation);
    Cairn__Dsmd__Reply *rep = (Cairn__Dsmd__Reply *)reply;
    uint64_t page = c->page;
    uint32_t ahead = c->ahead;
    s_call_free(c);
    dsm_page_t *pg = seg ? &seg->pages[page] : NULL;
    dsm_pending_t *p = pg ? pg->pend : NULL;
    bool granted = code == CAIRN__STATUS_CODE__STATUS_OK && rep &&
                   rep->msg_case == CAIRN__DSMD__REPLY__MSG_PAGE_REPLY && rep->page_reply->granted;
    if (seg && ahead && granted)
        s_ahead_land(d, seg, page, ahead, rep->page_reply);
    else if (seg && ahead)
        s_ahead_release(d, seg, page + 1, ahead);
    if (!p || !p->asking) {
        if (reply)
            protobuf_c_message_free_unpacked(reply, NULL);
        return;   /* the segment went, or the page was lost meanwhile */
    }
    if (code != CAIRN__STATUS_CODE__STATUS_OK || !rep ||
        rep->msg_case != CAIRN__DSMD__REPLY__MSG_PAGE_REPLY) {
        if (reply)
            protobuf_c_message_free_unpacked(reply, NULL);
        if (code == CAIRN__STATUS_CODE__STATUS_FAILED_PRECONDITION) {
            s_lose(d, seg, page, message ? message : "lost at its owner");
            return;
        }
        s_recover(d, seg, page, node, message ? message : "no answer");
        return;
    }
    Cairn__Dsmd__PageReply *pr = rep->page_reply;
    if (!pr->granted) {
        uint32_t to = pr->owner;
        protobuf_c_message_free_unpacked(reply, NULL);
        p->hops++;
        if (to == d->self || p->hops >= DSM_HOPS_MAX) {
            /* the chain came back to us, or goes round: cut by a death */
            s_recover(d, seg, page, node, "the probable-owner chain leads nowhere");
            return;
        }
        pg->hint = to;
        s_request(d, seg, page, to);
        return;
    }
    if (pr->data.len != DSM_PAGE) {
        protobuf_c_message_free_unpacked(reply, NULL);
        s_lose(d, seg, page, "a grant without its page");
        return;
    }
    int e = dsm_page_write(seg, page, pr->data.data);
    if (e < 0) {
        protobuf_c_message_free_unpacked(reply, NULL);
        s_lose(d, seg, page, "writing the page into the node's memfd failed");
        return;
    }
    seg->fetches++;
    p->asking = false;
    if (!p->asking_write) {
        pg->state = DSM_READ;
        pg->hint = pr->owner;
        protobuf_c_message_free_unpacked(reply, NULL);
        /* held invalidations first: they target the copy just landed */
        s_run_held(d, seg, page);
        s_answer_waiters(d, seg, page);
        dsm_page_settle(pg);
        return;
    }
    pg->state = DSM_READ;   /* the page, still protected, until the copies go */
    pg->hint = d->self;
    memset(pg->copyset, 0, sizeof pg->copyset);
    for (size_t i = 0; i < pr->n_copyset; i++)
        if (pr->copyset[i] != d->self)
            dsm_copyset_add(pg, pr->copyset[i]);
    protobuf_c_message_free_unpacked(reply, NULL);
    s_invalidate_copyset(d, seg, page);
}

/* Marks the pages after `page` that a read may bring along: the run of
 * pages with no copy here, nothing under way, the same probable owner;
 * as many as the read streak allows (2, 4, ... S_AHEAD_MAX). Returns how
 * many, each now asking. */
static uint32_t s_ahead_mark(dsm_seg_t *seg, uint64_t page, uint32_t hint)
{
    uint32_t want = seg->streak >= 6 ? S_AHEAD_MAX : 1u << seg->streak, n = 0;
    for (uint64_t q = page + 1; n < want && q < seg->npages; q++, n++) {
        dsm_page_t *pg = &seg->pages[q];
        if (pg->state != DSM_INVALID || pg->hint != hint || s_busy(pg) ||
            (pg->pend && pg->pend->waiters))
            break;
        dsm_pending_t *p = dsm_page_pend(pg);
        if (!p)
            break;
        p->asking = true;
        p->asking_write = false;
        p->hops = 0;
        p->recovers = 0;
    }
    return n;
}

#define S_VIEW_WAIT_MS 100   /* no membership or quorum yet: the request waits */

typedef void (*s_page_fn)(dsmd_t *d, dsm_seg_t *seg, uint64_t page);

/* A page's step to take after a timer, if its request still waits. */
typedef struct s_later {
    s_call_t call;
    s_page_fn fn;
} s_later_t;

static int s_on_later(cairn_loop_t *loop, int64_t id, void *userdata)
{
    (void)loop; (void)id;
    s_later_t *l = userdata;
    dsmd_t *d = l->call.d;
    dsm_seg_t *seg = s_seg_of(d, l->call.name, l->call.generation);
    uint64_t page = l->call.page;
    s_page_fn fn = l->fn;
    free(l->call.name);
    free(l);
    dsm_pending_t *p = seg ? seg->pages[page].pend : NULL;
    if (p && p->asking)
        fn(d, seg, page);
    return 0;
}

/* Runs fn(page) after ms while its request still waits; false when no
 * timer could be made. */
static bool s_page_later(dsmd_t *d, dsm_seg_t *seg, uint64_t page, uint64_t ms, s_page_fn fn)
{
    s_later_t *l = calloc(1, sizeof *l);
    if (l && (l->call.name = strdup(seg->name))) {
        l->call.d = d;
        l->call.generation = seg->generation;
        l->call.page = page;
        l->fn = fn;
        if (cairn_loop_add_timer(cairn_service_loop(d->svc), ms, 0, s_on_later, l) > 0)
            return true;
        free(l->call.name);
    }
    free(l);
    return false;
}

static void s_ask_hint(dsmd_t *d, dsm_seg_t *seg, uint64_t page)
{
    s_request(d, seg, page, seg->pages[page].hint);
}

/* A page asked for while this node does not know the membership, sits
 * on a side without quorum, or of a node (to) not heard from yet: nobody
 * can be judged dead, so the request waits for the view instead of going
 * to recovery. */
static bool s_view_wait(dsmd_t *d, dsm_seg_t *seg, uint64_t page, uint32_t to)
{
    const char *state = to ? cairn_view_state(d->view, to) : NULL;
    if (cairn_view_known(d->view) && cairn_view_quorum(d->view) &&
        !(state && strcmp(state, "unknown") == 0))
        return false;
    return s_page_later(d, seg, page, S_VIEW_WAIT_MS, s_ask_hint);
}

static void s_request(dsmd_t *d, dsm_seg_t *seg, uint64_t page, uint32_t to)
{
    dsm_page_t *pg = &seg->pages[page];
    dsm_pending_t *p = pg->pend;
    if (s_view_wait(d, seg, page, to))
        return;
    const char *ep = cairn_view_alive(d->view, to) ? cairn_view_endpoint(d->view, to) : NULL;
    if (!ep) {
        s_recover(d, seg, page, to, "not an alive member");
        return;
    }
    Cairn__Dsmd__PageRequest pr = CAIRN__DSMD__PAGE_REQUEST__INIT;
    pr.name = seg->name;
    pr.generation = seg->generation;
    pr.page = page;
    pr.write = p->asking_write;
    pr.requester = d->self;
    pr.hops = p->hops;
    Cairn__Dsmd__Request req = CAIRN__DSMD__REQUEST__INIT;
    req.msg_case = CAIRN__DSMD__REQUEST__MSG_PAGE;
    req.page = &pr;
    s_call_t *c = calloc(1, sizeof *c);
    if (c)
        c->name = strdup(seg->name);
    if (!c || !c->name) {
        s_call_free(c);
        s_lose(d, seg, page, "out of memory");
        return;
    }
    if (!p->asking_write && p->hops == 0 && seg->streak > 0) {
        c->ahead = s_ahead_mark(seg, page, pg->hint);
        seg->seq_next = page + 1 + c->ahead;   /* the scan's next fault, if it goes on */
    }
    pr.ahead = c->ahead;
    c->d = d;
    c->generation = seg->generation;
    c->page = page;
    c->target = to;
    uint32_t ahead = c->ahead;
    int e = cairn_peers_call(d->peers, to, ep, &req.base, DSM_CALL_MS, s_on_page_reply, c);
    if (e < 0) {
        s_call_free(c);
        s_ahead_release(d, seg, page + 1, ahead);
        s_lose(d, seg, page, "the request could not be sent");
    }
}

/* ---- when the chain is cut: the home recovers the page -------------------------- */

#define S_RECOVERS_MAX 20  /* recoveries asked for one request before the page is given up */
#define S_RECOVER_AGAIN_MS 250   /* a recovery the home could not finish: asked again after */

static void s_recover_again(dsmd_t *d, dsm_seg_t *seg, uint64_t page)
{
    s_recover(d, seg, page, 0, "asked again");
}

/* The recovery of page again in a moment (each try counted). */
static void s_recover_later(dsmd_t *d, dsm_seg_t *seg, uint64_t page)
{
    if (!s_page_later(d, seg, page, S_RECOVER_AGAIN_MS, s_recover_again))
        s_recover(d, seg, page, 0, "out of memory for a timer");
}

/* The home's answer: ask the owner it found (or made), or lose the page. */
static void s_recovered(dsmd_t *d, void *ud, uint32_t owner, int code, const char *message)
{
    s_call_t *c = ud;
    dsm_seg_t *seg = s_seg_of(d, c->name, c->generation);
    uint64_t page = c->page;
    s_call_free(c);
    dsm_page_t *pg = seg ? &seg->pages[page] : NULL;
    dsm_pending_t *p = pg ? pg->pend : NULL;
    if (!p || !p->asking)
        return;
    if (code != CAIRN__STATUS_CODE__STATUS_OK) {
        cairn_log_warn(-EAGAIN, "page-recover", "segment=%s page=%" PRIu64 ": %s; again in %d ms",
                       seg->name, page, message ? message : "the home did not answer",
                       S_RECOVER_AGAIN_MS);
        s_recover_later(d, seg, page);
        return;
    }
    if (owner == 0) {
        s_lose(d, seg, page, "its owner died and no alive node holds a copy");
        return;
    }
    p->hops = 0;
    if (owner != d->self) {
        pg->hint = owner;
        s_request(d, seg, page, owner);
        return;
    }
    /* promoted: this node's read copy is the page now */
    p->asking = false;
    s_run_held(d, seg, page);
    s_answer_waiters(d, seg, page);
    dsm_page_settle(pg);
}

static void s_on_recover_reply(void *ud, uint32_t node, int code, const char *message,
                               ProtobufCMessage *reply)
{
    (void)node;
    s_call_t *c = ud;
    Cairn__Dsmd__Reply *rep = (Cairn__Dsmd__Reply *)reply;
    uint32_t owner = 0;
    if (code == CAIRN__STATUS_CODE__STATUS_OK &&
        (!rep || rep->msg_case != CAIRN__DSMD__REPLY__MSG_RECOVER_REPLY)) {
        code = CAIRN__STATUS_CODE__STATUS_DECODE_ERROR;
        message = "a recovery answered without its owner";
    } else if (code == CAIRN__STATUS_CODE__STATUS_OK) {
        owner = rep->recover_reply->owner;
    }
    char msg[200];
    snprintf(msg, sizeof msg, "%s", message ? message : "");
    if (reply)
        protobuf_c_message_free_unpacked(reply, NULL);
    s_recovered(c->d, c, owner, code, msg);
}

static void s_recover(dsmd_t *d, dsm_seg_t *seg, uint64_t page, uint32_t failed, const char *why)
{
    dsm_pending_t *p = seg->pages[page].pend;
    char msg[240];
    if (s_view_wait(d, seg, page, 0))
        return;   /* asked again from its hint once the view is there */
    if (++p->recovers > S_RECOVERS_MAX) {
        snprintf(msg, sizeof msg, "no owner found after %d recoveries (last: node %u: %s)",
                 S_RECOVERS_MAX, failed, why);
        s_lose(d, seg, page, msg);
        return;
    }
    cairn_log_warn(-EHOSTUNREACH, "page-recover", "segment=%s page=%" PRIu64 " node=%u: %s",
                   seg->name, page, failed, why);
    uint32_t home = cairn_view_home(d->view, seg->name);
    s_call_t *c = calloc(1, sizeof *c);
    if (c)
        c->name = strdup(seg->name);
    if (!c || !c->name) {
        s_call_free(c);
        s_lose(d, seg, page, "out of memory");
        return;
    }
    c->d = d;
    c->generation = seg->generation;
    c->page = page;
    c->target = home;
    if (home == d->self) {
        dsm_recover_run(d, seg->name, seg->generation, page, s_recovered, c);
        return;
    }
    const char *ep = home ? cairn_view_endpoint(d->view, home) : NULL;
    Cairn__Dsmd__RecoverRequest rr = CAIRN__DSMD__RECOVER_REQUEST__INIT;
    rr.name = seg->name;
    rr.generation = seg->generation;
    rr.page = page;
    Cairn__Dsmd__Request req = CAIRN__DSMD__REQUEST__INIT;
    req.msg_case = CAIRN__DSMD__REQUEST__MSG_RECOVER;
    req.recover = &rr;
    if (!ep || cairn_peers_call(d->peers, home, ep, &req.base, DSM_CALL_MS * 3,
                                s_on_recover_reply, c) < 0)
        s_recovered(d, c, 0, CAIRN__STATUS_CODE__STATUS_UNAVAILABLE, "no home to ask");
}

/* ---- what a recovery asks of each node ------------------------------------------- */

void dsm_page_probe(dsmd_t *d, dsm_seg_t *seg, uint64_t page, uint32_t *state, bool *owner)
{
    const dsm_page_t *pg = &seg->pages[page];
    *state = pg->state;
    *owner = pg->hint == d->self && (pg->state == DSM_READ || pg->state == DSM_WRITE);
}

int dsm_page_promote(dsmd_t *d, dsm_seg_t *seg, uint64_t page, const uint32_t *copyset, size_t n)
{
    dsm_page_t *pg = &seg->pages[page];
    if (pg->state != DSM_READ && pg->state != DSM_WRITE)
        return -ESTALE;   /* the copy went meanwhile: the home probes again */
    pg->hint = d->self;
    memset(pg->copyset, 0, sizeof pg->copyset);
    for (size_t i = 0; i < n; i++)
        if (copyset[i] != d->self)
            dsm_copyset_add(pg, copyset[i]);
    cairn_log_info("page-recovered", "segment=%s page=%" PRIu64 " from=read-copy readers=%zu",
                   seg->name, page, n);
    return 0;
}

void dsm_page_lose(dsmd_t *d, dsm_seg_t *seg, uint64_t page, const char *why)
{
    dsm_page_t *pg = &seg->pages[page];
    if (pg->state == DSM_READ || pg->state == DSM_WRITE) {
        cairn_log_warn(-EEXIST, "page-lost-refused", "segment=%s page=%" PRIu64
                       ": a copy is here (it came after the recovery's probe)", seg->name, page);
        return;
    }
    s_lose(d, seg, page, why);
}

/* ---- becoming the writer ------------------------------------------------------ */

static void s_become_writer(dsmd_t *d, dsm_seg_t *seg, uint64_t page)
{
    dsm_page_t *pg = &seg->pages[page];
    pg->state = DSM_WRITE;
    memset(pg->copyset, 0, sizeof pg->copyset);
    int e = dsm_page_protect_all(seg, page, false);
    if (e < 0)
        cairn_log_warn(e, "unprotect", "segment=%s page=%" PRIu64 ": %s", seg->name, page,
                       strerror(-e));
    s_answer_waiters(d, seg, page);
    s_run_held(d, seg, page);
    dsm_page_settle(pg);
}

static void s_send_invalidate(dsmd_t *d, dsm_seg_t *seg, uint64_t page, uint32_t node);

static void s_on_invalidated(void *ud, uint32_t node, int code, const char *message,
                             ProtobufCMessage *reply)
{
    s_call_t *c = ud;
    dsmd_t *d = c->d;
    dsm_seg_t *seg = s_seg_of(d, c->name, c->generation);
    uint64_t page = c->page;
    s_call_free(c);
    if (reply)
        protobuf_c_message_free_unpacked(reply, NULL);
    dsm_page_t *pg = seg ? &seg->pages[page] : NULL;
    dsm_pending_t *p = pg ? pg->pend : NULL;
    if (!p || p->acks_left == 0)
        return;
    if (code != CAIRN__STATUS_CODE__STATUS_OK && code != CAIRN__STATUS_CODE__STATUS_NOT_FOUND &&
        cairn_view_alive(d->view, node)) {
        /* a living reader must drop its copy before anyone writes */
        cairn_log_warn(-EAGAIN, "invalidate", "segment=%s page=%" PRIu64 " node=%u: %s; again",
                       seg->name, page, node, message ? message : "no answer");
        s_send_invalidate(d, seg, page, node);
        return;
    }
    if (--p->acks_left == 0)
        s_become_writer(d, seg, page);
}

static void s_send_invalidate(dsmd_t *d, dsm_seg_t *seg, uint64_t page, uint32_t node)
{
    dsm_pending_t *p = seg->pages[page].pend;
    const char *ep = cairn_view_alive(d->view, node) ? cairn_view_endpoint(d->view, node) : NULL;
    s_call_t *c = ep ? calloc(1, sizeof *c) : NULL;
    if (c)
        c->name = strdup(seg->name);
    uint64_t pages[1] = { page };
    Cairn__Dsmd__InvalidateRequest ir = CAIRN__DSMD__INVALIDATE_REQUEST__INIT;
    ir.name = seg->name;
    ir.generation = seg->generation;
    ir.n_pages = 1;
    ir.pages = pages;
    ir.new_owner = d->self;
    Cairn__Dsmd__Request req = CAIRN__DSMD__REQUEST__INIT;
    req.msg_case = CAIRN__DSMD__REQUEST__MSG_INVALIDATE;
    req.invalidate = &ir;
    if (c && c->name) {
        c->d = d;
        c->generation = seg->generation;
        c->page = page;
        c->target = node;
        if (cairn_peers_call(d->peers, node, ep, &req.base, DSM_CALL_MS, s_on_invalidated, c) == 0)
            return;
    }
    s_call_free(c);
    if (ep) {
        /* alive and unreachable from here: the write must not go on */
        s_lose(d, seg, page, "a read copy could not be invalidated");
        return;
    }
    /* a dead node's copy died with it */
    if (--p->acks_left == 0)
        s_become_writer(d, seg, page);
}

static void s_invalidate_copyset(dsmd_t *d, dsm_seg_t *seg, uint64_t page)
{
    dsm_page_t *pg = &seg->pages[page];
    dsm_pending_t *p = dsm_page_pend(pg);
    uint32_t nodes[64 * DSM_NODE_WORDS];
    size_t n = 0;
    for (uint32_t k = 0; k < 64 * DSM_NODE_WORDS; k++)
        if (k != d->self && dsm_copyset_has(pg, k))
            nodes[n++] = k;
    if (!p) {
        s_lose(d, seg, page, "out of memory");
        return;
    }
    if (n == 0) {
        s_become_writer(d, seg, page);
        return;
    }
    p->acks_left = n;
    for (size_t i = 0; i < n && p->acks_left > 0; i++)
        s_send_invalidate(d, seg, page, nodes[i]);
}

/* ---- serving other nodes ----------------------------------------------------- */

/* What this node answers a page request with, now (the page not busy). */
/* The read-ahead a reader asked for along with `page`: each following
 * page this node owns and is not busy with, downgraded and given like the
 * first, until one is not; pages and bytes into out (ahead_buf holds
 * `ahead` pages). */
static void s_answer_ahead(dsmd_t *d, dsm_seg_t *seg, uint64_t page, uint32_t ahead,
                           uint32_t requester, Cairn__Dsmd__PageReply *out, uint64_t *ahead_pages,
                           uint8_t *ahead_buf)
{
    size_t n = 0;
    for (uint64_t q = page + 1; q <= page + ahead && q < seg->npages; q++) {
        dsm_page_t *pg = &seg->pages[q];
        if (pg->hint != d->self || (pg->state != DSM_READ && pg->state != DSM_WRITE) ||
            s_busy(pg))
            break;
        if (pg->state == DSM_WRITE)
            dsm_page_protect_all(seg, q, true);
        if (dsm_page_read(seg, q, ahead_buf + n * DSM_PAGE) < 0)
            break;
        pg->state = DSM_READ;
        dsm_copyset_add(pg, requester);
        ahead_pages[n++] = q;
    }
    out->n_ahead_pages = n;
    out->ahead_pages = ahead_pages;
    out->ahead_data.data = ahead_buf;
    out->ahead_data.len = n * DSM_PAGE;
}

static int s_answer_page(dsmd_t *d, dsm_seg_t *seg, uint64_t page, bool write, uint32_t requester,
                         Cairn__Dsmd__PageReply *out, uint8_t *buf, uint32_t *copyset,
                         const char **why)
{
    dsm_page_t *pg = &seg->pages[page];
    if (pg->state == DSM_LOST) {
        *why = "the page is lost";
        return CAIRN__STATUS_CODE__STATUS_FAILED_PRECONDITION;
    }
    if (pg->hint != d->self) {
        out->granted = false;
        out->owner = pg->hint;
        if (write)
            pg->hint = requester;   /* it is about to own the page */
        return 0;
    }
    /* the owner: stop this node's writers, then take the bytes */
    if (pg->state == DSM_WRITE || write) {
        int e = dsm_page_protect_all(seg, page, true);
        if (e < 0)
            cairn_log_warn(e, "protect", "segment=%s page=%" PRIu64 ": %s", seg->name, page,
                           strerror(-e));
    }
    int e = dsm_page_read(seg, page, buf);
    if (e < 0) {
        *why = "reading the page from the node's memfd failed";
        return CAIRN__STATUS_CODE__STATUS_INTERNAL;
    }
    out->granted = true;
    out->owner = d->self;
    out->data.data = buf;
    out->data.len = DSM_PAGE;
    if (!write) {
        pg->state = DSM_READ;
        dsm_copyset_add(pg, requester);
        return 0;
    }
    size_t n = 0;
    for (uint32_t k = 0; k < 64 * DSM_NODE_WORDS; k++)
        if (k != requester && k != d->self && dsm_copyset_has(pg, k))
            copyset[n++] = k;
    out->n_copyset = n;
    out->copyset = copyset;
    dsm_page_punch(seg, page);
    pg->state = DSM_INVALID;
    pg->hint = requester;
    memset(pg->copyset, 0, sizeof pg->copyset);
    seg->invalidations++;
    return 0;
}

/* Drops the read copy for a new owner; false when it must wait for the
 * copy in flight (a fetch without a copy). */
static bool s_apply_invalidate(dsmd_t *d, dsm_seg_t *seg, uint64_t page, uint32_t new_owner)
{
    dsm_page_t *pg = &seg->pages[page];
    if (s_busy(pg) && pg->pend->asking && !pg->pend->asking_write && pg->state == DSM_INVALID)
        return false;
    if (pg->state == DSM_READ && pg->hint != d->self) {
        dsm_page_punch(seg, page);
        pg->state = DSM_INVALID;
        seg->invalidations++;
    }
    if (pg->hint != d->self && pg->state != DSM_LOST)
        pg->hint = new_owner;
    return true;
}

static int s_hold(dsm_page_t *pg, cairn_request_t *req, bool invalidate, bool write,
                  uint32_t requester, uint32_t hops)
{
    dsm_pending_t *p = dsm_page_pend(pg);
    dsm_held_t *h = p ? calloc(1, sizeof *h) : NULL;
    if (!h)
        return -ENOMEM;
    h->deferred = cairn_request_defer(req);
    if (!h->deferred) {
        free(h);
        return -ENOMEM;
    }
    h->invalidate = invalidate;
    h->write = write;
    h->requester = requester;
    h->hops = hops;
    dsm_held_t **tail = &p->held;
    while (*tail)
        tail = &(*tail)->next;
    *tail = h;
    return CAIRN_REPLY_DEFERRED;
}

static void s_fail_held(dsmd_t *d, dsm_page_t *pg, const char *why)
{
    while (pg->pend && pg->pend->held) {
        dsm_held_t *h = pg->pend->held;
        pg->pend->held = h->next;
        cairn_deferred_fail(d->svc, h->deferred, CAIRN__STATUS_CODE__STATUS_FAILED_PRECONDITION, why);
        free(h);
    }
}

/* Answers the held requests in order until the page is busy again. */
static void s_run_held(dsmd_t *d, dsm_seg_t *seg, uint64_t page)
{
    dsm_page_t *pg = &seg->pages[page];
    while (pg->pend && pg->pend->held) {
        dsm_held_t *h = pg->pend->held;
        if (h->invalidate ? !s_apply_invalidate(d, seg, page, h->requester) : s_busy(pg))
            return;
        pg->pend->held = h->next;
        Cairn__Dsmd__Reply rep = CAIRN__DSMD__REPLY__INIT;
        Cairn__Dsmd__Empty done = CAIRN__DSMD__EMPTY__INIT;
        Cairn__Dsmd__PageReply pr = CAIRN__DSMD__PAGE_REPLY__INIT;
        uint8_t buf[DSM_PAGE];
        uint32_t copyset[64 * DSM_NODE_WORDS];
        if (h->invalidate) {
            rep.msg_case = CAIRN__DSMD__REPLY__MSG_DONE;
            rep.done = &done;
            cairn_deferred_reply(d->svc, h->deferred, &rep.base);
        } else {
            const char *why = "";
            int code = s_answer_page(d, seg, page, h->write, h->requester, &pr, buf, copyset, &why);
            if (code != 0) {
                cairn_deferred_fail(d->svc, h->deferred, code, why);
            } else {
                rep.msg_case = CAIRN__DSMD__REPLY__MSG_PAGE_REPLY;
                rep.page_reply = &pr;
                cairn_deferred_reply(d->svc, h->deferred, &rep.base);
            }
        }
        free(h);
    }
}

int dsm_handle_page(void *ctx, cairn_request_t *req)
{
    dsmd_t *d = ctx;
    const Cairn__Dsmd__Request *r = (const Cairn__Dsmd__Request *)cairn_request_body(req);
    const Cairn__Dsmd__PageRequest *pr = r->page;
    dsm_seg_t *seg = s_seg_of(d, pr->name, pr->generation);
    if (!seg)
        return cairn_request_fail(req, CAIRN__STATUS_CODE__STATUS_NOT_FOUND,
                                  "no segment %s of that generation here", pr->name);
    if (pr->page >= seg->npages || pr->requester == 0 || pr->requester == d->self)
        return cairn_request_fail(req, CAIRN__STATUS_CODE__STATUS_INVALID_ARGUMENT,
                                  "page %" PRIu64 " of %" PRIu64 ", requester %u", pr->page,
                                  seg->npages, pr->requester);
    dsm_page_t *pg = &seg->pages[pr->page];
    if (s_busy(pg))
        return s_hold(pg, req, false, pr->write, pr->requester, pr->hops);
    Cairn__Dsmd__Reply *rep = (Cairn__Dsmd__Reply *)cairn_request_reply(req);
    Cairn__Dsmd__PageReply *out = cairn_request_alloc(req, sizeof *out);
    uint8_t *buf = cairn_request_alloc(req, DSM_PAGE);
    uint32_t *copyset = cairn_request_alloc(req, sizeof(uint32_t) * 64 * DSM_NODE_WORDS);
    if (!out || !buf || !copyset)
        return -ENOMEM;
    cairn__dsmd__page_reply__init(out);
    const char *why = "";
    int code = s_answer_page(d, seg, pr->page, pr->write, pr->requester, out, buf, copyset, &why);
    if (code != 0)
        return cairn_request_fail(req, code, "segment %s page %" PRIu64 ": %s", seg->name,
                                  pr->page, why);
    uint32_t ahead = pr->write ? 0 : pr->ahead < S_AHEAD_MAX ? pr->ahead : S_AHEAD_MAX;
    if (out->granted && ahead > 0) {
        uint64_t *pages = cairn_request_alloc(req, ahead * sizeof *pages);
        uint8_t *abuf = cairn_request_alloc(req, (size_t)ahead * DSM_PAGE);
        if (pages && abuf)
            s_answer_ahead(d, seg, pr->page, ahead, pr->requester, out, pages, abuf);
    }
    rep->msg_case = CAIRN__DSMD__REPLY__MSG_PAGE_REPLY;
    rep->page_reply = out;
    dsm_page_settle(pg);
    return CAIRN_REPLY_NOW;
}

int dsm_handle_invalidate(void *ctx, cairn_request_t *req)
{
    dsmd_t *d = ctx;
    const Cairn__Dsmd__Request *r = (const Cairn__Dsmd__Request *)cairn_request_body(req);
    const Cairn__Dsmd__InvalidateRequest *ir = r->invalidate;
    dsm_seg_t *seg = s_seg_of(d, ir->name, ir->generation);
    if (!seg)
        return cairn_request_fail(req, CAIRN__STATUS_CODE__STATUS_NOT_FOUND,
                                  "no segment %s of that generation here", ir->name);
    for (size_t i = 0; i < ir->n_pages; i++)
        if (ir->pages[i] >= seg->npages)
            return cairn_request_fail(req, CAIRN__STATUS_CODE__STATUS_INVALID_ARGUMENT,
                                      "page %" PRIu64 " of %" PRIu64, ir->pages[i], seg->npages);
    for (size_t i = 0; ir->lost && i < ir->n_pages; i++)
        dsm_page_lose(d, seg, ir->pages[i], "its owner died and no alive node held a copy");
    for (size_t i = 0; !ir->lost && i < ir->n_pages; i++)
        if (!s_apply_invalidate(d, seg, ir->pages[i], ir->new_owner)) {
            /* one held request per message: pages are sent one by one */
            return s_hold(&seg->pages[ir->pages[i]], req, true, false, ir->new_owner, 0);
        }
    return dsm_reply_done(req);
}

/* loop.c - the one event loop: zmq_poll over sockets, fds and timers.
 *
 * Design (Redis' ae.c shape): watches live in a growable array, and a
 * zmq_pollitem_t array mirrors the live ones; it is rebuilt only when a
 * watch is added or removed (the `dirty` flag). Timers live in a small
 * unsorted array: daemons keep a handful, so a linear scan for the nearest
 * deadline is cheaper than a heap and trivially correct. Ties fire in the
 * order the timers were created (smaller id first).
 *
 * Removal is always deferred: cairn_loop_remove / cairn_loop_cancel_timer
 * only mark the entry dead, and s_reap() compacts the arrays after the
 * iteration, so a callback can remove itself or anybody else, and the
 * indexes the loop is walking stay valid. An entry added inside a callback
 * is appended (the array may move, so the loop never holds pointers across
 * a callback) and takes part from the next iteration on.
 *
 * One iteration: poll with the nearest deadline as timeout -> dispatch the
 * ready watches -> fire every timer due at that moment once (a repeating
 * timer that fell behind is rescheduled from now, never fired in a burst)
 * -> reap. EINTR from zmq_poll is just another iteration.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "loop.h"
#include "util/array.h"

typedef struct s_watch {
    int64_t id;          /* > 0, unique in this loop */
    void *zsock;         /* zmq socket, or NULL for a plain fd */
    int fd;              /* fd when zsock is NULL, -1 otherwise */
    short events;        /* ZMQ_POLLIN/ZMQ_POLLOUT */
    cairn_io_fn fn;      /* callback */
    void *userdata;      /* passed to fn */
    bool dead;           /* removed; reaped after the iteration */
} s_watch_t;

typedef struct s_timer {
    int64_t id;          /* > 0, unique in this loop */
    uint64_t deadline;   /* next firing, cairn_now_ms() clock */
    uint64_t interval;   /* 0 for a one-shot */
    cairn_timer_fn fn;   /* callback */
    void *userdata;      /* passed to fn */
    bool dead;           /* cancelled or fired once; reaped after the iteration */
} s_timer_t;

struct cairn_loop {
    s_watch_t *watches;        /* live and dead watches */
    size_t n_watches;          /* used entries */
    size_t cap_watches;        /* allocated entries */
    s_timer_t *timers;         /* live and dead timers */
    size_t n_timers;           /* used entries */
    size_t cap_timers;         /* allocated entries */
    zmq_pollitem_t *items;     /* mirror of the live watches */
    size_t *item_watch;        /* items[i] belongs to watches[item_watch[i]] */
    size_t n_items;            /* used entries of items */
    bool dirty;                /* items must be rebuilt */
    bool quit;                 /* run() returns quit_code */
    int quit_code;             /* set by cairn_loop_quit */
    int64_t next_id;           /* last id handed out */
};

cairn_loop_t *cairn_loop_new(void)
{
    return calloc(1, sizeof(cairn_loop_t));
}

cairn_loop_t *cairn_loop_free(cairn_loop_t *loop)
{
    if (!loop)
        return NULL;
    free(loop->watches);
    free(loop->timers);
    free(loop->items);
    free(loop->item_watch);
    free(loop);
    return NULL;
}

static int64_t s_add_watch(cairn_loop_t *loop, void *zsock, int fd,
                           short events, cairn_io_fn fn, void *userdata)
{
    s_watch_t *w;

    if (!loop || !fn || (!zsock && fd < 0))
        return -EINVAL;
    if (CAIRN_GROW(loop->watches, loop->cap_watches, loop->n_watches + 1, 8) < 0)
        return -ENOMEM;
    w = &loop->watches[loop->n_watches++];
    *w = (s_watch_t){ .id = ++loop->next_id, .zsock = zsock,
                      .fd = zsock ? -1 : fd, .events = events, .fn = fn,
                      .userdata = userdata };
    loop->dirty = true;
    return w->id;
}

int64_t cairn_loop_add_socket(cairn_loop_t *loop, void *zsock, short events,
                              cairn_io_fn fn, void *userdata)
{
    if (!zsock)
        return -EINVAL;
    return s_add_watch(loop, zsock, -1, events, fn, userdata);
}

int64_t cairn_loop_add_fd(cairn_loop_t *loop, int fd, short events,
                          cairn_io_fn fn, void *userdata)
{
    if (fd < 0)
        return -EBADF;
    return s_add_watch(loop, NULL, fd, events, fn, userdata);
}

int cairn_loop_remove(cairn_loop_t *loop, int64_t watch_id)
{
    if (!loop)
        return -EINVAL;
    for (size_t i = 0; i < loop->n_watches; i++) {
        s_watch_t *w = &loop->watches[i];
        if (w->id == watch_id && !w->dead) {
            w->dead = true;
            loop->dirty = true;
            return 0;
        }
    }
    return -ENOENT;
}

int64_t cairn_loop_add_timer(cairn_loop_t *loop, uint64_t after_ms,
                             uint64_t interval_ms, cairn_timer_fn fn,
                             void *userdata)
{
    s_timer_t *t;

    if (!loop || !fn)
        return -EINVAL;
    if (CAIRN_GROW(loop->timers, loop->cap_timers, loop->n_timers + 1, 8) < 0)
        return -ENOMEM;
    t = &loop->timers[loop->n_timers++];
    *t = (s_timer_t){ .id = ++loop->next_id,
                      .deadline = cairn_now_ms() + after_ms,
                      .interval = interval_ms, .fn = fn,
                      .userdata = userdata };
    return t->id;
}

int cairn_loop_cancel_timer(cairn_loop_t *loop, int64_t timer_id)
{
    if (!loop)
        return -EINVAL;
    for (size_t i = 0; i < loop->n_timers; i++) {
        s_timer_t *t = &loop->timers[i];
        if (t->id == timer_id && !t->dead) {
            t->dead = true;
            return 0;
        }
    }
    return -ENOENT;
}

void cairn_loop_quit(cairn_loop_t *loop, int code)
{
    if (!loop)
        return;
    loop->quit = true;
    loop->quit_code = code;
}

/* Rebuilds the pollitem mirror of the live watches. */
static int s_rebuild(cairn_loop_t *loop)
{
    size_t n = 0;

    if (loop->n_watches > 0) {
        zmq_pollitem_t *items = realloc(loop->items,
                                        loop->n_watches * sizeof(*items));
        if (!items)
            return -ENOMEM;
        loop->items = items;
        size_t *map = realloc(loop->item_watch, loop->n_watches * sizeof(*map));
        if (!map)
            return -ENOMEM;
        loop->item_watch = map;
    }
    for (size_t i = 0; i < loop->n_watches; i++) {
        const s_watch_t *w = &loop->watches[i];
        if (w->dead)
            continue;
        loop->items[n] = (zmq_pollitem_t){ .socket = w->zsock, .fd = w->fd,
                                           .events = w->events };
        loop->item_watch[n++] = i;
    }
    loop->n_items = n;
    loop->dirty = false;
    return 0;
}

/* Index of the live timer with the earliest deadline (ties: smaller id)
 * among those due at `now` and not yet fired in this pass; -1 if none.
 * With now == UINT64_MAX it finds the nearest timer at all. */
static long s_next_timer(const cairn_loop_t *loop, uint64_t now, uint64_t pass)
{
    long best = -1;

    for (size_t i = 0; i < loop->n_timers; i++) {
        const s_timer_t *t = &loop->timers[i];
        if (t->dead || t->deadline > now || (pass && t->id > (int64_t)pass))
            continue;
        if (best < 0 || t->deadline < loop->timers[best].deadline ||
            (t->deadline == loop->timers[best].deadline &&
             t->id < loop->timers[best].id))
            best = (long)i;
    }
    return best;
}

/* Poll timeout in ms: until the nearest timer, -1 without timers. */
static long s_timeout(const cairn_loop_t *loop)
{
    long i = s_next_timer(loop, UINT64_MAX, 0);
    uint64_t now;

    if (i < 0)
        return -1;
    now = cairn_now_ms();
    if (loop->timers[i].deadline <= now)
        return 0;
    return (long)(loop->timers[i].deadline - now);
}

/* Dispatches the ready watches. Returns 0 or a callback's negative errno. */
static int s_dispatch_io(cairn_loop_t *loop)
{
    for (size_t k = 0; k < loop->n_items && !loop->quit; k++) {
        short rev = loop->items[k].revents;
        s_watch_t w;
        int r;

        if (!rev)
            continue;
        w = loop->watches[loop->item_watch[k]];
        if (w.dead)
            continue;
        r = w.fn(loop, w.fd, w.zsock, rev, w.userdata);
        if (r < 0)
            return r;
    }
    return 0;
}

/* Fires each timer due now once; timers created during this pass wait for
 * the next. Returns 0 or a callback's negative errno. */
static int s_fire_timers(cairn_loop_t *loop)
{
    uint64_t now = cairn_now_ms();
    uint64_t pass_max_id = (uint64_t)loop->next_id;
    long i;

    /* A fired timer's deadline moves past `now` or it dies, so this ends. */
    while (!loop->quit && (i = s_next_timer(loop, now, pass_max_id)) >= 0) {
        s_timer_t *t = &loop->timers[i];
        s_timer_t copy = *t;

        if (t->interval > 0)
            t->deadline = (t->deadline + t->interval > now)
                              ? t->deadline + t->interval
                              : now + t->interval;
        else
            t->dead = true;
        int r = copy.fn(loop, copy.id, copy.userdata);
        if (r < 0)
            return r;
    }
    return 0;
}

/* Compacts the arrays, dropping dead entries. */
static void s_reap(cairn_loop_t *loop)
{
    size_t n = 0;

    for (size_t i = 0; i < loop->n_watches; i++)
        if (!loop->watches[i].dead)
            loop->watches[n++] = loop->watches[i];
    if (n != loop->n_watches)
        loop->dirty = true;
    loop->n_watches = n;
    n = 0;
    for (size_t i = 0; i < loop->n_timers; i++)
        if (!loop->timers[i].dead)
            loop->timers[n++] = loop->timers[i];
    loop->n_timers = n;
}

/* One poll + dispatch + timers + reap. */
static int s_iterate(cairn_loop_t *loop)
{
    int r;

    if (loop->dirty && (r = s_rebuild(loop)) < 0)
        return r;
    r = zmq_poll(loop->items, (int)loop->n_items, s_timeout(loop));
    if (r < 0 && errno != EINTR)
        return -errno;
    if (r > 0 && (r = s_dispatch_io(loop)) < 0)
        return r;
    r = s_fire_timers(loop);
    s_reap(loop);
    return r;
}

int cairn_loop_run(cairn_loop_t *loop)
{
    int r = 0;

    if (!loop)
        return -EINVAL;
    while (!loop->quit && r >= 0)
        r = s_iterate(loop);
    if (r < 0) {
        s_reap(loop);
        return r;
    }
    loop->quit = false;
    return loop->quit_code;
}

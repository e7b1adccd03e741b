/* window.c - the window of peers' vectors (window.h).
 *
 * Design. A small array (cap <= 255) searched linearly: at these sizes a
 * scan is cheaper than any index, and the order only matters when the
 * window is listed, which sorts a copy of the pointers.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "window.h"

struct window {
    window_entry_t *e;      /* cap entries, n in use */
    size_t n;
    size_t cap;
};

window_t *window_new(size_t cap)
{
    if (cap < 1 || cap > WINDOW_MAX)
        return NULL;
    window_t *w = calloc(1, sizeof(*w));
    if (w)
        w->e = calloc(WINDOW_MAX, sizeof(*w->e));
    if (!w || !w->e) {
        free(w);
        return NULL;
    }
    w->cap = cap;
    return w;
}

window_t *window_free(window_t *w)
{
    if (w)
        free(w->e);
    free(w);
    return NULL;
}

size_t window_cap(const window_t *w) { return w->cap; }
size_t window_size(const window_t *w) { return w->n; }

static void s_remove(window_t *w, size_t i)
{
    w->e[i] = w->e[--w->n];
}

static size_t s_oldest(const window_t *w)
{
    size_t o = 0;

    for (size_t i = 1; i < w->n; i++)
        if (w->e[i].born_ms < w->e[o].born_ms)
            o = i;
    return o;
}

void window_set_cap(window_t *w, size_t cap)
{
    if (cap < 1 || cap > WINDOW_MAX)
        return;
    while (w->n > cap)
        s_remove(w, s_oldest(w));
    w->cap = cap;
}

static window_entry_t *s_find(window_t *w, uint32_t node)
{
    for (size_t i = 0; i < w->n; i++)
        if (w->e[i].v.node == node)
            return &w->e[i];
    return NULL;
}

const window_entry_t *window_find(const window_t *w, uint32_t node)
{
    return s_find((window_t *)w, node);
}

int window_merge(window_t *w, const loadvec_t *v, uint32_t from,
                 uint64_t age_ms, uint64_t now_ms)
{
    uint64_t born = now_ms > age_ms ? now_ms - age_ms : 0;
    window_entry_t *e = s_find(w, v->node);

    if (e && v->seq <= e->v.seq)
        return 0;
    if (!e && w->n == w->cap) {
        size_t o = s_oldest(w);
        if (w->e[o].born_ms >= born)
            return 0;
        s_remove(w, o);
    }
    if (!e)
        e = &w->e[w->n++];
    e->v = *v;
    e->v.job = NULL;
    e->v.n_job = 0;
    e->born_ms = born;
    e->from = from;
    return 1;
}

size_t window_age(window_t *w, uint64_t now_ms, uint64_t max_age_ms)
{
    size_t dropped = 0;

    for (size_t i = 0; i < w->n;)
        if (now_ms > w->e[i].born_ms && now_ms - w->e[i].born_ms > max_age_ms) {
            s_remove(w, i);
            dropped++;
        } else {
            i++;
        }
    return dropped;
}

void window_forget(window_t *w, uint32_t node)
{
    for (size_t i = 0; i < w->n; i++)
        if (w->e[i].v.node == node) {
            s_remove(w, i);
            return;
        }
}

static int s_newer_first(const void *a, const void *b)
{
    const window_entry_t *x = *(const window_entry_t *const *)a;
    const window_entry_t *y = *(const window_entry_t *const *)b;

    if (x->born_ms != y->born_ms)
        return x->born_ms > y->born_ms ? -1 : 1;
    return x->v.node < y->v.node ? -1 : x->v.node > y->v.node;
}

size_t window_list(const window_t *w, const window_entry_t **out)
{
    for (size_t i = 0; i < w->n; i++)
        out[i] = &w->e[i];
    if (w->n > 1)
        qsort(out, w->n, sizeof(*out), s_newer_first);
    return w->n;
}

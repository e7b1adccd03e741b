/* test-view.c - syncd's membership view: rendezvous homes (stability when
 * members come and go, an even spread), view ids, and the view built from
 * clusterd's member lists (alive, quorum, changes), without a clusterd. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "view.h"

#define NAMES 10000

static const char *s_name(int i)
{
    static char buf[32];
    snprintf(buf, sizeof(buf), "lock-%d", i);
    return buf;
}

Test(view, home_is_stable_when_a_member_goes)
{
    uint32_t four[] = { 1, 2, 3, 4 }, three[] = { 1, 2, 4 };
    int moved = 0;

    for (int i = 0; i < NAMES; i++) {
        uint32_t before = cairn_view_home_among(s_name(i), four, 4);
        uint32_t after = cairn_view_home_among(s_name(i), three, 3);
        cr_assert(before >= 1 && before <= 4);
        if (before != 3)
            cr_assert_eq(after, before, "%s moved from %u to %u", s_name(i),
                         before, after);
        else {
            moved++;
            cr_assert_neq(after, 3);
        }
    }
    /* node 3 had about a quarter of them */
    cr_assert(moved > NAMES / 4 - NAMES / 20 && moved < NAMES / 4 + NAMES / 20,
              "%d moved", moved);
}

Test(view, home_moves_only_to_a_member_that_comes)
{
    uint32_t four[] = { 1, 2, 3, 4 }, five[] = { 1, 2, 3, 4, 9 };
    int to_new = 0;

    for (int i = 0; i < NAMES; i++) {
        uint32_t before = cairn_view_home_among(s_name(i), four, 4);
        uint32_t after = cairn_view_home_among(s_name(i), five, 5);
        if (after != before) {
            cr_assert_eq(after, 9);
            to_new++;
        }
    }
    cr_assert(to_new > NAMES / 5 - NAMES / 20 && to_new < NAMES / 5 + NAMES / 20,
              "%d moved", to_new);
}

Test(view, home_spreads_evenly_and_ignores_member_order)
{
    uint32_t ids[] = { 1, 2, 3, 4 }, rev[] = { 4, 3, 2, 1 };
    int count[5] = { 0 };

    for (int i = 0; i < NAMES; i++) {
        uint32_t h = cairn_view_home_among(s_name(i), ids, 4);
        cr_assert_eq(cairn_view_home_among(s_name(i), rev, 4), h);
        count[h]++;
    }
    /* 2500 each; a binomial's sd is ~43: 10% off would be ~6 sd */
    for (int id = 1; id <= 4; id++)
        cr_assert(count[id] > 2250 && count[id] < 2750, "node %d: %d", id,
                  count[id]);
    /* consecutive ids and similar names are no special case */
    uint32_t near[] = { 200, 201 };
    int first = 0;
    for (int i = 0; i < NAMES; i++)
        first += cairn_view_home_among(s_name(i), near, 2) == 200;
    cr_assert(first > 4700 && first < 5300, "%d", first);
    cr_assert_eq(cairn_view_home_among("x", ids, 0), 0);
    cr_assert_eq(cairn_view_home_among("x", ids, 1), 1);
}

Test(view, id_names_the_alive_set)
{
    uint32_t a[] = { 1, 2, 4 }, b[] = { 1, 2, 3 }, c[] = { 1, 2 };

    cr_assert_eq(cairn_view_id_of(a, 0), 0);
    cr_assert_neq(cairn_view_id_of(a, 3), 0);
    cr_assert_eq(cairn_view_id_of(a, 3), cairn_view_id_of((uint32_t[]){ 1, 2, 4 }, 3));
    cr_assert_neq(cairn_view_id_of(a, 3), cairn_view_id_of(b, 3));
    cr_assert_neq(cairn_view_id_of(c, 2), cairn_view_id_of(b, 3));
    cr_assert_neq(cairn_view_id_of(c, 1), cairn_view_id_of(c, 2));
}

/* ---- the view from clusterd's lists ------------------------------------- */

typedef struct changes {
    int n;                     /* callbacks */
    uint64_t old_view, new_view;   /* the last one's */
} changes_t;

static void on_changed(void *ud, uint64_t old_view, uint64_t new_view)
{
    changes_t *c = ud;
    c->n++;
    c->old_view = old_view;
    c->new_view = new_view;
}

/* A NodesReply of n nodes: ids[i] in states[i]. */
typedef struct reply {
    Cairn__Clusterd__NodesReply rep;
    Cairn__Clusterd__NodeInfo infos[8];
    Cairn__Clusterd__NodeInfo *ptrs[8];
    char addr[8][32];
} reply_t;

static void s_reply(reply_t *r, size_t n, const uint32_t *ids,
                    const char *const *states)
{
    cairn__clusterd__nodes_reply__init(&r->rep);
    for (size_t i = 0; i < n; i++) {
        cairn__clusterd__node_info__init(&r->infos[i]);
        r->infos[i].id = ids[i];
        r->infos[i].state = (char *)states[i];
        snprintf(r->addr[i], sizeof(r->addr[i]), "10.0.0.%u", ids[i]);
        r->infos[i].address = r->addr[i];
        r->infos[i].appliance = "compute";
        r->ptrs[i] = &r->infos[i];
    }
    r->rep.nodes = r->ptrs;
    r->rep.n_nodes = n;
}

Test(view, alive_quorum_and_changes_follow_clusterd)
{
    changes_t ch = { 0 };
    cairn_view_t *v = cairn_view_new(NULL, "syncd", on_changed, &ch);
    reply_t r;
    uint32_t out[CAIRN_VIEW_MAX_NODES];

    cr_assert_not_null(v);
    cr_assert_eq(cairn_view_start(v), -EINVAL, "no service to start with");
    cr_assert_not(cairn_view_known(v));
    cr_assert_not(cairn_view_quorum(v));
    cr_assert_eq(cairn_view_home(v, "x"), 0, "nothing homed before clusterd answers");

    /* suspect counts as alive; unknown counts as a member not heard from
     * (no quorum for a node booting alone); left counts for nothing */
    s_reply(&r, 5, (uint32_t[]){ 1, 2, 3, 4, 5 },
            (const char *[]){ "alive", "suspect", "dead", "left", "unknown" });
    cairn_view_apply_nodes(v, &r.rep);
    cr_assert(cairn_view_known(v));
    cr_assert_eq(ch.n, 1);
    cr_assert_eq(ch.old_view, 0);
    cr_assert_eq(cairn_view_alive_count(v), 2);
    cr_assert_eq(cairn_view_known_count(v), 4);
    cr_assert_not(cairn_view_quorum(v), "2 of 4");
    cr_assert_eq(cairn_view_members(v, out), 2);
    cr_assert_eq(out[0], 1);
    cr_assert_eq(out[1], 2);
    cr_assert_eq(cairn_view_id(v), cairn_view_id_of(out, 2));
    cr_assert_eq(ch.new_view, cairn_view_id(v));
    cr_assert(cairn_view_alive(v, 2));
    cr_assert_not(cairn_view_alive(v, 3));
    cr_assert_not(cairn_view_alive(v, 0));
    cr_assert_not(cairn_view_alive(v, 256));
    for (int i = 0; i < 100; i++)
        cr_assert_eq(cairn_view_home(v, s_name(i)), cairn_view_home_among(s_name(i), out, 2));
    cr_assert_null(cairn_view_endpoint(v, 1), "no description, no endpoint");

    /* the same list again: no change reported */
    cairn_view_apply_nodes(v, &r.rep);
    cr_assert_eq(ch.n, 1);

    /* node 2 dies: 1 of 3, no quorum */
    uint64_t before = cairn_view_id(v);
    s_reply(&r, 5, (uint32_t[]){ 1, 2, 3, 4, 5 },
            (const char *[]){ "alive", "dead", "dead", "left", "unknown" });
    cairn_view_apply_nodes(v, &r.rep);
    cr_assert_eq(ch.n, 2);
    cr_assert_eq(ch.old_view, before);
    cr_assert_neq(ch.new_view, before);
    cr_assert_not(cairn_view_quorum(v), "1 of 4");

    /* dead members removed from the list: 1 of 1 is a quorum again */
    s_reply(&r, 1, (uint32_t[]){ 1 }, (const char *[]){ "alive" });
    cairn_view_apply_nodes(v, &r.rep);
    cr_assert_eq(ch.n, 3, "quorum came back, same alive set");
    cr_assert_eq(ch.old_view, ch.new_view);
    cr_assert(cairn_view_quorum(v));
    cr_assert_eq(cairn_view_known_count(v), 1);

    /* ids that cannot be nodes are ignored, the rest applied */
    s_reply(&r, 3, (uint32_t[]){ 0, 300, 7 },
            (const char *[]){ "alive", "alive", "alive" });
    cairn_view_apply_nodes(v, &r.rep);
    cr_assert_eq(cairn_view_members(v, out), 1);
    cr_assert_eq(out[0], 7);
    cr_assert_eq(cairn_view_home(v, "anything"), 7);
    cairn_view_free(v);
}

Test(view, even_split_is_no_quorum)
{
    cairn_view_t *v = cairn_view_new(NULL, "syncd", NULL, NULL);
    reply_t r;

    s_reply(&r, 4, (uint32_t[]){ 1, 2, 3, 4 },
            (const char *[]){ "alive", "alive", "dead", "dead" });
    cairn_view_apply_nodes(v, &r.rep);
    cr_assert_not(cairn_view_quorum(v), "2 of 4 is not more than half");
    s_reply(&r, 4, (uint32_t[]){ 1, 2, 3, 4 },
            (const char *[]){ "alive", "alive", "suspect", "dead" });
    cairn_view_apply_nodes(v, &r.rep);
    cr_assert(cairn_view_quorum(v), "3 of 4");
    cairn_view_free(v);
}

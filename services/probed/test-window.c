/* test-window.c - the window of peers' vectors (window.h): a newer seq
 * wins, a full window drops its oldest, ageing and forgetting, and the
 * checks a gossiped vector passes before it may enter (loadvec.h).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>

#include "loadvec.h"
#include "window.h"

static loadvec_t s_vec(uint32_t node, uint64_t seq, double load)
{
    return (loadvec_t){ .node = node, .seq = seq, .cpus = 0.5, .cpu_load = load,
                        .mem_limit_bytes = 100, .mem_used_bytes = 40,
                        .mem_free_bytes = 60 };
}

Test(window, newer_seq_wins)
{
    window_t *w = window_new(4);
    loadvec_t a = s_vec(2, 10, 0.1), b = s_vec(2, 11, 0.4), old = s_vec(2, 9, 0.9);

    cr_assert_eq(window_merge(w, &a, 3, 0, 1000), 1);
    cr_assert_eq(window_merge(w, &b, 4, 0, 1100), 1);
    cr_assert_eq(window_size(w), 1);
    cr_assert_eq(window_find(w, 2)->v.seq, 11);
    cr_assert_eq(window_find(w, 2)->from, 4);
    /* an older copy relayed later, and the same seq again: not taken */
    cr_assert_eq(window_merge(w, &old, 3, 0, 1200), 0);
    cr_assert_eq(window_merge(w, &b, 3, 0, 1200), 0);
    cr_assert_float_eq(window_find(w, 2)->v.cpu_load, 0.4, 1e-9);
    cr_assert_eq(window_find(w, 2)->from, 4);
    window_free(w);
}

Test(window, full_window_evicts_the_oldest)
{
    window_t *w = window_new(3);

    for (uint32_t n = 1; n <= 3; n++) {
        loadvec_t v = s_vec(n, 1, 0);
        cr_assert_eq(window_merge(w, &v, n, 0, 1000 + n * 100), 1);
    }
    loadvec_t v4 = s_vec(4, 1, 0);
    cr_assert_eq(window_merge(w, &v4, 4, 0, 2000), 1);
    cr_assert_eq(window_size(w), 3);
    cr_assert_null(window_find(w, 1), "the oldest (node 1) left");
    cr_assert_not_null(window_find(w, 4));
    /* a newcomer older than everything there does not enter */
    loadvec_t v5 = s_vec(5, 1, 0);
    cr_assert_eq(window_merge(w, &v5, 5, 1500, 2000), 0);
    cr_assert_null(window_find(w, 5));
    /* never more than cap, whatever arrives */
    for (uint32_t n = 10; n < 60; n++) {
        loadvec_t v = s_vec(n, 1, 0);
        window_merge(w, &v, n, 0, 3000 + n);
        cr_assert_leq(window_size(w), 3);
    }
    window_free(w);
}

Test(window, list_is_newest_first_and_ages_count_from_the_sample)
{
    window_t *w = window_new(8);
    loadvec_t a = s_vec(2, 1, 0), b = s_vec(3, 1, 0), c = s_vec(4, 1, 0);
    const window_entry_t *list[WINDOW_MAX];

    window_merge(w, &a, 2, 0, 1000);
    window_merge(w, &b, 2, 300, 1000);     /* relayed: sampled at 700 */
    window_merge(w, &c, 4, 0, 1200);
    cr_assert_eq(window_list(w, list), 3);
    cr_assert_eq(list[0]->v.node, 4);
    cr_assert_eq(list[1]->v.node, 2);
    cr_assert_eq(list[2]->v.node, 3);
    cr_assert_eq(list[2]->born_ms, 700);
    window_free(w);
}

Test(window, ageing_and_forgetting)
{
    window_t *w = window_new(8);
    loadvec_t a = s_vec(2, 1, 0), b = s_vec(3, 1, 0), c = s_vec(4, 1, 0);

    window_merge(w, &a, 2, 0, 1000);
    window_merge(w, &b, 3, 0, 3000);
    window_merge(w, &c, 4, 0, 3500);
    cr_assert_eq(window_age(w, 5000, 4000), 0);
    cr_assert_eq(window_age(w, 5001, 4000), 1);
    cr_assert_null(window_find(w, 2));
    window_forget(w, 3);
    cr_assert_null(window_find(w, 3));
    cr_assert_eq(window_size(w), 1);
    /* a node that was aged out comes back with its next vector */
    loadvec_t a2 = s_vec(2, 2, 0);
    cr_assert_eq(window_merge(w, &a2, 2, 0, 6000), 1);
    window_free(w);
}

Test(window, smaller_cap_drops_the_oldest)
{
    window_t *w = window_new(8);

    for (uint32_t n = 1; n <= 6; n++) {
        loadvec_t v = s_vec(n, 1, 0);
        window_merge(w, &v, n, 0, n * 10);
    }
    window_set_cap(w, 2);
    cr_assert_eq(window_size(w), 2);
    cr_assert_not_null(window_find(w, 5));
    cr_assert_not_null(window_find(w, 6));
    cr_assert_null(window_new(0));
    cr_assert_null(window_new(256));
    window_free(w);
}

Test(window, a_gossiped_vector_is_checked)
{
    Cairn__Probed__LoadVector m = CAIRN__PROBED__LOAD_VECTOR__INIT;
    Cairn__Probed__JobLoad j = CAIRN__PROBED__JOB_LOAD__INIT, *jp = &j;
    char *missing[] = { "jobs", "no-such-probe" };
    loadvec_t v = { 0 };
    char why[200];

    m.node = 3, m.seq = 7, m.cpus = 0.5, m.cpu_load = 0.25;
    m.mem_limit_bytes = 100, m.mem_free_bytes = 60, m.mem_used_bytes = 40;
    m.missing = missing, m.n_missing = 2;
    cr_assert_eq(loadvec_from_pb(&m, &v, why, sizeof(why)), 0, "%s", why);
    cr_assert_eq(v.node, 3);
    cr_assert_eq(v.missing, 1u << 3, "jobs is row 3; an unknown name is ignored");

    m.cpu_load = NAN;
    cr_assert_eq(loadvec_from_pb(&m, &v, why, sizeof(why)), -EINVAL);
    cr_assert(strstr(why, "cpu_load"), "%s", why);
    m.cpu_load = -1;
    cr_assert_eq(loadvec_from_pb(&m, &v, why, sizeof(why)), -EINVAL);
    m.cpu_load = 0.25;
    m.mem_free_bytes = 101;
    cr_assert_eq(loadvec_from_pb(&m, &v, why, sizeof(why)), -EINVAL);
    cr_assert(strstr(why, "mem_free_bytes"), "%s", why);
    m.mem_free_bytes = 60;
    m.node = 0;
    cr_assert_eq(loadvec_from_pb(&m, &v, why, sizeof(why)), -EINVAL);
    m.node = 300;
    cr_assert_eq(loadvec_from_pb(&m, &v, why, sizeof(why)), -EINVAL);
    m.node = 3;
    m.seq = 0;
    cr_assert_eq(loadvec_from_pb(&m, &v, why, sizeof(why)), -EINVAL);
    m.seq = 7;
    m.job = &jp, m.n_job = 1;
    cr_assert_eq(loadvec_from_pb(&m, &v, why, sizeof(why)), -EINVAL);
    cr_assert(strstr(why, "job list"), "%s", why);
    loadvec_clear(&v);
}

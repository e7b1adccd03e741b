/* test-hooks.c - unit tests of libcairn's hooks (libclient/hooks*.c): the
 * backend's choice, the argument checks, and what the library adds on
 * top of the kernel -- a page served before anyone faulted, concurrent
 * faults on one page reported once, stats, the watch's limits. The
 * round trips themselves (SIGBUS, write faults, events, loss) are
 * cairn-hook-test's, which the kmod suite runs against the module too.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cairn/hooks.h"

#define PAGE CAIRN_HOOKS_PAGE

static cairn_hooks_t *s_user(void)
{
    cairn_hooks_t *h = NULL;
    cairn_error_t err;
    int e = cairn_hooks_open_backend(CAIRN_HOOKS_USER, &h, &err);
    if (e == -EOPNOTSUPP || e == -EPERM)
        cr_skip_test("%s", err.message);
    cr_assert_eq(e, 0, "%s", err.message);
    return h;
}

Test(hooks, backend_from_environment)
{
    cairn_hooks_t *h = NULL;
    cairn_error_t err;
    setenv("CAIRN_HOOKS", "kernel", 1);
    cr_assert_eq(cairn_hooks_open(&h, &err), -EINVAL);
    cr_assert_eq(err.code, CAIRN_INVALID_ARGUMENT);
    cr_assert(strstr(err.message, "kernel"), "%s", err.message);
    cr_assert_null(h);
    setenv("CAIRN_HOOKS", "user", 1);
    cr_assert_eq(cairn_hooks_open(&h, &err), 0, "%s", err.message);
    cr_assert_eq(cairn_hooks_backend(h), CAIRN_HOOKS_USER);
    cr_assert_str_eq(cairn_hooks_backend_name(cairn_hooks_backend(h)), "user");
    h = cairn_hooks_free(h);
    if (access("/dev/cairn", F_OK) != 0) {
        setenv("CAIRN_HOOKS", "kmod", 1);
        cr_assert_eq(cairn_hooks_open(&h, &err), -ENODEV);   /* forced: no fallback */
        cr_assert(strstr(err.message, "/dev/cairn"), "%s", err.message);
        cr_assert_null(h);
        unsetenv("CAIRN_HOOKS");
        cr_assert_eq(cairn_hooks_open(&h, &err), 0);         /* chosen: user */
        cr_assert_eq(cairn_hooks_backend(h), CAIRN_HOOKS_USER);
        h = cairn_hooks_free(h);
    }
    unsetenv("CAIRN_HOOKS");
    cr_assert_null(cairn_hooks_free(NULL));
}

Test(hooks, region_arguments)
{
    cairn_hooks_t *h = s_user();
    cairn_region_t *r = NULL;
    cairn_error_t err;
    cr_assert_eq(cairn_region_new(h, 0, 100, &r, &err), -EINVAL);
    cr_assert_eq(cairn_region_new(h, 3 * PAGE / 2, 100, &r, &err), -EINVAL);
    cr_assert_eq(cairn_region_new(h, CAIRN_REGION_SIZE_MAX + PAGE, 100, &r, &err), -EINVAL);
    cr_assert_eq(cairn_region_new(h, PAGE, CAIRN_REGION_TIMEOUT_MAX_MS + 1, &r, &err), -EINVAL);
    cr_assert(strstr(err.message, "timeout"), "%s", err.message);
    cr_assert_null(r);
    cr_assert_eq(cairn_region_new(h, 4 * PAGE, 100, &r, &err), 0, "%s", err.message);
    uint8_t page[PAGE];
    cr_assert_eq(cairn_region_serve(r, 4 * PAGE, page, 0), -EINVAL);
    cr_assert_eq(cairn_region_serve(r, 0, NULL, 0), -EINVAL);
    cr_assert_eq(cairn_region_serve(r, 0, page, 1u << 7), -EINVAL);
    cr_assert_eq(cairn_region_fail(r, 0, 0), -EINVAL);
    cr_assert_eq(cairn_region_drop(r, 0, 0), -EINVAL);
    cr_assert_eq(cairn_region_drop(r, 2 * PAGE, 3 * PAGE), -EINVAL);
    cr_assert_eq(cairn_region_protect(r, PAGE, 1), -EINVAL);
    cr_assert_eq(cairn_region_upgrade(r, PAGE), -ENOENT);   /* missing */
    cr_assert_eq(cairn_region_dispatch(r, 0, NULL, NULL), -EINVAL);
    cr_assert_null(cairn_region_free(r));
    cr_assert_null(cairn_region_free(NULL));
    cairn_hooks_free(h);
}

/* A page served before any fault is simply there; serving it again is
 * -EEXIST and leaves it unchanged; dropped, it is served anew. */
Test(hooks, serve_ahead_and_drop)
{
    cairn_hooks_t *h = s_user();
    cairn_region_t *r = NULL;
    cr_assert_eq(cairn_region_new(h, 2 * PAGE, 1000, &r, NULL), 0);
    uint8_t page[PAGE];
    memset(page, 0x42, PAGE);
    cr_assert_eq(cairn_region_serve(r, PAGE, page, 0), 0);
    memset(page, 0x43, PAGE);
    cr_assert_eq(cairn_region_serve(r, PAGE, page, 0), -EEXIST);
    volatile uint8_t *a = cairn_region_addr(r);
    cr_assert_eq(a[PAGE + 100], 0x42);
    cr_assert_eq(cairn_region_drop(r, PAGE, PAGE), 0);
    cr_assert_eq(cairn_region_serve(r, PAGE, page, 0), 0);
    cr_assert_eq(a[PAGE + 100], 0x43);
    cairn_region_stats_t st;
    cairn_region_stats(r, &st);
    cr_assert_eq(st.served, 2);
    cr_assert_eq(st.faults, 0);
    cairn_region_free(r);
    cairn_hooks_free(h);
}

typedef struct s_ctx {
    cairn_region_t *r;
    atomic_int calls;
    atomic_bool go;
} s_ctx_t;

static void *s_toucher(void *arg)
{
    s_ctx_t *c = arg;
    volatile uint8_t *a = cairn_region_addr(c->r);
    return (void *)(uintptr_t)a[PAGE + 7];
}

static int s_count(cairn_region_t *r, const cairn_fault_t *f, void *u)
{
    s_ctx_t *c = u;
    atomic_fetch_add(&c->calls, 1);
    return 0;   /* answered later, all at once */
}

/* Four threads faulting on one page: the server hears of it once, one
 * serve wakes them all. */
Test(hooks, concurrent_faults_merged)
{
    cairn_hooks_t *h = s_user();
    s_ctx_t c = { 0 };
    cr_assert_eq(cairn_region_new(h, 2 * PAGE, 5000, &c.r, NULL), 0);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, s_toucher, &c);
    for (int i = 0; i < 10; i++)
        cr_assert_geq(cairn_region_dispatch(c.r, 50, s_count, &c), 0);
    cr_assert_eq(atomic_load(&c.calls), 1);
    uint8_t page[PAGE];
    memset(page, 9, PAGE);
    cr_assert_eq(cairn_region_serve(c.r, PAGE, page, 0), 0);
    for (int i = 0; i < 4; i++) {
        void *v;
        pthread_join(th[i], &v);
        cr_assert_eq((uintptr_t)v, 9);
    }
    cairn_region_stats_t st;
    cairn_region_stats(c.r, &st);
    cr_assert_eq(st.faults, 1);
    cr_assert_eq(st.served, 1);
    cairn_region_free(c.r);
    cairn_hooks_free(h);
}

Test(hooks, watch_arguments)
{
    if (geteuid() != 0)
        cr_skip_test("the proc connector needs CAP_NET_ADMIN");
    cairn_hooks_t *h = s_user();
    cairn_proc_watch_t *w = NULL;
    cairn_error_t err;
    int e = cairn_proc_watch_new(h, &w, &err);
    if (e == -EPROTONOSUPPORT)
        cr_skip_test("%s", err.message);
    cr_assert_eq(e, 0, "%s", err.message);
    cr_assert_eq(cairn_proc_watch_pid(w, 0, false, &err), -EINVAL);
    cr_assert_eq(cairn_proc_watch_pid(w, 0x3fffffff, false, &err), -ESRCH);
    cr_assert_eq(cairn_proc_watch_cgroup(w, "/nonexistent/cg", &err), -ENOENT);
    cr_assert_eq(cairn_proc_watch_cgroup(w, "/tmp", &err), -ENOENT);
    cr_assert(strstr(err.message, "not in a cgroup"), "%s", err.message);
    for (int i = 0; i < CAIRN_PROC_SUBS_MAX; i++)
        cr_assert_eq(cairn_proc_watch_pid(w, getpid(), false, &err), 0, "%s", err.message);
    cr_assert_eq(cairn_proc_watch_pid(w, getpid(), false, &err), -ENOSPC);
    cairn_proc_event_t ev[4];
    cr_assert_eq(cairn_proc_watch_read(w, ev, 0, 0), -EINVAL);
    cr_assert_geq(cairn_proc_watch_read(w, ev, 4, 0), 0);
    cr_assert_null(cairn_proc_watch_free(w));
    cairn_hooks_free(h);
}

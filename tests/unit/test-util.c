/* test-util.c - the utility layer (lib/util): growable arrays, whole-file
 * I/O, the option-table parser, the clock and the cleanup attributes. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <signal.h>
#include <unistd.h>

#include "util/array.h"
#include "util/cleanup.h"
#include "util/clock.h"
#include "util/fileio.h"
#include "util/options.h"

Test(array, grows_by_doubling_from_min)
{
    int *v = NULL;
    size_t n = 0, cap = 0;

    for (int i = 0; i < 100; i++) {
        cr_assert_eq(CAIRN_GROW(v, cap, n + 1, 16), 0);
        v[n++] = i;
    }
    cr_assert_eq(cap, 128);
    for (int i = 0; i < 100; i++)
        cr_assert_eq(v[i], i);
    free(v);
}

Test(array, keeps_the_array_when_room_is_left)
{
    int *v = NULL, *before;
    size_t cap = 0;

    cr_assert_eq(CAIRN_GROW(v, cap, 3, 8), 0);
    before = v;
    cr_assert_eq(CAIRN_GROW(v, cap, 8, 8), 0);
    cr_assert_eq(v, before);
    cr_assert_eq(cap, 8);
    free(v);
}

Test(array, zeroes_new_elements_on_request)
{
    uint64_t *v = NULL;
    size_t cap = 0;

    cr_assert_eq(CAIRN_GROW_ZERO(v, cap, 4, 4), 0);
    v[0] = v[1] = v[2] = v[3] = ~0ull;
    cr_assert_eq(CAIRN_GROW_ZERO(v, cap, 5, 4), 0);
    cr_assert_eq(cap, 8);
    for (size_t i = 4; i < cap; i++)
        cr_assert_eq(v[i], 0);
    cr_assert_eq(v[3], ~0ull);
    free(v);
}

Test(array, refuses_overflow_and_leaves_the_array)
{
    uint64_t *v = NULL;
    size_t cap = 0;

    cr_assert_eq(CAIRN_GROW(v, cap, 2, 2), 0);
    v[1] = 42;
    cr_assert_eq(CAIRN_GROW(v, cap, SIZE_MAX / 4, 2), -ENOMEM);
    cr_assert_eq(cap, 2);
    cr_assert_eq(v[1], 42);
    cr_assert_eq(CAIRN_GROW(v, cap, SIZE_MAX, 2), -ENOMEM);
    free(v);
}

/* A fresh temporary directory per test; removed by the caller. */
static void s_tmpdir(char *dir, size_t size)
{
    snprintf(dir, size, "/tmp/cairn-test-util.XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

Test(fileio, write_then_read_round_trips)
{
    char dir[64], path[128];
    _cleanup_free_ char *buf = NULL;
    size_t len = 0;

    s_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/f", dir);
    cr_assert_eq(cairn_write_file(path, "hello\0world", 11,
                                  O_CREAT | O_EXCL, 0600), 0);
    cr_assert_eq(cairn_read_file(path, 0, &buf, &len), 0);
    cr_assert_eq(len, 11);
    cr_assert_eq(memcmp(buf, "hello\0world", 11), 0);
    cr_assert_eq(buf[11], '\0');
    cr_assert_eq(cairn_write_file(path, "x", 1, O_CREAT | O_EXCL, 0600),
                 -EEXIST);
    unlink(path);
    rmdir(dir);
}

Test(fileio, reads_proc_files_whose_size_is_unknown)
{
    _cleanup_free_ char *buf = NULL;
    size_t len = 0;

    cr_assert_eq(cairn_read_file("/proc/self/status", 0, &buf, &len), 0);
    cr_assert_gt(len, 0);
    cr_assert_not_null(strstr(buf, "\nPid:\t"));
    cr_assert_eq(strlen(buf), len);
}

Test(fileio, bounds_a_read_and_reports_a_missing_file)
{
    char *buf = NULL;
    size_t len = 0;
    char big[20000];
    int fds[2];

    cr_assert_eq(cairn_read_file("/nonexistent/cairn", 0, &buf, &len),
                 -ENOENT);
    cr_assert_null(buf);
    memset(big, 'a', sizeof big);
    cr_assert_eq(pipe(fds), 0);
    cr_assert_eq(fcntl(fds[1], F_SETPIPE_SZ, 65536) >= 0, true);
    cr_assert_eq(cairn_write_all(fds[1], big, sizeof big), 0);
    close(fds[1]);
    cr_assert_eq(cairn_read_fd(fds[0], 10000, &buf, &len), -EFBIG);
    cr_assert_null(buf);
    close(fds[0]);
}

Test(fileio, write_all_reports_a_closed_reader)
{
    int fds[2];

    cr_assert_eq(pipe(fds), 0);
    close(fds[0]);
    signal(SIGPIPE, SIG_IGN);
    cr_assert_eq(cairn_write_all(fds[1], "x", 1), -EPIPE);
    close(fds[1]);
}

static const cairn_option_t s_opts[] = {
    { "--config", "FILE", "the description" },
    { "--node", "ID", "this node" },
    { "--check", NULL, "only check" },
    { "--help", NULL, "this text" },
    { NULL, NULL, NULL },
};

Test(options, parses_values_flags_and_positionals)
{
    char *argv[] = { "--config", "a.xml", "pos1", "--node=3", "--check",
                     "-h", "--", "--not-an-option" };
    cairn_args_t a;
    cairn_error_t err;

    cr_assert_eq(cairn_args_parse("prog", s_opts, 8, argv, 2, &a, &err), 0,
                 "%s", err.message);
    cr_assert_str_eq(a.values[0], "a.xml");
    cr_assert_str_eq(a.values[1], "3");
    cr_assert_str_eq(a.values[2], "");
    cr_assert_str_eq(a.values[3], "");
    cr_assert_eq(a.n_pos, 2);
    cr_assert_str_eq(a.pos[0], "pos1");
    cr_assert_str_eq(a.pos[1], "--not-an-option");
}

Test(options, refuses_what_it_cannot_parse)
{
    cairn_args_t a;
    cairn_error_t err;
    char *unknown[] = { "--nope" };
    char *missing[] = { "--config", "--check" };
    char *flagval[] = { "--check=yes" };
    char *toomany[] = { "x", "y" };

    cr_assert_eq(cairn_args_parse("prog", s_opts, 1, unknown, 0, &a, &err),
                 -EINVAL);
    cr_assert_eq(err.code, CAIRN_USAGE);
    cr_assert_str_eq(err.message, "prog: unknown option '--nope'");
    cr_assert_eq(cairn_args_parse("prog", s_opts, 2, missing, 0, &a, &err),
                 -EINVAL);
    cr_assert_str_eq(err.message, "option --config needs a value (FILE)");
    cr_assert_eq(cairn_args_parse("prog", s_opts, 1, flagval, 0, &a, &err),
                 -EINVAL);
    cr_assert_eq(cairn_args_parse("prog", s_opts, 2, toomany, 1, &a, &err),
                 -EINVAL);
    cr_assert_str_eq(err.message, "prog: unexpected argument 'y'");
}

Test(options, parses_bounded_integers)
{
    long v = 0;
    cairn_error_t err;

    cr_assert_eq(cairn_parse_long("--n", "42", 1, 100, &v, &err), 0);
    cr_assert_eq(v, 42);
    cr_assert_eq(cairn_parse_long("--n", "0", 1, 100, &v, &err), -EINVAL);
    cr_assert_eq(cairn_parse_long("--n", "4x", 1, 100, &v, &err), -EINVAL);
    cr_assert_eq(cairn_parse_long("--n", "", 1, 100, &v, &err), -EINVAL);
    cr_assert_eq(cairn_parse_long("--n", "99999999999999999999", 1, 100, &v,
                                  &err), -EINVAL);
    cr_assert_eq(v, 42);
    cr_assert_str_eq(err.message,
                     "--n: '99999999999999999999' is not a whole number in "
                     "1..100");
}

Test(options, prints_a_usage_line_per_option)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);

    cairn_options_usage(f, "ghost-dump", "--pid PID", s_opts);
    fclose(f);
    cr_assert_not_null(strstr(text, "usage: ghost-dump --pid PID\n"));
    cr_assert_not_null(strstr(text, "  --config FILE            the description\n"));
    cr_assert_not_null(strstr(text, "  --check                  only check\n"));
    free(text);
}

static const cairn_option_t s_aliased[] = {
    { "--config", "FILE", "the description", "-c" },
    { "--version", NULL, "the version", "-V" },
    { "--help", NULL, "this text", "-?" },
    { "--node", "ID", "this node" },
    { NULL, NULL, NULL, NULL },
};

Test(options, short_aliases_take_values_as_getopt_does)
{
    char *argv[] = { "-c", "a.xml", "-V", "pos" };
    char *attached[] = { "-cb.xml" };
    char *alias_help[] = { "-?" };
    cairn_args_t a;
    cairn_error_t err;

    cr_assert_eq(cairn_args_parse("prog", s_aliased, 4, argv, 1, &a, &err), 0,
                 "%s", err.message);
    cr_assert_str_eq(a.values[0], "a.xml");
    cr_assert_str_eq(a.values[1], "");
    cr_assert_null(a.values[2]);
    cr_assert_str_eq(a.pos[0], "pos");
    cr_assert_eq(cairn_args_parse("prog", s_aliased, 1, attached, 0, &a, &err),
                 0, "%s", err.message);
    cr_assert_str_eq(a.values[0], "b.xml");
    cr_assert_eq(cairn_args_parse("prog", s_aliased, 1, alias_help, 0, &a,
                                  &err), 0, "%s", err.message);
    cr_assert_str_eq(a.values[2], "");
}

Test(options, short_aliases_refuse_what_getopt_would_not_take)
{
    const char *inl = NULL;
    cairn_args_t a;
    cairn_error_t err;
    char *missing[] = { "-c" };
    char *bundled[] = { "-Vc" };
    char *unknown[] = { "-x" };

    cr_assert_eq(cairn_args_parse("prog", s_aliased, 1, missing, 0, &a, &err),
                 -EINVAL);
    cr_assert_str_eq(err.message, "option --config needs a value (FILE)");
    cr_assert_eq(cairn_args_parse("prog", s_aliased, 1, bundled, 0, &a, &err),
                 -EINVAL);
    cr_assert_str_eq(err.message, "prog: unknown option '-Vc'");
    cr_assert_eq(cairn_args_parse("prog", s_aliased, 1, unknown, 0, &a, &err),
                 -EINVAL);
    /* The alias is the table's: "-h" is not --help where --help has one,
     * and stays --help in a table without aliases. */
    cr_assert_eq(cairn_option_find(s_aliased, "-h", &inl), -1);
    cr_assert_eq(cairn_option_find(s_opts, "-h", &inl), 3);
    cr_assert_null(inl);
    cr_assert_eq(cairn_option_find(s_opts, "-c", &inl), -1);
    cr_assert_eq(cairn_option_find(s_opts, "-h=x", &inl), -1);
}

Test(options, usage_shows_the_alias)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);

    cairn_options_usage(f, "clusterd", "[--config FILE]", s_aliased);
    fclose(f);
    cr_assert_not_null(strstr(text, "  -c, --config FILE        the description\n"),
                       "%s", text);
    cr_assert_not_null(strstr(text, "  -V, --version            the version\n"),
                       "%s", text);
    cr_assert_not_null(strstr(text, "      --node ID            this node\n"),
                       "%s", text);
    free(text);
}

Test(clock, is_monotonic_and_consistent)
{
    uint64_t ms = cairn_now_ms(), us = cairn_now_us(), ns = cairn_now_ns();

    cr_assert_geq(us / 1000, ms);
    cr_assert_geq(ns / 1000, us);
    usleep(20000);
    cr_assert_geq(cairn_now_ms() - ms, 20);
    cr_assert_eq(cairn_ms_left(ms), 0);
    cr_assert_gt(cairn_ms_left(cairn_now_ms() + 1000), 900);
}

static int s_closed_fd = -1;

static void s_scope_with_fd(void)
{
    _cleanup_close_ int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

    s_closed_fd = fd;
}

Test(cleanup, closes_and_takes)
{
    char *p;

    s_scope_with_fd();
    cr_assert_geq(s_closed_fd, 0);
    cr_assert_eq(fcntl(s_closed_fd, F_GETFD), -1);
    cr_assert_eq(errno, EBADF);
    {
        _cleanup_free_ char *s = strdup("kept");
        p = TAKE_PTR(s);
        cr_assert_null(s);
    }
    cr_assert_str_eq(p, "kept");
    free(p);
    {
        int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        int taken = TAKE_FD(fd);
        cr_assert_eq(fd, -1);
        close(taken);
    }
}

/* test-decisions.c - the decision log (decisions.h): numbering that goes
 * on across a reopen (a swap), outcomes written later, round robin's last
 * node found again, Request{log}'s window, a bad line skipped, the file
 * kept bounded.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "decisions.h"

static char s_dir[] = "/tmp/cairn-test-decisions.XXXXXX";
static char s_path[256];

static void s_setup(void)
{
    cr_assert_not_null(mkdtemp(s_dir));
    snprintf(s_path, sizeof(s_path), "%s/sched-decisions.jsonl", s_dir);
}

static void s_teardown(void)
{
    unlink(s_path);
    rmdir(s_dir);
}

TestSuite(decisions, .init = s_setup, .fini = s_teardown);

static sched_entry_t s_entry(const char *kind, const char *gpid, uint32_t to)
{
    sched_entry_t e = { .node = 1, .from = 1, .to = to };
    snprintf(e.kind, sizeof(e.kind), "%s", kind);
    snprintf(e.gpid, sizeof(e.gpid), "%s", gpid);
    snprintf(e.policy, sizeof(e.policy), "mosix");
    snprintf(e.reason, sizeof(e.reason), "because \"%s\"", kind);
    return e;
}

Test(decisions, seq_and_outcomes_survive_a_reopen)
{
    sched_log_t *log = NULL;
    const sched_entry_t *e = NULL, *out[8];
    sched_entry_t a = s_entry("place", "", 3), b = s_entry("balance", "1.4", 2);

    cr_assert_eq(sched_log_open(s_path, &log), 0);
    cr_assert_eq(sched_log_last_placed(log), 0);
    cr_assert_eq(sched_log_add(log, &a, &e), 0);
    cr_assert_eq(e->seq, 1);
    cr_assert_eq(sched_log_add(log, &b, &e), 0);
    cr_assert_eq(e->seq, 2);
    cr_assert_str_eq(e->outcome, "");
    cr_assert_eq(sched_log_set_outcome(log, 2, "ok: moved", &e), 0);
    cr_assert_eq(sched_log_set_outcome(log, 99, "x", NULL), -ENOENT);
    log = sched_log_free(log);

    cr_assert_eq(sched_log_open(s_path, &log), 0);
    cr_assert_eq(sched_log_since(log, 0, 8, out), 2, "the outcome line is no third decision");
    cr_assert_str_eq(out[1]->outcome, "ok: moved");
    cr_assert_str_eq(out[1]->gpid, "1.4");
    cr_assert_str_eq(out[0]->reason, "because \"place\"");
    cr_assert_eq(sched_log_last_placed(log), 3);
    cr_assert_eq(sched_log_add(log, &a, &e), 0);
    cr_assert_eq(e->seq, 3, "numbering goes on after a swap");
    sched_log_free(log);
}

Test(decisions, since_gives_the_newest_oldest_first)
{
    sched_log_t *log = NULL;
    const sched_entry_t *out[SCHED_LOG_KEEP];
    sched_entry_t a = s_entry("place", "", 2);

    cr_assert_eq(sched_log_open(s_path, &log), 0);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(sched_log_add(log, &a, NULL), 0);
    cr_assert_eq(sched_log_since(log, 0, 3, out), 3);
    cr_assert_eq(out[0]->seq, 8);
    cr_assert_eq(out[2]->seq, 10);
    cr_assert_eq(sched_log_since(log, 6, 100, out), 4);
    cr_assert_eq(out[0]->seq, 7);
    cr_assert_eq(sched_log_since(log, 10, 100, out), 0);
    sched_log_free(log);
}

Test(decisions, a_bad_line_is_skipped)
{
    FILE *f = fopen(s_path, "w");
    sched_log_t *log = NULL;
    const sched_entry_t *out[4];

    cr_assert_not_null(f);
    fputs("{\"seq\":4,\"kind\":\"place\",\"to\":2}\nnot json\n{\"kind\":\"place\"}\n", f);
    fclose(f);
    cr_assert_eq(sched_log_open(s_path, &log), 0);
    cr_assert_eq(sched_log_skipped(log), 2);
    cr_assert_eq(sched_log_since(log, 0, 4, out), 1);
    cr_assert_eq(sched_log_last_placed(log), 2);
    sched_log_free(log);
}

Test(decisions, the_file_stays_bounded)
{
    sched_log_t *log = NULL;
    sched_entry_t a = s_entry("place", "", 2);
    const sched_entry_t *e = NULL;
    struct stat st;

    memset(a.reason, 'x', sizeof(a.reason) - 1);
    a.reason[sizeof(a.reason) - 1] = '\0';
    cr_assert_eq(sched_log_open(s_path, &log), 0);
    for (int i = 0; i < 4000; i++)
        cr_assert_eq(sched_log_add(log, &a, &e), 0);
    cr_assert_eq(stat(s_path, &st), 0);
    cr_assert_leq(st.st_size, SCHED_LOG_MAX_FILE + 1024);
    sched_log_free(log);
    cr_assert_eq(sched_log_open(s_path, &log), 0);
    cr_assert_eq(sched_log_add(log, &a, &e), 0);
    cr_assert_eq(e->seq, 4001);
    sched_log_free(log);
}

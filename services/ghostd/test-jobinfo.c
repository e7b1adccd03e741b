/* test-jobinfo.c - the pure half of ghostd's jobs (jobinfo.h): gpids, the
 * sequence scan, the records written and read back (and refused when
 * damaged), a sample of a process tree of our own.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jobinfo.h"

static char s_dir[] = "/tmp/cairn-jobinfo.XXXXXX";

static void s_setup(void)
{
    cr_assert_not_null(mkdtemp(s_dir));
}

static void s_teardown(void)
{
    char cmd[128];

    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s_dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(jobinfo, .init = s_setup, .fini = s_teardown);

Test(jobinfo, gpid_parse_and_format)
{
    uint32_t node;
    uint64_t seq;
    char buf[GHOSTD_GPID_MAX];

    cr_assert_eq(ghostd_gpid_parse("1.1", &node, &seq), 0);
    cr_assert(node == 1 && seq == 1);
    cr_assert_eq(ghostd_gpid_parse("255.18446744073709551615", &node, &seq), 0);
    cr_assert(node == 255 && seq == UINT64_MAX);
    static const char *const bad[] = {
        "", "1", "1.", ".1", "0.1", "1.0", "256.1", "01.1", "1.01", "1.1.1",
        "1.-1", "-1.1", "1.x", " 1.1", "1.1 ", "1.18446744073709551616", "1,1",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(ghostd_gpid_parse(bad[i], &node, &seq), -EINVAL, "'%s'", bad[i]);
    cr_assert_eq(ghostd_gpid_parse(NULL, &node, &seq), -EINVAL);
    cr_assert_eq(ghostd_gpid_format(3, 42, buf, sizeof buf), 0);
    cr_assert_str_eq(buf, "3.42");
    cr_assert_eq(ghostd_gpid_format(0, 1, buf, sizeof buf), -EINVAL);
    cr_assert_eq(ghostd_gpid_format(256, 1, buf, sizeof buf), -EINVAL);
    cr_assert_eq(ghostd_gpid_format(1, 0, buf, sizeof buf), -EINVAL);
    cr_assert_eq(ghostd_gpid_format(1, 12345, buf, 4), -ENAMETOOLONG);
    cr_assert_eq(ghostd_gpid_format(255, UINT64_MAX, buf, sizeof buf), 0);
    cr_assert_eq(ghostd_gpid_parse(buf, &node, &seq), 0);
    cr_assert(node == 255 && seq == UINT64_MAX);
}

static void s_mkdir(const char *name)
{
    char path[256];

    snprintf(path, sizeof path, "%s/%s", s_dir, name);
    cr_assert_eq(mkdir(path, 0700), 0, "%s", path);
}

Test(jobinfo, next_seq_scans_this_nodes_directories)
{
    char missing[256];
    uint64_t next = 0;

    cr_assert_eq(ghostd_gpid_next_seq(s_dir, 2, &next), 0);
    cr_assert_eq(next, 1, "an empty directory starts at 1");
    snprintf(missing, sizeof missing, "%s/none", s_dir);
    cr_assert_eq(ghostd_gpid_next_seq(missing, 2, &next), 0);
    cr_assert_eq(next, 1, "a missing directory starts at 1");
    s_mkdir("2.3");
    s_mkdir("2.10");
    s_mkdir("2.9");
    s_mkdir("3.50");      /* another node's */
    s_mkdir("2.011");     /* not a gpid */
    s_mkdir("2.x");
    s_mkdir("jobs");
    cr_assert_eq(ghostd_gpid_next_seq(s_dir, 2, &next), 0);
    cr_assert_eq(next, 11);
    cr_assert_eq(ghostd_gpid_next_seq(s_dir, 3, &next), 0);
    cr_assert_eq(next, 51);
    cr_assert_eq(ghostd_gpid_next_seq(s_dir, 4, &next), 0);
    cr_assert_eq(next, 1);
}

Test(jobinfo, job_record_round_trip)
{
    ghostd_jobrec_t r = { 0 }, back = { 0 };
    char *const argv[] = { "sh", "-c", "echo \"quoted\" \\ and ünïcode", "" };

    snprintf(r.gpid, sizeof r.gpid, "4.17");
    r.uid = 1000;
    r.gid = 1001;
    cr_assert_eq(ghostd_jobrec_set_argv(&r, argv, 4), 0);
    snprintf(r.name, sizeof r.name, "a name");
    r.start_ms = 1796628821182ull;
    r.node = 4;
    r.host_pid = 4242;
    r.host_start = 987654321ull;
    r.moves = 2;
    r.restarts = 1;
    snprintf(r.cgroup, sizeof r.cgroup, "/cairn/x/4/job-4.17");
    r.sub_cgroup = true;
    cr_assert_eq(ghostd_jobrec_write(s_dir, &r), 0);
    cr_assert_eq(ghostd_jobrec_read(s_dir, &back), 0);
    cr_assert_str_eq(back.gpid, "4.17");
    cr_assert(back.uid == 1000 && back.gid == 1001 && back.node == 4);
    cr_assert_eq(back.argc, 4);
    for (size_t i = 0; i < 4; i++)
        cr_assert_str_eq(back.argv[i], argv[i]);
    cr_assert_null(back.argv[4]);
    cr_assert_str_eq(back.name, "a name");
    cr_assert_eq(back.start_ms, 1796628821182ull);
    cr_assert(back.host_pid == 4242 && back.host_start == 987654321ull);
    cr_assert(back.moves == 2 && back.restarts == 1 && back.sub_cgroup);
    cr_assert_str_eq(back.cgroup, "/cairn/x/4/job-4.17");
    cr_assert_str_eq(back.unit, "");
    cr_assert(back.migrating_to == 0 && back.migration[0] == '\0');
    /* a move under way, then its mark gone again */
    r.migrating_to = 2;
    snprintf(r.migration, sizeof r.migration, "4-4242-1796628821-7");
    cr_assert_eq(ghostd_jobrec_write(s_dir, &r), 0);
    cr_assert_eq(ghostd_jobrec_read(s_dir, &back), 0);
    cr_assert_eq(back.migrating_to, 2);
    cr_assert_str_eq(back.migration, "4-4242-1796628821-7");
    r.migrating_to = 0;
    cr_assert_eq(ghostd_jobrec_write(s_dir, &r), 0);
    cr_assert_eq(ghostd_jobrec_read(s_dir, &back), 0);
    cr_assert(back.migrating_to == 0 && back.migration[0] == '\0');
    ghostd_jobrec_clear(&r);
    ghostd_jobrec_clear(&back);
    ghostd_jobrec_clear(&back);   /* twice is fine */
}

/* Writes text as dir/name. */
static void s_put(const char *name, const char *text)
{
    char path[256];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", s_dir, name);
    cr_assert_not_null(f = fopen(path, "w"));
    fputs(text, f);
    fclose(f);
}

Test(jobinfo, damaged_job_records_are_refused)
{
    static const char *const bad[] = {
        "", "[]", "{", "{\"gpid\":\"1.1\"}",
        "{\"gpid\":\"1.0\",\"uid\":0,\"gid\":0,\"argv\":[\"x\"],\"name\":\"\",\"start_ms\":1,"
        "\"node\":1,\"host_pid\":2,\"host_start\":3,\"moves\":0,\"restarts\":0,\"cgroup\":\"/\",\"unit\":\"\"}",
        "{\"gpid\":\"1.1\",\"uid\":-1,\"gid\":0,\"argv\":[\"x\"],\"name\":\"\",\"start_ms\":1,"
        "\"node\":1,\"host_pid\":2,\"host_start\":3,\"moves\":0,\"restarts\":0,\"cgroup\":\"/\",\"unit\":\"\"}",
        "{\"gpid\":\"1.1\",\"uid\":0,\"gid\":0,\"argv\":[],\"name\":\"\",\"start_ms\":1,"
        "\"node\":1,\"host_pid\":2,\"host_start\":3,\"moves\":0,\"restarts\":0,\"cgroup\":\"/\",\"unit\":\"\"}",
        "{\"gpid\":\"1.1\",\"uid\":0,\"gid\":0,\"argv\":[\"x\",3],\"name\":\"\",\"start_ms\":1,"
        "\"node\":1,\"host_pid\":2,\"host_start\":3,\"moves\":0,\"restarts\":0,\"cgroup\":\"/\",\"unit\":\"\"}",
        "{\"gpid\":\"1.1\",\"uid\":0,\"gid\":0,\"argv\":[\"x\"],\"name\":\"\",\"start_ms\":1,"
        "\"node\":256,\"host_pid\":2,\"host_start\":3,\"moves\":0,\"restarts\":0,\"cgroup\":\"/\",\"unit\":\"\"}",
        /* a move under way without its id */
        "{\"gpid\":\"1.1\",\"uid\":0,\"gid\":0,\"argv\":[\"x\"],\"name\":\"\",\"start_ms\":1,"
        "\"node\":1,\"host_pid\":2,\"host_start\":3,\"moves\":0,\"restarts\":0,\"cgroup\":\"/\",\"unit\":\"\","
        "\"migrating_to\":2}",
    };
    ghostd_jobrec_t r = { 0 };
    char empty[300];

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        s_put("job.json", bad[i]);
        cr_assert_eq(ghostd_jobrec_read(s_dir, &r), -EBADMSG, "record %zu", i);
        cr_assert_null(r.argv);
    }
    snprintf(empty, sizeof empty, "%s/none", s_dir);
    cr_assert_eq(ghostd_jobrec_read(empty, &r), -ENOENT);
}

Test(jobinfo, exit_record)
{
    ghostd_exitrec_t e = { .exit_code = -1, .exit_signal = 9, .end_ms = 123 }, back;
    struct stat st;
    char path[256];

    cr_assert_eq(ghostd_exitrec_write(s_dir, &e, getuid(), getgid()), 0);
    snprintf(path, sizeof path, "%s/exit", s_dir);
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 07777, 0600);
    snprintf(path, sizeof path, "%s/exit.tmp", s_dir);
    cr_assert_eq(access(path, F_OK), -1, "no temporary file left");
    cr_assert_eq(ghostd_exitrec_read(s_dir, &back), 0);
    cr_assert(back.exit_code == -1 && back.exit_signal == 9 && back.end_ms == 123);
    /* what ghost-init's reaper writes */
    s_put("exit", "{\"exit_code\":7,\"exit_signal\":0,\"end_ms\":1796628821182}\n");
    cr_assert_eq(ghostd_exitrec_read(s_dir, &back), 0);
    cr_assert(back.exit_code == 7 && back.exit_signal == 0 && back.end_ms == 1796628821182ull);
    s_put("exit", "{\"exit_code\":7,\"exit_signal\":65,\"end_ms\":1}");
    cr_assert_eq(ghostd_exitrec_read(s_dir, &back), -EBADMSG);
    s_put("exit", "{\"exit_code\":\"7\",\"exit_signal\":0,\"end_ms\":1}");
    cr_assert_eq(ghostd_exitrec_read(s_dir, &back), -EBADMSG);
    s_put("exit", "{\"exit_code\":7,\"exit_signal\":0}");
    cr_assert_eq(ghostd_exitrec_read(s_dir, &back), -EBADMSG);
}

Test(jobinfo, sample_of_a_tree)
{
    int p[2];
    char c;

    cr_assert_eq(pipe(p), 0);
    pid_t top = fork();
    cr_assert_geq(top, 0);
    if (top == 0) {   /* a child with two children of its own */
        setpgid(0, 0);
        for (int i = 0; i < 2; i++)
            if (fork() == 0) {
                close(p[0]);
                pause();
                _exit(0);
            }
        close(p[0]);
        if (write(p[1], "x", 1) != 1)
            _exit(1);
        pause();
        _exit(0);
    }
    setpgid(top, top);
    close(p[1]);
    cr_assert_eq(read(p[0], &c, 1), 1);
    usleep(50000);   /* the grandchildren exist once both forks returned */
    ghostd_jobsample_t s;
    cr_assert_eq(ghostd_job_sample(top, &s), 0);
    cr_assert_eq(s.processes, 3);
    cr_assert_gt(s.rss_bytes, 0);
    cr_assert_eq(s.program, 0, "no pid 2 inside here: we share the namespace");
    uint64_t start;
    cr_assert_eq(ghostd_proc_start(top, &start), 0);
    cr_assert_gt(start, 0);
    kill(-top, SIGKILL);
    kill(top, SIGKILL);
    waitpid(top, NULL, 0);
    cr_assert_eq(ghostd_job_sample(top, &s), -ESRCH);
    cr_assert_eq(ghostd_proc_start(top, &start), -ESRCH);
}

/* test-owner.c - whose a process is (engine/owner.c): the rule the ghost
 * helpers apply for a user who is not root, and the rights they keep.
 *
 * The credential rule on made-up credentials (ids, groups, capabilities)
 * and on made-up image records (no credentials, seccomp without
 * no_new_privs, a hard limit above ours); the groups a user holds; the
 * dumpable rule on children of ours that become nobody (with and without
 * PR_SET_DUMPABLE 0); file access as a user (fs_enter/fs_leave) on real
 * directories; and what ghost_owner_restrict_caps leaves. The last three
 * need root and skip without it.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/capability.h>

#include "owner.h"

#define NOBODY 65534u

/* nobody's own process, as /proc would show it. */
static proc_creds_t s_nobody(void)
{
    return (proc_creds_t){ .uid = { NOBODY, NOBODY, NOBODY, NOBODY },
                           .gid = { NOBODY, NOBODY, NOBODY, NOBODY },
                           .cap_bnd = ~0ull };
}

static ghost_owner_t s_owner(void)
{
    ghost_owner_t o;
    cairn_error_t err;
    cr_assert_eq(ghost_owner_init(&o, NOBODY, NOBODY, &err), 0, "%s", err.message);
    return o;
}

Test(owner, init_and_parse)
{
    ghost_owner_t o = s_owner();
    cairn_error_t err;

    cr_assert(ghost_owner_holds(&o, NOBODY));
    cr_assert_not(ghost_owner_holds(&o, 0));
    ghost_owner_free(&o);
    ghost_owner_free(&o);   /* twice is fine */
    cr_assert_eq(ghost_owner_init(&o, 0, 0, &err), -EINVAL, "root is held to no rule");
    cr_assert_eq(ghost_owner_parse("1000:1001", &o, &err), 0, "%s", err.message);
    cr_assert(o.uid == 1000 && o.gid == 1001 && ghost_owner_holds(&o, 1001));
    ghost_owner_free(&o);
    const char *bad[] = { "0:0", "1000", "1000:", ":1000", "x:1", "1:x", "1:2:3",
                          "4294967295:1", "-1:1", "" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(ghost_owner_parse(bad[i], &o, &err), -EINVAL, "'%s' taken", bad[i]);
    cr_assert_eq(err.code, CAIRN_USAGE);
}

/* The groups a user holds: the request's, and the user database's. */
Test(owner, database_groups)
{
    ghost_owner_t o;
    cairn_error_t err;
    struct passwd *pw = getpwuid(NOBODY);
    cr_assert_eq(ghost_owner_init(&o, NOBODY, 4242, &err), 0, "%s", err.message);
    cr_assert(ghost_owner_holds(&o, 4242), "the request's group");
    cr_assert(!pw || ghost_owner_holds(&o, pw->pw_gid),
              "nobody's primary group from the database");
    cr_assert_not(ghost_owner_holds(&o, 0));
    ghost_owner_free(&o);
}

Test(owner, creds)
{
    ghost_owner_t o = s_owner();
    cairn_error_t err;
    proc_creds_t c = s_nobody();

    cr_assert_eq(ghost_owner_check_creds(&o, &c, "process 7", &err), 0, "%s", err.message);
    c.cap_bnd = 0;   /* the bounding set only takes away */
    cr_assert_eq(ghost_owner_check_creds(&o, &c, "process 7", &err), 0, "%s", err.message);
    for (int i = 0; i < 4; i++) {
        c = s_nobody();
        c.uid[i] = 0;   /* a setuid program: one of the four is root */
        cr_assert_eq(ghost_owner_check_creds(&o, &c, "process 7", &err), -EPERM);
        cr_assert_eq(err.code, CAIRN_PERMISSION_DENIED);
        cr_assert(strstr(err.message, "process 7 runs as uid"), "%s", err.message);
        c = s_nobody();
        c.gid[i] = 42;   /* a setgid program, a group not theirs */
        cr_assert_eq(ghost_owner_check_creds(&o, &c, "process 7", &err), -EPERM);
        cr_assert(strstr(err.message, "group 42"), "%s", err.message);
    }
    uint32_t groups[] = { NOBODY, 27 };
    c = s_nobody();
    c.groups = groups, c.n_groups = 2;
    cr_assert_eq(ghost_owner_check_creds(&o, &c, "process 7", &err), -EPERM);
    cr_assert(strstr(err.message, "supplementary group 27"), "%s", err.message);
    uint64_t *caps[] = { &c.cap_prm, &c.cap_eff, &c.cap_inh, &c.cap_amb };
    for (size_t i = 0; i < 4; i++) {
        c = s_nobody();
        *caps[i] = 1ull << CAP_NET_RAW;
        cr_assert_eq(ghost_owner_check_creds(&o, &c, "process 7", &err), -EPERM, "set %zu", i);
        cr_assert(strstr(err.message, "capabilities"), "%s", err.message);
    }
    ghost_owner_free(&o);
}

/* An image's process record for nobody, with one hard limit: ours. */
typedef struct s_record {
    Cairn__Ghost__Process p;
    Cairn__Ghost__Creds c;
    uint32_t uid[4], gid[4];
    Cairn__Ghost__Rlimit nofile;
    Cairn__Ghost__Rlimit *rl[1];
    Cairn__Ghost__SeccompFilter filter;
    Cairn__Ghost__SeccompFilter *filters[1];
} s_record_t;

static void s_record(s_record_t *r)
{
    struct rlimit mine;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &mine), 0);
    cairn__ghost__process__init(&r->p);
    cairn__ghost__creds__init(&r->c);
    cairn__ghost__rlimit__init(&r->nofile);
    cairn__ghost__seccomp_filter__init(&r->filter);
    for (int i = 0; i < 4; i++)
        r->uid[i] = r->gid[i] = NOBODY;
    r->c.n_uid = r->c.n_gid = 4;
    r->c.uid = r->uid, r->c.gid = r->gid;
    r->c.cap_bnd = ~0ull;
    r->nofile.resource = RLIMIT_NOFILE;
    r->nofile.cur = r->nofile.max = mine.rlim_max;
    r->rl[0] = &r->nofile;
    r->filters[0] = &r->filter;
    r->p.pid = 99;
    r->p.creds = &r->c;
    r->p.n_rlimits = 1, r->p.rlimits = r->rl;
}

Test(owner, image_process)
{
    ghost_owner_t o = s_owner();
    cairn_error_t err;
    s_record_t r;

    s_record(&r);
    cr_assert_eq(ghost_owner_check_process(&o, &r.p, &err), 0, "%s", err.message);
    r.uid[1] = 0;
    cr_assert_eq(ghost_owner_check_process(&o, &r.p, &err), -EPERM);
    cr_assert(strstr(err.message, "process 99 of the image runs as uid 65534/0/"), "%s",
              err.message);

    s_record(&r);
    r.p.creds = NULL;   /* older than credentials: would come back as root */
    cr_assert_eq(ghost_owner_check_process(&o, &r.p, &err), -EPERM);
    cr_assert(strstr(err.message, "no credentials"), "%s", err.message);

    s_record(&r);
    r.c.n_uid = 3;
    cr_assert_eq(ghost_owner_check_process(&o, &r.p, &err), -EBADMSG);

    s_record(&r);
    r.p.n_seccomp = 1, r.p.seccomp = r.filters;
    cr_assert_eq(ghost_owner_check_process(&o, &r.p, &err), -EPERM, "filter, no nnp");
    cr_assert(strstr(err.message, "no_new_privs"), "%s", err.message);
    r.c.no_new_privs = true;
    cr_assert_eq(ghost_owner_check_process(&o, &r.p, &err), 0, "%s", err.message);

    s_record(&r);
    r.nofile.resource = 99;
    cr_assert_eq(ghost_owner_check_process(&o, &r.p, &err), -EBADMSG);
    s_record(&r);
    if (r.nofile.max != RLIM_INFINITY) {
        r.nofile.max++;
        cr_assert_eq(ghost_owner_check_process(&o, &r.p, &err), -EPERM);
        cr_assert(strstr(err.message, "hard nofile limit"), "%s", err.message);
    }
    ghost_owner_free(&o);
}

/* A child that becomes nobody, optionally says PR_SET_DUMPABLE 0, and
 * waits to be killed; its pid. */
static pid_t s_nobody_child(bool undumpable)
{
    int p[2];
    char c;
    cr_assert_eq(pipe(p), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        if (setresgid(NOBODY, NOBODY, NOBODY) < 0 || setresuid(NOBODY, NOBODY, NOBODY) < 0)
            _exit(1);
        /* A change of ids leaves the process undumpable; say which. */
        prctl(PR_SET_DUMPABLE, undumpable ? 0 : 1, 0, 0, 0);
        if (write(p[1], "r", 1) != 1)
            _exit(1);
        pause();
        _exit(0);
    }
    close(p[1]);
    cr_assert_eq(read(p[0], &c, 1), 1, "the child became nobody");
    close(p[0]);
    return pid;
}

static void s_kill(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

Test(owner, dumpable)
{
    if (geteuid() != 0)
        cr_skip_test("needs root to become nobody");
    ghost_owner_t o = s_owner();
    cairn_error_t err;
    pid_t yes = s_nobody_child(false), no = s_nobody_child(true);

    cr_expect_eq(ghost_owner_check_dumpable(&o, yes, &err), 0, "%s", err.message);
    cr_expect_eq(ghost_owner_check_dumpable(&o, no, &err), -EPERM);
    cr_expect(strstr(err.message, "is not dumpable"), "%s", err.message);
    s_kill(yes);
    s_kill(no);
    cr_expect_eq(ghost_owner_check_dumpable(&o, yes, &err), -ESRCH);
    ghost_owner_free(&o);
}

Test(owner, file_rights)
{
    if (geteuid() != 0)
        cr_skip_test("needs root to take nobody's file rights");
    char base[] = "/tmp/test-owner.XXXXXX", mine[64], theirs[64], f[96];
    ghost_owner_t o = s_owner();
    cairn_error_t err;

    cr_assert(mkdtemp(base));
    chmod(base, 0711);
    snprintf(mine, sizeof mine, "%s/root", base);     /* root's, 0700 */
    snprintf(theirs, sizeof theirs, "%s/nobody", base);
    cr_assert_eq(mkdir(mine, 0700), 0);
    cr_assert_eq(mkdir(theirs, 0700), 0);
    cr_assert_eq(chown(theirs, NOBODY, NOBODY), 0);

    cr_assert_eq(ghost_owner_fs_enter(&o, &err), 0, "%s", err.message);
    cr_assert_eq(ghost_owner_fs_enter(&o, &err), 0, "entering twice is fine");
    snprintf(f, sizeof f, "%s/x", mine);
    cr_expect_lt(open(f, O_CREAT | O_WRONLY | O_CLOEXEC, 0600), 0, "root's dir as nobody");
    cr_expect_eq(errno, EACCES);
    snprintf(f, sizeof f, "%s/x", theirs);
    int fd = open(f, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    cr_expect_geq(fd, 0, "nobody's dir as nobody: %s", strerror(errno));
    close(fd);
    cr_assert_eq(ghost_owner_fs_leave(&o, &err), 0, "%s", err.message);
    struct stat st;
    cr_expect_eq(stat(f, &st), 0);
    cr_expect_eq(st.st_uid, NOBODY, "the file is nobody's");
    snprintf(f, sizeof f, "%s/x", mine);
    fd = open(f, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    cr_expect_geq(fd, 0, "root's rights back: %s", strerror(errno));
    close(fd);
    cr_assert_eq(ghost_owner_fs_leave(&o, &err), 0, "leaving twice is fine");

    unlink(f);
    snprintf(f, sizeof f, "%s/x", theirs);
    unlink(f);
    rmdir(mine);
    rmdir(theirs);
    rmdir(base);
    ghost_owner_free(&o);
}

/* Whether cap is in this process's permitted set. */
static bool s_permitted(int cap)
{
    struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct d[2];
    return syscall(SYS_capget, &h, d) == 0 && (d[cap / 32].permitted >> (cap % 32)) & 1;
}

Test(owner, restrict_caps)
{
    static const int needed[] = { CAP_KILL, CAP_SETGID, CAP_SETUID, CAP_SETPCAP,
                                  CAP_SYS_PTRACE, CAP_SYS_ADMIN, CAP_SYS_RESOURCE };
    bool had[sizeof(needed) / sizeof(needed[0])];

    if (!s_permitted(CAP_SYS_PTRACE) || !s_permitted(CAP_DAC_OVERRIDE))
        cr_skip_test("needs CAP_SYS_PTRACE and CAP_DAC_OVERRIDE");
    for (size_t i = 0; i < sizeof(needed) / sizeof(needed[0]); i++)
        had[i] = s_permitted(needed[i]);
    pid_t pid = fork();   /* for good: in a child */
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        cairn_error_t err;
        if (ghost_owner_restrict_caps(&err) < 0)
            _exit(1);
        if (s_permitted(CAP_DAC_OVERRIDE) || s_permitted(CAP_SYS_RAWIO) ||
            s_permitted(CAP_FOWNER) || s_permitted(CAP_WAKE_ALARM))
            _exit(2);
        for (size_t i = 0; i < sizeof(needed) / sizeof(needed[0]); i++)
            if (had[i] && !s_permitted(needed[i]))
                _exit(10 + (int)i);
        _exit(0);
    }
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "restrict_caps: exit %d (1 failed, 2 one to drop kept, 10+i needed[i] "
              "lost)", WEXITSTATUS(status));
}

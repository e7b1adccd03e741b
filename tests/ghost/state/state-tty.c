/* state-tty.c - the tty cases of ghost-state (state.h): terminals: ptys
 * (own or pairs inside the tree), controlling terminals, the foreground
 * group, and what is refused (bytes queued in a pty, a slave held
 * outside the tree, the console).
 * Each case sets one piece of state, and checks it after the restore, or
 * must be refused with its reason.
 *
 * A pty's index must come back (docs/ghost.md, "Terminals"): each case
 * compares ptsname() before and after.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "state.h"

/* A pair and what was set on it. */
typedef struct s_pty {
    int master, slave;         /* slave -1 if never opened */
    char name[64];             /* ptsname at setup */
    struct termios tio;        /* as set */
    struct winsize ws;         /* as set */
    pid_t child, grandchild;   /* tty-ctty: the session and its job */
    int fl_master, fl_slave;   /* F_GETFL at setup */
    char stat_child[64];       /* tty_nr and tpgid of each, at setup */
    char stat_grandchild[64];
} s_pty_t;

/* A new pair; with slave, the slave opened too (O_NOCTTY). */
static int s_open_pair(s_pty_t *p, bool slave, bool unlock)
{
    p->slave = -1;
    p->master = posix_openpt(O_RDWR | O_NOCTTY);
    if (p->master < 0 || grantpt(p->master) < 0 || (unlock && unlockpt(p->master) < 0))
        return state_fail("posix_openpt: %s", strerror(errno));
    if (ptsname_r(p->master, p->name, sizeof p->name) != 0)
        return state_fail("ptsname: %s", strerror(errno));
    if (slave && (p->slave = open(p->name, O_RDWR | O_NOCTTY)) < 0)
        return state_fail("open %s: %s", p->name, strerror(errno));
    return 0;
}

/* Reads from fd until want shows up in what came (2 s at most). */
static int s_read_until(int fd, const char *want)
{
    char buf[512];
    size_t n = 0;

    while (n < sizeof buf - 1) {
        struct pollfd pf = { fd, POLLIN, 0 };
        if (poll(&pf, 1, 2000) <= 0)
            break;
        ssize_t k = read(fd, buf + n, sizeof buf - 1 - n);
        if (k <= 0)
            break;
        n += (size_t)k;
        buf[n] = '\0';
        if (memmem(buf, n, want, strlen(want)))
            return 0;
    }
    buf[n] = '\0';
    return state_fail("waited for '%s', got %zu bytes '%s'", want, n, buf);
}

static int s_same_name(const s_pty_t *p)
{
    char now[64];

    if (ptsname_r(p->master, now, sizeof now) != 0)
        return state_fail("ptsname after: %s", strerror(errno));
    return strcmp(now, p->name) == 0 ? 0
           : state_fail("the pty was %s, is %s now", p->name, now);
}

/* ---- tty-pty-own: a pair of its own with settings, master O_NONBLOCK --- */

static int s_own_setup(void **ctx)
{
    s_pty_t *p = calloc(1, sizeof *p);

    if (!p || s_open_pair(p, true, true) < 0)
        return -1;
    if (tcgetattr(p->slave, &p->tio) < 0)
        return state_fail("tcgetattr: %s", strerror(errno));
    p->tio.c_lflag &= ~(tcflag_t)(ECHO | ECHOCTL);
    p->tio.c_oflag &= ~(tcflag_t)ONLCR;
    p->tio.c_iflag |= IXOFF;
    p->tio.c_cc[VINTR] = 5;
    p->tio.c_cc[VEOF] = 6;
    cfsetspeed(&p->tio, B9600);
    p->ws = (struct winsize){ 33, 101, 640, 480 };
    if (tcsetattr(p->slave, TCSANOW, &p->tio) < 0 || tcgetattr(p->slave, &p->tio) < 0 ||
        ioctl(p->master, TIOCSWINSZ, &p->ws) < 0 || fcntl(p->master, F_SETFL, O_NONBLOCK) < 0)
        return state_fail("setting the pty up: %s", strerror(errno));
    p->fl_master = fcntl(p->master, F_GETFL);
    p->fl_slave = fcntl(p->slave, F_GETFL);
    *ctx = p;
    return 0;
}

static int s_own_check(void *ctx)
{
    s_pty_t *p = ctx;
    struct termios t;
    struct winsize ws;
    char line[16] = "";

    if (s_same_name(p) < 0)
        return -1;
    if (fcntl(p->master, F_GETFL) != p->fl_master || fcntl(p->slave, F_GETFL) != p->fl_slave)
        return state_fail("status flags: master %#o slave %#o, were %#o %#o",
                          fcntl(p->master, F_GETFL), fcntl(p->slave, F_GETFL), p->fl_master,
                          p->fl_slave);
    if (tcgetattr(p->slave, &t) < 0 || ioctl(p->slave, TIOCGWINSZ, &ws) < 0)
        return state_fail("reading the pty: %s", strerror(errno));
    if (t.c_iflag != p->tio.c_iflag || t.c_oflag != p->tio.c_oflag ||
        t.c_cflag != p->tio.c_cflag || t.c_lflag != p->tio.c_lflag ||
        memcmp(t.c_cc, p->tio.c_cc, NCCS) != 0 || cfgetospeed(&t) != B9600)
        return state_fail("termios: iflag %o oflag %o cflag %o lflag %o intr %d, was "
                          "%o %o %o %o %d", t.c_iflag, t.c_oflag, t.c_cflag, t.c_lflag,
                          t.c_cc[VINTR], p->tio.c_iflag, p->tio.c_oflag, p->tio.c_cflag,
                          p->tio.c_lflag, p->tio.c_cc[VINTR]);
    if (memcmp(&ws, &p->ws, sizeof ws) != 0)
        return state_fail("window %ux%u (%ux%u px), was %ux%u", ws.ws_row, ws.ws_col,
                          ws.ws_xpixel, ws.ws_ypixel, p->ws.ws_row, p->ws.ws_col);
    /* the pair is still one: a line each way */
    if (write(p->master, "ping\n", 5) != 5)
        return state_fail("write to the master: %s", strerror(errno));
    struct pollfd pf = { p->slave, POLLIN, 0 };
    if (poll(&pf, 1, 2000) != 1 || read(p->slave, line, sizeof line - 1) != 5 ||
        strcmp(line, "ping\n") != 0)
        return state_fail("the slave read '%s', not 'ping'", line);
    if (write(p->slave, "pong\n", 5) != 5)
        return state_fail("write to the slave: %s", strerror(errno));
    return s_read_until(p->master, "pong\n");   /* ONLCR off: no \r */
}

/* ---- tty-pty-packet: packet mode --------------------------------------- */

static int s_packet_setup(void **ctx)
{
    s_pty_t *p = calloc(1, sizeof *p);
    int one = 1;

    if (!p || s_open_pair(p, true, true) < 0)
        return -1;
    if (ioctl(p->master, TIOCPKT, &one) < 0)
        return state_fail("TIOCPKT: %s", strerror(errno));
    *ctx = p;
    return 0;
}

static int s_packet_check(void *ctx)
{
    s_pty_t *p = ctx;
    int pkt = 0;
    char buf[16];

    if (s_same_name(p) < 0)
        return -1;
    if (ioctl(p->master, TIOCGPKT, &pkt) < 0 || !pkt)
        return state_fail("packet mode is off (%s)", strerror(errno));
    if (write(p->slave, "x", 1) != 1)
        return state_fail("write to the slave: %s", strerror(errno));
    struct pollfd pf = { p->master, POLLIN, 0 };
    ssize_t n = poll(&pf, 1, 2000) == 1 ? read(p->master, buf, sizeof buf) : -1;
    if (n != 2 || buf[0] != TIOCPKT_DATA || buf[1] != 'x')
        return state_fail("the master read %zd bytes, not a data packet 'x'", n);
    return 0;
}

/* ---- tty-pty-locked: a master whose slave was never unlocked ----------- */

static int s_locked_setup(void **ctx)
{
    s_pty_t *p = calloc(1, sizeof *p);

    if (!p || s_open_pair(p, false, false) < 0)
        return -1;
    *ctx = p;
    return 0;
}

static int s_locked_check(void *ctx)
{
    s_pty_t *p = ctx;
    int lck = 0;

    if (s_same_name(p) < 0)
        return -1;
    if (ioctl(p->master, TIOCGPTLCK, &lck) < 0 || !lck)
        return state_fail("the pty is not locked (%s)", strerror(errno));
    if (open(p->name, O_RDWR | O_NOCTTY) >= 0)
        return state_fail("its locked slave %s opened", p->name);
    return 0;
}

/* ---- tty-ctty: a session on a pty of the tree, a job in the foreground - */

/* Fields 7 and 8 of /proc/PID/stat (tty_nr, tpgid) as "tty_nr tpgid". */
static int s_ctty_of(pid_t pid, char *out, size_t size)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (fd >= 0)
        close(fd);
    if (n <= 0)
        return state_fail("%s: %s", path, strerror(errno));
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    int tty = 0, tpgid = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %d %d", &tty, &tpgid) != 2)
        return state_fail("%s does not parse", path);
    snprintf(out, size, "%d %d", tty, tpgid);
    return 0;
}

/* The job: echoes each line it reads from its terminal as "echo:LINE",
 * until its parent is gone. */
static void __attribute__((noreturn)) s_echo_job(pid_t parent)
{
    char buf[256];

    while (getppid() == parent) {
        struct pollfd pf = { 0, POLLIN, 0 };
        if (poll(&pf, 1, 200) != 1)
            continue;
        ssize_t n = read(0, buf, sizeof buf);
        if (n <= 0)
            _exit(0);
        if (write(1, "echo:", 5) != 5 || write(1, buf, (size_t)n) != n)
            _exit(1);
    }
    _exit(0);
}

/* The session leader: takes the slave as its controlling terminal
 * (opening it without O_NOCTTY), holds /dev/tty too, starts the job in a
 * group of its own in the foreground, and waits for its parent to go. */
static void __attribute__((noreturn)) s_session(const char *name, int ready)
{
    pid_t parent = getppid(), job;
    int t;

    /* only the terminal on 0-2, /dev/tty on 3, and the pipe to say ready */
    if (dup2(ready, 100) < 0)
        _exit(1);
    ready = 100;
    close_range(3, 99, 0);
    close_range(101, ~0u, 0);
    if (setsid() < 0 || (t = open(name, O_RDWR)) < 0 || dup2(t, 0) < 0 ||
        dup2(t, 1) < 0 || dup2(t, 2) < 0 || close(t) < 0 ||
        open("/dev/tty", O_RDWR) != 3)
        _exit(1);
    if ((job = fork()) == 0) {
        close(ready);
        setpgid(0, 0);
        s_echo_job(getppid());
    }
    if (job < 0 || setpgid(job, job) < 0 || tcsetpgrp(0, job) < 0 ||
        write(ready, &job, sizeof job) != sizeof job)
        _exit(1);
    close(ready);
    while (getppid() == parent)
        usleep(200000);
    _exit(0);
}

/* A new pair, and a child running session(slave name, ready fd) that
 * says its own child's pid on ready: both pids and their tty_nr tpgid in
 * *ret. */
static int s_start_session(s_pty_t **ret, void (*session)(const char *name, int ready))
{
    s_pty_t *p = calloc(1, sizeof *p);
    int sync[2];

    if (!p || s_open_pair(p, false, true) < 0 || pipe(sync) < 0)
        return -1;
    if ((p->child = fork()) == 0) {
        close(sync[0]);
        session(p->name, sync[1]);
    }
    close(sync[1]);
    if (p->child < 0 || read(sync[0], &p->grandchild, sizeof p->grandchild) !=
                            sizeof p->grandchild)
        return state_fail("the session did not start");
    close(sync[0]);
    *ret = p;
    return s_ctty_of(p->child, p->stat_child, sizeof p->stat_child) < 0 ||
                   s_ctty_of(p->grandchild, p->stat_grandchild, sizeof p->stat_grandchild) < 0
               ? -1 : 0;
}

static int s_ctty_setup(void **ctx)
{
    s_pty_t *p = NULL;

    if (s_start_session(&p, s_session) < 0)
        return -1;
    char want[64];
    snprintf(want, sizeof want, " %d", (int)p->grandchild);
    if (!strstr(p->stat_child, want) || strncmp(p->stat_child, "0 ", 2) == 0)
        return state_fail("setup: the session's terminal is '%s'", p->stat_child);
    *ctx = p;
    return 0;
}

static int s_ctty_check(void *ctx)
{
    s_pty_t *p = ctx;
    char now[64], link[64] = "", path[64];

    if (s_same_name(p) < 0)
        return -1;
    if (s_ctty_of(p->child, now, sizeof now) < 0)
        return -1;
    if (strcmp(now, p->stat_child) != 0)
        return state_fail("the session leader's tty_nr tpgid: '%s', was '%s'", now,
                          p->stat_child);
    if (s_ctty_of(p->grandchild, now, sizeof now) < 0)
        return -1;
    if (strcmp(now, p->stat_grandchild) != 0)
        return state_fail("the job's tty_nr tpgid: '%s', was '%s'", now,
                          p->stat_grandchild);
    snprintf(path, sizeof path, "/proc/%d/fd/3", (int)p->child);
    if (readlink(path, link, sizeof link - 1) < 0 || strcmp(link, "/dev/tty") != 0)
        return state_fail("the session leader's fd 3 is '%s', not /dev/tty", link);
    if (write(p->master, "hello\n", 6) != 6)
        return state_fail("write to the master: %s", strerror(errno));
    return s_read_until(p->master, "echo:hello");
}

/* ---- tty-ctty-late: a child forked before its session had a terminal --- */

/* The session leader forks first, then takes the slave as its terminal:
 * its child has none (tty_nr 0), and must have none after the restore,
 * where the leader takes its terminal back before it forks. */
static void __attribute__((noreturn)) s_late_session(const char *name, int ready)
{
    pid_t parent = getppid(), c;
    int t;

    if (setsid() < 0)
        _exit(1);
    if ((c = fork()) == 0) {
        pid_t leader = getppid();
        close(ready);
        while (getppid() == leader)
            usleep(200000);
        _exit(0);
    }
    if (c < 0 || (t = open(name, O_RDWR)) < 0 || write(ready, &c, sizeof c) != sizeof c)
        _exit(1);
    close(ready);
    while (getppid() == parent)
        usleep(200000);
    _exit(0);
}

static int s_late_setup(void **ctx)
{
    s_pty_t *p = NULL;

    if (s_start_session(&p, s_late_session) < 0)
        return -1;
    if (strncmp(p->stat_child, "0 ", 2) == 0 || strncmp(p->stat_grandchild, "0 ", 2) != 0)
        return state_fail("setup: tty_nr tpgid of the leader '%s', of its child '%s'",
                          p->stat_child, p->stat_grandchild);
    *ctx = p;
    return 0;
}

static int s_late_check(void *ctx)
{
    s_pty_t *p = ctx;
    char now[64];

    if (s_ctty_of(p->grandchild, now, sizeof now) < 0)
        return -1;
    if (strncmp(now, "0 ", 2) != 0)
        return state_fail("the child that had no terminal has one: '%s'", now);
    if (s_ctty_of(p->child, now, sizeof now) < 0)
        return -1;
    return strcmp(now, p->stat_child) == 0
           ? 0 : state_fail("the leader's tty_nr tpgid: '%s', was '%s'", now, p->stat_child);
}

/* ---- refused ----------------------------------------------------------- */

/* Input the program has not read: it cannot be taken without loss. */
static int s_queued_setup(void **ctx)
{
    s_pty_t *p = calloc(1, sizeof *p);

    if (!p || s_open_pair(p, true, true) < 0)
        return -1;
    if (write(p->master, "abc\n", 4) != 4)
        return state_fail("write: %s", strerror(errno));
    usleep(50000);   /* the line discipline takes it in */
    *ctx = p;
    return 0;
}

/* After the refusal the line is still there for the program. */
static int s_queued_check(void *ctx)
{
    s_pty_t *p = ctx;
    return s_read_until(p->slave, "abc\n");
}

/* The slave held by a process outside the tree (a daemon: forked twice,
 * its parent gone), which lets it go once this process is gone. */
static int s_outside_setup(void **ctx)
{
    s_pty_t *p = calloc(1, sizeof *p);
    int sync[2];
    pid_t self = getpid(), c;
    char one;

    if (!p || s_open_pair(p, false, true) < 0 || pipe(sync) < 0)
        return -1;
    if ((c = fork()) == 0) {
        if (fork() == 0) {
            int t = open(p->name, O_RDWR | O_NOCTTY);
            if (t < 0 || write(sync[1], "1", 1) != 1)
                _exit(1);
            while (kill(self, 0) == 0)
                usleep(200000);
            _exit(0);
        }
        _exit(0);
    }
    close(sync[1]);
    waitpid(c, NULL, 0);
    if (read(sync[0], &one, 1) != 1)
        return state_fail("the holder outside did not open %s", p->name);
    close(sync[0]);
    *ctx = p;
    return 0;
}

/* After the refusal the pair still works: a line from the master comes
 * back as its echo. */
static int s_outside_check(void *ctx)
{
    s_pty_t *p = ctx;
    if (write(p->master, "hi\n", 3) != 3)
        return state_fail("write to the master: %s", strerror(errno));
    return s_read_until(p->master, "hi");
}

static int s_console_setup(void **ctx)
{
    (void)ctx;
    if (open("/dev/console", O_RDWR | O_NOCTTY | O_NONBLOCK) < 0)
        return state_fail("/dev/console: %s", strerror(errno));
    return 0;
}

const state_case_t state_cases_tty[] = {
    { .name = "tty-pty-own", .setup = s_own_setup, .check = s_own_check },
    { .name = "tty-pty-packet", .setup = s_packet_setup, .check = s_packet_check },
    { .name = "tty-pty-locked", .setup = s_locked_setup, .check = s_locked_check },
    { .name = "tty-ctty", .setup = s_ctty_setup, .check = s_ctty_check, .flags = "tree" },
    { .name = "tty-ctty-late", .setup = s_late_setup, .check = s_late_check,
      .flags = "tree" },
    { .name = "tty-queued-input", .expect = STATE_REFUSE, .reason = "unread bytes",
      .setup = s_queued_setup, .check = s_queued_check },
    { .name = "tty-slave-outside", .expect = STATE_REFUSE,
      .reason = "slave is held outside the tree", .setup = s_outside_setup,
      .check = s_outside_check },
    { .name = "tty-console", .expect = STATE_REFUSE, .reason = "system console",
      .setup = s_console_setup },
    { .name = NULL },
};

/* tty.c - terminals, both directions: the fd kinds FD_PTY_MASTER,
 * FD_PTY_SLAVE, FD_TTY and FD_CTTY, and each process's controlling
 * terminal with its foreground group.
 *
 * A pseudo-terminal is a pair: a master (/dev/ptmx, one open file
 * description per pair) and a slave (/dev/pts/N, opened as often as
 * wanted). The tty's settings -- termios, window size -- belong to the
 * pair, so they are recorded on the master's record with its packet mode
 * and lock; a slave's record names the index only.
 *
 * Dump side. Each terminal fd is looked at through a copy of our own
 * (pidfd_getfd), never reopened: opening /proc/PID/fd/N of a master would
 * make a new pair. Bytes queued in either direction (FIONREAD on a master:
 * output the program wrote and its terminal has not read; on a slave:
 * input not read yet) cannot be read without taking them from the
 * program, and put back without echoing them again: such a terminal is
 * refused, and a moment later, once the reader has caught up, it moves.
 * A process's controlling terminal (tty_nr) comes back only if its
 * session does: a process in a session led from outside the tree (a job
 * of an interactive shell) is refused, since a session cannot be joined.
 * The console and serial lines are refused.
 *
 * Restore side. Before any process exists, every master of the image is
 * opened again at its index (/dev/ptmx hands out the lowest free index, so
 * the lower free ones are taken and given back on the way; a taken index
 * refuses the restore: ttyname() of the programs must stay right) with
 * its settings, as a helper every process inherits. A slave whose master
 * is in the image is opened from it (TIOCGPTPEER); any other terminal is
 * reopened by its path (the same terminal, still held by whoever held its
 * master: a terminal emulator, sshd, a pty driver). A session leader
 * takes its terminal back before it forks (children inherit it as they
 * did) and, once every group exists, gives the foreground back
 * (TIOCSPGRP); /dev/tty fds are reopened after that.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <unistd.h>

#include "ns.h"
#include "tree.h"
#include "tty.h"
#include "verify.h"
#include "util/cleanup.h"

#define S_PTS_MAJOR_FIRST 136   /* Unix98 pty slaves: majors 136-143 */
#define S_PTS_MAJOR_LAST 143
#define S_MAX_INDEX 4096        /* ptmx opens to reach an index, at most */
#define S_O_LARGEFILE 0100000   /* the kernel's (libc's is 0 on 64-bit) */

/* The index of /dev/pts/N from its device number; -1 if not a pts. */
static int s_pts_index(dev_t rdev)
{
    unsigned ma = major(rdev);
    return ma >= S_PTS_MAJOR_FIRST && ma <= S_PTS_MAJOR_LAST
               ? (int)((ma - S_PTS_MAJOR_FIRST) * 256 + minor(rdev)) : -1;
}

static bool s_is_ptmx(dev_t rdev)
{
    return major(rdev) == 5 && minor(rdev) == 2;
}

/* A virtual console /dev/ttyN (4:0-63). */
static bool s_is_vt(dev_t rdev)
{
    return major(rdev) == 4 && minor(rdev) < 64;
}

/* When the inode of st was made (its ctime: devpts sets it when it makes
 * /dev/pts/N, and nothing but chmod or chown changes it), in ns. */
static int64_t s_ctime_ns(const struct stat *st)
{
    return (int64_t)st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec;
}

/* ---- dump -------------------------------------------------------------- */

/* Bytes queued on a terminal fd of pid; the fd is looked at through a
 * copy of our own. */
static int s_queued(const files_probe_t *p, bool master, cairn_error_t *err)
{
    _cleanup_close_ int fd = ghost_anon_grab_fd(p->pid, p->fd, err);
    int n = 0;

    if (fd < 0)
        return fd;
    if (ioctl(fd, FIONREAD, &n) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "process %d fd %d: FIONREAD: %s",
                               (int)p->pid, p->fd, strerror(errno));
    if (n > 0)
        return cairn_error_set(err, -EAGAIN, CAIRN_UNSUPPORTED,
                               "process %d fd %d (%s) holds %d unread bytes of %s: "
                               "they cannot be read without taking them from the "
                               "program; try again once they are read",
                               (int)p->pid, p->fd, p->path, n,
                               master ? "the program's output" : "terminal input");
    return 0;
}

static int s_describe(const files_probe_t *p, Cairn__Ghost__Fd *f, cairn_error_t *err)
{
    dev_t rdev = p->st->st_rdev;
    int index = s_pts_index(rdev);

    if (major(rdev) == 5 && minor(rdev) == 1)
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "process %d fd %d is the system console %s: not "
                               "given to a restored process", (int)p->pid, p->fd,
                               p->path);
    if (s_is_vt(rdev)) {
        f->kind = CAIRN__GHOST__FD_KIND__FD_TTY;
        return 0;
    }
    if (!s_is_ptmx(rdev) && index < 0)
        return FILES_NOT_MINE;
    int r = s_queued(p, index < 0, err);
    if (r < 0)
        return r;
    f->kind = index < 0 ? CAIRN__GHOST__FD_KIND__FD_PTY_MASTER
                        : CAIRN__GHOST__FD_KIND__FD_PTY_SLAVE;
    return 0;
}

/* /dev/tty: an fd on whatever the controlling terminal is, which the
 * process must then have. */
static int s_describe_ctty(const files_probe_t *p, Cairn__Ghost__Fd *f,
                           cairn_error_t *err)
{
    dev_t rdev = p->st->st_rdev;
    proc_stat_t st;

    if (major(rdev) != 5 || minor(rdev) != 0)
        return FILES_NOT_MINE;
    int r = proc_read_stat(p->pid, &st, err);
    if (r < 0)
        return r;
    if (st.tty_nr == 0)
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "process %d fd %d is /dev/tty, but the process has no "
                               "controlling terminal now: it could not be opened again",
                               (int)p->pid, p->fd);
    f->kind = CAIRN__GHOST__FD_KIND__FD_CTTY;
    return 0;
}

/* The pair of a master or slave fd of the tree (ret's pid and fd are
 * set): its index into ret->ino, for s_check_tree. */
static bool s_tree_fd(const Cairn__Ghost__Fd *f, files_tree_fd_t *ret)
{
    bool master = f->kind == CAIRN__GHOST__FD_KIND__FD_PTY_MASTER;
    unsigned int n = 0;
    struct stat st;

    if (!master && f->kind != CAIRN__GHOST__FD_KIND__FD_PTY_SLAVE)
        return false;
    _cleanup_close_ int fd = ghost_anon_grab_fd(ret->pid, ret->fd, NULL);
    if (fd < 0 || (master ? ioctl(fd, TIOCGPTN, &n) : fstat(fd, &st)) < 0)
        return false;   /* closed meanwhile: the dump's own look decides */
    ret->ino = master ? n : (uint64_t)s_pts_index(st.st_rdev);
    return true;
}

static bool s_tree_has(const files_tree_fds_t *tfds, pid_t pid)
{
    for (size_t i = 0; i < tfds->n; i++)
        if (tfds->v[i].pid == pid)
            return true;
    return false;
}

/* The first fd of process pid (outside the tree) on the slave of a pair
 * whose master is in the tree: its number, with *ret_master the master's
 * entry in tfds; -1 if none. */
static int s_outside_slave(const files_tree_fds_t *tfds, pid_t pid,
                           const files_tree_fd_t **ret_master)
{
    int *fds = NULL, found = -1;
    size_t n = 0;

    if (proc_list_dir(pid, "fd", &fds, &n, NULL) < 0)
        return -1;   /* gone, or not ours to see */
    for (size_t i = 0; found < 0 && i < n; i++) {
        char name[32], link[64];
        snprintf(name, sizeof name, "fd/%d", fds[i]);
        if (proc_readlink(pid, name, link, sizeof link, NULL) < 0 ||
            strncmp(link, "/dev/pts/", 9) != 0)
            continue;
        for (size_t j = 0; found < 0 && j < tfds->n; j++)
            if (tfds->v[j].kind == CAIRN__GHOST__FD_KIND__FD_PTY_MASTER &&
                strtoull(link + 9, NULL, 10) == tfds->v[j].ino)
                found = fds[i], *ret_master = &tfds->v[j];
    }
    free(fds);
    return found;
}

/* A pair whose master is in the tree but whose slave is held by a process
 * outside it would come back without that holder (its fd stays on the
 * old pair, hung up): refused, as a pipe's writer without its reader is.
 * Every process is looked at, but only when the tree holds a master. */
static int s_check_tree(const files_tree_fds_t *tfds, ghost_reasons_t *rs,
                        cairn_error_t *err)
{
    bool any = false;
    for (size_t i = 0; i < tfds->n && !any; i++)
        any = tfds->v[i].kind == CAIRN__GHOST__FD_KIND__FD_PTY_MASTER;
    DIR *d = any ? opendir("/proc") : NULL;
    struct dirent *e;
    int r = 0;

    while (r == 0 && d && (e = readdir(d))) {
        pid_t pid = (pid_t)strtol(e->d_name, NULL, 10);
        const files_tree_fd_t *m = NULL;
        int fd = pid > 0 && pid != getpid() && !s_tree_has(tfds, pid)
                     ? s_outside_slave(tfds, pid, &m) : -1;
        if (fd >= 0)
            r = ghost_reason_add(
                rs, cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                                    "process %d fd %d is the master of /dev/pts/%llu, whose "
                                    "slave is held outside the tree (process %d fd %d): it "
                                    "could not be reconnected at restart", (int)m->pid,
                                    m->fd, (unsigned long long)m->ino, (int)pid, fd),
                err, m->pid, "fd %d", m->fd);
    }
    if (d)
        closedir(d);
    return r;
}

/* The pty record of f (allocated: s_release frees it). */
typedef struct s_pty_rec {
    Cairn__Ghost__Pty pty;
    Cairn__Ghost__Termios tio;
    uint8_t cc[NCCS];
} s_pty_rec_t;

/* The pair's state, read through our copy fd of the master. */
static int s_read_master(int fd, s_pty_rec_t *r)
{
    struct termios tio;
    struct winsize ws;
    unsigned int n;
    int pkt = 0, lck = 0;

    if (ioctl(fd, TIOCGPTN, &n) < 0 || tcgetattr(fd, &tio) < 0 ||
        ioctl(fd, TIOCGWINSZ, &ws) < 0 || ioctl(fd, TIOCGPKT, &pkt) < 0 ||
        ioctl(fd, TIOCGPTLCK, &lck) < 0)
        return -errno;
    r->pty.index = n;
    r->tio.iflag = tio.c_iflag, r->tio.oflag = tio.c_oflag;
    r->tio.cflag = tio.c_cflag, r->tio.lflag = tio.c_lflag;
    r->tio.line = tio.c_line;
    memcpy(r->cc, tio.c_cc, NCCS);
    r->tio.cc = (ProtobufCBinaryData){ NCCS, r->cc };
    r->tio.ispeed = (uint32_t)cfgetispeed(&tio);
    r->tio.ospeed = (uint32_t)cfgetospeed(&tio);
    r->pty.termios = &r->tio;
    r->pty.ws_row = ws.ws_row, r->pty.ws_col = ws.ws_col;
    r->pty.ws_xpixel = ws.ws_xpixel, r->pty.ws_ypixel = ws.ws_ypixel;
    r->pty.packet = pkt != 0;
    r->pty.locked = lck != 0;
    return 0;
}

static int s_record(dump_ctx_t *c, pid_t pid, Cairn__Ghost__Fd *f, cairn_error_t *err)
{
    bool master = f->kind == CAIRN__GHOST__FD_KIND__FD_PTY_MASTER;
    char full[64];
    struct stat st;

    if (!master && f->kind != CAIRN__GHOST__FD_KIND__FD_PTY_SLAVE)
        return 0;
    s_pty_rec_t *r = calloc(1, sizeof(*r));
    if (!r)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    cairn__ghost__pty__init(&r->pty);
    cairn__ghost__termios__init(&r->tio);
    f->pty = &r->pty;
    if (!master) {
        snprintf(full, sizeof(full), "/proc/%d/fd/%d", (int)pid, f->fd);
        if (stat(full, &st) < 0)
            return cairn_error_set(err, -errno, CAIRN_SYSTEM, "cannot stat %s: %s", full,
                                   strerror(errno));
        r->pty.index = (uint32_t)s_pts_index(st.st_rdev);
        r->pty.ctime_ns = s_ctime_ns(&st);
        return 0;
    }
    _cleanup_close_ int fd = ghost_anon_grab_fd(pid, f->fd, err);
    if (fd < 0)
        return fd;
    int e = s_read_master(fd, r);
    return e < 0 ? cairn_error_set(err, e, CAIRN_SYSTEM,
                                   "process %d fd %d: reading the pty's state: %s",
                                   (int)pid, f->fd, strerror(-e))
                 : 0;
}

static void s_release(Cairn__Ghost__Fd *f)
{
    free(f->pty);   /* s_pty_rec_t starts with it */
    f->pty = NULL;
}

/* Whether pid is root or below it. */
static bool s_in_tree(pid_t pid, pid_t root)
{
    for (int hops = 0; pid > 1 && hops < 4096; hops++) {
        proc_stat_t st;
        if (pid == root)
            return true;
        if (proc_read_stat(pid, &st, NULL) < 0)
            return false;
        pid = st.ppid;
    }
    return pid == root;
}

/* makedev of a stat tty_nr. */
static dev_t s_tty_nr_dev(uint32_t nr)
{
    return makedev((nr >> 8) & 0xfff, (nr & 0xff) | ((nr >> 12) & 0xfff00));
}

int tty_check_process(pid_t pid, pid_t root, const proc_stat_t *st, ghost_reasons_t *rs,
                      cairn_error_t *err)
{
    dev_t d = s_tty_nr_dev(st->tty_nr);

    if (st->tty_nr == 0)
        return 0;
    if (s_pts_index(d) < 0 && !s_is_vt(d))
        return ghost_reason_add(
            rs, cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                                "process %d: its controlling terminal (%u:%u) is not a "
                                "pseudo-terminal or a virtual console", (int)pid,
                                major(d), minor(d)),
            err, pid, "controlling terminal");
    if (st->sid != pid && !s_in_tree(st->sid, root))
        return ghost_reason_add(
            rs, cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                                "process %d: its controlling terminal %u:%u belongs to "
                                "session %d, whose leader is outside the tree (a job "
                                "of an interactive shell?): a session cannot be joined "
                                "at restart; checkpoint the session leader's tree",
                                (int)pid, major(d), minor(d), (int)st->sid),
            err, pid, "controlling terminal");
    return 0;
}

void tty_collect_process(const dump_tree_t *tree, const proc_stat_t *st,
                         Cairn__Ghost__Process *pr)
{
    dev_t d = s_tty_nr_dev(st->tty_nr);
    char path[32];
    struct stat ts;

    pr->ctty_rdev = st->tty_nr ? (uint64_t)d : 0;
    pr->ctty_fg_pgrp = st->tty_nr && st->tpgid > 0
                           ? (uint32_t)ns_dump_vpid(tree, st->tpgid) : 0;
    snprintf(path, sizeof path, "/dev/pts/%d", s_pts_index(d));
    if (st->tty_nr && s_pts_index(d) >= 0 && stat(path, &ts) == 0 && ts.st_rdev == d)
        pr->ctty_ctime_ns = s_ctime_ns(&ts);
}

/* ---- restore ----------------------------------------------------------- */

/* One pair of the image, opened again by the caller. */
typedef struct s_pair {
    uint32_t index;        /* its index, as the image's */
    int master;            /* helper fd on the master */
} s_pair_t;

/* Every pair whose master is in the image. */
struct tty_rst {
    s_pair_t *v;
    size_t n;
};

void tty_rst_free(rst_tree_t *t)
{
    if (t->tty)
        free(t->tty->v);
    free(t->tty);
    t->tty = NULL;
}

static const s_pair_t *s_find_pair(const rst_tree_t *t, uint32_t index)
{
    for (size_t i = 0; t->tty && i < t->tty->n; i++)
        if (t->tty->v[i].index == index)
            return &t->tty->v[i];
    return NULL;
}

static int s_check(const Cairn__Ghost__Fd *f, cairn_error_t *err)
{
    bool master = f->kind == CAIRN__GHOST__FD_KIND__FD_PTY_MASTER;
    bool pty = master || f->kind == CAIRN__GHOST__FD_KIND__FD_PTY_SLAVE;

    if (pty && (!f->pty || (master && !f->shares && !f->pty->termios) ||
                f->pty->index >= S_MAX_INDEX))
        return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                               "bad image: fd %d: a pty without its state", f->fd);
    if (master && f->pty->termios && f->pty->termios->cc.len > NCCS)
        return cairn_error_set(err, -EBADMSG, CAIRN_INVALID_ARGUMENT,
                               "bad image: fd %d: %zu control characters", f->fd,
                               f->pty->termios->cc.len);
    return 0;
}

/* Whether the image holds an fd of kind (a master or a slave) on pair
 * index. */
static bool s_image_has(const rst_image_t *im, Cairn__Ghost__FdKind kind, uint32_t index)
{
    for (size_t i = 0; i < im->n_procs; i++)
        for (size_t j = 0; j < im->procs[i].fds.n; j++) {
            const Cairn__Ghost__Fd *f = im->procs[i].fds.v[j]->fd;
            if (f->kind == kind && f->pty->index == index)
                return true;
        }
    return false;
}

static bool s_image_master(const rst_image_t *im, uint32_t index)
{
    return s_image_has(im, CAIRN__GHOST__FD_KIND__FD_PTY_MASTER, index);
}

/* /dev/ptmx opened until it hands out index (the lowest free one comes
 * first: those below are held and given back): the master, or -errno. */
static int s_open_index(uint32_t index, cairn_error_t *err)
{
    int held[64], nh = 0, got = -1, e = 0;

    for (uint32_t k = 0; k <= index && got < 0 && e == 0; k++) {
        unsigned int n;
        int fd = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (fd < 0 || ioctl(fd, TIOCGPTN, &n) < 0)
            e = errno;
        else if (n == index)
            got = fd, fd = -1;
        else if (n > index)
            e = EEXIST;
        else if (nh == (int)(sizeof held / sizeof held[0]))
            e = EMFILE;   /* over 64 free indexes below: let go, refuse */
        else
            held[nh++] = fd, fd = -1;
        if (fd >= 0)
            close(fd);
    }
    while (nh > 0)
        close(held[--nh]);
    if (got >= 0)
        return got;
    if (e == EEXIST)
        return cairn_error_set(err, -EEXIST, CAIRN_FAILED_PRECONDITION,
                               "pty %u cannot be made again: /dev/pts/%u is taken by "
                               "another terminal (ttyname() of its programs must stay "
                               "right)", index, index);
    return cairn_error_set(err, -e, CAIRN_FAILED_PRECONDITION,
                           "pty %u cannot be made again: %s", index, strerror(e));
}

/* The pair's settings as the image recorded them, on its new master. */
static int s_apply(int m, const Cairn__Ghost__Fd *f, bool unlock, cairn_error_t *err)
{
    const Cairn__Ghost__Pty *p = f->pty;
    const Cairn__Ghost__Termios *t = p->termios;
    struct termios tio = { 0 };
    struct winsize ws = { (unsigned short)p->ws_row, (unsigned short)p->ws_col,
                          (unsigned short)p->ws_xpixel, (unsigned short)p->ws_ypixel };
    int pkt = p->packet, lck = unlock ? 0 : p->locked;

    tio.c_iflag = t->iflag, tio.c_oflag = t->oflag, tio.c_cflag = t->cflag;
    tio.c_lflag = t->lflag, tio.c_line = (cc_t)t->line;
    memcpy(tio.c_cc, t->cc.data, t->cc.len);
    if (cfsetispeed(&tio, t->ispeed) < 0 || cfsetospeed(&tio, t->ospeed) < 0 ||
        tcsetattr(m, TCSANOW, &tio) < 0 || ioctl(m, TIOCSWINSZ, &ws) < 0 ||
        ioctl(m, TIOCPKT, &pkt) < 0 || ioctl(m, TIOCSPTLCK, &lck) < 0 ||
        fcntl(m, F_SETFL, f->flags & (O_NONBLOCK | O_APPEND)) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "pty %u: setting it up again: %s",
                               p->index, strerror(errno));
    return 0;
}

/* One pair for master record f: at its index, with its settings. */
static int s_make_pair(rst_tree_t *t, uint32_t pid, const Cairn__Ghost__Fd *f,
                       cairn_error_t *err)
{
    bool slave = s_image_has(t->im, CAIRN__GHOST__FD_KIND__FD_PTY_SLAVE, f->pty->index);

    if (f->pty->locked && slave)
        return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                               "process %u fd %d: pty %u was locked again after its "
                               "slave was opened: its slave could not be opened again",
                               pid, f->fd, f->pty->index);
    int m = s_open_index(f->pty->index, err);
    if (m < 0)
        return m;
    int r = s_apply(m, f, slave, err);
    if (r < 0) {
        close(m);
        return r;
    }
    m = rst_helper(t, m, err);
    if (m < 0)
        return m;
    t->tty->v[t->tty->n++] = (s_pair_t){ f->pty->index, m };
    return 0;
}

/* The process holding a session leader's terminal must not lose its
 * foreground group: the group must be one of the image's. */
static int s_check_fg(const rst_image_t *im, cairn_error_t *err)
{
    for (size_t i = 0; i < im->n_procs; i++) {
        const Cairn__Ghost__Process *p = im->procs[i].process->process;
        int l = p->ctty_fg_pgrp ? tree_index_of(im, p->ctty_fg_pgrp) : 0;
        if (l < 0 || (p->ctty_fg_pgrp &&
                      im->procs[l].process->process->pgid != p->ctty_fg_pgrp))
            return cairn_error_set(err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                                   "process %u: the foreground group %u of its terminal "
                                   "is not led by a process of the image", p->pid,
                                   p->ctty_fg_pgrp);
    }
    return 0;
}

/* Every pair whose master is in the image, before any process exists. */
static int s_plan(rst_tree_t *t, cairn_error_t *err)
{
    size_t n = rst_n_fds(t->im);
    int ret = s_check_fg(t->im, err);

    t->tty = calloc(1, sizeof *t->tty);
    if (t->tty)
        t->tty->v = calloc(n + 1, sizeof *t->tty->v);
    if (!t->tty || !t->tty->v)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    for (size_t i = 0; i < t->im->n_procs && ret == 0; i++) {
        const rst_proc_t *pr = &t->im->procs[i];
        for (size_t j = 0; j < pr->fds.n && ret == 0; j++) {
            const Cairn__Ghost__Fd *f = pr->fds.v[j]->fd;
            if (f->kind == CAIRN__GHOST__FD_KIND__FD_PTY_MASTER && !f->shares &&
                !s_find_pair(t, f->pty->index))
                ret = s_make_pair(t, pr->process->process->pid, f, err);
        }
    }
    return ret;
}

/* Whether fd, opened by the path /dev/pts/index, is the terminal that
 * was there at dump (made at ctime_ns; 0: not known), not another one
 * given the same name since -- or one on another node. what: the fd
 * number the message names, -1 for none. */
static int s_same_terminal(int fd, int what, uint32_t index, int64_t ctime_ns,
                           cairn_error_t *err)
{
    struct stat st;

    if (fstat(fd, &st) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "fstat of /dev/pts/%u: %s", index,
                               strerror(errno));
    char fd_no[24] = "";
    long long later = (long long)((s_ctime_ns(&st) - ctime_ns) / 1000000000);
    if (what >= 0)
        snprintf(fd_no, sizeof fd_no, "fd %d: ", what);
    if (ctime_ns && s_ctime_ns(&st) != ctime_ns)
        return cairn_error_set(err, -ENXIO, CAIRN_FAILED_PRECONDITION,
                               "%sits terminal /dev/pts/%u is gone (the one of that name "
                               "now is another, made %lld s later)", fd_no, index, later);
    return 0;
}

/* A new slave of pair p: TIOCGPTPEER, with the status flags the record
 * has (O_NOCTTY added), close-on-exec. The ioctl keeps what it is given
 * in the file's flags as they are, where open(2) adds O_LARGEFILE itself
 * and keeps O_CLOEXEC out of them: F_GETFL must say what it said. */
static int s_peer(const s_pair_t *p, int flags, cairn_error_t *err)
{
    int fd = ioctl(p->master, TIOCGPTPEER,
                   (flags & (O_ACCMODE | O_NONBLOCK | O_APPEND | S_O_LARGEFILE)) | O_NOCTTY);
    if (fd < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return cairn_error_set(err, -e, CAIRN_SYSTEM, "opening the slave of pty %u again: %s",
                               p->index, strerror(e));
    }
    return fd;
}

static int s_open(const rst_tree_t *t, const Cairn__Ghost__Fd *f, cairn_error_t *err)
{
    char path[32];
    const s_pair_t *p = f->pty ? s_find_pair(t, f->pty->index) : NULL;

    switch (f->kind) {
    case CAIRN__GHOST__FD_KIND__FD_PTY_MASTER: {
        int fd = p ? fcntl(p->master, F_DUPFD_CLOEXEC, 0) : -1;
        if (fd < 0)
            return cairn_error_set(err, p ? -errno : -ENOENT, CAIRN_INTERNAL,
                                   "fd %d: pty %u was not made again", f->fd,
                                   f->pty->index);
        return fd;
    }
    case CAIRN__GHOST__FD_KIND__FD_PTY_SLAVE: {
        if (p)
            return s_peer(p, f->flags, err);
        snprintf(path, sizeof path, "/dev/pts/%u", f->pty->index);
        _cleanup_close_ int fd = files_reopen(f, path, 0, false, err);   /* master outside */
        int r = fd < 0 ? fd : s_same_terminal(fd, f->fd, f->pty->index, f->pty->ctime_ns, err);
        return r < 0 ? r : TAKE_FD(fd);
    }
    default:
        return files_reopen(f, f->path, 0, false, err);
    }
}

/* An fd on the terminal rdev for a moment (O_NOCTTY): from its master if
 * the image has it, else by its path, if it is still the one made at
 * ctime_ns. -errno on failure. */
static int s_open_terminal(const rst_tree_t *t, dev_t rdev, int64_t ctime_ns)
{
    char path[32];
    int index = s_pts_index(rdev);
    const s_pair_t *p = index >= 0 ? s_find_pair(t, (uint32_t)index) : NULL;

    if (p) {
        int fd = ioctl(p->master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
        return fd < 0 ? -errno : fd;
    }
    if (index >= 0)
        snprintf(path, sizeof path, "/dev/pts/%d", index);
    else
        snprintf(path, sizeof path, "/dev/tty%u", minor(rdev));
    int fd = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return -errno;
    if (index >= 0 && s_same_terminal(fd, -1, (uint32_t)index, ctime_ns, NULL) < 0) {
        close(fd);
        return -ENXIO;
    }
    return fd;
}

/* The terminal outside the image at /dev/pts/index is still the one made
 * at ctime_ns: 0, or -errno with err set. */
static int s_check_outside(uint32_t index, int64_t ctime_ns, cairn_error_t *err)
{
    char path[32];

    snprintf(path, sizeof path, "/dev/pts/%u", index);
    _cleanup_close_ int fd = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return cairn_error_set(err, -errno, CAIRN_FAILED_PRECONDITION,
                               "its terminal %s (held outside the image) cannot be "
                               "opened: %s", path, strerror(errno));
    return s_same_terminal(fd, -1, index, ctime_ns, err);
}

int tty_check_here(const rst_image_t *im, const rst_proc_t *pr, ghost_reasons_t *rs,
                   cairn_error_t *err)
{
    const Cairn__Ghost__Process *p = pr->process->process;
    int index = s_pts_index((dev_t)p->ctty_rdev), r = 0;

    for (size_t i = 0; r == 0 && i < pr->fds.n; i++) {
        const Cairn__Ghost__Fd *f = pr->fds.v[i]->fd;
        if (f->kind == CAIRN__GHOST__FD_KIND__FD_PTY_SLAVE && !f->shares &&
            !s_image_master(im, f->pty->index))
            r = ghost_reason_add(rs, s_check_outside(f->pty->index, f->pty->ctime_ns, err),
                                 err, (pid_t)p->pid, "fd %d", f->fd);
    }
    if (r == 0 && p->sid == p->pid && index >= 0 && !s_image_master(im, (uint32_t)index))
        r = ghost_reason_add(rs, s_check_outside((uint32_t)index, p->ctty_ctime_ns, err),
                             err, (pid_t)p->pid, "controlling terminal");
    return r;
}

void tty_child_ctty(const rst_tree_t *t, size_t i)
{
    const Cairn__Ghost__Process *p = t->im->procs[i].process->process;
    const rst_plan_t *pl = &t->plans[i];
    dev_t d = (dev_t)p->ctty_rdev;

    if (p->sid != p->pid) {
        int fd = p->ctty_rdev ? -1 : open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (fd >= 0 && ioctl(fd, TIOCNOTTY) < 0)   /* inherited, had none */
            rst_child_fail(pl, errno, 0, "TIOCNOTTY: %s", strerror(errno));
        if (fd >= 0)
            close(fd);
        return;
    }
    if (!d)
        return;
    int fd = s_open_terminal(t, d, p->ctty_ctime_ns);
    if (fd < 0)
        rst_child_fail(pl, -fd, 0, "its controlling terminal %u:%u: %s", major(d), minor(d),
                       fd == -ENXIO ? "gone, or not the terminal it had" : strerror(-fd));
    if (ioctl(fd, TIOCSCTTY, 0) < 0)
        rst_child_fail(pl, errno, 0, "taking its controlling terminal %u:%u back (another "
                       "session has it?): %s", major(d), minor(d), strerror(errno));
    close(fd);
}

void tty_child_foreground(const rst_tree_t *t, size_t i)
{
    const Cairn__Ghost__Process *p = t->im->procs[i].process->process;
    int l = p->ctty_fg_pgrp ? tree_index_of(t->im, p->ctty_fg_pgrp) : -1;

    if (p->sid != p->pid || !p->ctty_rdev || l < 0)
        return;
    pid_t pg = (pid_t)t->pids[l];
    int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0 || ioctl(fd, TIOCSPGRP, &pg) < 0)
        rst_child_fail(&t->plans[i], errno, 0, "giving its terminal's foreground back "
                       "to group %d: %s", (int)pg, strerror(errno));
    close(fd);
}

/* ---- verify ------------------------------------------------------------ */

/* What fd f of the restored process pid should be, against /proc and a
 * copy of it: the path, and for a master its pair's index and settings. */
static int s_verify_fd(const rst_proc_t *pr, pid_t pid, const Cairn__Ghost__Fd *f,
                       ghost_verify_t *v, cairn_error_t *err)
{
    char name[32], link[64] = "", want[64], got[192], what[48];
    bool master = f->kind == CAIRN__GHOST__FD_KIND__FD_PTY_MASTER;

    snprintf(name, sizeof name, "fd/%d", f->fd);
    snprintf(what, sizeof what, "fd %d terminal", f->fd);
    int r = proc_readlink(pid, name, link, sizeof link, err);
    if (r < 0)
        return r;
    if (f->kind == CAIRN__GHOST__FD_KIND__FD_PTY_SLAVE)
        snprintf(want, sizeof want, "/dev/pts/%u", f->pty->index);
    else if (f->kind == CAIRN__GHOST__FD_KIND__FD_CTTY)
        snprintf(want, sizeof want, "/dev/tty");
    else if (!master)
        snprintf(want, sizeof want, "%s", f->path);
    if (!master && strcmp(link, want) != 0)
        ghost_verify_differ(v, pr, false, what, want, link);
    if (!master || f->shares)
        return 0;
    _cleanup_close_ int fd = ghost_anon_grab_fd(pid, f->fd, err);
    if (fd < 0)
        return fd;
    s_pty_rec_t now = { 0 };
    if ((r = s_read_master(fd, &now)) < 0)
        return cairn_error_set(err, r, CAIRN_SYSTEM, "process %d fd %d: %s", (int)pid,
                               f->fd, strerror(-r));
    const Cairn__Ghost__Pty *a = f->pty, *b = &now.pty;
    const Cairn__Ghost__Termios *ta = a->termios, *tb = b->termios;
    snprintf(want, sizeof want, "pty %u %ux%u pkt %d lock %d", a->index, a->ws_row,
             a->ws_col, a->packet, a->locked);
    snprintf(got, sizeof got, "pty %u %ux%u pkt %d lock %d", b->index, b->ws_row,
             b->ws_col, b->packet, b->locked);
    if (strcmp(want, got) != 0 || a->ws_xpixel != b->ws_xpixel || a->ws_ypixel != b->ws_ypixel)
        ghost_verify_differ(v, pr, false, what, want, got);
    if (ta->iflag != tb->iflag || ta->oflag != tb->oflag || ta->cflag != tb->cflag ||
        ta->lflag != tb->lflag || ta->line != tb->line || ta->cc.len > NCCS ||
        memcmp(ta->cc.data, tb->cc.data, ta->cc.len) != 0) {
        snprintf(want, sizeof want, "termios %o %o %o %o", ta->iflag, ta->oflag, ta->cflag,
                 ta->lflag);
        snprintf(got, sizeof got, "termios %o %o %o %o", tb->iflag, tb->oflag, tb->cflag,
                 tb->lflag);
        ghost_verify_differ(v, pr, false, what, want, got);
    }
    return 0;
}

int tty_verify(const rst_image_t *im, const rst_proc_t *pr, pid_t pid, ghost_verify_t *v,
               cairn_error_t *err)
{
    const Cairn__Ghost__Process *p = pr->process->process;
    proc_stat_t st;
    char want[64], got[64];
    int r = proc_read_stat(pid, &st, err);

    if (r < 0)
        return r;
    dev_t now = st.tty_nr ? s_tty_nr_dev(st.tty_nr) : 0;
    if ((uint64_t)now != p->ctty_rdev) {
        snprintf(want, sizeof want, "%u:%u", major((dev_t)p->ctty_rdev),
                 minor((dev_t)p->ctty_rdev));
        snprintf(got, sizeof got, "%u:%u", major(now), minor(now));
        ghost_verify_differ(v, pr, false, "controlling terminal", want, got);
    }
    /* the foreground group by its pid: comparable when the pids are kept */
    if (p->ctty_rdev && p->ctty_fg_pgrp && (uint32_t)pid == p->pid &&
        (uint32_t)st.tpgid != p->ctty_fg_pgrp) {
        snprintf(want, sizeof want, "%u", p->ctty_fg_pgrp);
        snprintf(got, sizeof got, "%d", (int)st.tpgid);
        ghost_verify_differ(v, pr, false, "terminal foreground group", want, got);
    }
    for (size_t i = 0; r == 0 && i < pr->fds.n; i++) {
        const Cairn__Ghost__Fd *f = pr->fds.v[i]->fd;
        if (f->kind >= CAIRN__GHOST__FD_KIND__FD_PTY_MASTER &&
            f->kind <= CAIRN__GHOST__FD_KIND__FD_CTTY)
            r = s_verify_fd(pr, pid, f, v, err);
    }
    return r;
}

static int s_open_ctty(const rst_tree_t *t, const Cairn__Ghost__Fd *f, cairn_error_t *err)
{
    return files_reopen(f, "/dev/tty", 0, false, err);
}

const files_kind_t tty_kind = {
    .name = "terminal",
    .first = CAIRN__GHOST__FD_KIND__FD_PTY_MASTER,
    .last = CAIRN__GHOST__FD_KIND__FD_TTY,
    .mode = S_IFCHR,
    .by_description = true,
    .describe = s_describe,
    .tree_fd = s_tree_fd,
    .check_tree = s_check_tree,
    .record = s_record,
    .release = s_release,
    .check = s_check,
    .plan = s_plan,
    .open = s_open,
};

/* /dev/tty opens the controlling terminal of whoever opens it, which only
 * the restored process itself has: each fd is opened in its process, once
 * its session has its terminal back (tty_child_ctty), so fds that shared
 * one description (dup, fork) get one each, with the same flags. */
const files_kind_t tty_ctty_kind = {
    .name = "controlling terminal",
    .first = CAIRN__GHOST__FD_KIND__FD_CTTY,
    .last = CAIRN__GHOST__FD_KIND__FD_CTTY,
    .mode = S_IFCHR,
    .describe = s_describe_ctty,
    .open = s_open_ctty,
};

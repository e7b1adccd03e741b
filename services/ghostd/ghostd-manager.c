/* ghostd-manager.c - ghostd's handlers, helpers and lifecycle.
 *
 * Design. A request becomes a job in one of GHOSTD_MAX_HELPERS slots:
 *
 *   handler: validate (pid, dir, image) -> busy? -> mkdir -p DIR (checkpoint)
 *            -> posix_spawn the helper (own process group, signals reset,
 *               stdin /dev/null, stdout a pipe, other fds closed)
 *            -> defer the reply                                 [running]
 *   loop:    stdout readable -> append to the job's buffer (EOF: unwatch)
 *            poll timer (every S_POLL_MS) -> waitpid(WNOHANG); when reaped,
 *               drain the pipe, map (exit status, JSON line) -> reply, free
 *            deadline timer -> SIGKILL the helper's group, answer TIMEOUT;
 *               the slot stays until the poll timer reaps it     [answered]
 *   stop:    SIGKILL every helper's group, reap it, answer UNAVAILABLE.
 *
 * A run (jobs.c) takes the same path through ghostd_helper_request, kind
 * GHOSTD_LAUNCH (ghost-init, with the job's environment): its success
 * line goes to ghostd_jobs_launched, which answers, and a launch that
 * did not succeed to ghostd_jobs_launch_failed when the slot is freed.
 * The job requests themselves (run, ps, signal, wait) are jobs.c's.
 *
 * Who asks. Root may act on anything; a user who is not root (ipc: the
 * kernel's SO_PEERCRED; a member node's daemon over CURVE: the uid it
 * vouches for) only on what is theirs. The handler checks whose the
 * process is (s_check_process_owner) and what a user's job may touch: no
 * directory of theirs is made here (the helper makes it with their file
 * rights), a default one goes under <spool>/uid-N, and leftovers are
 * removed only inside a directory they own. The helper, told --as
 * UID:GID, does the rest (engine/owner.h).
 *
 * Polling waitpid, not SIGCHLD: the skeleton owns the signals. Reaping does
 * not wait for EOF either, since a process the helper made (a restored
 * tree) may hold a copy of the pipe. The helpers' contract (one JSON line on
 * stdout; exit 0 ok, 1 error, 2 refused, 3 pid taken) is in docs/ghost.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "cairn-config.h"
#include "engine/place.h"
#include "ghostd.h"
#include "migrate.h"
#include "place-hold.h"
#include "restart.h"
#include "jobs.h"
#include "log.h"
#include "metrics.h"
#include "proc/proc.h"
#include "util/cleanup.h"
#include "util/clock.h"
#include "util/fileio.h"

#if CAIRN_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

extern char **environ;

#define S_POLL_MS 10   /* waitpid poll period of a running job */

/* ---- small helpers ----------------------------------------------------- */

static const char *s_helper_name(ghostd_kind_t kind)
{
    static const char *const names[] = {
        [GHOSTD_CHECKPOINT] = "ghost-dump",
        [GHOSTD_RESTART] = "ghost-restore",
        [GHOSTD_LAUNCH] = "ghost-init",
    };
    return names[kind];
}

/* The request a helper answers, for logs. */
static const char *s_request_name(ghostd_kind_t kind)
{
    static const char *const names[] = {
        [GHOSTD_CHECKPOINT] = "checkpoint",
        [GHOSTD_RESTART] = "restart",
        [GHOSTD_LAUNCH] = "run",
    };
    return names[kind];
}

/* dir/name (or dir/sub/name) when it fits and is an executable file. */
static bool s_try_helper(char *out, size_t size, const char *dir,
                         const char *sub, const char *name)
{
    struct stat st;
    int n = snprintf(out, size, "%s%s/%s", dir, sub, name);

    return n > 0 && (size_t)n < size && stat(out, &st) == 0 &&
           S_ISREG(st.st_mode) && access(out, X_OK) == 0;
}

/* The helper program: <dir of our exe>/engine/NAME (build tree), else
 * <dir>/../libexec/cairn/NAME (installed), else $CAIRN_LIBEXEC/NAME.
 * -ENOENT with the places tried in err. */
static int s_helper_path(const char *name, char *out, size_t size,
                         cairn_error_t *err)
{
    char self[PATH_MAX], *slash;
    const char *env = getenv("CAIRN_LIBEXEC");
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);

    if (n <= 0)
        return cairn_error_set(err, -errno, CAIRN_INTERNAL,
                               "readlink /proc/self/exe: %s", strerror(errno));
    self[n] = '\0';
    slash = strrchr(self, '/');
    if (slash)
        *slash = '\0';
    if (s_try_helper(out, size, self, "/engine", name) ||
        s_try_helper(out, size, self, "/../libexec/cairn", name) ||
        (env && *env && s_try_helper(out, size, env, "", name)))
        return 0;
    return cairn_error_set(err, -ENOENT, CAIRN_UNAVAILABLE,
                           "helper %s not found (tried %s/engine, "
                           "%s/../libexec/cairn and $CAIRN_LIBEXEC=%s)",
                           name, self, self, env ? env : "(unset)");
}

/* ---- validation -------------------------------------------------------- */

/* pid names a live process (not a thread, a zombie, ghostd itself). */
static int s_check_pid(uint32_t pid, cairn_error_t *err)
{
    proc_status_t ps;
    proc_stat_t st;
    int r;

    if (pid == 0)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "checkpoint: pid is missing");
    if (pid == 1)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "pid 1 is init and cannot be checkpointed");
    if (pid == (uint32_t)getpid())
        return cairn_error_set(err, -EINVAL, CAIRN_FAILED_PRECONDITION,
                               "pid %u is ghostd itself", pid);
    if (pid > INT_MAX)
        return cairn_error_set(err, -ENOENT, CAIRN_NOT_FOUND, "no process with pid %u", pid);
    r = proc_read_status((pid_t)pid, &ps, NULL, err);
    if (r == 0)
        r = proc_read_stat((pid_t)pid, &st, err);
    if (r == -ENOENT || r == -ESRCH)
        return cairn_error_set(err, -ENOENT, CAIRN_NOT_FOUND, "no process with pid %u", pid);
    if (r < 0)
        return r;
    if (ps.tgid > 0 && (uint32_t)ps.tgid != pid)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "pid %u is a thread of process %d; checkpoint "
                               "the process", pid, (int)ps.tgid);
    if (proc_state_exited(st.state))
        return cairn_error_set(err, -ESRCH, CAIRN_FAILED_PRECONDITION,
                               "pid %u has exited (zombie)", pid);
    return 0;
}

/* An absolute directory path that fits a job. */
static int s_check_dir(const char *what, const char *dir, cairn_error_t *err)
{
    if (!dir || !*dir)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "%s: dir is missing", what);
    if (dir[0] != '/')
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "%s: dir '%s' is not an absolute path", what,
                               dir);
    if (strlen(dir) >= sizeof(((ghostd_helper_t *)0)->dir))
        return cairn_error_set(err, -ENAMETOOLONG, CAIRN_INVALID_ARGUMENT,
                               "%s: dir is longer than %zu bytes", what,
                               sizeof(((ghostd_helper_t *)0)->dir) - 1);
    if (strchr(dir, '\n'))
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "%s: dir contains a newline", what);
    return 0;
}

/* Creates the checkpoint directory (0700). */
static int s_make_dir(const char *dir, cairn_error_t *err)
{
    int r = cairn_mkdir_p(dir, 0700);

    if (r == -ENOTDIR || r == -ENAMETOOLONG)
        return cairn_error_set(err, r, CAIRN_INVALID_ARGUMENT,
                               "checkpoint: cannot make directory %s: %s", dir,
                               r == -ENOTDIR ? "a component is not a directory"
                                             : strerror(-r));
    if (r == -EACCES || r == -EPERM)
        return cairn_error_set(err, r, CAIRN_PERMISSION_DENIED,
                               "checkpoint: cannot make directory %s: %s", dir,
                               strerror(-r));
    if (r < 0)
        return cairn_error_set(err, r, CAIRN_FAILED_PRECONDITION,
                               "checkpoint: cannot make directory %s: %s", dir,
                               strerror(-r));
    return 0;
}

/* DIR/image.ghost exists and is a regular file. */
static int s_check_image(const char *image, cairn_error_t *err)
{
    struct stat st;

    if (stat(image, &st) < 0)
        return cairn_error_set(err, -errno,
                               errno == ENOENT || errno == ENOTDIR
                                   ? CAIRN_NOT_FOUND : CAIRN_PERMISSION_DENIED,
                               "restart: no image at %s: %s", image,
                               strerror(errno));
    if (!S_ISREG(st.st_mode))
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "restart: %s is not a regular file", image);
    return 0;
}

/* A running job that conflicts with a new one: the same checkpointed pid,
 * or the same directory when either job writes it. */
static int s_check_busy(ghostd_t *gd, ghostd_kind_t kind, uint32_t pid,
                        const char *dir, cairn_error_t *err)
{
    size_t used = 0;

    for (size_t i = 0; i < GHOSTD_MAX_HELPERS; i++) {
        const ghostd_helper_t *j = &gd->helpers[i];
        if (!j->used)
            continue;
        used++;
        if (kind == GHOSTD_CHECKPOINT && j->kind == GHOSTD_CHECKPOINT &&
            j->pid == pid)
            return cairn_error_set(err, -EBUSY, CAIRN_BUSY,
                                   "pid %u is already being checkpointed "
                                   "(helper pid %d)", pid, (int)j->helper);
        if ((kind == GHOSTD_CHECKPOINT || j->kind == GHOSTD_CHECKPOINT) &&
            dir[0] && strcmp(j->dir, dir) == 0)   /* checks have no dir */
            return cairn_error_set(err, -EBUSY, CAIRN_BUSY,
                                   "%s is in use by a running %s (helper pid "
                                   "%d)", dir, j->kind == GHOSTD_CHECKPOINT
                                   ? "checkpoint" : "restart", (int)j->helper);
    }
    if (used == GHOSTD_MAX_HELPERS)
        return cairn_error_set(err, -EBUSY, CAIRN_BUSY,
                               "%d checkpoint/restart jobs are running; try "
                               "again later", GHOSTD_MAX_HELPERS);
    return 0;
}

/* ---- spawning ---------------------------------------------------------- */

/* Signals default and unblocked, own process group, stdin /dev/null,
 * stdout the pipe, every other fd closed. */
static int s_spawn_setup(posix_spawnattr_t *attr, posix_spawn_file_actions_t *fa,
                         int out_fd, const int *fds, size_t n_fds)
{
    sigset_t none, all;
    int r;

    sigemptyset(&none);
    sigfillset(&all);
    r = posix_spawnattr_init(attr);
    if (r)
        return -r;
    r = posix_spawnattr_setflags(attr, POSIX_SPAWN_SETSIGMASK |
                                 POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
    if (!r) r = posix_spawnattr_setsigmask(attr, &none);
    if (!r) r = posix_spawnattr_setsigdefault(attr, &all);
    if (!r) r = posix_spawnattr_setpgroup(attr, 0);
    if (!r) r = posix_spawn_file_actions_init(fa);
    if (!r) r = posix_spawn_file_actions_addopen(fa, 0, "/dev/null", O_RDONLY, 0);
    if (!r) r = posix_spawn_file_actions_adddup2(fa, out_fd, 1);
    /* Extra fds to 3, 4, ...: each is first copied above them all, so a
     * source numbered 3 + k is not overwritten before it is used. */
    for (size_t i = 0; !r && i < n_fds; i++)
        r = posix_spawn_file_actions_adddup2(fa, fds[i], (int)(100 + i));
    for (size_t i = 0; !r && i < n_fds; i++)
        r = posix_spawn_file_actions_adddup2(fa, (int)(100 + i), (int)(3 + i));
    if (!r) r = posix_spawn_file_actions_addclosefrom_np(fa, 3 + (int)n_fds);
    return -r;
}

/* The OOM score of what ghostd spawns. The node's daemons are not what
 * the kernel is to kill when the node's memory runs out (ghostd died so,
 * with nothing logged, under 16 jobs on a node of the harness): a job
 * that outgrew the node is. ghostd's helpers -- and so the jobs and the
 * restored trees they make -- run S_JOB_OOM_ABOVE above ghostd's own
 * oom_score_adj (a unit's OOMScoreAdjust=-900, the harness's), within
 * 0..1000: -900 gives them 100, and a ghostd left at 0 (no right to lower
 * it: no CAP_SYS_RESOURCE, as in a container) gives them 1000. A full
 * 1000 above is what makes it hold: the kernel adds adj/1000 of the
 * cgroup's limit to a process's resident pages, so a job 1000 above a
 * daemon outranks it whatever their sizes (at 500 above, a sanitizer
 * ghostd of 160 MiB on a node of 300 MiB still outranked jobs of 6 MiB).
 * posix_spawn cannot set it in the child, and ghostd must never take the
 * value itself, not even around a spawn: a memory cgroup that ran out
 * during one would kill ghostd. So the helper takes it as its first step,
 * from GHOST_HELPER_OOM_ENV in its environment (place.h,
 * ghost_place_take_oom), and drops the variable so a job never sees it. */
#define S_JOB_OOM_ABOVE 1000

/* What a helper gets: S_JOB_OOM_ABOVE above ours, within 0..1000. */
static int s_job_oom_adj(void)
{
    _cleanup_free_ char *text = NULL;
    int own = 0;

    if (cairn_read_file("/proc/self/oom_score_adj", 16, &text, NULL) == 0)
        own = atoi(text);
    int v = own + S_JOB_OOM_ABOVE;
    return v < 0 ? 0 : v > 1000 ? 1000 : v;
}

/* envp (NULL: ours) with GHOST_HELPER_OOM_ENV=adj added: a new array
 * whose entries are envp's but *ret_ours, the one to free with the array;
 * NULL on ENOMEM. */
static char **s_env_with_oom(char *const envp[], int adj, char **ret_ours)
{
    char *const *src = envp ? envp : environ;
    size_t n = 0;

    while (src[n])
        n++;
    char **env = calloc(n + 2, sizeof *env);
    if (!env || asprintf(&env[n], "%s=%d", GHOST_HELPER_OOM_ENV, adj) < 0) {
        free(env);
        return NULL;
    }
    memcpy(env, src, n * sizeof *env);
    *ret_ours = env[n];
    return env;
}

/* Runs path argv (environment envp, NULL: ours) with its stdout on a new
 * pipe and fds[i] as its fd 3 + i; *ret_fd is the pipe's read end
 * (non-blocking, close-on-exec). */
static int s_spawn(const char *path, char *const argv[], char *const envp[],
                   const int *fds, size_t n_fds, pid_t *ret_pid, int *ret_fd,
                   cairn_error_t *err)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    int p[2], r;
    pid_t pid;

    _cleanup_free_ char *ours = NULL;
    _cleanup_free_ char **env = s_env_with_oom(envp, s_job_oom_adj(), &ours);
    if (!env)
        return cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "out of memory");
    if (pipe2(p, O_CLOEXEC) < 0)
        return cairn_error_set(err, -errno, CAIRN_INTERNAL, "pipe2: %s",
                               strerror(errno));
    r = s_spawn_setup(&attr, &fa, p[1], fds, n_fds);
    if (r == 0)
        r = -posix_spawn(&pid, path, &fa, &attr, argv, env);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(p[1]);
    if (r < 0) {
        close(p[0]);
        return cairn_error_set(err, r, CAIRN_INTERNAL, "posix_spawn %s: %s",
                               path, strerror(-r));
    }
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    *ret_pid = pid;
    *ret_fd = p[0];
    return 0;
}

/* ---- a job's life ------------------------------------------------------ */

static ghostd_helper_t *s_helper_claim(ghostd_t *gd)
{
    for (size_t i = 0; i < GHOSTD_MAX_HELPERS; i++)
        if (!gd->helpers[i].used) {
            ghostd_helper_t *j = &gd->helpers[i];
            memset(j, 0, sizeof *j);
            j->gd = gd;
            j->used = true;
            j->out_fd = -1;
            return j;
        }
    return NULL;
}

static void s_helper_unwatch(ghostd_helper_t *j)
{
    cairn_loop_t *loop = cairn_service_loop(j->gd->svc);

    if (j->watch > 0)
        cairn_loop_remove(loop, j->watch);
    j->watch = 0;
    if (j->out_fd >= 0)
        close(j->out_fd);
    j->out_fd = -1;
}

/* Removes path, left by a helper that crashed or was killed. For a
 * user's job only inside a directory that user owns, whatever path led
 * there: removing an entry of it is something they may do themselves, so
 * no link they plant on the way makes root remove anyone else's file. */
static void s_remove_leftover(const ghostd_helper_t *j, const char *path)
{
    char dir[sizeof j->image + 8];
    const char *slash = strrchr(path, '/');
    struct stat st;

    if (!j->for_user) {
        unlink(path);
        return;
    }
    if (!slash || snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path) >=
                      (int)sizeof dir)
        return;
    int fd = open(dir[0] ? dir : "/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0 && fstat(fd, &st) == 0 && st.st_uid == j->uid)
        unlinkat(fd, slash + 1, 0);
    if (fd >= 0)
        close(fd);
}

/* Frees the slot: the helper is reaped and the request answered. */
static void s_helper_release(ghostd_helper_t *j)
{
    cairn_loop_t *loop = cairn_service_loop(j->gd->svc);
    char part[sizeof j->image + 8];

    /* ghost-dump writes DIR/image.ghost.part and renames it when done, or
     * (--in-place) writes over DIR/image.ghost; one that crashed or was
     * killed leaves the .part, or a half-new image, behind. */
    if (j->kind == GHOSTD_CHECKPOINT && j->image[0]) {
        if (snprintf(part, sizeof part, "%s.part", j->image) < (int)sizeof part)
            s_remove_leftover(j, part);
        if (j->in_place && !j->exited)
            s_remove_leftover(j, j->image);
    }

    if (j->kind == GHOSTD_LAUNCH && !j->launched)
        ghostd_jobs_launch_failed(j->gd->jobs, j->job);
    s_helper_unwatch(j);
    if (j->poll_timer > 0)
        cairn_loop_cancel_timer(loop, j->poll_timer);
    if (j->deadline_timer > 0)
        cairn_loop_cancel_timer(loop, j->deadline_timer);
    j->used = false;
}

static void s_helper_fail(ghostd_helper_t *j, int code, const char *msg)
{
    if (!j->deferred)
        return;
    char event[32];

    snprintf(event, sizeof event, "%s-failed", s_request_name(j->kind));
    cairn_log_warn(0, event, "pid=%u dir=%s code=%s msg=\"%s\"", j->pid, j->dir,
                   cairn_code_name(code), msg);
    if (j->kind != GHOSTD_LAUNCH)
        ghostd_metrics_op(j->gd, j->kind == GHOSTD_CHECKPOINT ? "checkpoint" : "restore",
                          "failed", 0);
    cairn_deferred_fail(j->gd->svc, j->deferred, code, msg);
    j->deferred = NULL;
}

/* Reads what the helper printed, up to the cap; EOF or an error closes
 * the pipe. */
static void s_helper_drain(ghostd_helper_t *j)
{
    char scratch[4096];

    while (j->out_fd >= 0) {
        size_t room = sizeof j->out - 1 - j->out_len;
        char *dst = room ? j->out + j->out_len : scratch;
        ssize_t n = read(j->out_fd, dst, room ? room : sizeof scratch);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            s_helper_unwatch(j);
            return;
        }
        if (room)
            j->out_len += (size_t)n;
        else
            j->truncated = true;
    }
}

static int s_on_output(cairn_loop_t *loop, int fd, void *zsock, short revents,
                       void *userdata)
{
    ghostd_helper_t *j = userdata;

    s_helper_drain(j);
    if (j->on_output)
        j->on_output(j);
    return 0;
}

/* ---- mapping a finished helper to a reply ------------------------------ */

/* The first non-empty line of the helper's output as a JSON object. */
static json_t *s_helper_json(ghostd_helper_t *j)
{
    char *line = j->out, *end;

    j->out[j->out_len] = '\0';
    while (*line == '\n' || *line == ' ' || *line == '\r' || *line == '\t')
        line++;
    end = strchr(line, '\n');
    json_t *v = json_loadb(line, end ? (size_t)(end - line) : strlen(line),
                           0, NULL);
    if (v && !json_is_object(v)) {
        json_decref(v);
        v = NULL;
    }
    return v;
}

/* The error a helper reported: {"error":{"code","message"}} (or code and
 * message at the top level). code is kept only if it is a wire code other
 * than OK; else `dflt`. */
static int s_json_error(json_t *v, int dflt, const char **ret_msg)
{
    json_t *e = json_object_get(v, "error");
    json_t *o = json_is_object(e) ? e : v;
    const char *name = json_string_value(json_object_get(o, "code"));
    const char *msg = json_string_value(json_object_get(o, "message"));
    int code = name ? cairn_code_from_name(name) : -1;

    if (!msg && json_is_string(e))
        msg = json_string_value(e);
    *ret_msg = msg;
    return code > CAIRN_OK && code < 100 ? code : dflt;
}

/* A non-negative integer field of the helper's JSON. */
static int s_json_u64(json_t *v, const char *key, uint64_t *ret)
{
    json_t *f = json_object_get(v, key);

    if (!json_is_integer(f) || json_integer_value(f) < 0)
        return -EBADMSG;
    *ret = (uint64_t)json_integer_value(f);
    return 0;
}

/* A number a helper may leave out (an older one does not say): its value
 * when present and at most max, else 0. */
static uint32_t s_json_optional(json_t *v, const char *key, uint64_t max)
{
    uint64_t n = 0;

    return s_json_u64(v, key, &n) == 0 && n <= max ? (uint32_t)n : 0;
}

/* A string a helper may leave out (an older one does not say): "" then. */
static const char *s_json_string(json_t *v, const char *key)
{
    const char *s = json_string_value(json_object_get(v, key));

    return s ? s : "";
}

static void s_contract_fail(ghostd_helper_t *j, const char *what)
{
    char msg[512];

    snprintf(msg, sizeof msg, "%s exited 0 but its output %s",
             s_helper_name(j->kind), what);
    s_helper_fail(j, CAIRN_INTERNAL, msg);
}

/* The helper's numbers keys[0..n) into vals; a missing one fails the job
 * (a broken contract) and returns -EBADMSG. */
static int s_helper_numbers(ghostd_helper_t *j, json_t *v, const char *const keys[],
                         uint64_t vals[], size_t n)
{
    char what[128];

    for (size_t i = 0; i < n; i++)
        if (s_json_u64(v, keys[i], &vals[i]) < 0) {
            snprintf(what, sizeof what, "lacks the number \"%s\"", keys[i]);
            s_contract_fail(j, what);
            return -EBADMSG;
        }
    return 0;
}

/* ghostd's own families; declared at start so that a scrape lists them
 * before the first operation (declaring again finds the same family). */
static cairn_metric_t *s_metric_ops(cairn_metrics_t *reg)
{
    return cairn_metrics_counter(reg, "cairn_ghost_operations_total",
                                 "Checkpoints, restores and outgoing migrations, "
                                 "by result.", "operation,result");
}

static cairn_metric_t *s_metric_bytes(cairn_metrics_t *reg)
{
    return cairn_metrics_counter(reg, "cairn_ghost_image_bytes_total",
                                 "Image bytes written by checkpoints, read by "
                                 "restores, streamed by outgoing migrations.",
                                 "operation");
}

void ghostd_metrics_op(ghostd_t *gd, const char *op, const char *result,
                       uint64_t bytes)
{
    cairn_metrics_t *reg = cairn_service_metrics(gd->svc);

    cairn_metric_add(s_metric_ops(reg), 1, op, result);
    cairn_metric_add(s_metric_bytes(reg), (double)bytes, op);
}

static void s_reply_checkpoint(ghostd_helper_t *j, json_t *v)
{
    static const char *const keys[] = { "image_bytes", "pages", "processes",
                                        "threads", "freeze_us", "dump_us" };
    Cairn__Ghostd__CheckpointReply cr = CAIRN__GHOSTD__CHECKPOINT_REPLY__INIT;
    Cairn__Ghostd__Reply reply = CAIRN__GHOSTD__REPLY__INIT;
    json_t *lr = json_object_get(v, "left_running");
    uint64_t f[6];

    if (s_helper_numbers(j, v, keys, f, 6) < 0)
        return;
    cr.pid = j->pid;
    cr.dir = j->dir;
    cr.image = j->image;
    cr.image_bytes = f[0];
    cr.pages = f[1];
    cr.processes = (uint32_t)f[2];
    cr.threads = (uint32_t)f[3];
    cr.freeze_us = f[4];
    cr.dump_us = f[5];
    cr.left_running = json_is_boolean(lr) ? json_is_true(lr) : j->leave_running;
    cr.copy_threads = s_json_optional(v, "copy_threads", 1023);   /* 0: streamed */
    cr.stopped = s_json_optional(v, "stopped", f[2]);
    reply.msg_case = CAIRN__GHOSTD__REPLY__MSG_CHECKPOINT_REPLY;
    reply.checkpoint_reply = &cr;
    cairn_log_info("checkpoint-done", "pid=%u image=%s bytes=%llu pages=%llu "
                   "freeze_us=%llu dump_us=%llu left_running=%d", j->pid,
                   j->image, (unsigned long long)f[0], (unsigned long long)f[1],
                   (unsigned long long)f[4], (unsigned long long)f[5],
                   (int)cr.left_running);
    ghostd_metrics_op(j->gd, "checkpoint", "ok", f[0]);
    cairn_deferred_reply(j->gd->svc, j->deferred, &reply.base);
    j->deferred = NULL;
}

/* rr's numbers after its pid, in this order: original_pid, image_bytes,
 * pages, processes, threads, and the restore's (or check's) time. */
static void s_restart_numbers(Cairn__Ghostd__RestartReply *rr, const uint64_t f[6])
{
    rr->original_pid = (uint32_t)f[0];
    rr->image_bytes = f[1];
    rr->pages = f[2];
    rr->processes = (uint32_t)f[3];
    rr->threads = (uint32_t)f[4];
    rr->restore_us = f[5];
}

/* A --check success line: ghost-dump's {"pid","checkpointable":true} or
 * ghost-restore's {"check":true,"original_pid","pids_free",...}. */
static void s_reply_checked(ghostd_helper_t *j, json_t *v)
{
    static const char *const keys[] = { "original_pid", "image_bytes", "pages",
                                        "processes", "threads", "check_us" };
    Cairn__Ghostd__CheckpointReply cr = CAIRN__GHOSTD__CHECKPOINT_REPLY__INIT;
    Cairn__Ghostd__RestartReply rr = CAIRN__GHOSTD__RESTART_REPLY__INIT;
    Cairn__Ghostd__Reply reply = CAIRN__GHOSTD__REPLY__INIT;
    uint64_t f[6];

    if (j->kind == GHOSTD_CHECKPOINT) {
        if (!json_is_true(json_object_get(v, "checkpointable")))
            return s_contract_fail(j, "has no \"checkpointable\": true");
        cr.pid = j->pid;
        cr.checked_only = true;
        reply.msg_case = CAIRN__GHOSTD__REPLY__MSG_CHECKPOINT_REPLY;
        reply.checkpoint_reply = &cr;
        cairn_log_info("checkpoint-checked", "pid=%u", j->pid);
    } else {
        json_t *free_ids = json_object_get(v, "pids_free");
        if (s_helper_numbers(j, v, keys, f, 6) < 0)
            return;
        if (!json_is_boolean(free_ids))
            return s_contract_fail(j, "has no boolean \"pids_free\"");
        s_restart_numbers(&rr, f);
        rr.checked_only = true;
        rr.pids_free = json_is_true(free_ids);
        reply.msg_case = CAIRN__GHOSTD__REPLY__MSG_RESTART_REPLY;
        reply.restart_reply = &rr;
        cairn_log_info("restart-checked", "image=%s original=%u pids_free=%d",
                       j->image, rr.original_pid, (int)rr.pids_free);
    }
    cairn_deferred_reply(j->gd->svc, j->deferred, &reply.base);
    j->deferred = NULL;
}

#define S_MAX_COSMETIC 64   /* as GHOST_VERIFY_MAX */

/* The helper's "verify" object (ghost-restore.c): whether it ran, its
 * time, and the cosmetic differences into d[] / p[] (their strings point
 * into v); null or absent (--no-verify, older helpers): not verified. */
static void s_restart_verify(Cairn__Ghostd__RestartReply *rr, json_t *v,
                             Cairn__Ghostd__VerifyDiff *d, Cairn__Ghostd__VerifyDiff **p)
{
    json_t *vf = json_object_get(v, "verify"), *e;
    size_t i;

    if (!json_is_object(vf))
        return;
    rr->verified = true;
    rr->verify_us = ghostd_json_u64(vf, "us");
    json_array_foreach(json_object_get(vf, "cosmetic"), i, e) {
        if (rr->n_cosmetic >= S_MAX_COSMETIC || !json_is_object(e))
            break;
        Cairn__Ghostd__VerifyDiff *x = &d[rr->n_cosmetic];
        cairn__ghostd__verify_diff__init(x);
        x->pid = (uint32_t)ghostd_json_u64(e, "pid");
        x->what = (char *)s_json_string(e, "what");
        x->want = (char *)s_json_string(e, "want");
        x->got = (char *)s_json_string(e, "got");
        p[rr->n_cosmetic++] = x;
    }
    rr->cosmetic = p;
}

static void s_reply_restart(ghostd_helper_t *j, json_t *v)
{
    Cairn__Ghostd__VerifyDiff diffs[S_MAX_COSMETIC], *diffp[S_MAX_COSMETIC];
    static const char *const keys[] = { "pid", "original_pid", "image_bytes",
                                        "pages", "processes", "threads",
                                        "restore_us" };
    Cairn__Ghostd__RestartReply rr = CAIRN__GHOSTD__RESTART_REPLY__INIT;
    Cairn__Ghostd__Reply reply = CAIRN__GHOSTD__REPLY__INIT;
    uint64_t f[7];
    char what[128];

    if (s_helper_numbers(j, v, keys, f, 7) < 0)
        return;
    if (f[0] == 0 || f[0] > INT_MAX)
        return s_contract_fail(j, "has no valid \"pid\"");
    if (!j->new_pid && f[0] != f[1]) {
        snprintf(what, sizeof what, "says pid %llu, not the original %llu "
                 "asked for", (unsigned long long)f[0],
                 (unsigned long long)f[1]);
        return s_contract_fail(j, what);
    }
    rr.pid = (uint32_t)f[0];
    rr.same_pid = f[0] == f[1];
    s_restart_numbers(&rr, f + 1);
    rr.stopped = s_json_optional(v, "stopped", f[4]);
    /* A job's image: its pids are inside its namespace, and the node knows
     * its root by host_pid (older helpers: the pid itself). */
    rr.job = json_is_true(json_object_get(v, "job"));
    rr.host_pid = s_json_optional(v, "host_pid", INT_MAX);
    if (rr.host_pid == 0)
        rr.host_pid = rr.pid;
    rr.cgroup = (char *)s_json_string(v, "cgroup");
    rr.unit = j->scope;
    s_restart_verify(&rr, v, diffs, diffp);
    reply.msg_case = CAIRN__GHOSTD__REPLY__MSG_RESTART_REPLY;
    reply.restart_reply = &rr;
    cairn_log_info("restart-done",
                   "image=%s pid=%u host_pid=%u original=%u bytes=%llu "
                   "restore_us=%llu cgroup=%s",
                   j->image, rr.pid, rr.host_pid, rr.original_pid, (unsigned long long)f[2],
                   (unsigned long long)f[6], rr.cgroup);
    ghostd_metrics_op(j->gd, "restore", "ok", f[2]);
    cairn_deferred_reply(j->gd->svc, j->deferred, &reply.base);
    j->deferred = NULL;
}

/* Whether code is one of a check's refusals (a Reason's code). */
static bool s_refusal_code(int code)
{
    return code == CAIRN_UNSUPPORTED || code == CAIRN_FAILED_PRECONDITION ||
           code == CAIRN_PERMISSION_DENIED;
}

/* The helper's error.reasons, at most S_MAX_REASONS of them, into
 * reasons[] (their strings point into v); how many. A reason whose code
 * is no refusal code is a FAILED_PRECONDITION. */
#define S_MAX_REASONS 64
static size_t s_reasons(json_t *v, Cairn__Ghostd__Reason reasons[],
                        Cairn__Ghostd__Reason *ptrs[])
{
    json_t *a = json_object_get(json_object_get(v, "error"), "reasons");
    size_t n = 0;

    for (size_t i = 0; json_is_array(a) && i < json_array_size(a) && n < S_MAX_REASONS; i++) {
        json_t *o = json_array_get(a, i);
        const char *name = json_string_value(json_object_get(o, "code"));
        int code = name ? cairn_code_from_name(name) : -1;
        uint64_t pid = 0;

        if (!json_is_object(o))
            continue;
        cairn__ghostd__reason__init(&reasons[n]);
        reasons[n].code = (Cairn__StatusCode)(s_refusal_code(code) ? code
                                                                   : CAIRN_FAILED_PRECONDITION);
        reasons[n].pid = s_json_u64(o, "pid", &pid) == 0 && pid <= INT_MAX ? (uint32_t)pid : 0;
        reasons[n].what = (char *)s_json_string(o, "what");
        reasons[n].message = (char *)s_json_string(o, "message");
        ptrs[n] = &reasons[n];
        n++;
    }
    return n;
}

/* A check the helper refused with its reasons: the checked_only reply
 * that lists them (proto/ghostd.proto). */
static void s_reply_reasons(ghostd_helper_t *j, json_t *v, Cairn__Ghostd__Reason *reasons[],
                            size_t n)
{
    Cairn__Ghostd__CheckpointReply cr = CAIRN__GHOSTD__CHECKPOINT_REPLY__INIT;
    Cairn__Ghostd__RestartReply rr = CAIRN__GHOSTD__RESTART_REPLY__INIT;
    Cairn__Ghostd__Reply reply = CAIRN__GHOSTD__REPLY__INIT;
    uint32_t more = s_json_optional(json_object_get(v, "error"), "more_reasons", UINT32_MAX);

    if (j->kind == GHOSTD_CHECKPOINT) {
        cr.pid = j->pid;
        cr.checked_only = true;
        cr.n_reasons = n, cr.reasons = reasons, cr.more_reasons = more;
        reply.msg_case = CAIRN__GHOSTD__REPLY__MSG_CHECKPOINT_REPLY;
        reply.checkpoint_reply = &cr;
    } else {
        rr.checked_only = true;
        rr.n_reasons = n, rr.reasons = reasons, rr.more_reasons = more;
        reply.msg_case = CAIRN__GHOSTD__REPLY__MSG_RESTART_REPLY;
        reply.restart_reply = &rr;
    }
    cairn_log_info(j->kind == GHOSTD_CHECKPOINT ? "checkpoint-checked" : "restart-checked",
                   "pid=%u dir=%s refused reasons=%zu first=\"%s\"", j->pid, j->dir,
                   n + more, reasons[0]->message);
    cairn_deferred_reply(j->gd->svc, j->deferred, &reply.base);
    j->deferred = NULL;
}

/* The Status of a helper's exit code: 1 error (the JSON's code or
 * INTERNAL), 2 refused (FAILED_PRECONDITION, UNSUPPORTED or, for a user's
 * job, PERMISSION_DENIED), 3 pid taken; the message into buf. */
static int s_error_of(const ghostd_helper_t *j, int exit_code, json_t *v,
                      char *buf, size_t size)
{
    const char *msg = NULL, *name = s_helper_name(j->kind);
    int code;

    if (!v) {
        snprintf(buf, size, "%s exited with status %d and printed no "
                 "JSON line%s", name, exit_code, j->out_len ? " (garbage)" : "");
        return CAIRN_INTERNAL;
    }
    code = s_json_error(v, CAIRN_INTERNAL, &msg);
    if (exit_code == 2 && code != CAIRN_UNSUPPORTED && code != CAIRN_PERMISSION_DENIED)
        code = CAIRN_FAILED_PRECONDITION;
    else if (exit_code == 3)
        code = CAIRN_ALREADY_EXISTS;
    else if (exit_code != 1 && exit_code != 2)
        code = CAIRN_INTERNAL;
    if (exit_code >= 1 && exit_code <= 3 && msg)
        snprintf(buf, size, "%s", msg);
    else
        snprintf(buf, size, "%s exited with status %d: %s", name,
                 exit_code, msg ? msg : "(no message)");
    return code;
}

/* Answers a helper's failure. A check's refusal that came with its
 * reasons is answered with them instead (s_reply_reasons); a request's
 * own refusal with more reasons than its first says so. */
static void s_reply_error(ghostd_helper_t *j, int exit_code, json_t *v)
{
    Cairn__Ghostd__Reason reasons[S_MAX_REASONS], *ptrs[S_MAX_REASONS];
    char buf[1024];
    size_t n = 0;
    int code = s_error_of(j, exit_code, v, buf, sizeof buf);

    if (v && (exit_code == 1 || exit_code == 2) && s_refusal_code(code))
        n = s_reasons(v, reasons, ptrs);
    if (j->check_only && n > 0) {
        s_reply_reasons(j, v, ptrs, n);
        return;
    }
    if (n > 1 && strlen(buf) + 64 < sizeof buf)
        strcat(buf, " (and more reasons: --check lists them all)");
    s_helper_fail(j, code, buf);
}

json_t *ghostd_helper_line(const ghostd_helper_t *j, int index)
{
    char text[GHOSTD_OUTPUT_MAX + 1];
    char *line, *save = NULL;
    json_t *last = NULL;
    int k = 0;

    memcpy(text, j->out, j->out_len);
    text[j->out_len] = '\0';
    for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (index >= 0 && k++ < index)
            continue;
        json_t *v = json_loads(line, 0, NULL);
        if (!json_is_object(v)) {
            json_decref(v);
            if (index >= 0)
                return NULL;
            continue;
        }
        if (index >= 0)
            return v;
        json_decref(last);
        last = v;
    }
    return last;
}

uint64_t ghostd_json_u64(json_t *v, const char *key)
{
    json_t *f = json_object_get(v, key);

    return json_is_integer(f) && json_integer_value(f) > 0
               ? (uint64_t)json_integer_value(f) : 0;
}

int ghostd_helper_error(const ghostd_helper_t *j, int status, json_t *v,
                        char *buf, size_t size)
{
    if (WIFSIGNALED(status)) {
        snprintf(buf, size, "%s died with signal %d (%s)", s_helper_name(j->kind),
                 WTERMSIG(status), strsignal(WTERMSIG(status)));
        return CAIRN_INTERNAL;
    }
    return s_error_of(j, WEXITSTATUS(status), v, buf, size);
}

/* Answers the request from the reaped helper's wait status and output. */
static void s_helper_answer(ghostd_helper_t *j, int status)
{
    json_t *v;
    char buf[256];

    j->exited = WIFEXITED(status);
    if (!j->deferred)
        return;   /* already answered (timeout) */
    if (WIFSIGNALED(status)) {
        snprintf(buf, sizeof buf, "%s died with signal %d (%s)",
                 s_helper_name(j->kind), WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
        return s_helper_fail(j, CAIRN_INTERNAL, buf);
    }
    v = s_helper_json(j);
    if (WEXITSTATUS(status) != 0)
        s_reply_error(j, WEXITSTATUS(status), v);
    else if (!v)
        s_contract_fail(j, "is not one JSON object");
    else if (j->kind == GHOSTD_LAUNCH)
        j->launched = ghostd_jobs_launched(j->gd->jobs, j, v) == 0;
    else if (j->check_only)
        s_reply_checked(j, v);
    else if (j->kind == GHOSTD_CHECKPOINT)
        s_reply_checkpoint(j, v);
    else
        s_reply_restart(j, v);
    json_decref(v);
}

static int s_on_poll(cairn_loop_t *loop, int64_t timer_id, void *userdata)
{
    ghostd_helper_t *j = userdata;
    int status = 0;
    pid_t r = waitpid(j->helper, &status, WNOHANG);

    if (r == 0 || (r < 0 && errno == EINTR))
        return 0;
    if (r < 0) {   /* ECHILD: reaped elsewhere; nothing to read a status from */
        s_helper_fail(j, CAIRN_INTERNAL, "lost track of the helper process");
        if (j->on_exit)
            j->on_exit(j, 255 << 8);   /* "exited with status 255" */
    } else {
        s_helper_drain(j);
        if (j->on_exit)
            j->on_exit(j, status);
        else
            s_helper_answer(j, status);
    }
    s_helper_release(j);
    return 0;
}

/* Kills the helper and everything still in its process group. */
static void s_helper_kill(ghostd_helper_t *j)
{
    kill(-j->helper, SIGKILL);
    kill(j->helper, SIGKILL);
}

void ghostd_helper_kill(ghostd_helper_t *j)
{
    s_helper_kill(j);
}

static int s_on_deadline(cairn_loop_t *loop, int64_t timer_id, void *userdata)
{
    ghostd_helper_t *j = userdata;
    char buf[256];

    j->deadline_timer = 0;   /* one-shot: fired */
    s_helper_kill(j);
    snprintf(buf, sizeof buf, "%s did not finish within %llu ms; killed",
             s_helper_name(j->kind),
             (unsigned long long)(cairn_now_ms() - j->started_ms));
    s_helper_fail(j, CAIRN_TIMEOUT, buf);
    return 0;
}

/* When to give up: Header.deadline_ms (0: the default) less a margin so
 * the TIMEOUT answer reaches a caller still waiting. */
static uint64_t s_deadline_ms(cairn_request_t *req)
{
    const Cairn__Header *h = cairn_request_header(req);
    uint64_t d = h && h->deadline_ms ? h->deadline_ms
                                     : GHOSTD_DEFAULT_DEADLINE_MS;
    uint64_t margin;

    if (d > GHOSTD_MAX_DEADLINE_MS)
        d = GHOSTD_MAX_DEADLINE_MS;
    margin = d / 20 < 1000 ? d / 20 : 1000;
    return d - margin > 0 ? d - margin : 1;
}

/* Registers the job's watch and timers. */
static int s_helper_watch(ghostd_helper_t *j, uint64_t deadline_ms)
{
    cairn_loop_t *loop = cairn_service_loop(j->gd->svc);

    j->watch = cairn_loop_add_fd(loop, j->out_fd, ZMQ_POLLIN,
                                 s_on_output, j);
    j->poll_timer = cairn_loop_add_timer(loop, S_POLL_MS, S_POLL_MS,
                                         s_on_poll, j);
    j->deadline_timer = deadline_ms ? cairn_loop_add_timer(loop, deadline_ms, 0,
                                                           s_on_deadline, j)
                                    : 0;   /* no deadline: a tracker stays */
    if (j->watch < 0 || j->poll_timer < 0 || j->deadline_timer < 0)
        return -ENOMEM;
    return 0;
}

/* Spawns j's helper at path with argv[1..] (argv[0] is the caller's
 * NULL; environment envp, NULL: ours) and fds as 3.... A dump (checkpoint,
 * check, tracker, migration) also gets the description's ghost-file-max,
 * so a migration's check and its dump refuse alike. */
static int s_spawn_helper(ghostd_helper_t *j, char *path, char *argv[], char *const envp[],
                          const int *fds, size_t n_fds, cairn_error_t *err)
{
    char max_arg[16], *dargv[32];
    size_t n = 1;
    if (j->kind == GHOSTD_CHECKPOINT) {
        const cairn_description_t *d = cairn_service_description(j->gd->svc);
        snprintf(max_arg, sizeof max_arg, "%u", cairn_description_sched(d)->ghost_file_max);
        for (; argv[n]; n++)
            if (n + 3 > sizeof dargv / sizeof dargv[0])
                return cairn_error_set(err, -E2BIG, CAIRN_INTERNAL, "ghost-dump: %zu "
                                       "arguments", n);
        memcpy(dargv, argv, n * sizeof(*argv));
        dargv[n] = "--ghost-file-max", dargv[n + 1] = max_arg, dargv[n + 2] = NULL;
        argv = dargv;
    }
    argv[0] = path;
    int r = s_spawn(path, argv, envp, fds, n_fds, &j->helper, &j->out_fd, err);
    argv[0] = NULL;
    return r;
}

/* Spawns the job's helper with argv[1..] (environment envp, NULL: ours)
 * and defers the request. On failure the slot is free again and err says
 * why. */
static int s_helper_run(ghostd_helper_t *j, cairn_request_t *req, char *argv[],
                        char *const envp[], cairn_error_t *err)
{
    uint64_t deadline = s_deadline_ms(req);   /* before defer takes the header */
    char path[PATH_MAX];
    int r = s_helper_path(s_helper_name(j->kind), path, sizeof path, err);

    if (r == 0)
        r = s_spawn_helper(j, path, argv, envp, NULL, 0, err);
    if (r < 0) {
        j->used = false;
        return r;
    }
    j->started_ms = cairn_now_ms();
    j->deferred = cairn_request_defer(req);
    if (j->deferred && s_helper_watch(j, deadline) == 0) {
        cairn_log_info(s_request_name(j->kind), "pid=%u image=%s helper=%d as=%s",
                       j->pid, j->image, (int)j->helper,
                       j->for_user ? j->as_arg : "root");
        return CAIRN_REPLY_DEFERRED;
    }
    s_helper_kill(j);
    while (waitpid(j->helper, NULL, 0) < 0 && errno == EINTR)
        ;
    r = j->deferred ? CAIRN_REPLY_DEFERRED
                    : cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL,
                                      "out of memory");
    /* Refused (nothing deferred): a LAUNCH's job is still the caller's,
     * which drops it (jobs-run.c); the release must not drop it too. */
    if (r < 0)
        j->job = NULL;
    s_helper_fail(j, CAIRN_INTERNAL, "out of memory");
    s_helper_release(j);
    return r;
}

int ghostd_helper_start(ghostd_t *gd, ghostd_kind_t kind, char *argv[],
                        const int *fds, size_t n_fds, uint64_t deadline_ms,
                        ghostd_helper_t **ret, cairn_error_t *err)
{
    char path[PATH_MAX];
    ghostd_helper_t *j;
    int r = s_helper_path(s_helper_name(kind), path, sizeof path, err);

    if (r < 0)
        return r;
    j = s_helper_claim(gd);
    if (!j)
        return cairn_error_set(err, -EBUSY, CAIRN_BUSY, "%d checkpoint/restart/"
                               "migration helpers are running; try again later",
                               GHOSTD_MAX_HELPERS);
    j->kind = kind;
    r = s_spawn_helper(j, path, argv, NULL, fds, n_fds, err);
    if (r < 0) {
        j->used = false;
        return r;
    }
    j->started_ms = cairn_now_ms();
    if (s_helper_watch(j, deadline_ms) < 0) {
        s_helper_kill(j);
        while (waitpid(j->helper, NULL, 0) < 0 && errno == EINTR)
            ;
        s_helper_release(j);
        return cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "out of memory");
    }
    *ret = j;
    return 0;
}

/* ---- handlers ---------------------------------------------------------- */

static int s_fail(cairn_request_t *req, const cairn_error_t *err)
{
    cairn_log_info("refused", "code=%s msg=\"%s\"", cairn_code_name(err->code),
                   err->message);
    return cairn_request_fail(req, err->code, "%s", err->message);
}

/* Whether the caller is a user the rule holds: not root (here, or as a
 * member node vouches). The skeleton lets only callers whose user is
 * known reach a handler. */
static bool s_for_user(const cairn_caller_t *c)
{
    return !cairn_caller_may_act_on(c, 0);
}

bool ghostd_for_user(const cairn_caller_t *c)
{
    return s_for_user(c);
}

/* Who job j works for (for_user, uid, gid, as_arg): the caller. */
static void s_helper_caller(ghostd_helper_t *j, const cairn_caller_t *c)
{
    j->for_user = s_for_user(c);
    j->uid = c->uid;
    j->gid = c->gid;
    snprintf(j->as_arg, sizeof j->as_arg, "%u:%u", c->uid, c->gid);
}

/* The checkpoint's directory: the request's, else <spool>/<pid>-<ms> for
 * root and <spool>/uid-N/<pid>-<ms> for user N (spool.h); the user's
 * directory in the spool is made (theirs, 0700) here. */
static int s_checkpoint_dir(ghostd_t *gd, const cairn_caller_t *c,
                            const Cairn__Ghostd__CheckpointRequest *cr,
                            char *out, size_t size, cairn_error_t *err)
{
    char base[PATH_MAX];

    if (cr->dir && *cr->dir) {
        int r = s_check_dir("checkpoint", cr->dir, err);
        if (r == 0)
            snprintf(out, size, "%s", cr->dir);
        return r;
    }
    int r = s_for_user(c)
                ? ghostd_spool_user_dir(&gd->spool, c->uid, c->gid, base, sizeof base, err)
                : (snprintf(base, sizeof base, "%s", gd->spool.path), 0);
    if (r < 0)
        return r;
    if (snprintf(out, size, "%s/%u-%llu", base, cr->pid,
                 (unsigned long long)cairn_realtime_ms()) >= (int)size)
        return cairn_error_set(err, -ENAMETOOLONG, CAIRN_INVALID_ARGUMENT,
                               "checkpoint: %s/...: path too long", base);
    return 0;
}

/* Whose a process is: its uid when its real, effective, saved and fs uids
 * agree; else root's (a process between identities -- a setuid program --
 * is root's to act on). */
static uint32_t s_process_owner(const proc_creds_t *pc)
{
    for (int i = 1; i < 4; i++)
        if (pc->uid[i] != pc->uid[0])
            return 0;
    return pc->uid[0];
}

int ghostd_process_owner(uint32_t pid, uint32_t *ret_uid, uint32_t *ret_gid,
                         cairn_error_t *err)
{
    proc_status_t ps;
    proc_creds_t pc = { 0 };
    int r = s_check_pid(pid, err);

    if (r == 0)
        r = proc_read_status((pid_t)pid, &ps, &pc, err);
    if (r == -ENOENT || r == -ESRCH)
        return cairn_error_set(err, -ENOENT, CAIRN_NOT_FOUND, "no process with pid %u", pid);
    if (r < 0)
        return r;
    *ret_uid = s_process_owner(&pc);
    *ret_gid = *ret_uid ? pc.gid[0] : 0;
    proc_creds_free(&pc);
    return 0;
}

/* The rule (cairn_caller_may_act_on) on process pid, which s_check_pid
 * found: root may checkpoint it, and its owner. This is ghostd's early,
 * cheap look at the root of the tree; the helper holds every process of
 * the tree to the whole rule once it is frozen (engine/owner.h). */
static int s_check_process_owner(const cairn_caller_t *c, uint32_t pid, cairn_error_t *err)
{
    proc_status_t ps;
    proc_creds_t pc = { 0 };
    char who[128];
    int r = proc_read_status((pid_t)pid, &ps, &pc, err);

    if (r == -ENOENT || r == -ESRCH)
        return cairn_error_set(err, -ENOENT, CAIRN_NOT_FOUND, "no process with pid %u", pid);
    if (r < 0)
        return r;
    uint32_t owner = s_process_owner(&pc);
    proc_creds_free(&pc);
    if (cairn_caller_may_act_on(c, owner))
        return 0;
    return cairn_error_set(err, -EPERM, CAIRN_PERMISSION_DENIED,
                           "checkpoint: process %u is uid %u's; %s may checkpoint "
                           "only its own processes (root may checkpoint any)", pid,
                           owner, cairn_caller_describe(c, who, sizeof who));
}

/* Makes a root job's directory here; a user's is the helper's to make,
 * with their file rights (ghostd makes nothing of theirs as root). */
static int s_prepare_dir(const cairn_caller_t *c, const char *dir, cairn_error_t *err)
{
    return s_for_user(c) ? 0 : s_make_dir(dir, err);
}

static int s_handle_checkpoint(void *ctx, cairn_request_t *req)
{
    ghostd_t *gd = ctx;
    const Cairn__Ghostd__Request *body =
        (const Cairn__Ghostd__Request *)cairn_request_body(req);
    const Cairn__Ghostd__CheckpointRequest *cr = body->checkpoint;
    const cairn_caller_t *caller = cairn_request_caller(req);
    char dir[4096], pid_arg[16];
    cairn_error_t err = { 0 };
    ghostd_helper_t *j;
    int r;

    if (!cr)
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT,
                                  "checkpoint: request body is empty");
    r = s_check_pid(cr->pid, &err);
    if (r == 0)
        r = s_check_process_owner(caller, cr->pid, &err);
    if (r == 0 && cr->check_only && ((cr->dir && *cr->dir) || cr->in_place))
        r = cairn_error_set(&err, -EINVAL, CAIRN_INVALID_ARGUMENT, "checkpoint: "
                            "check_only writes nothing: it takes no dir or in_place");
    dir[0] = '\0';
    if (r == 0 && !cr->check_only)
        r = s_checkpoint_dir(gd, caller, cr, dir, sizeof dir, &err);
    if (r == 0)
        r = s_check_busy(gd, GHOSTD_CHECKPOINT, cr->pid, dir, &err);
    if (r == 0 && !cr->check_only)
        r = s_prepare_dir(caller, dir, &err);
    if (r < 0)
        return s_fail(req, &err);
    j = s_helper_claim(gd);
    s_helper_caller(j, caller);
    j->kind = GHOSTD_CHECKPOINT;
    j->pid = cr->pid;
    j->leave_running = cr->leave_running;
    j->in_place = cr->in_place;
    j->check_only = cr->check_only;
    snprintf(j->dir, sizeof j->dir, "%s", dir);
    /* A check names no image: nothing is removed after it. */
    if (!cr->check_only)
        snprintf(j->image, sizeof j->image, "%s/%s", dir, GHOSTD_IMAGE_NAME);
    snprintf(pid_arg, sizeof pid_arg, "%u", cr->pid);
    /* + --check or --out IMAGE, 2 flags, --as UID:GID, NULL */
    char *argv[10] = { NULL, "--pid", pid_arg };
    int n = 3;
    if (cr->check_only) {
        argv[n++] = "--check";
    } else {
        argv[n++] = "--out";
        argv[n++] = j->image;
    }
    if (cr->leave_running)
        argv[n++] = "--leave-running";
    if (cr->in_place)
        argv[n++] = "--in-place";
    if (j->for_user) {
        argv[n++] = "--as";
        argv[n++] = j->as_arg;
    }
    argv[n] = NULL;
    r = s_helper_run(j, req, argv, NULL, &err);
    return r < 0 ? s_fail(req, &err) : r;
}

static int s_handle_restart(void *ctx, cairn_request_t *req)
{
    ghostd_t *gd = ctx;
    const Cairn__Ghostd__Request *body =
        (const Cairn__Ghostd__Request *)cairn_request_body(req);
    const Cairn__Ghostd__RestartRequest *rr = body->restart;
    cairn_error_t err = { 0 };
    char image[4200];
    ghostd_helper_t *j;
    int r;

    if (!rr)
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT,
                                  "restart: request body is empty");
    r = s_check_dir("restart", rr->dir, &err);
    if (r == 0 && rr->check_only && (rr->new_pid || rr->no_verify))
        r = cairn_error_set(&err, -EINVAL, CAIRN_INVALID_ARGUMENT, "restart: "
                            "check_only restores nothing: it takes no %s",
                            rr->new_pid ? "new_pid" : "no_verify");
    if (r == 0)
        snprintf(image, sizeof image, "%s/%s", rr->dir, GHOSTD_IMAGE_NAME);
    /* A user's image is looked at by the helper alone, with their file
     * rights: root's stat here would tell them of files they cannot see. */
    if (r == 0 && !s_for_user(cairn_request_caller(req)))
        r = s_check_image(image, &err);
    if (r == 0)
        r = s_check_busy(gd, GHOSTD_RESTART, 0, rr->dir, &err);
    if (r < 0)
        return s_fail(req, &err);
    j = s_helper_claim(gd);
    s_helper_caller(j, cairn_request_caller(req));
    j->kind = GHOSTD_RESTART;
    j->new_pid = rr->new_pid;
    j->check_only = rr->check_only;
    snprintf(j->dir, sizeof j->dir, "%s", rr->dir);
    snprintf(j->image, sizeof j->image, "%s", image);
    /* + --check or --new-pid, --no-verify, --scope UNIT --slice SLICE,
     * --as UID:GID, NULL */
    char *argv[12] = { NULL, "--image", j->image };
    int n = 3;
    if (rr->check_only || rr->new_pid)
        argv[n++] = rr->check_only ? "--check" : "--new-pid";
    if (!rr->check_only && rr->no_verify)
        argv[n++] = "--no-verify";
    if (!rr->check_only && gd->placement.mode == GHOSTD_PLACE_SCOPE &&
        ghostd_placement_next_scope(&gd->placement, j->scope,
                                    sizeof j->scope) == 0) {
        argv[n++] = "--scope";
        argv[n++] = j->scope;
        argv[n++] = "--slice";
        argv[n++] = GHOSTD_JOB_SLICE;
    }
    if (j->for_user) {
        argv[n++] = "--as";
        argv[n++] = j->as_arg;
    }
    argv[n] = NULL;
    r = s_helper_run(j, req, argv, NULL, &err);
    return r < 0 ? s_fail(req, &err) : r;
}

/* ---- for jobs.c ------------------------------------------------------- */

int ghostd_helper_request(ghostd_t *gd, cairn_request_t *req, ghostd_kind_t kind,
                           char *argv[], char *const envp[], struct ghostd_job *job,
                           const cairn_caller_t *caller, cairn_error_t *err)
{
    ghostd_helper_t *j = s_helper_claim(gd);

    if (!j)
        return cairn_error_set(err, -EBUSY, CAIRN_BUSY, "%d helpers are running; "
                               "try again later", GHOSTD_MAX_HELPERS);
    s_helper_caller(j, caller);
    j->kind = kind;
    j->job = job;
    return s_helper_run(j, req, argv, envp, err);
}

bool ghostd_helper_running(const ghostd_t *gd, pid_t pid)
{
    for (size_t i = 0; i < GHOSTD_MAX_HELPERS; i++)
        if (gd->helpers[i].used && gd->helpers[i].helper == pid)
            return true;
    return false;
}

bool ghostd_launch_running(const ghostd_t *gd)
{
    for (size_t i = 0; i < GHOSTD_MAX_HELPERS; i++)
        if (gd->helpers[i].used && gd->helpers[i].kind == GHOSTD_LAUNCH)
            return true;
    return false;
}

/* ---- lifecycle --------------------------------------------------------- */

/* The default image directory as a tmpfs of huge pages (spool.h); where
 * that cannot be, checkpoints still go to it, streamed. */
static void s_spool_start(ghostd_t *gd)
{
    cairn_error_t err = { 0 };
    const char *rundir = cairn_service_node(gd->svc)->rundir;

    int r = ghostd_spool_prepare(&gd->spool, rundir, &err);
    if (r < 0)
        cairn_log_warn(r, "spool", "path=%s msg=\"%s; images there are "
                       "streamed, not copied in place\"", gd->spool.path, err.message);
    else
        cairn_log_info("spool", "path=%s mounted=%s huge=%s", gd->spool.path,
                       gd->spool.adopted ? "adopted" : gd->spool.mounted ? "here" : "already",
                       gd->spool.mounted ? (gd->spool.huge ? "yes" : "no") : "unknown");
}

static int s_start(cairn_service_t *svc, void *ctx)
{
    ghostd_t *gd = ctx;
    cairn_error_t err = { 0 };
    char path[PATH_MAX];

    gd->svc = svc;
    s_metric_ops(cairn_service_metrics(svc));
    s_metric_bytes(cairn_service_metrics(svc));
    for (int k = GHOSTD_CHECKPOINT; k <= GHOSTD_LAUNCH; k++) {
        if (s_helper_path(s_helper_name(k), path, sizeof path, &err) < 0)
            cairn_log_warn(0, "helper", "msg=\"%s\", requests will fail "
                           "until it is installed", err.message);
        else
            cairn_log_info("helper", "path=%s", path);
    }
    s_spool_start(gd);
    ghostd_placement_init(&gd->placement);
    if (migrate_start(gd) < 0 || restart_start(gd) < 0 || place_hold_start(gd) < 0)
        return cairn_log_err(-ENOMEM, "start", "msg=\"out of memory\"");
    cairn_log_info("placement", "mode=%s cgroup=%s unit=%s why=\"%s\"",
                   gd->placement.mode == GHOSTD_PLACE_SCOPE ? "scope"
                                                            : "inherit",
                   gd->placement.cgroup,
                   gd->placement.unit[0] ? gd->placement.unit : "(none)",
                   gd->placement.why);
    /* A job's reaper outlives ghost-init, its parent: it comes to us, so
     * we hear of its end and reap it (jobs.c). */
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
        cairn_log_warn(-errno, "subreaper", "msg=\"cannot become a child "
                       "subreaper; jobs' exit statuses go to init\"");
    return ghostd_jobs_new(gd, &gd->jobs);
}

/* systemctl status shows where restored processes go. */
static int s_ready(cairn_service_t *svc, void *ctx)
{
    ghostd_t *gd = ctx;

#if CAIRN_HAVE_SYSTEMD
    sd_notifyf(0, "STATUS=serving on node %u; %s", cairn_service_node(svc)->id,
               gd->placement.why);
#endif
    int r = ghostd_jobs_ready(gd->jobs);
    return r < 0 ? r : restart_ready(gd);
}

static void s_stop(cairn_service_t *svc, void *ctx)
{
    ghostd_t *gd = ctx;

    place_hold_stop(gd); /* held runs answered while the table is there */
    migrate_stop(gd);   /* held trees resumed before their helpers go */
    restart_stop(gd);   /* before the helpers and the table go */
    ghostd_done(gd);
    int r = ghostd_spool_release(&gd->spool);
    if (r == -ENOTEMPTY)
        cairn_log_info("spool", "path=%s kept=mounted reason=\"it holds images\"",
                       gd->spool.path);
    else if (r < 0)
        cairn_log_warn(r, "spool", "path=%s msg=\"cannot unmount\"", gd->spool.path);
}

void ghostd_done(ghostd_t *gd)
{
    for (size_t i = 0; i < GHOSTD_MAX_HELPERS; i++) {
        ghostd_helper_t *j = &gd->helpers[i];
        if (!j->used)
            continue;
        s_helper_kill(j);
        while (waitpid(j->helper, NULL, 0) < 0 && errno == EINTR)
            ;
        s_helper_fail(j, CAIRN_UNAVAILABLE, "ghostd is stopping; the helper "
                   "was killed");
        s_helper_release(j);
    }
    gd->jobs = ghostd_jobs_free(gd->jobs);
}

static const cairn_handler_t s_handlers[] = {
    { CAIRN__GHOSTD__REQUEST__MSG_CHECKPOINT, "checkpoint", s_handle_checkpoint,
      CAIRN_ACCESS_USER },
    { CAIRN__GHOSTD__REQUEST__MSG_RESTART, "restart", s_handle_restart,
      CAIRN_ACCESS_USER },
    /* migration (migrate.h): a user moves their own; the target's side
     * checks that the caller is the source node vouching for the owner */
    { CAIRN__GHOSTD__REQUEST__MSG_MIGRATE, "migrate", migrate_handle,
      CAIRN_ACCESS_USER },
    { CAIRN__GHOSTD__REQUEST__MSG_MIGRATE_BEGIN, "migrate_begin",
      migrate_handle_begin, CAIRN_ACCESS_USER },
    { CAIRN__GHOSTD__REQUEST__MSG_MIGRATE_CHUNK, "migrate_chunk",
      migrate_handle_chunk, CAIRN_ACCESS_USER },
    { CAIRN__GHOSTD__REQUEST__MSG_MIGRATE_STATUS, "migrate_status",
      migrate_handle_status, CAIRN_ACCESS_USER },
    { CAIRN__GHOSTD__REQUEST__MSG_MIGRATE_COMMIT, "migrate_commit",
      migrate_handle_commit, CAIRN_ACCESS_USER },
    { CAIRN__GHOSTD__REQUEST__MSG_MIGRATE_ABORT, "migrate_abort",
      migrate_handle_abort, CAIRN_ACCESS_USER },
    /* post-copy's page relay: member nodes' ghostds only (ADMIN) */
    { CAIRN__GHOSTD__REQUEST__MSG_MIGRATE_PAGES, "migrate_pages", migrate_handle_pages },
    /* restart on failure (restart.h): between member nodes' ghostds only */
    { CAIRN__GHOSTD__REQUEST__MSG_REPLICA_PUT, "replica_put", restart_handle_put },
    { CAIRN__GHOSTD__REQUEST__MSG_REPLICA_DROP, "replica_drop", restart_handle_drop },
    { CAIRN__GHOSTD__REQUEST__MSG_RUN, "run", ghostd_jobs_handle_run,
      CAIRN_ACCESS_USER },
    { CAIRN__GHOSTD__REQUEST__MSG_PS, "ps", ghostd_jobs_handle_ps,
      CAIRN_ACCESS_USER },
    { CAIRN__GHOSTD__REQUEST__MSG_SIGNAL, "signal", ghostd_jobs_handle_signal,
      CAIRN_ACCESS_USER },
    { CAIRN__GHOSTD__REQUEST__MSG_WAIT, "wait", ghostd_jobs_handle_wait,
      CAIRN_ACCESS_USER },
};

const cairn_service_ops_t ghostd_ops = {
    .name = "ghostd",
    .request_desc = &cairn__ghostd__request__descriptor,
    .reply_desc = &cairn__ghostd__reply__descriptor,
    .handlers = s_handlers,
    .n_handlers = sizeof(s_handlers) / sizeof(s_handlers[0]),
    .start = s_start,
    .ready = s_ready,
    .stop = s_stop,
};

/* cmd-sync.c - `cairn lock`, `cairn barrier`, `cairn sync ls|show|destroy`:
 * syncd's cluster-wide objects from the shell (docs/sync.md).
 *
 * Design. What holds or waits goes through libcairn (cairn/sync.h), whose
 * session talks to *this node's* syncd over ipc: syncd knows who calls from
 * the kernel (SO_PEERCRED), so the holder of a lock taken here is this
 * process, and a tcp endpoint is refused before anything is sent. The node
 * is picked like every other target (target.c: --node, $CAIRN_NODE, else
 * the first of this host's nodes that runs syncd). What only reads (ls,
 * show) is one request through cli_target_client, like the other nouns,
 * over ipc or tcp.
 *
 * `cairn lock NAME -- CMD` is flock(1) across the cluster. The command is
 * forked *before* the session is opened and waits on a pipe: it cannot
 * inherit a socket or a mapping of the session, yet keeps every fd the
 * caller gave it (`3<file`). Once the mutex is granted the parent writes
 * the grant into the pipe; the child puts it in its environment
 * (CAIRN_LOCK_NAME, CAIRN_LOCK_TOKEN, CAIRN_LOCK_OWNER_DIED) and execs. A
 * failed lock closes the pipe instead: the command never runs. The parent
 * -- the lock's holder -- ignores SIGINT/SIGQUIT while the command runs (the
 * terminal sends them to the command too), passes SIGTERM/SIGHUP on, waits,
 * and unlocks; the command gets SIGKILL if its parent dies first
 * (PR_SET_PDEATHSIG), so it never runs on once the lock is gone. stdout
 * belongs to the command: lock prints nothing there of its own unless
 * asked (--print-token), and exits with the command's status (128+N for a
 * signal).
 *
 * Owner died. A grant that says the previous holder died runs the command
 * with CAIRN_LOCK_OWNER_DIED=1: it is the one to repair what the lock
 * protects. If it exits 0 the mutex is marked consistent before the unlock.
 * Otherwise lock exits without unlocking: a failed repair is a repairer
 * that died, so the next holder is told owner-died in turn -- rather than
 * unlock it inconsistent, which would make it not recoverable (POSIX
 * robust mutexes) until `cairn sync destroy NAME`.
 *
 * Fencing tokens are printed as decimal strings: they are above 2^53, where
 * JSON readers that use doubles (jq 1.6, JavaScript) would round them.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cairn/client.h"
#include "cairn/sync.h"
#include "cli.h"
#include "output.h"
#include "syncd.pb-c.h"
#include "target.h"

const cairn_option_t cli_lock_options[] = {
    { "--shared", NULL, "when the lock is made by this call: any user may "
      "take it (else only its owner and root)" },
    { "--no-cache", NULL, "when the lock is made by this call: never cache "
      "it at a node (every lock and unlock goes to its home)" },
    { "--try", NULL, "do not wait: busy (exit 1) if another holds it" },
    { "--print-token", NULL, "print one JSON line with the grant (name, "
      "token, owner_died, home, cached) on stdout before the command runs" },
    { NULL, NULL, NULL },
};
enum { O_LOCK_SHARED, O_LOCK_NO_CACHE, O_LOCK_TRY, O_LOCK_PRINT };

const cairn_option_t cli_barrier_options[] = {
    { "--parties", "N", "how many callers the barrier waits for (1.."
      "4294967295; must equal the barrier's once it exists)" },
    { "--shared", NULL, "when the barrier is made by this call: any user "
      "may wait on it" },
    { NULL, NULL, NULL },
};
enum { O_BARRIER_PARTIES, O_BARRIER_SHARED };

const cairn_option_t cli_sync_ls_options[] = {
    { "--local", NULL, "only the objects whose home is the asked node" },
    { NULL, NULL, NULL },
};
enum { O_LS_LOCAL };

/* ---- arguments --------------------------------------------------------- */

/* A name syncd can take: 1..CAIRN_SYNC_NAME_MAX bytes of UTF-8 (a name is
 * a protobuf string and a JSON string). Never echoes a long name back. */
static int s_check_name(const char *what, const char *name,
                        cairn_error_t *err)
{
    size_t len = strlen(name);
    json_t *probe;

    if (len == 0)
        return cairn_error_set(err, -EINVAL, CAIRN_USAGE, "%s: NAME is empty",
                               what);
    if (len > CAIRN_SYNC_NAME_MAX)
        return cairn_error_set(err, -EINVAL, CAIRN_USAGE, "%s: NAME is %zu "
                               "bytes long; a name has at most %d", what, len,
                               CAIRN_SYNC_NAME_MAX);
    probe = json_stringn(name, len);
    if (!probe)
        return cairn_error_set(err, -EINVAL, CAIRN_USAGE, "%s: NAME is not "
                               "valid UTF-8", what);
    json_decref(probe);
    return 0;
}

/* The one positional NAME of a verb, checked. */
static int s_name_arg(const char *what, const cairn_option_t *options,
                      int argc, char **argv, cairn_args_t *a,
                      cairn_error_t *err)
{
    int r = cairn_args_parse(what, options, argc, argv, 1, a, err);

    if (r == 0 && a->n_pos == 0)
        r = cairn_error_set(err, -EINVAL, CAIRN_USAGE, "%s: NAME is required",
                            what);
    return r < 0 ? r : s_check_name(what, a->pos[0], err);
}

/* How long lock and barrier wait: --timeout when given, else as long as it
 * takes (flock(1) without -w). */
static int64_t s_wait_ms(const cli_ctx *ctx)
{
    return ctx->timeout_set ? ctx->timeout_ms : CAIRN_SYNC_FOREVER;
}

/* ---- sessions ---------------------------------------------------------- */

/* A failure of libcairn, made fit for cli_exit_code: a code set whatever
 * the library left, and a timeout that exits as one (3) even when a
 * daemon's Status said it. */
static int s_sync_error(int r, const char *what, const char *name,
                        cairn_error_t *err)
{
    char message[CAIRN_ERROR_MESSAGE_MAX];

    if (err->code == CAIRN_OK)
        cairn_error_set(err, r, r == -ETIMEDOUT ? CAIRN_TIMEOUT
                                : r == -ENOMEM  ? CAIRN_SYSTEM
                                                : CAIRN_INTERNAL,
                        "syncd: %s", strerror(-r));
    /* libcairn's messages say what happened, not to which object */
    snprintf(message, sizeof message, "%s", err->message);
    cairn_error_set(err, r, err->code, "%s '%s': %s", what, name, message);
    return err->code == CAIRN_TIMEOUT ? -ETIMEDOUT : r;
}

/* The node was named (and so must be used as it is) rather than picked. */
static bool s_named(const cli_ctx *ctx)
{
    const char *env = getenv("CAIRN_NODE");

    return ctx->endpoint || ctx->node || (env && *env);
}

/* The target for what holds or waits: this node's syncd over ipc. */
static int s_resolve_ipc(const cli_ctx *ctx, const char *what,
                         cli_target_t *ret, cairn_error_t *err)
{
    cli_target_t t = { 0 };
    int r = cli_target_resolve_here(ctx, "syncd", &t, err);

    if (r < 0)
        return r;
    if (strncmp(t.endpoint, "ipc://", 6) != 0) {
        r = cairn_error_set(err, s_named(ctx) ? -EINVAL : -ENOENT,
                            s_named(ctx) ? CAIRN_USAGE : CAIRN_UNAVAILABLE,
                            "%s needs the syncd of a node on this host, over "
                            "ipc (syncd learns who holds or waits from the "
                            "kernel), but the %s syncd is %s: run cairn on "
                            "that node", what,
                            s_named(ctx) ? "named" : "first live", t.endpoint);
        cli_target_clear(&t);
        return r;
    }
    *ret = t;
    return 0;
}

/* Declares name when the caller asked for a spec that only matters when
 * the object is made (shared, no-cache). */
static int s_declare(cairn_sync_t *s, const char *name,
                     const cairn_sync_spec_t *spec, cairn_error_t *err)
{
    int r;

    if (!spec->shared && !spec->no_cache)
        return 0;
    r = cairn_sync_declare(s, name, spec, err);
    return r < 0 ? s_sync_error(r, "declare", name, err) : 0;
}

/* ---- cairn lock -------------------------------------------------------- */

/* What the parent tells the waiting child once the lock is held. */
typedef struct s_go {
    uint64_t token;
    uint32_t owner_died;
} s_go_t;

typedef struct s_lock_args {
    const char *name;
    char **cmd;             /* argv of the command, NULL-terminated */
    cairn_sync_spec_t spec;
    bool try_only;
    bool print_token;
} s_lock_args_t;

/* `NAME [options] -- CMD [ARGS...]`: the options before "--" only, so
 * the command's own arguments are never read as ours. */
static int s_lock_args(int argc, char **argv, s_lock_args_t *ret,
                       cairn_error_t *err)
{
    cairn_args_t a;
    int dash = 0, r;

    while (dash < argc && strcmp(argv[dash], "--") != 0)
        dash++;
    if (dash == argc && argc > 0)   /* `lock x cmd`: say what is missing */
        return cairn_error_set(err, -EINVAL, CAIRN_USAGE, "lock: the command "
                               "to run goes after '--' (cairn lock NAME -- "
                               "CMD [ARGS...])");
    r = s_name_arg("lock", cli_lock_options, dash, argv, &a, err);
    if (r < 0)
        return r;
    if (dash + 1 == argc || !*argv[dash + 1])
        return cairn_error_set(err, -EINVAL, CAIRN_USAGE, "lock: no command "
                               "after '--'");
    *ret = (s_lock_args_t){
        .name = a.pos[0], .cmd = argv + dash + 1,
        .spec = { .kind = CAIRN_SYNC_MUTEX,
                  .shared = a.values[O_LOCK_SHARED] != NULL,
                  .no_cache = a.values[O_LOCK_NO_CACHE] != NULL },
        .try_only = a.values[O_LOCK_TRY] != NULL,
        .print_token = a.values[O_LOCK_PRINT] != NULL,
    };
    return 0;
}

/* In the child: waits for the grant on fd go, sets the environment and
 * execs; never returns. No grant (the pipe closed): exits without running
 * anything. An exec that fails writes its errno on fd status. */
static void s_child(const s_lock_args_t *la, int go, int status)
{
    char token[32];
    s_go_t g;
    ssize_t n;
    int e;

    do
        n = read(go, &g, sizeof g);
    while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof g)
        _exit(127);
    close(go);
    snprintf(token, sizeof token, "%" PRIu64, g.token);
    if (setenv("CAIRN_LOCK_NAME", la->name, 1) < 0 ||
        setenv("CAIRN_LOCK_TOKEN", token, 1) < 0 ||
        (g.owner_died ? setenv("CAIRN_LOCK_OWNER_DIED", "1", 1)
                      : unsetenv("CAIRN_LOCK_OWNER_DIED")) < 0)
        e = errno;
    else {
        execvp(la->cmd[0], la->cmd);
        e = errno;
    }
    (void)!write(status, &e, sizeof e);
    _exit(e == ENOENT ? 127 : 126);
}

/* Forks the command, waiting for its grant. *ret_go is the pipe to send
 * it on, *ret_status the one an exec failure comes back on. */
static int s_fork_command(const s_lock_args_t *la, pid_t *ret_pid,
                          int *ret_go, int *ret_status, cairn_error_t *err)
{
    pid_t parent = getpid(), pid;
    int go[2], st[2];

    if (pipe2(go, O_CLOEXEC) < 0)
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "lock: pipe: %s",
                               strerror(errno));
    if (pipe2(st, O_CLOEXEC) < 0) {
        int e = errno;

        close(go[0]);
        close(go[1]);
        return cairn_error_set(err, -e, CAIRN_SYSTEM, "lock: pipe: %s",
                               strerror(e));
    }
    fflush(NULL);
    pid = fork();
    if (pid == 0) {
        close(go[1]);
        close(st[0]);
        /* the lock is its parent's: once that is gone, so is the command */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
            _exit(127);
        s_child(la, go[0], st[1]);
    }
    close(go[0]);
    close(st[1]);
    if (pid < 0) {
        int e = errno;

        close(go[1]);
        close(st[0]);
        return cairn_error_set(err, -e, CAIRN_SYSTEM, "lock: fork: %s",
                               strerror(e));
    }
    *ret_pid = pid;
    *ret_go = go[1];
    *ret_status = st[0];
    return 0;
}

/* waitpid that survives signals; the status as a shell tells it. */
static int s_wait_child(pid_t pid)
{
    int status;

    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return 127;
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}

static volatile sig_atomic_t s_command_pid;

/* SIGTERM/SIGHUP while the lock is held: for the command to handle. */
static void s_forward(int sig)
{
    if (s_command_pid > 0)
        kill((pid_t)s_command_pid, sig);
}

#define S_N_HELD_SIGNALS 5

/* From the grant on, the holder stays alive to unlock: SIGINT and SIGQUIT
 * (which a terminal sends the command too) are ignored, SIGTERM and SIGHUP
 * passed on to the command, SIGPIPE ignored (a write to a gone command or
 * stdout fails instead of killing the holder). */
static void s_hold_signals(pid_t pid, struct sigaction old[S_N_HELD_SIGNALS])
{
    static const int sigs[S_N_HELD_SIGNALS] = { SIGINT, SIGQUIT, SIGPIPE,
                                                SIGTERM, SIGHUP };
    struct sigaction ign = { .sa_handler = SIG_IGN };
    struct sigaction fwd = { .sa_handler = s_forward };

    s_command_pid = pid;
    sigemptyset(&ign.sa_mask);
    sigemptyset(&fwd.sa_mask);
    for (int i = 0; i < S_N_HELD_SIGNALS; i++)
        sigaction(sigs[i], i < 3 ? &ign : &fwd, &old[i]);
}

static void s_release_signals(const struct sigaction old[S_N_HELD_SIGNALS])
{
    static const int sigs[S_N_HELD_SIGNALS] = { SIGINT, SIGQUIT, SIGPIPE,
                                                SIGTERM, SIGHUP };

    for (int i = 0; i < S_N_HELD_SIGNALS; i++)
        sigaction(sigs[i], &old[i], NULL);
    s_command_pid = 0;
}

/* The --print-token line: what was granted, on stdout before the command. */
static int s_print_grant(FILE *out, const char *name,
                         const cairn_sync_grant_t *g, cairn_error_t *err)
{
    char token[32];
    _cleanup_json_ json_t *doc = NULL;
    int r;

    snprintf(token, sizeof token, "%" PRIu64, g->token);
    doc = json_pack("{s:s, s:s, s:b, s:I, s:b}", "name", name, "token", token,
                    "owner_died", (int)g->owner_died, "home",
                    (json_int_t)g->home, "cached", (int)g->cached);
    if (!doc)
        return cli_oom(err);
    r = cli_print_json_line(out, doc);
    return r < 0 ? cairn_error_set(err, r, CAIRN_SYSTEM, "lock: cannot write "
                                   "the grant to stdout: %s", strerror(-r))
                 : 0;
}

/* Takes the lock for la on a new session; *ret_s holds it. */
static int s_take(const cli_ctx *ctx, const s_lock_args_t *la,
                  cairn_sync_t **ret_s, cairn_sync_grant_t *g,
                  cairn_error_t *err)
{
    cli_target_t t = { 0 };
    cairn_sync_t *s;
    int r;

    r = s_resolve_ipc(ctx, "lock", &t, err);
    if (r < 0)
        return r;
    s = cairn_sync_open(t.endpoint, err);
    cli_target_clear(&t);
    if (!s)
        return s_sync_error(-ENOTCONN, "lock", la->name, err);
    r = s_declare(s, la->name, &la->spec, err);
    if (r == 0) {
        r = cairn_mutex_lock(s, la->name,
                             la->try_only ? 0 : s_wait_ms(ctx), g, err);
        if (r == -EOWNERDEAD) {
            g->owner_died = true;
            cairn_error_clear(err);
            r = 0;
        } else if (r < 0)
            r = s_sync_error(r, "lock", la->name, err);
    }
    if (r < 0) {
        cairn_sync_close(s);
        return r;
    }
    *ret_s = s;
    return 0;
}

/* Gives the lock back once the command is over. An owner-died grant whose
 * command did not exit 0 (or never ran) is not unlocked: the repair did not
 * happen, so it passes on owner-died to the next holder when this process
 * exits, as if this holder died too. One the command repaired (exit 0) is
 * marked consistent first. */
static int s_give_back(cairn_sync_t *s, const s_lock_args_t *la,
                       const cairn_sync_grant_t *g, bool repaired,
                       cairn_error_t *err)
{
    int r = 0;

    if (g->owner_died && !repaired)
        return 0;
    if (g->owner_died)
        r = cairn_mutex_consistent(s, la->name, err);
    if (r == 0)
        r = cairn_mutex_unlock(s, la->name, err);
    return r < 0 ? s_sync_error(r, "unlock", la->name, err) : 0;
}

/* Sends the grant to the waiting command and waits for it. Its exit code,
 * or 126/127 with the error printed when it could not be exec'ed; *ran
 * says whether it did run. */
static int s_run_command(const s_lock_args_t *la, const cairn_sync_grant_t *g,
                         pid_t pid, int go, int status, bool *ran)
{
    s_go_t msg = { .token = g->token, .owner_died = g->owner_died };
    cairn_error_t err = { 0 };
    ssize_t n;
    int e = 0, code;

    do
        n = write(go, &msg, sizeof msg);
    while (n < 0 && errno == EINTR);
    close(go);
    *ran = n == (ssize_t)sizeof msg;
    /* the status pipe closes on a successful exec, or carries its errno */
    do
        n = *ran ? read(status, &e, sizeof e) : 0;
    while (n < 0 && errno == EINTR);
    close(status);
    code = s_wait_child(pid);
    if (n > 0) {
        *ran = false;
        cairn_error_set(&err, -e, e == ENOENT ? CAIRN_NOT_FOUND
                                  : e == EACCES ? CAIRN_PERMISSION_DENIED
                                                : CAIRN_SYSTEM,
                        "lock: cannot run '%s': %s", la->cmd[0], strerror(e));
        cli_print_error(stderr, &err);
    }
    return code;
}

int cli_cmd_lock(cli_ctx *ctx, int argc, char **argv, FILE *in, FILE *out,
                 cairn_error_t *err)
{
    struct sigaction old[S_N_HELD_SIGNALS];
    cairn_sync_grant_t g = { 0 };
    cairn_sync_t *s = NULL;
    cairn_error_t e2 = { 0 };
    s_lock_args_t la;
    int go = -1, status = -1, r, code;
    bool ran = false;
    pid_t pid = -1;

    r = s_lock_args(argc, argv, &la, err);
    if (r == 0 && la.try_only && ctx->timeout_set)
        r = cairn_error_set(err, -EINVAL, CAIRN_USAGE, "lock: --try does not "
                            "wait: it takes no --timeout");
    if (r == 0)
        r = s_fork_command(&la, &pid, &go, &status, err);
    if (r < 0)
        return r;
    r = s_take(ctx, &la, &s, &g, err);
    if (r < 0) {   /* the command never runs: its pipe closes unused */
        close(go);
        close(status);
        s_wait_child(pid);
        return r;
    }
    s_hold_signals(pid, old);
    if (la.print_token && (r = s_print_grant(out, la.name, &g, err)) < 0) {
        close(go);
        close(status);
        s_wait_child(pid);
        s_give_back(s, &la, &g, false, &e2);
        cairn_sync_close(s);
        s_release_signals(old);
        return r;
    }
    code = s_run_command(&la, &g, pid, go, status, &ran);
    r = s_give_back(s, &la, &g, ran && code == 0, &e2);
    if (r < 0) {
        cli_print_error(stderr, &e2);
        code = code ? code : cli_exit_code(r, &e2);
    }
    cairn_sync_close(s);
    s_release_signals(old);
    return code;
}

/* ---- cairn barrier ----------------------------------------------------- */

/* Opens a session with this node's syncd (what waits must be its caller). */
static int s_open(const cli_ctx *ctx, const char *what, const char *name,
                  cairn_sync_t **ret, json_t **ret_by, cairn_error_t *err)
{
    cli_target_t t = { 0 };
    cairn_sync_t *s;
    int r = s_resolve_ipc(ctx, what, &t, err);

    if (r < 0)
        return r;
    s = cairn_sync_open(t.endpoint, err);
    *ret_by = s ? cli_target_node_json(&t) : NULL;
    cli_target_clear(&t);
    if (!s)
        return s_sync_error(-ENOTCONN, what, name, err);
    if (!*ret_by) {
        cairn_sync_close(s);
        return cli_oom(err);
    }
    *ret = s;
    return 0;
}

int cli_cmd_barrier(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                    cairn_error_t *err)
{
    _cleanup_json_ json_t *by = NULL;
    cairn_sync_spec_t spec = { .kind = CAIRN_SYNC_BARRIER };
    cairn_sync_t *s = NULL;
    uint64_t generation = 0;
    cairn_args_t a;
    long parties;
    int r;

    r = s_name_arg("barrier", cli_barrier_options, argc, argv, &a, err);
    if (r == 0 && !a.values[O_BARRIER_PARTIES])
        r = cairn_error_set(err, -EINVAL, CAIRN_USAGE, "barrier: --parties N "
                            "is required");
    if (r == 0)
        r = cairn_parse_long("barrier: --parties",
                             a.values[O_BARRIER_PARTIES], 1, UINT32_MAX,
                             &parties, err);
    if (r == 0)
        r = s_open(ctx, "barrier", a.pos[0], &s, &by, err);
    if (r < 0)
        return r;
    spec.value = (uint32_t)parties;
    spec.shared = a.values[O_BARRIER_SHARED] != NULL;
    r = s_declare(s, a.pos[0], &spec, err);
    if (r == 0) {
        r = cairn_barrier_wait(s, a.pos[0], (uint32_t)parties, s_wait_ms(ctx),
                               &generation, err);
        r = r < 0 ? s_sync_error(r, "barrier", a.pos[0], err) : r;
    }
    cairn_sync_close(s);
    if (r < 0)
        return r;
    *ret_result = json_pack("{s:s, s:I, s:I, s:b, s:O}", "name", a.pos[0],
                            "parties", (json_int_t)parties, "generation",
                            (json_int_t)generation, "serial", r == 1,
                            "answered_by", by);
    return *ret_result ? 0 : cli_oom(err);
}

/* ---- cairn sync destroy ------------------------------------------------ */

int cli_cmd_sync_destroy(cli_ctx *ctx, int argc, char **argv,
                         json_t **ret_result, cairn_error_t *err)
{
    _cleanup_json_ json_t *by = NULL;
    cairn_sync_t *s = NULL;
    cairn_args_t a;
    int r;

    r = s_name_arg("sync destroy", cli_no_options, argc, argv, &a, err);
    if (r == 0)
        r = s_open(ctx, "sync destroy", a.pos[0], &s, &by, err);
    if (r < 0)
        return r;
    r = cairn_sync_destroy(s, a.pos[0], err);
    cairn_sync_close(s);
    if (r < 0)
        return s_sync_error(r, "sync destroy", a.pos[0], err);
    *ret_result = json_pack("{s:s, s:b, s:O}", "name", a.pos[0], "destroyed",
                            1, "answered_by", by);
    return *ret_result ? 0 : cli_oom(err);
}

/* ---- cairn sync ls / show: one request each ---------------------------- */

/* Sends req to the target node's syncd; *ret is its Reply, which must be
 * of case `expect` (caller frees). */
static int s_call(const cli_ctx *ctx, const ProtobufCMessage *req,
                  Cairn__Syncd__Reply__MsgCase expect, const char *what,
                  Cairn__Syncd__Reply **ret, json_t **ret_by,
                  cairn_error_t *err)
{
    ProtobufCMessage *reply = NULL;
    cli_target_t t = { 0 };
    cairn_client_t *c = NULL;
    int r;

    r = cli_target_resolve(ctx, "syncd", &t, err);
    if (r == 0)
        r = cli_target_client(ctx, &t, "syncd", ctx->timeout_ms, &c, err);
    if (r == 0)
        r = cairn_client_call(c, req, &cairn__syncd__reply__descriptor,
                              &reply, err);
    if (r == 0 && ((Cairn__Syncd__Reply *)reply)->msg_case != expect) {
        protobuf_c_message_free_unpacked(reply, NULL);
        r = cairn_error_set(err, -EBADMSG, CAIRN_DECODE_ERROR, "syncd at %s "
                            "answered %s with another message", t.endpoint,
                            what);
    }
    if (r == 0 && !(*ret_by = cli_target_node_json(&t))) {
        protobuf_c_message_free_unpacked(reply, NULL);
        r = cli_oom(err);
    }
    cairn_client_free(c);
    cli_target_clear(&t);
    if (r < 0)
        return r;
    *ret = (Cairn__Syncd__Reply *)reply;
    return 0;
}

static const char *s_kind_name(Cairn__Syncd__Kind k)
{
    switch (k) {
    case CAIRN__SYNCD__KIND__KIND_MUTEX: return "mutex";
    case CAIRN__SYNCD__KIND__KIND_RWLOCK: return "rwlock";
    case CAIRN__SYNCD__KIND__KIND_SEMAPHORE: return "semaphore";
    case CAIRN__SYNCD__KIND__KIND_BARRIER: return "barrier";
    case CAIRN__SYNCD__KIND__KIND_CONDVAR: return "condvar";
    default: return "unknown";
    }
}

static const char *s_mode_name(Cairn__Syncd__Mode m)
{
    switch (m) {
    case CAIRN__SYNCD__MODE__MODE_LOCK: return "lock";
    case CAIRN__SYNCD__MODE__MODE_READ: return "read";
    case CAIRN__SYNCD__MODE__MODE_WRITE: return "write";
    case CAIRN__SYNCD__MODE__MODE_SEM: return "sem";
    default: return "none";
    }
}

/* A string for JSON: as it is when it is UTF-8, else with every non-ASCII
 * byte replaced by U+FFFD (a name made through the C API need not be
 * UTF-8, and jansson takes only UTF-8). */
static json_t *s_json_text(const char *s)
{
    json_t *j = json_string(s ? s : "");
    char *fixed, *p;

    if (j || !s)
        return j;
    fixed = p = malloc(strlen(s) * 3 + 1);
    if (!fixed)
        return NULL;
    for (; *s; s++) {
        if ((unsigned char)*s < 0x80) {
            *p++ = *s;
            continue;
        }
        memcpy(p, "\xef\xbf\xbd", 3);
        p += 3;
    }
    *p = '\0';
    j = json_string(fixed);
    free(fixed);
    return j;
}

static json_t *s_token_json(uint64_t token)
{
    char text[32];

    snprintf(text, sizeof text, "%" PRIu64, token);
    return json_string(text);
}

static json_t *s_node_or_null(uint32_t node)
{
    return node ? json_integer(node) : json_null();
}

static json_t *s_holder_json(const Cairn__Syncd__Grant *g)
{
    const Cairn__Syncd__Holder *h = g->holder;

    return json_pack("{s:I, s:I, s:I, s:s, s:o, s:I}",
                     "node", (json_int_t)(h ? h->node : 0),
                     "pid", (json_int_t)(h ? h->pid : 0),
                     "tid", (json_int_t)(h ? h->tid : 0),
                     "mode", s_mode_name(g->mode),
                     "token", s_token_json(g->token),
                     "count", (json_int_t)g->count);
}

static json_t *s_waiter_json(const Cairn__Syncd__Waiter *w)
{
    const Cairn__Syncd__Holder *h = w->holder;

    return json_pack("{s:I, s:I, s:I, s:s, s:I}",
                     "node", (json_int_t)(h ? h->node : 0),
                     "pid", (json_int_t)(h ? h->pid : 0),
                     "tid", (json_int_t)(h ? h->tid : 0),
                     "mode", s_mode_name(w->mode),
                     "since_ms", (json_int_t)w->since_ms);
}

/* value and generation mean something for semaphores and barriers only. */
static json_t *s_value_json(const Cairn__Syncd__ObjectInfo *o)
{
    return o->kind == CAIRN__SYNCD__KIND__KIND_SEMAPHORE ||
                   o->kind == CAIRN__SYNCD__KIND__KIND_BARRIER
               ? json_integer(o->value) : json_null();
}

/* One object: the fields ls and show share, holders in full; waiters in
 * full (show) or counted (ls). */
static json_t *s_object_json(const Cairn__Syncd__ObjectInfo *o, bool full)
{
    json_t *holders = json_array(), *waiters = full ? json_array() : NULL;
    json_t *obj;

    for (size_t i = 0; holders && i < o->n_holders; i++)
        json_array_append_new(holders, s_holder_json(o->holders[i]));
    for (size_t i = 0; waiters && i < o->n_waiters; i++)
        json_array_append_new(waiters, s_waiter_json(o->waiters[i]));
    obj = json_pack("{s:o, s:s, s:I, s:I, s:b, s:s, s:o, s:o, s:o, s:o}",
                    "name", s_json_text(o->name), "kind", s_kind_name(o->kind),
                    "home", (json_int_t)o->home,
                    "owner_uid", (json_int_t)o->owner_uid,
                    "shared", (int)o->shared,
                    "state", o->state && *o->state ? o->state : "unknown",
                    "token", s_token_json(o->token),
                    "holders", holders,
                    "waiters", full ? waiters : json_integer((json_int_t)o->n_waiters),
                    "cached_at", s_node_or_null(o->cached_at));
    if (obj && full &&
        (json_object_set_new(obj, "value", s_value_json(o)) < 0 ||
         json_object_set_new(obj, "generation",
                             o->kind == CAIRN__SYNCD__KIND__KIND_BARRIER
                                 ? json_integer((json_int_t)o->generation)
                                 : json_null()) < 0)) {
        json_decref(obj);
        obj = NULL;
    }
    return obj;
}

int cli_cmd_sync_ls(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                    cairn_error_t *err)
{
    Cairn__Syncd__LsRequest ls = CAIRN__SYNCD__LS_REQUEST__INIT;
    Cairn__Syncd__Request req = CAIRN__SYNCD__REQUEST__INIT;
    Cairn__Syncd__Reply *reply = NULL;
    _cleanup_json_ json_t *by = NULL;
    json_t *objects, *unreachable;
    cairn_args_t a;
    int r;

    r = cairn_args_parse("sync ls", cli_sync_ls_options, argc, argv, 0, &a,
                         err);
    if (r < 0)
        return r;
    ls.local_only = a.values[O_LS_LOCAL] != NULL;
    req.msg_case = CAIRN__SYNCD__REQUEST__MSG_LS;
    req.ls = &ls;
    r = s_call(ctx, &req.base, CAIRN__SYNCD__REPLY__MSG_LS_REPLY, "ls", &reply,
               &by, err);
    if (r < 0)
        return r;
    objects = json_array();
    unreachable = json_array();
    for (size_t i = 0; objects && i < reply->ls_reply->n_objects; i++)
        json_array_append_new(objects,
                              s_object_json(reply->ls_reply->objects[i], false));
    for (size_t i = 0; unreachable && i < reply->ls_reply->n_unreachable; i++)
        json_array_append_new(unreachable,
                              json_integer(reply->ls_reply->unreachable[i]));
    protobuf_c_message_free_unpacked(&reply->base, NULL);
    *ret_result = json_pack("{s:o*, s:o*, s:O}", "objects", objects,
                            "unreachable", unreachable, "answered_by", by);
    return *ret_result ? 0 : cli_oom(err);
}

int cli_cmd_sync_show(cli_ctx *ctx, int argc, char **argv,
                      json_t **ret_result, cairn_error_t *err)
{
    Cairn__Syncd__ShowRequest show = CAIRN__SYNCD__SHOW_REQUEST__INIT;
    Cairn__Syncd__Request req = CAIRN__SYNCD__REQUEST__INIT;
    Cairn__Syncd__Reply *reply = NULL;
    _cleanup_json_ json_t *by = NULL;
    json_t *obj = NULL;
    cairn_args_t a;
    int r;

    r = s_name_arg("sync show", cli_no_options, argc, argv, &a, err);
    if (r < 0)
        return r;
    show.name = (char *)a.pos[0];
    req.msg_case = CAIRN__SYNCD__REQUEST__MSG_SHOW;
    req.show = &show;
    r = s_call(ctx, &req.base, CAIRN__SYNCD__REPLY__MSG_SHOW_REPLY, "show",
               &reply, &by, err);
    if (r < 0)
        return r;
    if (reply->show_reply->object)
        obj = s_object_json(reply->show_reply->object, true);
    else
        r = cairn_error_set(err, -EBADMSG, CAIRN_DECODE_ERROR, "syncd "
                            "answered show with no object");
    protobuf_c_message_free_unpacked(&reply->base, NULL);
    if (r < 0)
        return r;
    if (!obj || json_object_set(obj, "answered_by", by) < 0) {
        json_decref(obj);
        return cli_oom(err);
    }
    *ret_result = obj;
    return 0;
}

/* ---- --table views ----------------------------------------------------- */

/* "n2 pid 4242 tid 4243 lock token 1234": one holder or waiter, for people. */
static char *s_who_text(const json_t *w, bool waiter)
{
    char *s = NULL;
    const json_t *token = json_object_get(w, "token");

    if (asprintf(&s, "n%" JSON_INTEGER_FORMAT " pid %" JSON_INTEGER_FORMAT
                 " tid %" JSON_INTEGER_FORMAT " %s %s%s",
                 json_integer_value(json_object_get(w, "node")),
                 json_integer_value(json_object_get(w, "pid")),
                 json_integer_value(json_object_get(w, "tid")),
                 json_string_value(json_object_get(w, "mode")),
                 waiter ? "waiting " : "token ",
                 waiter ? "" : json_string_value(token)) < 0)
        return NULL;
    if (waiter) {
        char *t = NULL;

        if (asprintf(&t, "%s%" JSON_INTEGER_FORMAT " ms", s,
                     json_integer_value(json_object_get(w, "since_ms"))) < 0)
            t = NULL;
        free(s);
        s = t;
    }
    return s;
}

/* The holders (or waiters) of an object joined for a cell: "-" if none. */
static json_t *s_who_cell(const json_t *list, bool waiter, const char *sep)
{
    _cleanup_free_ char *text = NULL;
    size_t len = 0, i;
    json_t *w, *cell;
    FILE *f;

    if (!json_array_size(list))
        return json_string("-");
    f = open_memstream(&text, &len);
    if (!f)
        return NULL;
    json_array_foreach(list, i, w) {
        _cleanup_free_ char *one = s_who_text(w, waiter);

        fprintf(f, "%s%s", i ? sep : "", one ? one : "?");
    }
    fclose(f);
    cell = json_string(text);
    return cell;
}

int cli_table_sync_ls(FILE *out, const json_t *result)
{
    _cleanup_json_ json_t *rows = json_pack("[[s,s,s,s,s,s,s,s,s,s]]",
        "NAME", "KIND", "HOME", "STATE", "TOKEN", "HOLDERS", "WAITERS",
        "CACHED_AT", "SHARED", "OWNER");
    json_t *objects = json_object_get(result, "objects"), *o;
    json_t *unreachable = json_object_get(result, "unreachable");
    size_t i;
    int r;

    if (!rows || !json_is_array(objects))
        return -EINVAL;
    json_array_foreach(objects, i, o) {
        json_t *row = json_pack("[O, O, O, O, O, o, O, O, s, O]",
            json_object_get(o, "name"), json_object_get(o, "kind"),
            json_object_get(o, "home"), json_object_get(o, "state"),
            json_object_get(o, "token"),
            s_who_cell(json_object_get(o, "holders"), false, "; "),
            json_object_get(o, "waiters"), json_object_get(o, "cached_at"),
            json_is_true(json_object_get(o, "shared")) ? "yes" : "no",
            json_object_get(o, "owner_uid"));

        if (!row || json_array_append_new(rows, row) < 0)
            return -ENOMEM;
    }
    r = cli_table_rows(out, rows);
    if (r == 0 && json_array_size(unreachable)) {
        _cleanup_free_ char *list = json_dumps(unreachable, JSON_COMPACT);

        fprintf(out, "unreachable nodes: %s\n", list ? list : "?");
        r = fflush(out) == EOF ? -errno : 0;
    }
    return r;
}

int cli_table_sync_show(FILE *out, const json_t *result)
{
    _cleanup_json_ json_t *view = json_deep_copy(result);
    const char *lists[2] = { "holders", "waiters" };

    if (!view)
        return -ENOMEM;
    /* each holder and waiter as one row: holders.1, waiters.1, ... */
    for (int l = 0; l < 2; l++) {
        json_t *list = json_object_get(result, lists[l]), *w;
        json_t *rows = json_object();
        size_t i;

        if (!rows)
            return -ENOMEM;
        json_array_foreach(list, i, w) {
            char key[24];
            _cleanup_free_ char *text = s_who_text(w, l == 1);

            snprintf(key, sizeof key, "%zu", i + 1);
            json_object_set_new(rows, key, json_string(text ? text : "?"));
        }
        json_object_set_new(view, lists[l],
                            json_array_size(list) ? rows : json_string("-"));
        if (!json_array_size(list))
            json_decref(rows);
    }
    return cli_table_object(out, view);
}

/* jobinfo.c - gpids, job records and samples of a job's processes
 * (jobinfo.h has the formats).
 *
 * Design. Records are small JSON objects made and read with jansson; a
 * write goes to NAME.tmp, is fsync'ed and renamed over NAME, so a reader
 * on any node sees the old record or the new one. A sample reads
 * /proc/PID/stat of the reaper and of every descendant, found through
 * /proc/PID/task/T/children level by level (lib/proc): processes that come
 * and go meanwhile are counted or not, never an error.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jobinfo.h"
#include "proc/proc.h"
#include "util/cleanup.h"
#include "util/fileio.h"

#define S_MAX_SAMPLED 65536   /* processes a sample looks at */

/* ---- gpid -------------------------------------------------------------- */

/* A decimal number without sign or leading zero, [1, max], ending at *end. */
static int s_number(const char *s, const char **end, uint64_t max, uint64_t *ret)
{
    uint64_t v = 0;
    const char *p = s;

    if (!isdigit((unsigned char)*p) || *p == '0')
        return -EINVAL;
    for (; isdigit((unsigned char)*p); p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (max - d) / 10)
            return -EINVAL;
        v = v * 10 + d;
    }
    *end = p;
    *ret = v;
    return 0;
}

int ghostd_gpid_parse(const char *s, uint32_t *ret_node, uint64_t *ret_seq)
{
    uint64_t node, seq;
    const char *p;

    if (!s || s_number(s, &p, 255, &node) < 0 || *p != '.' ||
        s_number(p + 1, &p, UINT64_MAX, &seq) < 0 || *p)
        return -EINVAL;
    *ret_node = (uint32_t)node;
    *ret_seq = seq;
    return 0;
}

int ghostd_gpid_format(uint32_t node, uint64_t seq, char *out, size_t size)
{
    if (node == 0 || node > 255 || seq == 0)
        return -EINVAL;
    int n = snprintf(out, size, "%u.%llu", node, (unsigned long long)seq);
    return n > 0 && (size_t)n < size ? 0 : -ENAMETOOLONG;
}

int ghostd_gpid_next_seq(const char *jobs_dir, uint32_t node, uint64_t *ret)
{
    DIR *d = opendir(jobs_dir);
    uint64_t top = 0, seq;
    uint32_t n;

    if (!d && errno != ENOENT)
        return -errno;
    for (struct dirent *e; d && (e = readdir(d));)
        if (ghostd_gpid_parse(e->d_name, &n, &seq) == 0 && n == node && seq > top)
            top = seq;
    if (d)
        closedir(d);
    if (top == UINT64_MAX)
        return -EOVERFLOW;
    *ret = top + 1;
    return 0;
}

/* ---- records ----------------------------------------------------------- */

/* Writes text to dir/name through dir/name.tmp (mode, fsync, rename). */
static int s_write_record(const char *dir, const char *name, const char *text,
                          mode_t mode, int uid, int gid)
{
    char tmp[4200], final[4200];
    _cleanup_close_ int fd = -1;

    if (snprintf(tmp, sizeof tmp, "%s/%s.tmp", dir, name) >= (int)sizeof tmp)
        return -ENAMETOOLONG;
    snprintf(final, sizeof final, "%s/%s", dir, name);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0)
        return -errno;
    int r = cairn_write_all(fd, text, strlen(text));
    if (r == 0 && uid >= 0 && fchown(fd, (uid_t)uid, (gid_t)gid) < 0)
        r = -errno;
    if (r == 0 && fsync(fd) < 0)
        r = -errno;
    if (r == 0 && rename(tmp, final) < 0)
        r = -errno;
    if (r < 0)
        unlink(tmp);
    return r;
}

static json_t *s_read_json(const char *dir, const char *name, int *ret_r)
{
    char path[4200];
    _cleanup_free_ char *text = NULL;
    size_t len = 0;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    *ret_r = cairn_read_file(path, 1 << 20, &text, &len);
    if (*ret_r < 0)
        return NULL;
    json_t *v = json_loadb(text, len, 0, NULL);
    if (!json_is_object(v)) {
        json_decref(v);
        *ret_r = -EBADMSG;
        return NULL;
    }
    return v;
}

void ghostd_jobrec_clear(ghostd_jobrec_t *r)
{
    for (size_t i = 0; r->argv && i < r->argc; i++)
        free(r->argv[i]);
    free(r->argv);
    r->argv = NULL;
    r->argc = 0;
}

int ghostd_jobrec_set_argv(ghostd_jobrec_t *r, char *const *argv, size_t n)
{
    char **copy = calloc(n + 1, sizeof *copy);

    for (size_t i = 0; copy && i < n; i++)
        if (!(copy[i] = strdup(argv[i]))) {
            for (size_t k = 0; k < i; k++)
                free(copy[k]);
            free(copy);
            copy = NULL;
        }
    if (!copy)
        return -ENOMEM;
    ghostd_jobrec_clear(r);
    r->argv = copy;
    r->argc = n;
    return 0;
}

char *ghostd_jobrec_dumps(const ghostd_jobrec_t *r)
{
    json_t *argv = json_array();

    for (size_t i = 0; argv && i < r->argc; i++)
        json_array_append_new(argv, json_string(r->argv[i]));
    json_t *v = json_pack("{s:s,s:I,s:I,s:o*,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:s,s:s,s:b}",
        "gpid", r->gpid, "uid", (json_int_t)r->uid, "gid", (json_int_t)r->gid,
        "argv", argv, "name", r->name, "start_ms", (json_int_t)r->start_ms,
        "node", (json_int_t)r->node, "host_pid", (json_int_t)r->host_pid,
        "host_start", (json_int_t)r->host_start, "moves", (json_int_t)r->moves,
        "restarts", (json_int_t)r->restarts, "cgroup", r->cgroup,
        "unit", r->unit, "sub_cgroup", (int)r->sub_cgroup);
    if (v && (json_object_set_new(v, "checkpoint_every_s",
                                  json_integer((json_int_t)r->checkpoint_every_s)) < 0 ||
              json_object_set_new(v, "restart_on_failure",
                                  json_boolean(r->restart_on_failure)) < 0 ||
              json_object_set_new(v, "last_checkpoint_ms",
                                  json_integer((json_int_t)r->last_checkpoint_ms)) < 0 ||
              json_object_set_new(v, "replica", json_integer((json_int_t)r->replica)) < 0 ||
              json_object_set_new(v, "lost_ms", json_integer((json_int_t)r->lost_ms)) < 0 ||
              (r->migrating_to &&
               (json_object_set_new(v, "migrating_to",
                                    json_integer((json_int_t)r->migrating_to)) < 0 ||
                json_object_set_new(v, "migration", json_string(r->migration)) < 0)))) {
        json_decref(v);
        v = NULL;
    }
    char *text = v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    if (!text)
        return NULL;
    size_t len = strlen(text);
    char *line = realloc(text, len + 2);
    if (!line) {
        free(text);
        return NULL;
    }
    memcpy(line + len, "\n", 2);
    return line;
}

int ghostd_jobrec_write(const char *dir, const ghostd_jobrec_t *r)
{
    char *line = ghostd_jobrec_dumps(r);

    if (!line)
        return -ENOMEM;
    int rr = s_write_record(dir, "job.json", line, 0644, -1, -1);
    free(line);
    return rr;
}

/* A non-negative integer member up to max. */
static int s_get_u64(json_t *v, const char *key, uint64_t max, uint64_t *ret)
{
    json_t *f = json_object_get(v, key);

    if (!json_is_integer(f) || json_integer_value(f) < 0 ||
        (uint64_t)json_integer_value(f) > max)
        return -EBADMSG;
    *ret = (uint64_t)json_integer_value(f);
    return 0;
}

static int s_get_str(json_t *v, const char *key, char *out, size_t size)
{
    const char *s = json_string_value(json_object_get(v, key));

    if (!s || strlen(s) >= size)
        return -EBADMSG;
    memcpy(out, s, strlen(s) + 1);
    return 0;
}

static int s_get_argv(json_t *v, ghostd_jobrec_t *r)
{
    json_t *a = json_object_get(v, "argv"), *e;
    size_t i, n = json_array_size(a);

    if (!json_is_array(a) || n == 0 || n > 65536)
        return -EBADMSG;
    r->argv = calloc(n + 1, sizeof *r->argv);
    if (!r->argv)
        return -ENOMEM;
    json_array_foreach(a, i, e) {
        if (!json_is_string(e) || !(r->argv[i] = strdup(json_string_value(e))))
            return json_is_string(e) ? -ENOMEM : -EBADMSG;
        r->argc = i + 1;
    }
    return 0;
}

/* An optional non-negative integer member: 0 when absent. */
static int s_get_opt_u64(json_t *v, const char *key, uint64_t max, uint64_t *ret)
{
    if (!json_object_get(v, key)) {
        *ret = 0;
        return 0;
    }
    return s_get_u64(v, key, max, ret);
}

static int s_jobrec_from(json_t *v, ghostd_jobrec_t *ret)
{
    uint64_t u[13];
    static const char *const keys[] = { "uid", "gid", "start_ms", "node",
                                        "host_pid", "host_start", "moves",
                                        "restarts" };
    static const uint64_t max[] = { UINT32_MAX, UINT32_MAX, UINT64_MAX, 255,
                                    INT32_MAX, UINT64_MAX, UINT32_MAX, UINT32_MAX };
    static const char *const opt_keys[] = { "checkpoint_every_s", "last_checkpoint_ms",
                                            "replica", "lost_ms", "migrating_to" };
    static const uint64_t opt_max[] = { 86400, UINT64_MAX, 255, UINT64_MAX, 255 };
    uint32_t node;
    uint64_t seq;
    json_t *rof = json_object_get(v, "restart_on_failure");
    int r = s_get_str(v, "gpid", ret->gpid, sizeof ret->gpid);

    if (r == 0 && ghostd_gpid_parse(ret->gpid, &node, &seq) < 0)
        r = -EBADMSG;
    for (size_t i = 0; r == 0 && i < sizeof keys / sizeof keys[0]; i++)
        r = s_get_u64(v, keys[i], max[i], &u[i]);
    for (size_t i = 0; r == 0 && i < sizeof opt_keys / sizeof opt_keys[0]; i++)
        r = s_get_opt_u64(v, opt_keys[i], opt_max[i], &u[8 + i]);
    if (r == 0 && rof && !json_is_boolean(rof))
        r = -EBADMSG;
    if (r == 0)
        r = s_get_str(v, "name", ret->name, sizeof ret->name);
    if (r == 0)
        r = s_get_str(v, "cgroup", ret->cgroup, sizeof ret->cgroup);
    if (r == 0)
        r = s_get_str(v, "unit", ret->unit, sizeof ret->unit);
    if (r == 0)
        r = s_get_argv(v, ret);
    ret->migration[0] = '\0';
    if (r == 0 && u[12] && s_get_str(v, "migration", ret->migration,
                                     sizeof ret->migration) < 0)
        r = -EBADMSG;   /* a move under way names its id */
    if (r < 0) {
        ghostd_jobrec_clear(ret);
        return r;
    }
    ret->uid = (uint32_t)u[0];
    ret->gid = (uint32_t)u[1];
    ret->start_ms = u[2];
    ret->node = (uint32_t)u[3];
    ret->host_pid = (int32_t)u[4];
    ret->host_start = u[5];
    ret->moves = (uint32_t)u[6];
    ret->restarts = (uint32_t)u[7];
    ret->sub_cgroup = json_is_true(json_object_get(v, "sub_cgroup"));
    ret->checkpoint_every_s = (uint32_t)u[8];
    ret->last_checkpoint_ms = u[9];
    ret->replica = (uint32_t)u[10];
    ret->lost_ms = u[11];
    ret->migrating_to = (uint32_t)u[12];
    ret->restart_on_failure = json_is_true(rof);
    return 0;
}

int ghostd_jobrec_read(const char *dir, ghostd_jobrec_t *ret)
{
    int r;
    json_t *v = s_read_json(dir, "job.json", &r);

    ghostd_jobrec_clear(ret);
    memset(ret, 0, sizeof *ret);
    if (!v)
        return r;
    r = s_jobrec_from(v, ret);
    json_decref(v);
    return r;
}

int ghostd_jobrec_loads(const char *text, size_t len, ghostd_jobrec_t *ret)
{
    json_t *v = json_loadb(text, len, 0, NULL);

    ghostd_jobrec_clear(ret);
    memset(ret, 0, sizeof *ret);
    if (!json_is_object(v)) {
        json_decref(v);
        return -EBADMSG;
    }
    int r = s_jobrec_from(v, ret);
    json_decref(v);
    return r;
}

int ghostd_exitrec_read(const char *dir, ghostd_exitrec_t *ret)
{
    int r;
    json_t *v = s_read_json(dir, "exit", &r);
    json_t *code = v ? json_object_get(v, "exit_code") : NULL;
    json_t *sig = v ? json_object_get(v, "exit_signal") : NULL;
    uint64_t end = 0;

    if (!v)
        return r;
    r = json_is_integer(code) && json_is_integer(sig) &&
        json_integer_value(code) >= -1 && json_integer_value(code) <= 255 &&
        json_integer_value(sig) >= 0 && json_integer_value(sig) <= 64 &&
        s_get_u64(v, "end_ms", UINT64_MAX, &end) == 0 ? 0 : -EBADMSG;
    const char *lost = json_string_value(json_object_get(v, "lost"));
    if (r == 0) {
        *ret = (ghostd_exitrec_t){ .exit_code = (int32_t)json_integer_value(code),
                                   .exit_signal = (int32_t)json_integer_value(sig),
                                   .end_ms = end };
        snprintf(ret->lost, sizeof ret->lost, "%s", lost ? lost : "");
    }
    json_decref(v);
    return r;
}

int ghostd_exitrec_write(const char *dir, const ghostd_exitrec_t *r,
                         uint32_t uid, uint32_t gid)
{
    json_t *v = json_pack("{s:i,s:i,s:I}", "exit_code", (int)r->exit_code,
                          "exit_signal", (int)r->exit_signal,
                          "end_ms", (json_int_t)r->end_ms);

    if (v && r->lost[0] && json_object_set_new(v, "lost", json_string(r->lost)) < 0) {
        json_decref(v);
        v = NULL;
    }
    char *text = v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    if (!text)
        return -ENOMEM;
    size_t len = strlen(text);
    char *line = realloc(text, len + 2);
    if (!line) {
        free(text);
        return -ENOMEM;
    }
    memcpy(line + len, "\n", 2);
    int rr = s_write_record(dir, "exit", line, 0600, (int)uid, (int)gid);
    free(line);
    return rr;
}

/* ---- /proc --------------------------------------------------------------- */

/* The fields of /proc/PID/stat after the command: tokens[k] is field k+3. */
typedef struct s_stat {
    char state;
    uint64_t ticks;       /* utime + stime + cutime + cstime */
    uint64_t start;       /* starttime */
    uint64_t rss_pages;   /* rss */
} s_stat_t;

static int s_read_stat(pid_t pid, s_stat_t *ret)
{
    char path[64];
    _cleanup_free_ char *text = NULL;
    unsigned long long f[22] = { 0 };

    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int r = cairn_read_file(path, 0, &text, NULL);
    if (r < 0)
        return r == -ENOENT ? -ESRCH : r;
    char *p = strrchr(text, ')');
    if (!p || p[1] != ' ' || !p[2])
        return -EBADMSG;
    ret->state = p[2];
    p += 3;
    for (int k = 1; k < 22; k++) {   /* tokens 1..21: fields 4..24 */
        char *end;
        while (*p == ' ')
            p++;
        f[k] = strtoull(p, &end, 10);
        if (end == p)
            return -EBADMSG;
        p = end;
    }
    ret->ticks = f[11] + f[12] + f[13] + f[14];
    ret->start = f[19];
    ret->rss_pages = f[21];
    return 0;
}

int ghostd_proc_start(pid_t pid, uint64_t *ret)
{
    s_stat_t st;
    int r = s_read_stat(pid, &st);

    if (r == 0)
        *ret = st.start;
    return r;
}

/* The last NSpid of pid: its pid in its innermost namespace; 0 if none. */
static uint32_t s_inner_pid(pid_t pid)
{
    char path[64];
    _cleanup_free_ char *text = NULL;

    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    if (cairn_read_file(path, 0, &text, NULL) < 0)
        return 0;
    char *line = strstr(text, "\nNSpid:");
    if (!line)
        return 0;
    char *eol = strchr(line + 1, '\n');
    if (eol)
        *eol = '\0';
    char *last = strrchr(line, '\t');
    if (!last)
        last = strrchr(line, ' ');
    return last ? (uint32_t)strtoul(last + 1, NULL, 10) : 0;
}

int ghostd_job_sample(pid_t reaper, ghostd_jobsample_t *ret)
{
    long page = sysconf(_SC_PAGESIZE), hz = sysconf(_SC_CLK_TCK);
    ghostd_jobsample_t s = { 0 };
    pid_t *todo = malloc(S_MAX_SAMPLED * sizeof *todo);
    size_t head = 0, tail = 0;
    s_stat_t st;
    int r = todo ? s_read_stat(reaper, &st) : -ENOMEM;

    if (r < 0) {
        free(todo);
        return r;
    }
    todo[tail++] = reaper;
    while (head < tail) {
        pid_t pid = todo[head++], *kids = NULL;
        size_t n = 0;
        cairn_error_t err = { 0 };
        if (s_read_stat(pid, &st) < 0)
            continue;   /* gone meanwhile */
        s.processes++;
        s.rss_bytes += st.rss_pages * (uint64_t)page;
        s.cpu_ms += st.ticks * 1000 / (uint64_t)(hz > 0 ? hz : 100);
        if (pid != reaper && !s.program && s_inner_pid(pid) == 2) {
            s.program = pid;
            s.pid_inside = 2;
            s.stopped = st.state == 'T' || st.state == 't';
        }
        if (proc_list_children(pid, &kids, &n, &err) < 0)
            continue;
        for (size_t i = 0; i < n && tail < S_MAX_SAMPLED; i++)
            todo[tail++] = kids[i];
        free(kids);
    }
    free(todo);
    *ret = s;
    return 0;
}

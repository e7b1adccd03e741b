/* decisions.c - the decision log: a ring of the newest decisions over an
 * append-only JSON-lines file (decisions.h).
 *
 * Design. The ring holds SCHED_LOG_KEEP entries in seq order (entry i of
 * the n kept is at (start + i) % KEEP). Reading the file back replays its
 * lines through the same insert: a line with a seq already kept replaces
 * that entry (a migration's outcome), a newer one is appended. The file is
 * opened O_APPEND for every write, so a line is never interleaved with
 * another process's -- though only one policy holds the node at a time.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "decisions.h"
#include "util/cleanup.h"
#include "util/clock.h"
#include "util/fileio.h"

struct sched_log {
    char *path;                         /* the JSON-lines file */
    sched_entry_t ring[SCHED_LOG_KEEP]; /* the newest, in seq order */
    size_t start, n;                    /* first kept, how many */
    uint64_t last_seq;                  /* the highest seq ever seen */
    size_t skipped;                     /* unparsable lines at open */
};

static sched_entry_t *s_at(sched_log_t *log, size_t i)
{
    return &log->ring[(log->start + i) % SCHED_LOG_KEEP];
}

static sched_entry_t *s_find(sched_log_t *log, uint64_t seq)
{
    for (size_t i = log->n; i > 0; i--)
        if (s_at(log, i - 1)->seq == seq)
            return s_at(log, i - 1);
    return NULL;
}

/* Stores e: over the entry of the same seq, else after the newest. */
static sched_entry_t *s_insert(sched_log_t *log, const sched_entry_t *e)
{
    sched_entry_t *slot = s_find(log, e->seq);

    if (!slot) {
        if (log->n == SCHED_LOG_KEEP)
            log->start = (log->start + 1) % SCHED_LOG_KEEP;
        else
            log->n++;
        slot = s_at(log, log->n - 1);
    }
    *slot = *e;
    if (e->seq > log->last_seq)
        log->last_seq = e->seq;
    return slot;
}

static void s_copy(char *dst, size_t size, json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    snprintf(dst, size, "%s", v ? v : "");
}

static uint64_t s_uint(json_t *o, const char *key)
{
    json_int_t v = json_integer_value(json_object_get(o, key));
    return v > 0 ? (uint64_t)v : 0;
}

/* One line of the file into e; false if it is not a decision. */
static bool s_parse(const char *line, size_t len, sched_entry_t *e)
{
    json_t *o = json_loadb(line, len, 0, NULL);
    bool ok = json_is_object(o) && s_uint(o, "seq") > 0;

    if (ok) {
        *e = (sched_entry_t){ .seq = s_uint(o, "seq"),
                              .time_ms = s_uint(o, "time_ms"),
                              .node = (uint32_t)s_uint(o, "node"),
                              .from = (uint32_t)s_uint(o, "from"),
                              .to = (uint32_t)s_uint(o, "to") };
        s_copy(e->policy, sizeof(e->policy), o, "policy");
        s_copy(e->kind, sizeof(e->kind), o, "kind");
        s_copy(e->gpid, sizeof(e->gpid), o, "gpid");
        s_copy(e->reason, sizeof(e->reason), o, "reason");
        s_copy(e->outcome, sizeof(e->outcome), o, "outcome");
    }
    json_decref(o);
    return ok;
}

static int s_read(sched_log_t *log)
{
    _cleanup_free_ char *text = NULL;
    size_t len = 0;
    int r = cairn_read_file(log->path, 64u << 20, &text, &len);

    if (r == -ENOENT)
        return 0;
    if (r < 0)
        return r;
    for (char *p = text, *nl; p < text + len; p = nl + 1) {
        sched_entry_t e;
        nl = memchr(p, '\n', (size_t)(text + len - p));
        if (!nl)
            nl = text + len;
        if (nl == p)
            continue;
        if (s_parse(p, (size_t)(nl - p), &e))
            s_insert(log, &e);
        else
            log->skipped++;
    }
    return 0;
}

int sched_log_open(const char *path, sched_log_t **ret)
{
    sched_log_t *log = calloc(1, sizeof(*log));
    int r;

    if (!log || !(log->path = strdup(path))) {
        free(log);
        return -ENOMEM;
    }
    if ((r = s_read(log)) < 0) {
        sched_log_free(log);
        return r;
    }
    *ret = log;
    return 0;
}

sched_log_t *sched_log_free(sched_log_t *log)
{
    if (log)
        free(log->path);
    free(log);
    return NULL;
}

size_t sched_log_skipped(const sched_log_t *log)
{
    return log->skipped;
}

/* e as one JSON line (caller frees), NULL on ENOMEM. */
static char *s_line(const sched_entry_t *e)
{
    json_t *o = json_pack("{s:I, s:I, s:i, s:s, s:s, s:s, s:i, s:i, s:s, s:s}",
                          "seq", (json_int_t)e->seq, "time_ms", (json_int_t)e->time_ms,
                          "node", (int)e->node, "policy", e->policy,
                          "kind", e->kind, "gpid", e->gpid, "from", (int)e->from,
                          "to", (int)e->to, "reason", e->reason,
                          "outcome", e->outcome);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;

    json_decref(o);
    return s;
}

static int s_append_fd(int fd, const sched_entry_t *e)
{
    _cleanup_free_ char *s = s_line(e);
    int r;

    if (!s)
        return -ENOMEM;
    if ((r = cairn_write_all(fd, s, strlen(s))) < 0)
        return r;
    return cairn_write_all(fd, "\n", 1);
}

/* Rewrites the file with the ring alone. */
static int s_compact(sched_log_t *log)
{
    _cleanup_free_ char *tmp = NULL;
    _cleanup_close_ int fd = -1;
    int r = 0;

    if (asprintf(&tmp, "%s.tmp", log->path) < 0)
        return -ENOMEM;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    for (size_t i = 0; i < log->n && r == 0; i++)
        r = s_append_fd(fd, s_at(log, i));
    if (r == 0 && rename(tmp, log->path) < 0)
        r = -errno;
    if (r < 0)
        unlink(tmp);
    return r;
}

static int s_append(sched_log_t *log, const sched_entry_t *e)
{
    _cleanup_close_ int fd =
        open(log->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    struct stat st;
    int r;

    if (fd < 0)
        return -errno;
    if ((r = s_append_fd(fd, e)) < 0)
        return r;
    if (fstat(fd, &st) == 0 && st.st_size > (off_t)SCHED_LOG_MAX_FILE)
        return s_compact(log);
    return 0;
}

int sched_log_add(sched_log_t *log, const sched_entry_t *e,
                  const sched_entry_t **ret)
{
    sched_entry_t n = *e;

    n.seq = log->last_seq + 1;
    n.time_ms = cairn_realtime_ms();
    const sched_entry_t *stored = s_insert(log, &n);
    if (ret)
        *ret = stored;
    return s_append(log, stored);
}

int sched_log_set_outcome(sched_log_t *log, uint64_t seq, const char *outcome,
                          const sched_entry_t **ret)
{
    sched_entry_t *e = s_find(log, seq);

    if (!e)
        return -ENOENT;
    snprintf(e->outcome, sizeof(e->outcome), "%s", outcome);
    if (ret)
        *ret = e;
    return s_append(log, e);
}

size_t sched_log_since(const sched_log_t *log, uint64_t after, size_t max,
                       const sched_entry_t **out)
{
    sched_log_t *l = (sched_log_t *)log;
    size_t first = log->n, n = 0;

    while (first > 0 && s_at(l, first - 1)->seq > after && log->n - first + 1 <= max)
        first--;
    for (size_t i = first; i < log->n; i++)
        out[n++] = s_at(l, i);
    return n;
}

uint32_t sched_log_last_placed(const sched_log_t *log)
{
    sched_log_t *l = (sched_log_t *)log;

    for (size_t i = log->n; i > 0; i--)
        if (strcmp(s_at(l, i - 1)->kind, "place") == 0)
            return s_at(l, i - 1)->to;
    return 0;
}

void sched_entry_proto(const sched_entry_t *e, Cairn__Sched__Decision *out)
{
    cairn__sched__decision__init(out);
    out->seq = e->seq;
    out->time_ms = e->time_ms;
    out->node = e->node;
    out->policy = (char *)e->policy;
    out->kind = (char *)e->kind;
    out->gpid = (char *)e->gpid;
    out->from = e->from;
    out->to = e->to;
    out->reason = (char *)e->reason;
    out->outcome = (char *)e->outcome;
}

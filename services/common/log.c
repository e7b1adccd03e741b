/* log.c - one structured line per event on stderr.
 *
 * Design: the line is formatted into one stack buffer and written with a
 * single write(2), so lines from several processes sharing stderr never
 * interleave. Control characters (a newline smuggled in through a peer's
 * string) become '?', so one event is always exactly one line. The prefix
 * (service, node) and the level threshold are the only global state of the
 * daemon skeleton, as log.h allows; they are set once at startup.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "util/fileio.h"

#define LOG_LINE_MAX 2048

static char s_service[64] = "cairn";
static uint32_t s_node;
static cairn_log_level_t s_level = CAIRN_LOG_INFO;

static const char *const s_level_names[] = {
    [CAIRN_LOG_DEBUG] = "debug",
    [CAIRN_LOG_INFO] = "info",
    [CAIRN_LOG_WARN] = "warn",
    [CAIRN_LOG_ERR] = "err",
};

void cairn_log_init(const char *service, uint32_t node)
{
    const char *dbg = getenv("CAIRN_DEBUG");

    snprintf(s_service, sizeof(s_service), "%s", service ? service : "cairn");
    s_node = node;
    if (dbg && strcmp(dbg, "0") != 0 && *dbg)
        s_level = CAIRN_LOG_DEBUG;
}

void cairn_log_set_level(cairn_log_level_t level)
{
    s_level = level;
}

/* Replaces control characters so the line stays one line. */
static void s_sanitize(char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            s[i] = '?';
}

int cairn_log(cairn_log_level_t level, int ret, const char *event,
              const char *fmt, ...)
{
    char line[LOG_LINE_MAX];
    int saved = errno;
    size_t len;
    va_list ap;
    int n;

    if (level < s_level || level > CAIRN_LOG_ERR)
        return ret;
    n = snprintf(line, sizeof(line), "%s[%u] %s %s", s_service, s_node,
                 s_level_names[level], event ? event : "event");
    len = n < 0 ? 0 : ((size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
    if (fmt && *fmt && len + 1 < sizeof(line)) {
        line[len++] = ' ';
        va_start(ap, fmt);
        n = vsnprintf(line + len, sizeof(line) - len, fmt, ap);
        va_end(ap);
        if (n > 0)
            len += (size_t)n < sizeof(line) - len ? (size_t)n : sizeof(line) - len - 1;
    }
    if (ret < 0 && len < sizeof(line) - 1) {
        const char *name = strerrorname_np(-ret);
        n = snprintf(line + len, sizeof(line) - len, " errno=%s",
                     name ? name : "unknown");
        if (n > 0)
            len += (size_t)n < sizeof(line) - len ? (size_t)n : sizeof(line) - len - 1;
    }
    s_sanitize(line, len);
    line[len++] = '\n';
    /* A log line that cannot be written is lost: there is nowhere to say
     * so. cairn_write_all allocates nothing; errno is restored below. */
    (void)cairn_write_all(STDERR_FILENO, line, len);
    errno = saved;
    return ret;
}

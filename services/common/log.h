/* log.h - one structured line per event on stderr (journald keeps it).
 *
 * Format: `<service>[<node>] <level> <event> key=value ...` with values that
 * contain spaces quoted; journald adds the time. Only daemons log: libcairn
 * returns errors instead. cairn_log_* return `ret` so a daemon can log and
 * return in one statement: `return cairn_log_err(-EINVAL, "bind", "...")`.
 */
#ifndef CAIRN_LOG_H
#define CAIRN_LOG_H

#include <stdint.h>

typedef enum { CAIRN_LOG_DEBUG, CAIRN_LOG_INFO, CAIRN_LOG_WARN, CAIRN_LOG_ERR } cairn_log_level_t;

/* Sets the prefix of every line (service name, node id); not thread-safe,
 * call once at startup. The strings are copied. */
void cairn_log_init(const char *service, uint32_t node);
/* Lines below this level are dropped (default INFO; CAIRN_DEBUG=1 -> DEBUG). */
void cairn_log_set_level(cairn_log_level_t level);

/* event: a short kebab-case word ("bind", "reload", "bad-frame");
 * fmt: the rest of the line, by convention key=value pairs. */
int cairn_log(cairn_log_level_t level, int ret, const char *event,
              const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#define cairn_log_info(event, ...) cairn_log(CAIRN_LOG_INFO, 0, event, __VA_ARGS__)
#define cairn_log_debug(event, ...) cairn_log(CAIRN_LOG_DEBUG, 0, event, __VA_ARGS__)
#define cairn_log_warn(ret, event, ...) cairn_log(CAIRN_LOG_WARN, ret, event, __VA_ARGS__)
#define cairn_log_err(ret, event, ...) cairn_log(CAIRN_LOG_ERR, ret, event, __VA_ARGS__)

#endif

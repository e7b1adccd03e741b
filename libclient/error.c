/* error.c - stable names for codes, and the helpers that fill cairn_error_t.
 *
 * The names are part of the CLI's contract (scripts match on them), so they
 * live in one table here and nowhere else.
 */
#include <stdio.h>
#include <string.h>

#include "cairn/error.h"

typedef struct {
    int code;
    const char *name;
} s_code_name_t;

static const s_code_name_t s_names[] = {
    { CAIRN_OK, "ok" },
    { CAIRN_INVALID_ARGUMENT, "invalid-argument" },
    { CAIRN_NOT_FOUND, "not-found" },
    { CAIRN_ALREADY_EXISTS, "already-exists" },
    { CAIRN_PERMISSION_DENIED, "permission-denied" },
    { CAIRN_UNAVAILABLE, "unavailable" },
    { CAIRN_TIMEOUT, "timeout" },
    { CAIRN_DECODE_ERROR, "decode-error" },
    { CAIRN_BAD_VERSION, "bad-version" },
    { CAIRN_UNKNOWN_TYPE, "unknown-type" },
    { CAIRN_TOO_LARGE, "too-large" },
    { CAIRN_INTERNAL, "internal" },
    { CAIRN_UNSUPPORTED, "unsupported" },
    { CAIRN_BUSY, "busy" },
    { CAIRN_FAILED_PRECONDITION, "failed-precondition" },
    { CAIRN_INVALID_CONFIG, "invalid-config" },
    { CAIRN_USAGE, "usage" },
    { CAIRN_SYSTEM, "system" },
};

const char *cairn_code_name(int code)
{
    for (size_t i = 0; i < sizeof(s_names) / sizeof(s_names[0]); i++)
        if (s_names[i].code == code)
            return s_names[i].name;
    return "unknown";
}

int cairn_code_from_name(const char *name)
{
    if (!name)
        return -1;
    for (size_t i = 0; i < sizeof(s_names) / sizeof(s_names[0]); i++)
        if (strcmp(s_names[i].name, name) == 0)
            return s_names[i].code;
    return -1;
}

void cairn_error_clear(cairn_error_t *err)
{
    if (err)
        memset(err, 0, sizeof(*err));
}

/* Drops trailing newlines and turns inner ones into spaces: one line. */
static void s_one_line(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = '\0';
    for (char *p = s; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
}

static void s_vset(cairn_error_t *err, int code, const char *file, int line,
                   const char *element, const char *fmt, va_list ap)
{
    cairn_error_clear(err);
    err->code = code;
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    s_one_line(err->message);
    if (file)
        snprintf(err->file, sizeof(err->file), "%s", file);
    err->line = line;
    if (element)
        snprintf(err->element, sizeof(err->element), "%s", element);
}

int cairn_error_set(cairn_error_t *err, int ret, int code, const char *fmt, ...)
{
    if (!err)
        return ret;
    va_list ap;
    va_start(ap, fmt);
    s_vset(err, code, NULL, 0, NULL, fmt, ap);
    va_end(ap);
    return ret;
}

int cairn_error_append(cairn_error_t *err, int ret, const char *fmt, ...)
{
    if (!err)
        return ret;
    size_t n = strnlen(err->message, sizeof(err->message) - 1);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message + n, sizeof(err->message) - n, fmt, ap);
    va_end(ap);
    s_one_line(err->message);
    return ret;
}

int cairn_error_set_at(cairn_error_t *err, int ret, int code, const char *file,
                       int line, const char *element, const char *fmt, ...)
{
    if (!err)
        return ret;
    va_list ap;
    va_start(ap, fmt);
    s_vset(err, code, file, line, element, fmt, ap);
    va_end(ap);
    return ret;
}

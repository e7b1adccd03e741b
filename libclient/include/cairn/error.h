/* cairn/error.h - the (code, message) pair every libcairn call reports.
 *
 * libcairn never logs. A call that can fail returns 0 or a negative errno and,
 * when the caller passes a cairn_error_t, fills it with a stable code and one
 * human line saying why. Codes below 100 are the wire StatusCode values of
 * proto/common.proto (a daemon's Status reaches the caller unchanged); codes
 * from 100 on never cross the wire.
 */
#ifndef CAIRN_ERROR_H
#define CAIRN_ERROR_H

#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cairn_code {
    CAIRN_OK = 0,
    CAIRN_INVALID_ARGUMENT = 1,
    CAIRN_NOT_FOUND = 2,
    CAIRN_ALREADY_EXISTS = 3,
    CAIRN_PERMISSION_DENIED = 4,
    CAIRN_UNAVAILABLE = 5,
    CAIRN_TIMEOUT = 6,
    CAIRN_DECODE_ERROR = 7,
    CAIRN_BAD_VERSION = 8,
    CAIRN_UNKNOWN_TYPE = 9,
    CAIRN_TOO_LARGE = 10,
    CAIRN_INTERNAL = 11,
    CAIRN_UNSUPPORTED = 12,
    CAIRN_BUSY = 13,
    CAIRN_FAILED_PRECONDITION = 14,
    /* local only */
    CAIRN_INVALID_CONFIG = 100,  /* a cluster description that does not validate */
    CAIRN_USAGE = 101,           /* wrong command-line arguments */
    CAIRN_SYSTEM = 102,          /* a system call failed */
} cairn_code_t;

#define CAIRN_ERROR_MESSAGE_MAX 1024
#define CAIRN_ERROR_FILE_MAX 512

typedef struct cairn_error {
    int code;                               /* cairn_code_t */
    char message[CAIRN_ERROR_MESSAGE_MAX];  /* one line, no trailing newline */
    char file[CAIRN_ERROR_FILE_MAX];        /* file the error is in, "" if none */
    int line;                               /* line in file, 0 if none */
    char element[64];                       /* XML element or field, "" if none */
} cairn_error_t;

/* Stable lower-case name of a code ("invalid-argument", "timeout", ...);
 * "unknown" for a value that is not a code. Static storage. */
const char *cairn_code_name(int code);

/* Parses a name from cairn_code_name() back; returns -1 if unknown. */
int cairn_code_from_name(const char *name);

/* Clears err (code OK, empty strings). err may be NULL. */
void cairn_error_clear(cairn_error_t *err);

/* Sets code and printf-style message, clearing file/line/element. err may be
 * NULL (then nothing happens). Returns `ret` so a caller can write
 * `return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT, "...")`. */
int cairn_error_set(cairn_error_t *err, int ret, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Appends printf-style text to err's message (cut to fit), keeping its
 * code and location; err may be NULL. Returns `ret`. */
int cairn_error_append(cairn_error_t *err, int ret, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Same, with a location: file, line and element may be NULL/0. */
int cairn_error_set_at(cairn_error_t *err, int ret, int code, const char *file,
                       int line, const char *element, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));

#ifdef __cplusplus
}
#endif
#endif

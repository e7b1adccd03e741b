/* util/cleanup.h - scope-bound cleanup, in the manner of systemd.
 *
 * A variable declared `_cleanup_free_ char *s = NULL;` is freed when it
 * goes out of scope, on every return path; TAKE_PTR / TAKE_FD hand the
 * value to the caller and leave the variable empty so nothing is freed
 * twice. Each helper accepts the "empty" value (NULL, -1) and does nothing
 * with it, so a variable is always initialised empty.
 *
 * Used by the CLI, the daemons and the engine alike (docs/architecture.md,
 * "The utility layer").
 */
#ifndef CAIRN_UTIL_CLEANUP_H
#define CAIRN_UTIL_CLEANUP_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))

/* Returns p and sets it to NULL: ownership moves to the caller. */
#define TAKE_PTR(p) ({ __typeof__(p) _tp_ = (p); (p) = NULL; _tp_; })
/* Returns fd and sets it to -1. */
#define TAKE_FD(fd) ({ int _tfd_ = (fd); (fd) = -1; _tfd_; })

static inline void cairn_freep(void *p) { free(*(void **)p); }

/* close() that keeps errno: a cleanup must not change what a failing
 * caller is about to report. */
static inline void cairn_closep(int *fd)
{
    if (*fd >= 0) {
        int saved = errno;
        close(*fd);
        errno = saved;
    }
}

static inline void cairn_fclosep(FILE **f)
{
    if (*f) {
        int saved = errno;
        fclose(*f);
        errno = saved;
    }
}

#define _cleanup_free_ _cleanup_(cairn_freep)
#define _cleanup_close_ _cleanup_(cairn_closep)
#define _cleanup_fclose_ _cleanup_(cairn_fclosep)

/* Defines `static inline void name(type *p)` calling fn(*p) when *p is
 * not NULL, for a library's own free function: json_decref, xmlFreeDoc. */
#define CAIRN_DEFINE_CLEANUP(name, type, fn)                                  \
    static inline void name(type *p)                                          \
    {                                                                         \
        if (*p)                                                               \
            fn(*p);                                                           \
    }

#endif

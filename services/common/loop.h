/* loop.h - the one event loop every Cairn daemon runs.
 *
 * zmq_poll over ZeroMQ sockets and plain file descriptors (signalfd,
 * userfaultfd, netlink, ...) plus monotonic timers, in one place (Redis'
 * ae.c shape). Callbacks run on the loop's thread only. A timer or watch
 * removed inside a callback -- its own or another's -- is only marked and is
 * reaped after the current iteration, so removal is always safe. A callback
 * that returns a negative errno stops the loop with that value.
 */
#ifndef CAIRN_LOOP_H
#define CAIRN_LOOP_H

#include <stdbool.h>
#include <stdint.h>

#include "util/clock.h"   /* timers run on cairn_now_ms() */

typedef struct cairn_loop cairn_loop_t;

/* revents: ZMQ_POLLIN / ZMQ_POLLOUT / ZMQ_POLLERR bits. Return 0 to go on,
 * a negative errno to stop the loop (cairn_loop_run returns it). */
typedef int (*cairn_io_fn)(cairn_loop_t *loop, int fd, void *zsock,
                           short revents, void *userdata);
typedef int (*cairn_timer_fn)(cairn_loop_t *loop, int64_t timer_id,
                              void *userdata);

/* NULL on ENOMEM. Caller owns; free with cairn_loop_free (NULL-safe). */
cairn_loop_t *cairn_loop_new(void);
cairn_loop_t *cairn_loop_free(cairn_loop_t *loop);

/* Watches a zmq socket (zsock != NULL) for `events`. Returns a watch id > 0
 * or -errno. The loop does not own the socket. */
int64_t cairn_loop_add_socket(cairn_loop_t *loop, void *zsock, short events,
                              cairn_io_fn fn, void *userdata);
/* Watches a file descriptor. The loop does not own the fd. */
int64_t cairn_loop_add_fd(cairn_loop_t *loop, int fd, short events,
                          cairn_io_fn fn, void *userdata);
/* Stops a watch (safe inside any callback). -ENOENT if unknown. */
int cairn_loop_remove(cairn_loop_t *loop, int64_t watch_id);

/* Fires fn after `after_ms`, then every `interval_ms` if interval_ms > 0
 * (once otherwise). Returns a timer id > 0 or -errno. */
int64_t cairn_loop_add_timer(cairn_loop_t *loop, uint64_t after_ms,
                             uint64_t interval_ms, cairn_timer_fn fn,
                             void *userdata);
/* Cancels (safe inside any callback, including its own). -ENOENT if unknown
 * or already fired (one-shot). */
int cairn_loop_cancel_timer(cairn_loop_t *loop, int64_t timer_id);

/* Runs until cairn_loop_quit() or a callback error. Returns the quit code
 * (>= 0) or the callback's negative errno. */
int cairn_loop_run(cairn_loop_t *loop);
/* Makes run() return `code` after the current callback. */
void cairn_loop_quit(cairn_loop_t *loop, int code);

#endif

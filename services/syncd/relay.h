/* relay.h - syncd's requests: those of this node's processes, carried to
 * the objects' homes and answered back, and those of other nodes' relays,
 * served by the objects this node is home of (home.c).
 *
 * The relay owns the rest of the daemon: the membership view (view.c), the
 * home (home.c), the node cache (cache.c) and the connections to the other
 * nodes' syncd. It keeps what each local process holds and waits for,
 * watches those processes with a pidfd, and after a membership change
 * hands over, announces and re-sends what the change moved (README.md,
 * "Failure").
 *
 * Every handler below is called by the skeleton with the request's caller
 * checked against the handler table's access; each returns
 * CAIRN_REPLY_NOW, CAIRN_REPLY_DEFERRED or a negative errno (INTERNAL).
 * The handlers live in the part of the relay they belong to (relay.c: the
 * client side; relay-home.c: revoke, gone; relay-failover.c: announce;
 * relay-ls.c: ls, show); relay-private.h says what each part is.
 */
#ifndef SYNCD_RELAY_H
#define SYNCD_RELAY_H

#include "cairn/error.h"
#include "service.h"

typedef struct relay relay_t;

/* From ops->start: builds the view, home, cache and peers. NULL with err
 * set on failure. The caller owns the result. */
relay_t *relay_new(cairn_service_t *svc, cairn_error_t *err);
/* Fails every pending request (syncd stopping) and frees everything.
 * NULL-safe; returns NULL. */
relay_t *relay_free(relay_t *r);

/* From ops->ready: starts following clusterd. 0 or -errno. */
int relay_start(relay_t *r);
/* From ops->stop: answers every waiting request UNAVAILABLE, drops the
 * node cache and closes every socket of ours (the skeleton ends the zmq
 * context next). */
void relay_stop(relay_t *r);

int relay_handle_acquire(relay_t *r, cairn_request_t *req);
int relay_handle_release(relay_t *r, cairn_request_t *req);
int relay_handle_consistent(relay_t *r, cairn_request_t *req);
int relay_handle_barrier(relay_t *r, cairn_request_t *req);
int relay_handle_cond_wait(relay_t *r, cairn_request_t *req);
int relay_handle_cond_signal(relay_t *r, cairn_request_t *req);
int relay_handle_ls(relay_t *r, cairn_request_t *req);
int relay_handle_show(relay_t *r, cairn_request_t *req);
int relay_handle_destroy(relay_t *r, cairn_request_t *req);
int relay_handle_declare(relay_t *r, cairn_request_t *req);
int relay_handle_slot_release(relay_t *r, cairn_request_t *req);
int relay_handle_revoke(relay_t *r, cairn_request_t *req);
int relay_handle_gone(relay_t *r, cairn_request_t *req);
int relay_handle_announce(relay_t *r, cairn_request_t *req);

#endif

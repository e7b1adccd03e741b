/* membership.h - SWIM membership of clusterd.
 *
 * The member table, the probe cycle (ping, indirect ping-req, suspicion,
 * confirmations, death), Lifeguard's local health, gossip piggybacked on
 * every protocol message and pushed in rounds of its own, push-pull join
 * through seeds and with a random member now and then,
 * hotplug (add/remove), graceful leave, and the node-up/-suspect/-down/-left
 * events. All timings come from the description's <membership>.
 *
 * Ownership: the membership lives in the clusterd context; members and
 * their strings are owned by it. Functions that fill a reply allocate from
 * the request's arena.
 */
#ifndef CLUSTERD_MEMBERSHIP_H
#define CLUSTERD_MEMBERSHIP_H

#include <stdbool.h>
#include <stdint.h>

#include "clusterd.pb-c.h"
#include "service.h"

typedef struct membership membership_t;

/* Builds the table from the description (self alive, the others unknown).
 * NULL on ENOMEM. */
membership_t *membership_new(cairn_service_t *svc);
membership_t *membership_free(membership_t *m);

/* Starts probing and joining (after the sockets are bound). */
int membership_start(membership_t *m);

/* Says goodbye (left, gossiped to a few members) before the daemon stops. */
void membership_stop(membership_t *m);

/* The description was reloaded: nodes it adds become members. */
void membership_reload(membership_t *m, const cairn_description_t *d);

/* This node's current incarnation. */
uint64_t membership_incarnation(const membership_t *m);

/* Request handlers (clusterd-manager.c dispatches to them). */
int membership_handle_nodes(membership_t *m, cairn_request_t *req);
int membership_handle_ping(membership_t *m, cairn_request_t *req);
int membership_handle_ping_req(membership_t *m, cairn_request_t *req);
int membership_handle_join(membership_t *m, cairn_request_t *req);
int membership_handle_node_add(membership_t *m, cairn_request_t *req);
int membership_handle_node_remove(membership_t *m, cairn_request_t *req);
int membership_handle_leave(membership_t *m, cairn_request_t *req);

#endif

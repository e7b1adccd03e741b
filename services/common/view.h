/* view.h - a service's view of the membership: who is alive among the
 * nodes running that service, whether this side has a quorum, and which
 * node is home of a name. syncd homes its objects with it; ghostd finds
 * the ghostds to ask for the jobs of the cluster.
 *
 * A service does not run a failure detector of its own: clusterd of the
 * same node says who is up. The view subscribes to clusterd's events
 * (ipc://<rundir>/clusterd.pub.sock: node-up, node-suspect, node-down,
 * node-left) and asks clusterd for the whole list (Request{nodes}) at
 * start, on every event, and every few seconds (PUB/SUB may drop while
 * reconnecting). A suspect member still counts as alive; dead and left
 * ones do not.
 *
 * Home of a name: rendezvous (highest random weight) hashing over the alive
 * members -- score(name, node) = hash64(name, node id), highest wins -- so
 * a member's death moves only the names it was home of, and every node
 * that sees the same members picks the same home.
 *
 * Only members whose appliance runs the view's service count (for syncd:
 * a node without syncd is nobody's home). Quorum: the alive members are
 * more than half of the known ones (alive, suspect, dead, and members not
 * heard from yet -- a node booting alone is no quorum; not left or
 * removed). syncd without quorum homes nothing and relays nothing
 * (UNAVAILABLE "no quorum: A of K members alive"): an isolated node must
 * not grant what the majority's side may grant too.
 *
 * The view id is a hash of the sorted alive ids: two nodes with the same
 * id see the same members (announcements are matched on it).
 */
#ifndef CAIRN_VIEW_H
#define CAIRN_VIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clusterd.pb-c.h"
#include "service.h"

#define CAIRN_VIEW_MAX_NODES 255

typedef struct view cairn_view_t;

/* Called (from the loop) when the view became known, the alive set
 * changed, or quorum came or went; old and now are the view ids before
 * and after (equal when only quorum changed). */
typedef void (*cairn_view_changed_fn)(void *userdata, uint64_t old_view,
                                uint64_t new_view);

/* The view of the members running `service` ("syncd", "ghostd"; copied).
 * NULL on ENOMEM. Nothing is connected before cairn_view_start. svc may be
 * NULL (tests: cairn_view_apply_nodes only). */
cairn_view_t *cairn_view_new(cairn_service_t *svc, const char *service,
                             cairn_view_changed_fn fn, void *userdata);
cairn_view_t *cairn_view_free(cairn_view_t *v);   /* NULL-safe; returns NULL */

/* Subscribes and asks clusterd; from ops->ready. 0 or -errno (a clusterd
 * that is not running yet is not an error: the view stays unknown and
 * retries). */
int cairn_view_start(cairn_view_t *v);

/* Whether clusterd answered at least once. Before that, nothing is homed
 * and nothing relayed (UNAVAILABLE "membership unknown: clusterd at ...
 * not answering"). */
bool cairn_view_known(const cairn_view_t *v);
bool cairn_view_quorum(const cairn_view_t *v);
uint64_t cairn_view_id(const cairn_view_t *v);
bool cairn_view_alive(const cairn_view_t *v, uint32_t node);
/* The alive ids, sorted; returns their number. */
size_t cairn_view_members(const cairn_view_t *v, uint32_t out[CAIRN_VIEW_MAX_NODES]);
/* Alive and known counts, for messages. */
size_t cairn_view_alive_count(const cairn_view_t *v);
size_t cairn_view_known_count(const cairn_view_t *v);
/* Whether node is a member running the service, and then its state as
 * clusterd says: "alive" (or suspect), "dead", "left" or "unknown" (not
 * heard from yet); NULL for a node that is not one. */
const char *cairn_view_state(const cairn_view_t *v, uint32_t node);
/* The home of name among the alive members; 0 if the view is unknown or
 * empty. */
uint32_t cairn_view_home(const cairn_view_t *v, const char *name);
/* The home among an explicit member list (tests, the bench). */
uint32_t cairn_view_home_among(const char *name, const uint32_t *ids, size_t n);
/* The view id of a sorted list of alive ids; 0 for none. */
uint64_t cairn_view_id_of(const uint32_t *sorted_ids, size_t n);
/* Takes clusterd's whole member list (what cairn_view_start's asks do with
 * each reply; tests call it on a view made with svc NULL, where every
 * member counts as running the service). Calls the changed callback when the view
 * becomes known, its id changes, or quorum comes or goes. */
void cairn_view_apply_nodes(cairn_view_t *v, const Cairn__Clusterd__NodesReply *rep);
/* tcp://address:port of the service on node (from the description), or
 * NULL. */
const char *cairn_view_endpoint(cairn_view_t *v, uint32_t node);

#endif

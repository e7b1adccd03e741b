/* view.h - syncd's view of the membership: who is alive, whether this side
 * has a quorum, and which node is home of a name.
 *
 * syncd does not run a failure detector of its own: clusterd of the same
 * node says who is up. The view subscribes to clusterd's events
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
 * Only members whose appliance runs syncd count (a node without syncd is
 * nobody's home). Quorum: the alive members are more than half of the
 * known ones (alive, suspect, dead, and members not heard from yet -- a
 * node booting alone is no quorum; not left or removed). Without quorum this node homes
 * nothing and relays nothing (UNAVAILABLE "no quorum: A of K members
 * alive"): an isolated node must not grant what the majority's side may
 * grant too.
 *
 * The view id is a hash of the sorted alive ids: two nodes with the same
 * id see the same members (announcements are matched on it).
 */
#ifndef SYNCD_VIEW_H
#define SYNCD_VIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clusterd.pb-c.h"
#include "service.h"

#define VIEW_MAX_NODES 255

typedef struct view view_t;

/* Called (from the loop) when the view became known, the alive set
 * changed, or quorum came or went; old and now are the view ids before
 * and after (equal when only quorum changed). */
typedef void (*view_changed_fn)(void *userdata, uint64_t old_view,
                                uint64_t new_view);

/* NULL on ENOMEM. Nothing is connected before view_start. svc may be
 * NULL (tests: view_apply_nodes only). */
view_t *view_new(cairn_service_t *svc, view_changed_fn fn, void *userdata);
view_t *view_free(view_t *v);   /* NULL-safe; returns NULL */

/* Subscribes and asks clusterd; from ops->ready. 0 or -errno (a clusterd
 * that is not running yet is not an error: the view stays unknown and
 * retries). */
int view_start(view_t *v);

/* Whether clusterd answered at least once. Before that, nothing is homed
 * and nothing relayed (UNAVAILABLE "membership unknown: clusterd at ...
 * not answering"). */
bool view_known(const view_t *v);
bool view_quorum(const view_t *v);
uint64_t view_id(const view_t *v);
bool view_alive(const view_t *v, uint32_t node);
/* The alive ids, sorted; returns their number. */
size_t view_members(const view_t *v, uint32_t out[VIEW_MAX_NODES]);
/* Alive and known counts, for messages. */
size_t view_alive_count(const view_t *v);
size_t view_known_count(const view_t *v);
/* The home of name among the alive members; 0 if the view is unknown or
 * empty. */
uint32_t view_home(const view_t *v, const char *name);
/* The home among an explicit member list (tests, the bench). */
uint32_t view_home_among(const char *name, const uint32_t *ids, size_t n);
/* The view id of a sorted list of alive ids; 0 for none. */
uint64_t view_id_of(const uint32_t *sorted_ids, size_t n);
/* Takes clusterd's whole member list (what view_start's asks do with each
 * reply; tests call it on a view made with svc NULL, where every member
 * counts as running syncd). Calls the changed callback when the view
 * becomes known, its id changes, or quorum comes or goes. */
void view_apply_nodes(view_t *v, const Cairn__Clusterd__NodesReply *rep);
/* tcp://address:port of syncd on node (from the description), or NULL. */
const char *view_endpoint(view_t *v, uint32_t node);

#endif

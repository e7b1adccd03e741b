/* membership.c - SWIM failure detection and gossip for clusterd.
 *
 * Design (Das, Gupta & Motivala, "SWIM", 2002, with Lifeguard's refinements,
 * Dadgar, Phillips & Currey 2018; docs/membership.md):
 *
 * - Table: one slot per node id (1..255). Each member has (state,
 *   incarnation); updates are ordered by incarnation, then by state rank
 *   unknown < alive < suspect < dead < left, so alive(i+1) refutes
 *   suspect(i) and dead(i), and a node that comes back after being declared
 *   dead rejoins with a higher incarnation. A node starts with its
 *   incarnation at the wall clock in ms, so a restarted node always
 *   outranks what the cluster remembers of its previous life.
 * - Probe cycle, every protocol period (numbered by the wall clock, so all
 *   nodes agree): ping the member a rotating number of places after us in
 *   the id-ranked live list, so each member is probed by exactly one other
 *   per period; no ack within ping-timeout -> ask k others to ping it
 *   (ping-req; they nack when the target does not answer either); no ack
 *   within twice ping-timeout -> suspect, and tell it (buddy ping).
 * - Suspicion (Lifeguard): whoever hears of one pings the suspect itself
 *   and, getting no answer, adds itself to the suspicion's suspected_by;
 *   the timeout shrinks from suspect-timeout to an eighth of it as those
 *   confirmations reach K = 3. Every member runs its own timer.
 * - Local health (Lifeguard): a node that finds itself slow (timers running
 *   late, no nack from any helper, having to refute) raises a score that
 *   stretches its timeouts, keeps it from suspecting on a late timeout, and
 *   travels on its own entry so the others are patient with it too.
 * - Gossip: a state change is queued for lambda*log2(n) transmissions and
 *   piggybacked, at most gossip-fanout at a time, on pings, ping-reqs and
 *   acks, and pushed to 3 random members every 100 ms (at once for a
 *   suspicion, death or refutation) while any is left. A message to a
 *   member we suspect or think dead always carries that member's own entry,
 *   so it can refute at once.
 * - Joining: a node not yet in contact sends Join with its whole table to
 *   the seeds and gets theirs back (push-pull); every ~30 s each node does
 *   the same with a random member. Unknown and dead members are probed now
 *   and then too, which heals partitions and finds nodes that started late.
 * - Hotplug: node-add admits a node that is not in the description (checked
 *   for a free id, name and address, gossiped as "unknown"); its clusterd
 *   then joins like any other. node-remove and leave gossip "left".
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "membership.h"
#include "metrics.h"
#include "peer.h"
#include "util/cleanup.h"

#define MAX_ID 255
#define MAX_GOSSIP 32
#define GOSSIP_LAMBDA 3
#define STRAY_PROBE_EVERY 3       /* ticks between probes of unknown/dead members */
#define LEAVE_NOTIFY 3            /* members told directly when leaving */
#define GOSSIP_INTERVAL_MS 100    /* news is pushed this often ... */
#define GOSSIP_NODES 3            /* ... to this many random members */
#define JOIN_RETRY_MS 300         /* join attempts while alone */
#define JOIN_TIMEOUT_MS 1000
#define SYNC_EVERY_MS 30000       /* push-pull with a random member, on average */
#define CONFIRMATIONS 3           /* Lifeguard's K: independent suspicions that
                                   * shrink a suspicion to its minimum */
#define MAX_SUSPECTERS 8          /* suspecters kept (and gossiped) per member */
#define HEALTH_MAX 8              /* local health multiplier's ceiling */
#define PATIENCE_DECAY_MS 60000   /* a refuting member's extra patience fades */

typedef Cairn__Clusterd__Member pb_member_t;

typedef struct member {
    bool used;                 /* slot holds a member */
    char *name;                /* owned */
    char *address;             /* owned */
    char *appliance;           /* owned */
    int state;                 /* CAIRN__CLUSTERD__MEMBER_STATE__* */
    uint64_t inc;              /* incarnation */
    uint64_t last_heard;       /* cairn_now_ms() of the last direct message, 0 never */
    uint64_t suspect_deadline; /* when a suspect becomes dead */
    uint64_t suspect_since;    /* when this node began to suspect it */
    uint32_t sus_by[MAX_SUSPECTERS]; /* who found it unreachable at this
                                      * incarnation, the originator first */
    size_t n_sus_by;
    bool confirming;           /* a confirmation ping of it is in flight */
    int health;                /* its local health, as it last said */
    int patience;              /* 0.. HEALTH_MAX: raised each time it refuted a
                                * suspicion of ours, lowered by one a minute */
    uint64_t patience_at;      /* cairn_now_ms() of its last change */
    int gossip_left;           /* transmissions left for the current state */
} member_t;

struct membership {
    cairn_service_t *svc;              /* the daemon */
    cairn_peers_t *peers;              /* connections to other clusterd */
    struct probe *probes;              /* probes with callbacks to come */
    member_t members[MAX_ID + 1];      /* by id; [0] unused */
    uint32_t self;                     /* our id */
    uint16_t port;                     /* clusterd port (same on every node) */
    cairn_membership_desc_t t;         /* timings */
    int64_t tick_timer;                /* protocol period timer */
    uint64_t ticks;                    /* periods elapsed */
    unsigned rng;                      /* rand_r state */
    bool in_contact;                   /* heard from another member */
    bool leaving;                      /* self is left; stop probing */
    cairn_deferred_t *leave_req;       /* client waiting for our leave */
    int leave_outstanding;             /* goodbyes not yet answered */
    int64_t gossip_timer;              /* news, joins and syncs: every GOSSIP_INTERVAL_MS */
    int64_t soon_timer;                /* a gossip round right away, 0 when none is due */
    int64_t expiry_timer;              /* at the earliest suspicion deadline, 0 none */
    uint64_t expiry_at;                /* that deadline */
    uint64_t last_tick;                /* cairn_now_ms() of the last period's tick */
    uint64_t last_gossip;              /* and of the last gossip timer's run */
    uint64_t last_join;                /* of the last join attempt */
    uint64_t next_sync;                /* of the next push-pull */
    cairn_metric_t *m_members;         /* cairn_members{state} */
    cairn_metric_t *m_changes;         /* cairn_member_changes_total{state} */
    int health;                        /* Lifeguard's local health: 0 healthy ..
                                        * HEALTH_MAX; our timeouts are x (1 + health) */
};

/* A probe in flight: one direct ping, then maybe k indirect ones (or a
 * lone confirmation ping of a member someone else suspects). */
typedef struct probe {
    struct probe *next, *prev; /* in m->probes: freed at exit, when the
                                * peers drop their callbacks */
    membership_t *m;
    uint32_t target;
    uint64_t inc;              /* target's incarnation when probed */
    uint64_t sent;             /* cairn_now_ms() when the direct ping left */
    uint32_t timeout;          /* its timeout */
    bool acked;
    bool late;                 /* our loop ran late: the probe proves nothing */
    bool retry;                /* a second try after a late one */
    int helpers;               /* ping-reqs sent */
    int nacks;                 /* helpers that answered "target did not answer" */
    int outstanding;           /* callbacks still to come */
} probe_t;

/* Gossip entries built for one outgoing message (borrowed strings). */
typedef struct gossip {
    pb_member_t items[MAX_GOSSIP];
    pb_member_t *ptrs[MAX_GOSSIP];
    size_t n;
} gossip_t;

static const char *s_state_name(int st)
{
    switch (st) {
    case CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_ALIVE: return "alive";
    case CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_SUSPECT: return "suspect";
    case CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_DEAD: return "dead";
    case CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_LEFT: return "left";
    default: return "unknown";
    }
}

static const char *s_event_topic(int st)
{
    switch (st) {
    case CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_ALIVE: return "node-up";
    case CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_SUSPECT: return "node-suspect";
    case CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_DEAD: return "node-down";
    case CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_LEFT: return "node-left";
    default: return NULL;
    }
}

static bool s_is_live(int st)
{
    return st == CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_ALIVE ||
           st == CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_SUSPECT;
}

static int s_gossip_limit(const membership_t *m)
{
    int n = 0, lg = 0;
    for (uint32_t id = 1; id <= MAX_ID; id++)
        n += m->members[id].used;
    while ((1 << lg) < n + 1)
        lg++;
    return GOSSIP_LAMBDA * (lg ? lg : 1);
}

static uint64_t s_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- table ------------------------------------------------------------- */

static int s_set_str(char **dst, const char *src)
{
    if (*dst && src && strcmp(*dst, src) == 0)
        return 0;
    char *c = strdup(src ? src : "");
    if (!c)
        return -ENOMEM;
    free(*dst);
    *dst = c;
    return 0;
}

static int s_add(membership_t *m, uint32_t id, const char *name,
                 const char *address, const char *appliance, int state,
                 uint64_t inc)
{
    member_t *mb = &m->members[id];
    if (s_set_str(&mb->name, name) < 0 || s_set_str(&mb->address, address) < 0 ||
        s_set_str(&mb->appliance, appliance) < 0)
        return -ENOMEM;
    mb->used = true;
    mb->state = state;
    mb->inc = inc;
    mb->gossip_left = s_gossip_limit(m);
    return 0;
}

static void s_publish(membership_t *m, uint32_t id)
{
    member_t *mb = &m->members[id];
    const char *topic = s_event_topic(mb->state);
    if (!topic)
        return;
    uint64_t now = s_wall_ms();
    /* time_ms: when this table changed, so a log alone times detection
     * and convergence (bench/cluster.sh) without polling. */
    cairn_log_info(topic, "id=%u name=%s address=%s incarnation=%llu time_ms=%llu",
                   id, mb->name, mb->address, (unsigned long long)mb->inc,
                   (unsigned long long)now);
    pb_member_t pm = CAIRN__CLUSTERD__MEMBER__INIT;
    pm.id = id;
    pm.name = mb->name;
    pm.address = mb->address;
    pm.appliance = mb->appliance;
    pm.state = (Cairn__Clusterd__MemberState)mb->state;
    pm.incarnation = mb->inc;
    Cairn__Clusterd__MemberEvent ev = CAIRN__CLUSTERD__MEMBER_EVENT__INIT;
    ev.member = &pm;
    ev.observer = m->self;
    ev.time_ms = now;
    cairn_metric_add(m->m_changes, 1, s_state_name(mb->state));
    int r = cairn_service_publish(m->svc, topic, 1, &ev.base);
    if (r < 0 && r != -ENOTCONN)
        cairn_log_warn(r, "publish", "topic=%s, ignoring", topic);
}

/* Members that are alive or suspect, this node included. */
static size_t s_n_live(const membership_t *m)
{
    size_t n = 0;
    for (uint32_t id = 1; id <= MAX_ID; id++)
        n += m->members[id].used && s_is_live(m->members[id].state);
    return n;
}

/* Our timeouts, stretched while this node is itself slow (Lifeguard's
 * local health awareness): a late answer we were too slow to read must not
 * make a healthy member suspect. */
static uint32_t s_ping_timeout(const membership_t *m)
{
    return m->t.ping_timeout_ms * (uint32_t)(1 + m->health);
}

/* Towards member `id`: stretched by its own health too, as it told us (a
 * node that knows it is starved asks the others for patience). */
/* How slow member `id` is known to be: what it says of itself, or what
 * its refutations taught us (a starved node may be too slow to say). */
static int s_slowness(const membership_t *m, uint32_t id)
{
    const member_t *mb = &m->members[id];
    return mb->health > mb->patience ? mb->health : mb->patience;
}

static uint32_t s_ping_timeout_to(const membership_t *m, uint32_t id)
{
    int h = s_slowness(m, id) > m->health ? s_slowness(m, id) : m->health;
    return m->t.ping_timeout_ms * (uint32_t)(1 + h);
}

static void s_health(membership_t *m, int delta, const char *why)
{
    int h = m->health + delta;
    h = h < 0 ? 0 : h > HEALTH_MAX ? HEALTH_MAX : h;
    if (h == m->health)
        return;
    if (h > m->health)
        cairn_log_debug("health", "score=%d why=%s", h, why);
    m->health = h;
}

static uint64_t s_suspect_min(const membership_t *m)
{
    return m->t.suspect_timeout_ms / 8;
}

static void s_arm_expiry(membership_t *m);

/* Lifeguard's dynamic suspicion: suspect-timeout S with no independent
 * confirmation, shrinking as log(c + 1) / log(K + 1) to S / 8 once K other
 * members have found it unreachable too (K = CONFIRMATIONS, fewer in a
 * cluster too small to have that many). Every one of them has told the
 * member (the pings carry the suspicion), so a live one has had K + 1
 * chances to refute. */
static uint64_t s_suspect_timeout(const membership_t *m, const member_t *mb)
{
    /* log(c + 1) / log(k + 1) in thousandths, [k][c] */
    static const unsigned frac[4][4] = {
        { 1000, 1000, 1000, 1000 }, { 0, 1000, 1000, 1000 },
        { 0, 631, 1000, 1000 }, { 0, 500, 792, 1000 },
    };
    uint64_t slow = 1 + (uint64_t)(mb->health > mb->patience ? mb->health : mb->patience);
    uint64_t smax = m->t.suspect_timeout_ms * slow, smin = s_suspect_min(m) * slow;
    size_t n = s_n_live(m);
    size_t k = n >= 2 + CONFIRMATIONS ? CONFIRMATIONS : n > 2 ? n - 2 : 0;
    size_t c = mb->n_sus_by > 1 ? mb->n_sus_by - 1 : 0;
    if (c > 3)
        c = 3;
    return smax - (smax - smin) * frac[k][c] / 1000;
}

/* Adds `who` to the suspecters of member `id` and shortens its suspicion to
 * match; true when `who` is new. */
static bool s_add_suspecter(membership_t *m, uint32_t id, uint32_t who)
{
    member_t *mb = &m->members[id];
    if (who == 0 || who > MAX_ID || who == id)
        return false;
    for (size_t i = 0; i < mb->n_sus_by; i++)
        if (mb->sus_by[i] == who)
            return false;
    if (mb->n_sus_by >= MAX_SUSPECTERS)
        return false;
    mb->sus_by[mb->n_sus_by++] = who;
    uint64_t d = mb->suspect_since + s_suspect_timeout(m, mb);
    if (d < mb->suspect_deadline)
        mb->suspect_deadline = d;
    s_arm_expiry(m);
    return true;
}

/* Moves a member to a new (state, inc), queues it for gossip, publishes. */
static void s_transition(membership_t *m, uint32_t id, int state, uint64_t inc)
{
    member_t *mb = &m->members[id];
    bool changed = mb->state != state;
    bool fresh = changed || inc != mb->inc;   /* a new suspicion, if suspect */
    if (fresh)
        mb->n_sus_by = 0;
    /* A member back from the dead (restarted, or its link restored) gets a
     * fresh connection: the old one may sit in reconnect backoff and make
     * the first probes of the new life fail. */
    if (state == CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_ALIVE && !s_is_live(mb->state))
        cairn_peers_forget(m->peers, id);
    mb->state = state;
    mb->inc = inc;
    mb->gossip_left = s_gossip_limit(m);
    if (state == CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_SUSPECT && fresh) {
        mb->suspect_since = cairn_now_ms();
        mb->suspect_deadline = mb->suspect_since + s_suspect_timeout(m, mb);
        s_arm_expiry(m);
    }
    if (changed)
        s_publish(m, id);
}

static int s_rank(int st)
{
    /* enum values are already in precedence order: unknown 0 .. left 4 */
    return st;
}

static bool s_newer(int st, uint64_t inc, const member_t *mb)
{
    return inc > mb->inc || (inc == mb->inc && s_rank(st) > s_rank(mb->state));
}

static bool s_address_taken(const membership_t *m, const char *address, uint32_t except)
{
    for (uint32_t id = 1; id <= MAX_ID; id++) {
        const member_t *mb = &m->members[id];
        if (id != except && mb->used && mb->state != CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_LEFT &&
            strcmp(mb->address, address) == 0)
            return true;
    }
    return false;
}

static void s_stop_daemon(membership_t *m, int code)
{
    cairn_loop_quit(cairn_service_loop(m->svc), code);
}

/* An update about ourselves: refute suspicion or death; obey removal. */
static void s_merge_self(membership_t *m, const pb_member_t *u)
{
    member_t *me = &m->members[m->self];
    if (u->incarnation < me->inc || m->leaving)
        return;
    if (u->state == CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_SUSPECT ||
        u->state == CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_DEAD) {
        me->inc = u->incarnation + 1;
        me->gossip_left = s_gossip_limit(m);
        s_health(m, 1, "refuted");
        cairn_log_info("refute", "was=%s incarnation=%llu", s_state_name(u->state),
                       (unsigned long long)me->inc);
    } else if (u->state == CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_LEFT) {
        cairn_log_info("removed", "msg=\"this node was removed from the cluster; stopping\"");
        m->leaving = true;
        s_transition(m, m->self, u->state, u->incarnation);
        s_stop_daemon(m, 0);
    }
}

/* A newer update may carry a new name, address or appliance (a node
 * removed and added again under another identity). */
static void s_update_identity(membership_t *m, const pb_member_t *u, member_t *mb)
{
    if (u->name && *u->name)
        s_set_str(&mb->name, u->name);
    if (u->appliance && *u->appliance)
        s_set_str(&mb->appliance, u->appliance);
    if (u->address && *u->address && strcmp(u->address, mb->address) != 0) {
        s_set_str(&mb->address, u->address);
        cairn_peers_forget(m->peers, u->id);
    }
}

/* What we make of a gossiped death. A member we had alive is not taken as
 * dead on hearsay: the rumour may come from a node that was itself cut off
 * (after a partition heals, the isolated side believes everyone else
 * died). We suspect it instead, which runs our own (short) timer and pings
 * it, carrying the suspicion, so a live member refutes at once. A member we
 * suspect already is dead unless we have heard from it since. */
static int s_local_verdict(const membership_t *m, const pb_member_t *u, const member_t *mb)
{
    if (u->state != CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_DEAD)
        return (int)u->state;
    if (mb->state == CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_ALIVE ||
        (mb->state == CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_SUSPECT &&
         mb->last_heard > mb->suspect_since))
        return CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_SUSPECT;
    return CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_DEAD;
}

static void s_confirm_probe(membership_t *m, uint32_t target);
static void s_gossip_soon(membership_t *m);

/* Applies one gossiped or direct update. */
static void s_merge(membership_t *m, const pb_member_t *u)
{
    if (!u || u->id == 0 || u->id > MAX_ID)
        return;
    if (u->id == m->self) {
        s_merge_self(m, u);
        return;
    }
    member_t *mb = &m->members[u->id];
    if (!mb->used) {
        if (!u->address || !*u->address || s_address_taken(m, u->address, u->id))
            return;
        if (s_add(m, u->id, u->name, u->address, u->appliance,
                  CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_UNKNOWN, 0) < 0)
            return;
        if (u->state == CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_UNKNOWN)
            return;
    }
    if (u->incarnation >= mb->inc)
        mb->health = u->health > HEALTH_MAX ? HEALTH_MAX : (int)u->health;
    if (u->state == CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_SUSPECT &&
        mb->state == CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_SUSPECT && u->incarnation == mb->inc) {
        /* the same suspicion: take its confirmations, and pass them on */
        bool grew = false;
        for (size_t i = 0; i < u->n_suspected_by; i++)
            grew |= s_add_suspecter(m, u->id, u->suspected_by[i]);
        if (grew)
            mb->gossip_left = s_gossip_limit(m);
        return;
    }
    if (u->state == CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_UNKNOWN ||
        !s_newer((int)u->state, u->incarnation, mb))
        return;
    s_update_identity(m, u, mb);
    int was = mb->state;
    if (u->state == CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_ALIVE &&
        (was == CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_SUSPECT ||
         was == CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_DEAD) && mb->inc > 0) {
        /* it was alive after all: slow, not dead. Give it more time from
         * now on (x 1 + patience on our timeouts towards it). */
        mb->patience = mb->patience + 2 > HEALTH_MAX ? HEALTH_MAX : mb->patience + 2;
        mb->patience_at = cairn_now_ms();
    }
    int st = s_local_verdict(m, u, mb);
    s_transition(m, u->id, st, u->incarnation);
    if (st == CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_SUSPECT &&
        u->state == CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_DEAD) {
        /* someone's timer ran out: ours gets the shortest, unless the
         * member answers the ping below */
        if (was != CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_SUSPECT)
            mb->suspect_deadline = mb->suspect_since + s_suspect_min(m);
        s_arm_expiry(m);
        s_confirm_probe(m, u->id);
    } else if (st == CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_SUSPECT) {
        for (size_t i = 0; i < u->n_suspected_by; i++)
            s_add_suspecter(m, u->id, u->suspected_by[i]);
        s_confirm_probe(m, u->id);
    }
    if (st == CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_SUSPECT ||
        st == CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_DEAD)
        s_gossip_soon(m);
}

/* A message came straight from `from`: it is alive at its incarnation. */
static void s_heard_from(membership_t *m, const pb_member_t *from)
{
    if (!from || from->id == 0 || from->id > MAX_ID || from->id == m->self)
        return;
    s_merge(m, from);
    if (m->members[from->id].used) {
        m->members[from->id].last_heard = cairn_now_ms();
        m->in_contact = true;
    }
}

static void s_merge_all(membership_t *m, pb_member_t **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        s_merge(m, list[i]);
}

/* ---- gossip ------------------------------------------------------------ */

static void s_fill_member(const membership_t *m, uint32_t id, pb_member_t *pm)
{
    const member_t *mb = &m->members[id];
    cairn__clusterd__member__init(pm);
    pm->id = id;
    pm->name = mb->name;
    pm->address = mb->address;
    pm->appliance = mb->appliance;
    pm->state = (Cairn__Clusterd__MemberState)mb->state;
    pm->incarnation = mb->inc;
    pm->health = (uint32_t)(id == m->self ? m->health : mb->health);
    if (mb->state == CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_SUSPECT) {
        pm->suspected_by = (uint32_t *)mb->sus_by;   /* borrowed, like the strings */
        pm->n_suspected_by = mb->n_sus_by;
    }
}

static void s_gossip_push(const membership_t *m, gossip_t *g, uint32_t id)
{
    for (size_t i = 0; i < g->n; i++)
        if (g->items[i].id == id)
            return;
    if (g->n >= MAX_GOSSIP)
        return;
    s_fill_member(m, id, &g->items[g->n]);
    g->ptrs[g->n] = &g->items[g->n];
    g->n++;
}

/* Picks what to piggyback on a message to `dest`. */
static void s_gossip_pick(membership_t *m, uint32_t dest, gossip_t *g)
{
    g->n = 0;
    const member_t *d = dest ? &m->members[dest] : NULL;
    if (d && d->used && (d->state == CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_SUSPECT ||
                         d->state == CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_DEAD ||
                         d->state == CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_LEFT))
        s_gossip_push(m, g, dest);
    /* while we are slow, every message says so (our entry carries our
     * health): no extra message, and whoever pings us learns it */
    if (m->health > 0)
        s_gossip_push(m, g, m->self);
    size_t fanout = m->t.gossip_fanout < MAX_GOSSIP - 2 ? m->t.gossip_fanout : MAX_GOSSIP - 2;
    size_t limit = g->n + fanout;   /* the dest's own entry comes on top */
    while (g->n < limit) {
        uint32_t best = 0;
        for (uint32_t id = 1; id <= MAX_ID; id++) {
            const member_t *mb = &m->members[id];
            bool taken = false;
            for (size_t i = 0; i < g->n; i++)
                taken |= g->items[i].id == id;
            if (mb->used && mb->gossip_left > 0 && !taken &&
                (!best || mb->gossip_left > m->members[best].gossip_left))
                best = id;
        }
        if (!best)
            break;
        m->members[best].gossip_left--;
        s_gossip_push(m, g, best);
    }
}

/* ---- talking to peers -------------------------------------------------- */

static int s_endpoint(const membership_t *m, uint32_t id, char *buf, size_t len)
{
    const char *a = m->members[id].address;
    int n = strchr(a, ':') ? snprintf(buf, len, "tcp://[%s]:%u", a, m->port)
                           : snprintf(buf, len, "tcp://%s:%u", a, m->port);
    return n > 0 && (size_t)n < len ? 0 : -ENAMETOOLONG;
}

static int s_call(membership_t *m, uint32_t id, ProtobufCMessage *req,
                  uint32_t timeout_ms, cairn_peer_fn fn, void *userdata)
{
    char ep[128];
    int r = s_endpoint(m, id, ep, sizeof(ep));
    if (r == 0)
        r = cairn_peers_call(m->peers, id, ep, req, timeout_ms, fn, userdata);
    return r;
}

static int s_send_ping(membership_t *m, uint32_t target, uint32_t timeout_ms,
                       cairn_peer_fn fn, void *userdata)
{
    gossip_t g;
    pb_member_t from;
    s_fill_member(m, m->self, &from);
    s_gossip_pick(m, target, &g);
    Cairn__Clusterd__PingRequest ping = CAIRN__CLUSTERD__PING_REQUEST__INIT;
    ping.from = &from;
    ping.gossip = g.ptrs;
    ping.n_gossip = g.n;
    Cairn__Clusterd__Request req = CAIRN__CLUSTERD__REQUEST__INIT;
    req.msg_case = CAIRN__CLUSTERD__REQUEST__MSG_PING;
    req.ping = &ping;
    return s_call(m, target, &req.base, timeout_ms, fn, userdata);
}

static void s_take_ack(membership_t *m, uint32_t node, ProtobufCMessage *reply)
{
    Cairn__Clusterd__Reply *rep = (Cairn__Clusterd__Reply *)reply;
    if (rep->msg_case == CAIRN__CLUSTERD__REPLY__MSG_ACK)
        s_merge_all(m, rep->ack->gossip, rep->ack->n_gossip);
    protobuf_c_message_free_unpacked(reply, NULL);
}

/* ---- probing ----------------------------------------------------------- */

static size_t s_random_live(membership_t *m, uint32_t exclude, uint32_t *out, size_t k)
{
    uint32_t cand[MAX_ID];
    size_t n = 0;
    for (uint32_t id = 1; id <= MAX_ID; id++)
        if (id != m->self && id != exclude &&
            m->members[id].used && m->members[id].state == CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_ALIVE)
            cand[n++] = id;
    for (size_t i = 0; i < n && i < k; i++) {
        size_t j = i + (size_t)rand_r(&m->rng) % (n - i);
        uint32_t t = cand[i];
        cand[i] = cand[j];
        cand[j] = t;
        out[i] = cand[i];
    }
    return n < k ? n : k;
}

/* An answer that proves the member alive: heard, in contact. */
static void s_acked(membership_t *m, uint32_t node, ProtobufCMessage *reply)
{
    m->members[node].last_heard = cairn_now_ms();
    m->in_contact = true;
    s_take_ack(m, node, reply);
}

/* A ping to a member that expects nothing of the answer but its gossip:
 * news rounds, probes of unknown/dead members (which join late starters
 * and heal partitions), the buddy ping of a new suspect. Never suspects. */
static void s_on_quiet(void *userdata, uint32_t node, int code,
                       const char *message, ProtobufCMessage *reply)
{
    membership_t *m = userdata;
    if (code == CAIRN_OK)
        s_acked(m, node, reply);
}

static probe_t *s_probe_new(membership_t *m, uint32_t target, uint32_t timeout)
{
    probe_t *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    *p = (probe_t){ .m = m, .target = target, .inc = m->members[target].inc,
                    .sent = cairn_now_ms(), .timeout = timeout, .outstanding = 1 };
    return p;
}

static void s_probe_link(probe_t *p)
{
    membership_t *m = p->m;
    p->next = m->probes;
    if (m->probes)
        m->probes->prev = p;
    m->probes = p;
}

static void s_probe_unlink(probe_t *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        p->m->probes = p->next;
    if (p->next)
        p->next->prev = p->prev;
}

/* True when a timeout fired well after its deadline: this node was too
 * slow to read the answer in time, so the failure says nothing about the
 * target (Lifeguard: the prober's own health). */
static bool s_late(membership_t *m, uint64_t sent, uint32_t timeout)
{
    return cairn_now_ms() > sent + timeout + m->t.ping_timeout_ms / 2;
}

/* This node found member `id` unreachable at incarnation `inc`: it
 * suspects it (or confirms someone else's suspicion), spreads that at once
 * and tells the member itself (Lifeguard's buddy system), so a live one
 * refutes within a round trip. */
static void s_suspect(membership_t *m, uint32_t id, uint64_t inc)
{
    member_t *mb = &m->members[id];
    if (!mb->used || mb->inc != inc || m->leaving)
        return;
    if (mb->state == CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_ALIVE) {
        s_transition(m, id, CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_SUSPECT, inc);
        s_add_suspecter(m, id, m->self);
        s_send_ping(m, id, s_ping_timeout(m), s_on_quiet, m);
    } else if (mb->state == CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_SUSPECT) {
        if (!s_add_suspecter(m, id, m->self))
            return;
        mb->gossip_left = s_gossip_limit(m);
    } else {
        return;
    }
    s_gossip_soon(m);
}

static void s_probe(membership_t *m, uint32_t target, bool retry);

static void s_probe_done(probe_t *p)
{
    if (--p->outstanding > 0)
        return;
    membership_t *m = p->m;
    if (!p->acked && !p->late && p->helpers > 0 && p->nacks == 0) {
        /* not one helper answered, not even "no answer": it is our own
         * side that is cut off or slow */
        s_health(m, 1, "no-nack");
    } else if (!p->acked && !p->late) {
        s_suspect(m, p->target, p->inc);
    } else if (p->late && !p->retry && !m->leaving) {
        /* the answer may have come while we were not running: ask again
         * now rather than leave the member unprobed for a period */
        s_probe(m, p->target, true);
    }
    s_probe_unlink(p);
    free(p);
}

static void s_on_indirect(void *userdata, uint32_t node, int code,
                          const char *message, ProtobufCMessage *reply)
{
    probe_t *p = userdata;
    if (code == CAIRN_OK) {
        p->acked = true;
        s_take_ack(p->m, node, reply);
    } else if (code == CAIRN_UNAVAILABLE) {
        p->nacks++;   /* the helper answered: the target did not */
    }
    s_probe_done(p);
}

static void s_send_indirect(membership_t *m, probe_t *p)
{
    uint32_t helpers[MAX_ID];
    size_t k = s_random_live(m, p->target, helpers, m->t.indirect_checks);
    for (size_t i = 0; i < k; i++) {
        gossip_t g;
        pb_member_t from;
        s_fill_member(m, m->self, &from);
        s_gossip_pick(m, helpers[i], &g);
        Cairn__Clusterd__PingReqRequest pr = CAIRN__CLUSTERD__PING_REQ_REQUEST__INIT;
        pr.from = &from;
        pr.target = p->target;
        pr.gossip = g.ptrs;
        pr.n_gossip = g.n;
        Cairn__Clusterd__Request req = CAIRN__CLUSTERD__REQUEST__INIT;
        req.msg_case = CAIRN__CLUSTERD__REQUEST__MSG_PING_REQ;
        req.ping_req = &pr;
        if (s_call(m, helpers[i], &req.base, 2 * s_ping_timeout_to(m, p->target),
                   s_on_indirect, p) == 0) {
            p->outstanding++;
            p->helpers++;
        }
    }
}

static void s_on_direct(void *userdata, uint32_t node, int code,
                        const char *message, ProtobufCMessage *reply)
{
    probe_t *p = userdata;
    membership_t *m = p->m;
    if (code == CAIRN_OK) {
        p->acked = true;
        s_health(m, -1, "ack");
        s_acked(m, node, reply);
    } else if (s_late(m, p->sent, p->timeout)) {
        p->late = true;
        s_health(m, 1, "late");
    } else if (!m->leaving && m->members[node].used && s_is_live(m->members[node].state)) {
        s_send_indirect(m, p);
    }
    s_probe_done(p);
}

static void s_probe(membership_t *m, uint32_t target, bool retry)
{
    probe_t *p = s_probe_new(m, target, s_ping_timeout_to(m, target));
    if (!p)
        return;
    p->retry = retry;
    if (s_send_ping(m, target, p->timeout, s_on_direct, p) < 0) {
        free(p);
        return;
    }
    s_probe_link(p);
}

/* A confirmation ping: someone suspects `target`; we ping it ourselves.
 * No answer (and we were not slow): we are one more independent suspecter,
 * which shortens everyone's suspicion. An answer: the ping carried the
 * suspicion, and the member's refutation comes back with the ack. */
static void s_on_confirm(void *userdata, uint32_t node, int code,
                         const char *message, ProtobufCMessage *reply)
{
    probe_t *p = userdata;
    membership_t *m = p->m;
    m->members[node].confirming = false;
    if (code == CAIRN_OK)
        s_acked(m, node, reply);
    else if (m->health == 0 && !s_late(m, p->sent, p->timeout))
        s_suspect(m, node, p->inc);
    s_probe_unlink(p);
    free(p);
}

static void s_confirm_probe(membership_t *m, uint32_t target)
{
    member_t *mb = &m->members[target];
    if (m->leaving || mb->confirming)
        return;
    probe_t *p = s_probe_new(m, target, s_ping_timeout_to(m, target));
    if (!p)
        return;
    if (s_send_ping(m, target, p->timeout, s_on_confirm, p) < 0) {
        free(p);
        return;
    }
    mb->confirming = true;
    s_probe_link(p);
}

/* The member to probe in period `tick` (wall clock / period, the same on
 * every node): rank the live members by id, and in each period every one
 * probes the one `1 + tick mod (n - 1)` places after it. Each member is
 * then probed by exactly one other in every period, and by each other in
 * turn over n - 1 periods, so a crash is first probed within one period
 * (half of one, median) where a random order leaves gaps of several.
 * While the views differ, some member may be probed twice and another
 * not at all in a period, no worse than a random order. 0: nobody. */
static uint32_t s_probe_target(const membership_t *m, uint64_t tick)
{
    uint32_t live[MAX_ID];
    size_t n = 0, me = 0;
    for (uint32_t id = 1; id <= MAX_ID; id++) {
        if (!m->members[id].used || !s_is_live(m->members[id].state))
            continue;
        if (id == m->self)
            me = n;
        live[n++] = id;
    }
    if (n < 2)
        return 0;
    size_t step = 1 + (size_t)(tick % (n - 1));
    return live[(me + step) % n];
}

static void s_probe_stray(membership_t *m)
{
    uint32_t cand[MAX_ID];
    size_t n = 0;
    for (uint32_t id = 1; id <= MAX_ID; id++) {
        int st = m->members[id].state;
        if (id != m->self && m->members[id].used &&
            (st == CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_UNKNOWN ||
             st == CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_DEAD))
            cand[n++] = id;
    }
    if (n)
        s_send_ping(m, cand[(size_t)rand_r(&m->rng) % n], m->t.protocol_period_ms,
                    s_on_quiet, m);
}

/* ---- gossip rounds ----------------------------------------------------- */

static bool s_has_news(const membership_t *m)
{
    for (uint32_t id = 1; id <= MAX_ID; id++)
        if (m->members[id].used && m->members[id].gossip_left > 0)
            return true;
    return false;
}

/* News (entries still to be retransmitted) goes to GOSSIP_NODES random
 * alive members now, on pings whose acks bring theirs back: a change
 * reaches everyone in O(log n) rounds whatever the probe period, and a
 * quiet cluster sends nothing here. */
static void s_gossip_round(membership_t *m)
{
    if (m->leaving || !s_has_news(m))
        return;
    uint32_t to[GOSSIP_NODES];
    size_t k = s_random_live(m, 0, to, GOSSIP_NODES);
    for (size_t i = 0; i < k; i++)
        s_send_ping(m, to[i], s_ping_timeout(m), s_on_quiet, m);
}

static int s_on_soon(cairn_loop_t *loop, int64_t timer_id, void *userdata)
{
    membership_t *m = userdata;
    m->soon_timer = 0;
    s_gossip_round(m);
    return 0;
}

/* A suspicion, a death or a refutation is worth a round of its own rather
 * than waiting up to GOSSIP_INTERVAL_MS. */
static void s_gossip_soon(membership_t *m)
{
    if (m->soon_timer > 0 || m->leaving)
        return;
    int64_t t = cairn_loop_add_timer(cairn_service_loop(m->svc), 1, 0, s_on_soon, m);
    if (t > 0)
        m->soon_timer = t;
}

/* ---- joining and push-pull --------------------------------------------- */

/* The Join request, with our whole table (push-pull); `from` and `all`
 * are the caller's storage. */
static void s_join_request(membership_t *m, pb_member_t *from, pb_member_t *items,
                           pb_member_t **ptrs, Cairn__Clusterd__JoinRequest *jr,
                           Cairn__Clusterd__Request *req)
{
    s_fill_member(m, m->self, from);
    cairn__clusterd__join_request__init(jr);
    jr->from = from;
    size_t n = 0;
    for (uint32_t id = 1; id <= MAX_ID; id++)
        if (m->members[id].used && id != m->self) {
            s_fill_member(m, id, &items[n]);
            ptrs[n] = &items[n];
            n++;
        }
    jr->members = ptrs;
    jr->n_members = n;
    cairn__clusterd__request__init(req);
    req->msg_case = CAIRN__CLUSTERD__REQUEST__MSG_JOIN;
    req->join = jr;
}

static void s_on_join(void *userdata, uint32_t node, int code,
                      const char *message, ProtobufCMessage *reply)
{
    membership_t *m = userdata;
    if (code == CAIRN_OK) {
        Cairn__Clusterd__Reply *rep = (Cairn__Clusterd__Reply *)reply;
        if (rep->msg_case == CAIRN__CLUSTERD__REPLY__MSG_JOIN_REPLY)
            s_merge_all(m, rep->join_reply->members, rep->join_reply->n_members);
        m->members[node].last_heard = cairn_now_ms();
        if (!m->in_contact)
            cairn_log_info("joined", "seed=%u", node);
        m->in_contact = true;
        protobuf_c_message_free_unpacked(reply, NULL);
    } else if (code == CAIRN_ALREADY_EXISTS || code == CAIRN_NOT_FOUND ||
               code == CAIRN_INVALID_ARGUMENT) {
        cairn_log_err(-EPERM, "join-refused", "seed=%u reason=\"%s\"", node, message);
        s_stop_daemon(m, -EPERM);
    }
}

static void s_join(membership_t *m)
{
    const cairn_description_t *d = cairn_service_description(m->svc);
    bool any_seed = false;
    for (size_t i = 0; i < cairn_description_n_nodes(d); i++)
        any_seed |= cairn_description_node(d, i)->seed;
    pb_member_t from, items[MAX_ID], *ptrs[MAX_ID];
    Cairn__Clusterd__JoinRequest jr;
    Cairn__Clusterd__Request req;
    s_join_request(m, &from, items, ptrs, &jr, &req);
    m->last_join = cairn_now_ms();
    for (size_t i = 0; i < cairn_description_n_nodes(d); i++) {
        const cairn_node_desc_t *n = cairn_description_node(d, i);
        if (n->id != m->self && (n->seed || !any_seed) && m->members[n->id].used)
            s_call(m, n->id, &req.base, JOIN_TIMEOUT_MS, s_on_join, m);
    }
}

/* Anti-entropy: the whole table both ways with one random member, so what
 * gossip missed (a lost message, a member added while a node was away) is
 * made good at a slow rate. */
static void s_sync(membership_t *m)
{
    uint32_t to;
    if (s_random_live(m, 0, &to, 1) != 1)
        return;
    pb_member_t from, items[MAX_ID], *ptrs[MAX_ID];
    Cairn__Clusterd__JoinRequest jr;
    Cairn__Clusterd__Request req;
    s_join_request(m, &from, items, ptrs, &jr, &req);
    s_call(m, to, &req.base, JOIN_TIMEOUT_MS, s_on_join, m);
}

/* ---- the protocol period ----------------------------------------------- */

static void s_expire_suspects(membership_t *m, uint64_t now)
{
    /* a slow node gives its suspects longer: their refutations may be
     * sitting unread in its socket */
    uint64_t grace = (uint64_t)m->health * s_suspect_min(m);
    for (uint32_t id = 1; id <= MAX_ID; id++) {
        member_t *mb = &m->members[id];
        if (mb->used && mb->state == CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_SUSPECT &&
            mb->suspect_deadline + grace <= now) {
            s_transition(m, id, CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_DEAD, mb->inc);
            s_gossip_soon(m);
        }
    }
}

static int s_on_expiry(cairn_loop_t *loop, int64_t timer_id, void *userdata)
{
    membership_t *m = userdata;
    uint64_t due = m->expiry_at;
    m->expiry_timer = 0;
    m->expiry_at = 0;
    /* run late (we were not scheduled): answers may be waiting unread,
     * the gossip timer expires what is still due after reading them */
    if (cairn_now_ms() <= due + m->t.ping_timeout_ms / 2)
        s_expire_suspects(m, cairn_now_ms());
    s_arm_expiry(m);
    return 0;
}

/* Keeps a timer at the earliest suspicion deadline, so a suspect dies on
 * time rather than at the next gossip round. */
static void s_arm_expiry(membership_t *m)
{
    uint64_t first = 0;
    for (uint32_t id = 1; id <= MAX_ID; id++) {
        const member_t *mb = &m->members[id];
        if (mb->used && mb->state == CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_SUSPECT &&
            (!first || mb->suspect_deadline < first))
            first = mb->suspect_deadline;
    }
    if (!first || m->leaving || (m->expiry_timer > 0 && m->expiry_at <= first))
        return;
    cairn_loop_t *loop = cairn_service_loop(m->svc);
    if (m->expiry_timer > 0)
        cairn_loop_cancel_timer(loop, m->expiry_timer);
    uint64_t now = cairn_now_ms();
    uint64_t at = first + (uint64_t)m->health * s_suspect_min(m);
    int64_t t = cairn_loop_add_timer(loop, at > now ? at - now : 0, 0, s_on_expiry, m);
    m->expiry_timer = t > 0 ? t : 0;
    m->expiry_at = t > 0 ? at : 0;
}

static bool s_alone(const membership_t *m)
{
    for (uint32_t id = 1; id <= MAX_ID; id++)
        if (id != m->self && m->members[id].used &&
            m->members[id].state == CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_ALIVE)
            return false;
    return true;
}

static uint64_t s_sync_delay(membership_t *m)
{
    return SYNC_EVERY_MS / 2 + (uint64_t)rand_r(&m->rng) % SYNC_EVERY_MS;
}

/* Every GOSSIP_INTERVAL_MS: news, joining while alone, push-pull now and
 * then, and suspicions that ran out. */
static int s_on_gossip(cairn_loop_t *loop, int64_t timer_id, void *userdata)
{
    membership_t *m = userdata;
    uint64_t now = cairn_now_ms();
    /* a round far behind its time: we were not running, and answers
     * (refutations among them) may be waiting unread; expire nothing yet */
    bool late = m->last_gossip && now > m->last_gossip + GOSSIP_INTERVAL_MS +
                                            m->t.ping_timeout_ms / 2;
    m->last_gossip = now;
    if (!late)
        s_expire_suspects(m, now);
    if (m->leaving)
        return 0;
    if (s_alone(m) && now >= m->last_join + JOIN_RETRY_MS)
        s_join(m);
    if (now >= m->next_sync) {
        s_sync(m);
        m->next_sync = now + s_sync_delay(m);
    }
    s_gossip_round(m);
    return 0;
}

static int s_on_tick(cairn_loop_t *loop, int64_t timer_id, void *userdata);

/* The members known here by state, for the metrics, once a period. */
static void s_count_states(membership_t *m)
{
    static const int states[] = {
        CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_UNKNOWN, CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_ALIVE,
        CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_SUSPECT, CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_DEAD,
        CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_LEFT,
    };
    for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++) {
        unsigned n = 0;
        for (uint32_t id = 1; id <= MAX_ID; id++)
            n += m->members[id].used && m->members[id].state == states[i];
        cairn_metric_set(m->m_members, n, s_state_name(states[i]));
    }
}

/* Arms the next tick at the next multiple of the period on the wall clock
 * (plus a few ms by node id, so the nodes' probes do not all leave in the
 * same millisecond): every node then agrees on the period's number. */
static int s_arm_tick(membership_t *m)
{
    uint64_t p = m->t.protocol_period_ms, w = s_wall_ms();
    uint64_t off = (m->self * 7u) % (p / 4 + 1);
    uint64_t next = (w - off) / p * p + p + off;
    m->tick_timer = cairn_loop_add_timer(cairn_service_loop(m->svc), next - w, 0, s_on_tick, m);
    return m->tick_timer < 0 ? (int)m->tick_timer : 0;
}

static int s_on_tick(cairn_loop_t *loop, int64_t timer_id, void *userdata)
{
    membership_t *m = userdata;
    uint64_t now = cairn_now_ms();
    bool late = m->last_tick && now > m->last_tick + m->t.protocol_period_ms +
                                          m->t.ping_timeout_ms / 2;
    m->last_tick = now;
    s_count_states(m);
    if (late)
        s_health(m, 1, "late-tick");
    for (uint32_t id = 1; id <= MAX_ID; id++) {
        member_t *mb = &m->members[id];
        if (mb->patience > 0 && now >= mb->patience_at + PATIENCE_DECAY_MS) {
            mb->patience--;
            mb->patience_at = now;
        }
    }
    if (m->leaving)
        return 0;
    uint32_t target = s_probe_target(m, s_wall_ms() / m->t.protocol_period_ms);
    if (target)
        s_probe(m, target, false);
    if (m->ticks % STRAY_PROBE_EVERY == 1)
        s_probe_stray(m);
    m->ticks++;
    int r = s_arm_tick(m);
    if (r < 0)
        cairn_log_warn(r, "tick", "msg=\"cannot arm the next period\"");
    return 0;
}

/* ---- lifecycle --------------------------------------------------------- */

static int s_add_described(membership_t *m, const cairn_description_t *d)
{
    for (size_t i = 0; i < cairn_description_n_nodes(d); i++) {
        const cairn_node_desc_t *n = cairn_description_node(d, i);
        if (m->members[n->id].used)
            continue;
        if (s_add(m, n->id, n->name, n->address, n->appliance,
                  CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_UNKNOWN, 0) < 0)
            return -ENOMEM;
    }
    return 0;
}

membership_t *membership_new(cairn_service_t *svc)
{
    membership_t *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    const cairn_description_t *d = cairn_service_description(svc);
    const cairn_node_desc_t *self = cairn_service_node(svc);
    const cairn_service_desc_t *sd = cairn_description_service(d, "clusterd");
    m->svc = svc;
    m->self = self->id;
    m->port = sd ? sd->port : 0;
    m->t = *cairn_description_membership(d);
    m->rng = (unsigned)(s_wall_ms() ^ (self->id * 2654435761u));
    m->peers = cairn_peers_new(svc, "clusterd", &cairn__clusterd__reply__descriptor);
    if (!m->peers || s_add(m, self->id, self->name, self->address, self->appliance,
                           CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_ALIVE, s_wall_ms()) < 0 ||
        s_add_described(m, d) < 0)
        return membership_free(m);
    return m;
}

membership_t *membership_free(membership_t *m)
{
    if (!m)
        return NULL;
    cairn_peers_free(m->peers);   /* drops the probes' callbacks */
    while (m->probes) {
        probe_t *p = m->probes;
        m->probes = p->next;
        free(p);
    }
    for (uint32_t id = 0; id <= MAX_ID; id++) {
        free(m->members[id].name);
        free(m->members[id].address);
        free(m->members[id].appliance);
    }
    free(m);
    return NULL;
}

int membership_start(membership_t *m)
{
    cairn_loop_t *loop = cairn_service_loop(m->svc);
    cairn_metrics_t *reg = cairn_service_metrics(m->svc);
    m->m_members = cairn_metrics_gauge(reg, "cairn_members",
                                       "Members this node knows, by state.", "state");
    m->m_changes = cairn_metrics_counter(reg, "cairn_member_changes_total",
                                         "Members seen entering a state.", "state");
    s_count_states(m);
    s_publish(m, m->self);
    m->next_sync = cairn_now_ms() + s_sync_delay(m);
    int r = s_arm_tick(m);
    if (r < 0)
        return r;
    m->gossip_timer = cairn_loop_add_timer(loop, 1, GOSSIP_INTERVAL_MS, s_on_gossip, m);
    return m->gossip_timer < 0 ? (int)m->gossip_timer : 0;
}

uint64_t membership_incarnation(const membership_t *m)
{
    return m->members[m->self].inc;
}

void membership_reload(membership_t *m, const cairn_description_t *d)
{
    m->t = *cairn_description_membership(d);
    if (s_add_described(m, d) < 0)
        cairn_log_warn(-ENOMEM, "reload", "msg=\"new nodes not added\", ignoring");
}

/* Marks self left and tells up to LEAVE_NOTIFY members directly; `fn` runs
 * for each answer. Returns how many were told. */
static int s_announce_leave(membership_t *m, cairn_peer_fn fn)
{
    member_t *me = &m->members[m->self];
    m->leaving = true;
    s_transition(m, m->self, CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_LEFT, me->inc + 1);
    uint32_t to[LEAVE_NOTIFY];
    size_t k = s_random_live(m, 0, to, LEAVE_NOTIFY);
    int told = 0;
    for (size_t i = 0; i < k; i++)
        if (s_send_ping(m, to[i], 2 * m->t.ping_timeout_ms, fn, m) == 0)
            told++;
    return told;
}

static void s_ignore_reply(void *userdata, uint32_t node, int code,
                           const char *message, ProtobufCMessage *reply)
{
    if (reply)
        protobuf_c_message_free_unpacked(reply, NULL);
}

void membership_stop(membership_t *m)
{
    if (!m)
        return;
    if (!m->leaving)
        s_announce_leave(m, s_ignore_reply);
    if (m->soon_timer > 0)
        cairn_loop_cancel_timer(cairn_service_loop(m->svc), m->soon_timer);
    if (m->expiry_timer > 0)
        cairn_loop_cancel_timer(cairn_service_loop(m->svc), m->expiry_timer);
    m->soon_timer = m->expiry_timer = 0;
    /* Close connections now: the zmq context ends right after us. */
    m->peers = cairn_peers_free(m->peers);
}

/* ---- handlers ---------------------------------------------------------- */

static Cairn__Clusterd__NodeInfo *s_node_info(membership_t *m, cairn_request_t *req,
                                              uint32_t id)
{
    const member_t *mb = &m->members[id];
    Cairn__Clusterd__NodeInfo *ni = cairn_request_alloc(req, sizeof(*ni));
    if (!ni)
        return NULL;
    cairn__clusterd__node_info__init(ni);
    ni->id = id;
    ni->name = mb->name;
    ni->address = mb->address;
    ni->appliance = mb->appliance;
    ni->state = (char *)s_state_name(mb->state);
    ni->incarnation = mb->inc;
    if (id == m->self)
        ni->last_heard_ms = 0;
    else
        ni->last_heard_ms = mb->last_heard ? (int64_t)(cairn_now_ms() - mb->last_heard) : -1;
    return ni;
}

/* Replies with NodesReply listing `ids` (all members when ids == NULL). */
static int s_reply_nodes(membership_t *m, cairn_request_t *req, const uint32_t *ids, size_t n)
{
    uint32_t all[MAX_ID];
    if (!ids) {
        n = 0;
        for (uint32_t id = 1; id <= MAX_ID; id++)
            if (m->members[id].used)
                all[n++] = id;
        ids = all;
    }
    Cairn__Clusterd__NodesReply *nr = cairn_request_alloc(req, sizeof(*nr));
    Cairn__Clusterd__NodeInfo **list = cairn_request_alloc(req, (n ? n : 1) * sizeof(*list));
    if (!nr || !list)
        return -ENOMEM;
    cairn__clusterd__nodes_reply__init(nr);
    for (size_t i = 0; i < n; i++)
        if (!(list[i] = s_node_info(m, req, ids[i])))
            return -ENOMEM;
    nr->nodes = list;
    nr->n_nodes = n;
    Cairn__Clusterd__Reply *rep = (Cairn__Clusterd__Reply *)cairn_request_reply(req);
    rep->nodes_reply = nr;
    rep->msg_case = CAIRN__CLUSTERD__REPLY__MSG_NODES_REPLY;
    return CAIRN_REPLY_NOW;
}

int membership_handle_nodes(membership_t *m, cairn_request_t *req)
{
    return s_reply_nodes(m, req, NULL, 0);
}

/* Copies a gossip selection into the request arena for a reply. */
static int s_reply_ack(membership_t *m, cairn_request_t *req, uint32_t dest)
{
    gossip_t g;
    s_gossip_pick(m, dest, &g);
    Cairn__Clusterd__AckReply *ack = cairn_request_alloc(req, sizeof(*ack));
    pb_member_t *items = cairn_request_alloc(req, (g.n ? g.n : 1) * sizeof(*items));
    pb_member_t **ptrs = cairn_request_alloc(req, (g.n ? g.n : 1) * sizeof(*ptrs));
    if (!ack || !items || !ptrs)
        return -ENOMEM;
    cairn__clusterd__ack_reply__init(ack);
    for (size_t i = 0; i < g.n; i++) {
        items[i] = g.items[i];   /* strings stay borrowed from the table */
        ptrs[i] = &items[i];
    }
    ack->gossip = ptrs;
    ack->n_gossip = g.n;
    Cairn__Clusterd__Reply *rep = (Cairn__Clusterd__Reply *)cairn_request_reply(req);
    rep->ack = ack;
    rep->msg_case = CAIRN__CLUSTERD__REPLY__MSG_ACK;
    return CAIRN_REPLY_NOW;
}

/* False (with the reply made a failure) unless `from` is a known member. */
static bool s_sender_ok(membership_t *m, cairn_request_t *req, const pb_member_t *from)
{
    if (!from || from->id == 0 || from->id > MAX_ID) {
        cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "message has no valid sender");
        return false;
    }
    if (!m->members[from->id].used) {
        cairn_request_fail(req, CAIRN_NOT_FOUND,
                           "node %u is not a member of this cluster: join first", from->id);
        return false;
    }
    return true;
}

int membership_handle_ping(membership_t *m, cairn_request_t *req)
{
    const Cairn__Clusterd__Request *r = (const Cairn__Clusterd__Request *)cairn_request_body(req);
    const Cairn__Clusterd__PingRequest *p = r->ping;
    if (!s_sender_ok(m, req, p->from))
        return CAIRN_REPLY_NOW;
    s_heard_from(m, p->from);
    s_merge_all(m, p->gossip, p->n_gossip);
    return s_reply_ack(m, req, p->from->id);
}

/* A ping-req in flight: the asker's deferred request and who asked. */
typedef struct relay {
    membership_t *m;
    cairn_deferred_t *d;
    uint32_t asker;
} relay_t;

static void s_on_relay(void *userdata, uint32_t node, int code,
                       const char *message, ProtobufCMessage *reply)
{
    _cleanup_free_ relay_t *rl = userdata;
    membership_t *m = rl->m;
    if (code != CAIRN_OK) {
        /* UNAVAILABLE, not TIMEOUT: the asker tells this nack from its
         * own deadline passing (Lifeguard) */
        cairn_deferred_fail(m->svc, rl->d, CAIRN_UNAVAILABLE, "target did not answer");
        return;
    }
    m->members[node].last_heard = cairn_now_ms();
    s_take_ack(m, node, reply);
    gossip_t g;
    s_gossip_pick(m, rl->asker, &g);
    Cairn__Clusterd__AckReply ack = CAIRN__CLUSTERD__ACK_REPLY__INIT;
    ack.gossip = g.ptrs;
    ack.n_gossip = g.n;
    Cairn__Clusterd__Reply rep = CAIRN__CLUSTERD__REPLY__INIT;
    rep.msg_case = CAIRN__CLUSTERD__REPLY__MSG_ACK;
    rep.ack = &ack;
    cairn_deferred_reply(m->svc, rl->d, &rep.base);
}

int membership_handle_ping_req(membership_t *m, cairn_request_t *req)
{
    const Cairn__Clusterd__Request *r = (const Cairn__Clusterd__Request *)cairn_request_body(req);
    const Cairn__Clusterd__PingReqRequest *p = r->ping_req;
    if (!s_sender_ok(m, req, p->from))
        return CAIRN_REPLY_NOW;
    s_heard_from(m, p->from);
    s_merge_all(m, p->gossip, p->n_gossip);
    if (p->target == 0 || p->target > MAX_ID || p->target == m->self ||
        !m->members[p->target].used)
        return cairn_request_fail(req, CAIRN_NOT_FOUND, "node %u is not a member I can ping",
                                  p->target);
    _cleanup_free_ relay_t *rl = calloc(1, sizeof(*rl));
    if (!rl)
        return -ENOMEM;
    rl->m = m;
    rl->asker = p->from->id;
    rl->d = cairn_request_defer(req);
    if (!rl->d)
        return -ENOMEM;
    /* the timeout stretched by the target's health but not by ours: the
     * asker waits twice that, and our nack must reach it before then */
    uint32_t t = m->t.ping_timeout_ms * (uint32_t)(1 + s_slowness(m, p->target));
    if (s_send_ping(m, p->target, t, s_on_relay, rl) < 0)
        cairn_deferred_fail(m->svc, rl->d, CAIRN_UNAVAILABLE, "cannot reach target");
    else
        rl = NULL;   /* s_on_relay frees it */
    return CAIRN_REPLY_DEFERRED;
}

/* True (with the reply made a failure saying why) if a node with this
 * identity may not join or be added: its id is another address's, or its
 * address or name is another live member's. */
static bool s_identity_taken(membership_t *m, cairn_request_t *req, uint32_t id,
                             const char *name, const char *address)
{
    for (uint32_t o = 1; o <= MAX_ID; o++) {
        const member_t *mb = &m->members[o];
        if (!mb->used || mb->state == CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_LEFT)
            continue;
        if (o == id && strcmp(mb->address, address) != 0)
            cairn_request_fail(req, CAIRN_ALREADY_EXISTS,
                               "node id %u is already taken by %s at %s (%s)",
                               id, mb->name, mb->address, s_state_name(mb->state));
        else if (o != id && strcmp(mb->address, address) == 0)
            cairn_request_fail(req, CAIRN_ALREADY_EXISTS,
                               "address %s is already taken by node %u (%s, %s)",
                               address, o, mb->name, s_state_name(mb->state));
        else if (o != id && name && *name && strcmp(mb->name, name) == 0)
            cairn_request_fail(req, CAIRN_ALREADY_EXISTS,
                               "name %s is already taken by node %u at %s",
                               name, o, mb->address);
        else
            continue;
        return true;
    }
    return false;
}

int membership_handle_join(membership_t *m, cairn_request_t *req)
{
    const Cairn__Clusterd__Request *r = (const Cairn__Clusterd__Request *)cairn_request_body(req);
    const pb_member_t *from = r->join->from;
    if (!from || from->id == 0 || from->id > MAX_ID || !from->address || !*from->address)
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "join without a valid id and address");
    if (from->id == m->self)
        return cairn_request_fail(req, CAIRN_ALREADY_EXISTS,
                                  "node id %u is this node (%s at %s)", m->self,
                                  m->members[m->self].name, m->members[m->self].address);
    if (s_identity_taken(m, req, from->id, from->name, from->address)) {
        cairn_log_warn(0, "join-refused", "id=%u address=%s reason=identity-taken",
                       from->id, from->address);
        return CAIRN_REPLY_NOW;
    }
    if (!m->members[from->id].used) {
        cairn_log_warn(0, "join-refused", "id=%u address=%s reason=not-admitted",
                       from->id, from->address);
        return cairn_request_fail(req, CAIRN_NOT_FOUND,
                                  "node %u is neither in the cluster description nor added "
                                  "with `cairn node add`", from->id);
    }
    s_heard_from(m, from);
    s_merge_all(m, r->join->members, r->join->n_members);   /* push-pull */
    uint32_t ids[MAX_ID];
    size_t n = 0;
    for (uint32_t id = 1; id <= MAX_ID; id++)
        if (m->members[id].used)
            ids[n++] = id;
    Cairn__Clusterd__JoinReply *jr = cairn_request_alloc(req, sizeof(*jr));
    pb_member_t *items = cairn_request_alloc(req, n * sizeof(*items));
    pb_member_t **ptrs = cairn_request_alloc(req, n * sizeof(*ptrs));
    if (!jr || !items || !ptrs)
        return -ENOMEM;
    cairn__clusterd__join_reply__init(jr);
    for (size_t i = 0; i < n; i++) {
        s_fill_member(m, ids[i], &items[i]);
        ptrs[i] = &items[i];
    }
    jr->members = ptrs;
    jr->n_members = n;
    Cairn__Clusterd__Reply *rep = (Cairn__Clusterd__Reply *)cairn_request_reply(req);
    rep->join_reply = jr;
    rep->msg_case = CAIRN__CLUSTERD__REPLY__MSG_JOIN_REPLY;
    return CAIRN_REPLY_NOW;
}

static bool s_valid_address(const char *a)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return a && (inet_pton(AF_INET, a, buf) == 1 || inet_pton(AF_INET6, a, buf) == 1);
}

int membership_handle_node_add(membership_t *m, cairn_request_t *req)
{
    const Cairn__Clusterd__Request *r = (const Cairn__Clusterd__Request *)cairn_request_body(req);
    const Cairn__Clusterd__NodeAddRequest *a = r->node_add;
    const cairn_description_t *d = cairn_service_description(m->svc);
    if (a->id == 0 || a->id > MAX_ID)
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "node id %u is not in 1..255", a->id);
    if (!s_valid_address(a->address))
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT,
                                  "address '%s' is not an IPv4 or IPv6 literal", a->address);
    char name[32];
    snprintf(name, sizeof(name), "n%u", a->id);
    const char *nm = a->name && *a->name ? a->name : name;
    const char *app = a->appliance && *a->appliance ? a->appliance : m->members[m->self].appliance;
    const char *const *svcs;
    size_t nsvc;
    if (cairn_description_appliance_services(d, app, &svcs, &nsvc) < 0)
        return cairn_request_fail(req, CAIRN_INVALID_ARGUMENT, "no appliance named '%s'", app);
    const member_t *mb = &m->members[a->id];
    if (mb->used && mb->state != CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_LEFT)
        return cairn_request_fail(req, CAIRN_ALREADY_EXISTS,
                                  "node id %u is already taken by %s at %s (%s)", a->id,
                                  mb->name, mb->address, s_state_name(mb->state));
    if (s_identity_taken(m, req, a->id, nm, a->address)) {
        cairn_log_warn(0, "node-add-refused", "id=%u address=%s", a->id, a->address);
        return CAIRN_REPLY_NOW;
    }
    uint64_t inc = mb->used ? mb->inc + 1 : 0;
    if (s_add(m, a->id, nm, a->address, app, CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_UNKNOWN, inc) < 0)
        return -ENOMEM;
    m->members[a->id].last_heard = 0;
    cairn_peers_forget(m->peers, a->id);
    cairn_log_info("node-added", "id=%u name=%s address=%s appliance=%s", a->id, nm, a->address, app);
    uint32_t id = a->id;
    return s_reply_nodes(m, req, &id, 1);
}

static void s_on_leave_ack(void *userdata, uint32_t node, int code,
                           const char *message, ProtobufCMessage *reply)
{
    membership_t *m = userdata;
    if (reply)
        protobuf_c_message_free_unpacked(reply, NULL);
    if (--m->leave_outstanding > 0 || !m->leave_req)
        return;
    Cairn__Clusterd__Reply rep = CAIRN__CLUSTERD__REPLY__INIT;
    Cairn__Clusterd__NodesReply nr = CAIRN__CLUSTERD__NODES_REPLY__INIT;
    rep.msg_case = CAIRN__CLUSTERD__REPLY__MSG_NODES_REPLY;
    rep.nodes_reply = &nr;
    cairn_deferred_reply(m->svc, m->leave_req, &rep.base);
    m->leave_req = NULL;
    s_stop_daemon(m, 0);
}

int membership_handle_leave(membership_t *m, cairn_request_t *req)
{
    if (m->leaving)
        return cairn_request_fail(req, CAIRN_FAILED_PRECONDITION, "this node is already leaving");
    m->leave_req = cairn_request_defer(req);
    if (!m->leave_req)
        return -ENOMEM;
    cairn_log_info("leave", "msg=\"leaving the cluster on request\"");
    m->leave_outstanding = 1;   /* held until every goodbye is answered */
    m->leave_outstanding += s_announce_leave(m, s_on_leave_ack);
    s_on_leave_ack(m, 0, CAIRN_OK, "", NULL);
    return CAIRN_REPLY_DEFERRED;
}

int membership_handle_node_remove(membership_t *m, cairn_request_t *req)
{
    const Cairn__Clusterd__Request *r = (const Cairn__Clusterd__Request *)cairn_request_body(req);
    uint32_t id = r->node_remove->id;
    if (id == m->self)
        return membership_handle_leave(m, req);
    if (id == 0 || id > MAX_ID || !m->members[id].used)
        return cairn_request_fail(req, CAIRN_NOT_FOUND, "node %u is not a member", id);
    /* It left already: nothing to gossip, and removing it again is no
     * error, so `cairn node remove` can always clean up after a node that
     * left (its entry, state left, is the answer). */
    if (m->members[id].state == CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_LEFT)
        return s_reply_nodes(m, req, &id, 1);
    s_transition(m, id, CAIRN__CLUSTERD__MEMBER_STATE__MEMBER_LEFT, m->members[id].inc + 1);
    /* Tell the node itself, so it stops instead of refuting. */
    s_send_ping(m, id, 2 * m->t.ping_timeout_ms, s_ignore_reply, NULL);
    cairn_log_info("node-removed", "id=%u", id);
    return s_reply_nodes(m, req, &id, 1);
}

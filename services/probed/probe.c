/* probe.c - the probe table and probed's configuration (probe.h).
 *
 * Design. The table is the one list of probes; a name in the description
 * that is not in it is refused with the list, so a typo never runs as "no
 * probe" unnoticed. The gossip period defaults to the shortest probe
 * period: a vector is sent as often as it can change, never more.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "probe.h"

const probe_ops_t *const probe_table[] = {
    &probe_cpu, &probe_runqueue, &probe_memory, &probe_jobs,
    &probe_migration_cost,
};
const size_t probe_table_size = sizeof(probe_table) / sizeof(probe_table[0]);

int probe_index(const char *name)
{
    for (size_t i = 0; i < probe_table_size; i++)
        if (strcmp(probe_table[i]->name, name) == 0)
            return (int)i;
    return -ENOENT;
}

static const char *s_known(char *buf, size_t size)
{
    size_t off = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < probe_table_size && off < size; i++)
        off += (size_t)snprintf(buf + off, size - off, "%s%s", i ? ", " : "",
                                probe_table[i]->name);
    return buf;
}

static bool s_configured(const probe_config_t *cfg, int index)
{
    for (size_t i = 0; i < cfg->n_probes; i++)
        if (cfg->probes[i].index == index)
            return true;
    return false;
}

int probe_config_from(const cairn_description_t *d, probe_config_t *ret,
                      cairn_error_t *err)
{
    probe_config_t cfg = { 0 };
    uint32_t shortest = 0;
    char known[256];

    for (size_t i = 0; i < cairn_description_n_probes(d); i++) {
        const cairn_probe_desc_t *p = cairn_description_probe(d, i);
        int k = probe_index(p->name);
        if (k < 0)
            return cairn_error_set(err, -EINVAL, CAIRN_INVALID_CONFIG,
                                   "unknown probe '%s' (probed knows: %s)",
                                   p->name, s_known(known, sizeof(known)));
        if (p->period_ms < PROBE_MIN_PERIOD_MS)
            return cairn_error_set(err, -EINVAL, CAIRN_INVALID_CONFIG,
                                   "probe '%s': period-ms %u is below %u",
                                   p->name, p->period_ms, PROBE_MIN_PERIOD_MS);
        cfg.probes[cfg.n_probes].index = k;
        cfg.probes[cfg.n_probes++].period_ms = p->period_ms;
        if (!shortest || p->period_ms < shortest)
            shortest = p->period_ms;
    }
    for (size_t i = 0; i < cfg.n_probes; i++) {
        const probe_ops_t *o = probe_table[cfg.probes[i].index];
        if (o->needs && !s_configured(&cfg, probe_index(o->needs)))
            return cairn_error_set(err, -EINVAL, CAIRN_INVALID_CONFIG,
                                   "probe '%s' needs probe '%s', which is not "
                                   "configured", o->name, o->needs);
    }
    const cairn_gossip_desc_t *g = cairn_description_gossip(d);
    cfg.gossip_period_ms = g->period_ms ? g->period_ms
                         : shortest ? shortest : PROBE_DEFAULT_GOSSIP_MS;
    cfg.gossip_fanout = g->fanout;
    cfg.window = g->window;
    *ret = cfg;
    return 0;
}

uint32_t probe_config_missing(const probe_config_t *cfg)
{
    uint32_t m = 0;

    for (size_t i = 0; i < probe_table_size; i++)
        if (!s_configured(cfg, (int)i))
            m |= 1u << i;
    return m;
}

/* nodecg.c - the node's cgroup and the probes' file readers (nodecg.h).
 *
 * Design. Finding walks up from probed's own cgroup path one component at
 * a time and stops at the first level whose knob says "limited"; what is
 * found is kept as paths under the root, so the probes only ever join
 * root + dir + file. A hierarchy that is not mounted, a knob that cannot
 * be read, a path that does not exist: that resource is the host's, and
 * nodecg_describe says so for the log.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nodecg.h"
#include "util/cleanup.h"
#include "util/fileio.h"

#define S_CG "/sys/fs/cgroup"
#define S_V1_UNLIMITED (1ull << 62)   /* v1's "no limit" is 2^63 - a page */
#define S_MAX_DIRS 4096
#define S_MAX_FILE (4u << 20)

int nodecg_read(const char *root, const char *dir, const char *file,
                char **ret)
{
    char path[PATH_MAX * 2];

    if (snprintf(path, sizeof(path), "%s%s/%s", root, dir, file) >= (int)sizeof(path))
        return -ENAMETOOLONG;
    return cairn_read_file(path, S_MAX_FILE, ret, NULL);
}

int nodecg_read_u64(const char *root, const char *dir, const char *file,
                    uint64_t *ret)
{
    _cleanup_free_ char *text = NULL;
    char *end;
    int r = nodecg_read(root, dir, file, &text);

    if (r < 0)
        return r;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (end == text || errno)
        return -EINVAL;
    *ret = v;
    return 0;
}

int nodecg_key_u64(const char *text, const char *key, uint64_t *ret)
{
    size_t n = strlen(key);

    for (const char *l = text; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
        if (strncmp(l, key, n) != 0 || (l[n] != ' ' && l[n] != ':' && l[n] != '\t'))
            continue;
        const char *v = l + n + (l[n] == ':');
        char *end;
        unsigned long long x = strtoull(v, &end, 10);
        if (end == v)
            return -EINVAL;
        *ret = x;
        return 0;
    }
    return -ENOENT;
}

/* ---- finding ------------------------------------------------------------ */

/* The path of the hierarchy holding `ctl` in /proc/self/cgroup's text
 * ("" for v2's "0::" line), into out; false if none. *ret_list gets the
 * controller list as written ("cpu,cpuacct"). */
static bool s_self_path(const char *text, const char *ctl, char *out,
                        size_t size, char *list, size_t list_size)
{
    for (const char *l = text; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
        const char *c1 = strchr(l, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        const char *eol = strchr(l, '\n');
        if (!c2 || (eol && c2 > eol))
            continue;
        size_t ln = (size_t)(c2 - c1 - 1);
        char ctls[256];
        if (ln >= sizeof(ctls))
            continue;
        memcpy(ctls, c1 + 1, ln);
        ctls[ln] = '\0';
        bool match = false;
        if (!*ctl)
            match = ln == 0;
        else
            for (char *save = NULL, *t = strtok_r(ctls, ",", &save); t;
                 t = strtok_r(NULL, ",", &save))
                match = match || strcmp(t, ctl) == 0;
        if (!match)
            continue;
        size_t pn = eol ? (size_t)(eol - c2 - 1) : strlen(c2 + 1);
        if (pn >= size || ln >= list_size)
            return false;
        memcpy(out, c2 + 1, pn);
        out[pn] = '\0';
        memcpy(list, c1 + 1, ln);
        list[ln] = '\0';
        return true;
    }
    return false;
}

static bool s_exists(const char *root, const char *dir, const char *file)
{
    char path[PATH_MAX * 2];

    snprintf(path, sizeof(path), "%s%s/%s", root, dir, file);
    return access(path, F_OK) == 0;
}

/* Whether the knob at dir says "limited". */
typedef bool (*s_limited_fn)(const char *root, const char *dir);

static bool s_v2_cpu_limited(const char *root, const char *dir)
{
    _cleanup_free_ char *t = NULL;
    return nodecg_read(root, dir, "cpu.max", &t) == 0 && strncmp(t, "max", 3) != 0;
}

static bool s_v2_mem_limited(const char *root, const char *dir)
{
    _cleanup_free_ char *t = NULL;
    return nodecg_read(root, dir, "memory.max", &t) == 0 && strncmp(t, "max", 3) != 0;
}

static bool s_v1_cpu_limited(const char *root, const char *dir)
{
    _cleanup_free_ char *t = NULL;
    return nodecg_read(root, dir, "cpu.cfs_quota_us", &t) == 0 && strtoll(t, NULL, 10) > 0;
}

static bool s_v1_mem_limited(const char *root, const char *dir)
{
    uint64_t v;
    return nodecg_read_u64(root, dir, "memory.limit_in_bytes", &v) == 0 &&
           v < S_V1_UNLIMITED;
}

/* Walks up from mount + path; the first limited level into out. */
static bool s_find_level(const char *root, const char *mount, const char *path,
                         s_limited_fn limited, char *out, size_t size)
{
    char dir[PATH_MAX];

    if (snprintf(dir, sizeof(dir), "%s%s", mount, path) >= (int)sizeof(dir))
        return false;
    for (;;) {
        size_t n = strlen(dir);
        while (n > strlen(mount) && dir[n - 1] == '/')
            dir[--n] = '\0';
        if (n <= strlen(mount))
            return false;      /* the root level carries no limit */
        if (limited(root, dir)) {
            snprintf(out, size, "%s", dir);
            return true;
        }
        char *slash = strrchr(dir, '/');
        if (!slash || (size_t)(slash - dir) < strlen(mount))
            return false;
        *slash = '\0';
    }
}

static void s_find_v2(const char *root, const char *self, nodecg_t *cg)
{
    char path[PATH_MAX], list[256];

    cg->version = NODECG_V2;
    if (!s_self_path(self, "", path, sizeof(path), list, sizeof(list)))
        return;
    s_find_level(root, S_CG, path, s_v2_cpu_limited, cg->cpu, sizeof(cg->cpu));
    s_find_level(root, S_CG, path, s_v2_mem_limited, cg->mem, sizeof(cg->mem));
}

/* The mount of v1 controller ctl, for its list as /proc/self/cgroup
 * writes it: <cg>/<list> (cpu,cpuacct), else <cg>/<ctl>. */
static bool s_v1_mount(const char *root, const char *ctl, const char *list,
                       char *out, size_t size)
{
    char path[PATH_MAX * 2];

    snprintf(out, size, S_CG "/%s", list);
    snprintf(path, sizeof(path), "%s%s", root, out);
    if (access(path, F_OK) == 0)
        return true;
    snprintf(out, size, S_CG "/%s", ctl);
    snprintf(path, sizeof(path), "%s%s", root, out);
    return access(path, F_OK) == 0;
}

static void s_find_v1_cpuacct(const char *root, const char *self, nodecg_t *cg,
                              const char *cpu_mount)
{
    char path[PATH_MAX], list[256], mount[PATH_MAX];

    if (s_exists(root, cg->cpu, "cpuacct.usage")) {       /* co-mounted */
        snprintf(cg->cpuacct, sizeof(cg->cpuacct), "%s", cg->cpu);
        return;
    }
    if (!s_self_path(self, "cpuacct", path, sizeof(path), list, sizeof(list)) ||
        !s_v1_mount(root, "cpuacct", list, mount, sizeof(mount)))
        return;
    /* the cpu level's path in the cpu hierarchy, the same in cpuacct's */
    const char *level = cg->cpu + strlen(cpu_mount);
    size_t n = strlen(level);
    if (strncmp(path, level, n) != 0 || (path[n] != '\0' && path[n] != '/'))
        return;    /* our cpuacct cgroup is elsewhere: it does not count the node */
    char dir[PATH_MAX * 2];
    snprintf(dir, sizeof(dir), "%s%s", mount, level);
    if (strlen(dir) < sizeof(cg->cpuacct) && s_exists(root, dir, "cpuacct.usage"))
        snprintf(cg->cpuacct, sizeof(cg->cpuacct), "%s", dir);
}

static void s_find_v1(const char *root, const char *self, nodecg_t *cg)
{
    char path[PATH_MAX], list[256], mount[PATH_MAX];

    cg->version = NODECG_V1;
    if (s_self_path(self, "cpu", path, sizeof(path), list, sizeof(list)) &&
        s_v1_mount(root, "cpu", list, mount, sizeof(mount)) &&
        s_find_level(root, mount, path, s_v1_cpu_limited, cg->cpu, sizeof(cg->cpu)))
        s_find_v1_cpuacct(root, self, cg, mount);
    if (s_self_path(self, "memory", path, sizeof(path), list, sizeof(list)) &&
        s_v1_mount(root, "memory", list, mount, sizeof(mount)))
        s_find_level(root, mount, path, s_v1_mem_limited, cg->mem, sizeof(cg->mem));
}

void nodecg_find(const char *root, nodecg_t *ret)
{
    _cleanup_free_ char *self = NULL;
    char path[PATH_MAX * 2];

    *ret = (nodecg_t){ 0 };
    snprintf(path, sizeof(path), "%s/proc/self/cgroup", root);
    if (cairn_read_file(path, 0, &self, NULL) < 0)
        return;
    if (s_exists(root, S_CG, "cgroup.controllers"))
        s_find_v2(root, self, ret);
    else if (s_exists(root, S_CG "/cpu", "") || s_exists(root, S_CG "/memory", ""))
        s_find_v1(root, self, ret);
}

const char *nodecg_describe(const nodecg_t *cg, char *buf, size_t size)
{
    snprintf(buf, size, "cgroup=%s cpu=%s cpu_usage=%s memory=%s",
             cg->version == NODECG_V2 ? "v2" : cg->version == NODECG_V1 ? "v1" : "none",
             *cg->cpu ? cg->cpu : "host",
             !*cg->cpu ? "/proc/stat" : cg->version == NODECG_V2 ? "cpu.stat"
             : *cg->cpuacct ? "cpuacct.usage" : "processes",
             *cg->mem ? cg->mem : "host");
    return buf;
}

/* ---- walking and /proc ---------------------------------------------------- */

static int s_walk(const char *root, const char *dir, nodecg_dir_fn fn,
                  void *ud, size_t *budget)
{
    char path[PATH_MAX * 2];
    int r;

    if (*budget == 0)
        return 0;
    (*budget)--;
    if ((r = fn(root, dir, ud)) != 0)
        return r;
    snprintf(path, sizeof(path), "%s%s", root, dir);
    DIR *d = opendir(path);
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_type != DT_DIR || e->d_name[0] == '.')
            continue;
        char sub[PATH_MAX];
        if (snprintf(sub, sizeof(sub), "%s/%s", dir, e->d_name) >= (int)sizeof(sub))
            continue;
        if ((r = s_walk(root, sub, fn, ud, budget)) != 0)
            break;
    }
    closedir(d);
    return r;
}

int nodecg_walk(const char *root, const char *dir, nodecg_dir_fn fn,
                void *userdata)
{
    size_t budget = S_MAX_DIRS;
    return s_walk(root, dir, fn, userdata, &budget);
}

int nodecg_pid_stat(const char *root, long pid, char *ret_state,
                    uint64_t *ret_ticks)
{
    char path[PATH_MAX + 64];
    _cleanup_free_ char *text = NULL;
    unsigned long long f[4];

    snprintf(path, sizeof(path), "%s/proc/%ld/stat", root, pid);
    int r = cairn_read_file(path, 0, &text, NULL);
    if (r < 0)
        return r;
    /* comm may hold spaces and parentheses: the fields start after the last ')' */
    char *p = strrchr(text, ')');
    char state;
    if (!p || sscanf(p + 1, " %c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %llu %llu",
                     &state, &f[0], &f[1], &f[2], &f[3]) != 5)
        return -EINVAL;
    *ret_state = state;
    *ret_ticks = f[0] + f[1] + f[2] + f[3];
    return 0;
}

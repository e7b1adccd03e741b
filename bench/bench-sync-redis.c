/* bench-sync-redis - bench/sync.sh's Redis baseline: the lock everyone
 * writes with Redis, through hiredis on one kept-open connection.
 *
 *   lock:   SET name token NX PX 30000      ("OK": taken; nil: someone
 *           holds it -- retried every 100 µs for up to 5 s)
 *   unlock: EVALSHA of a compare-and-delete script (the key is deleted only
 *           if it still holds our token: never someone else's lock), loaded
 *           once per connection with SCRIPT LOAD
 *
 * The token is unique per connection and acquisition (pid, counter), as
 * the Redis documentation's single-instance lock asks. Modes and output are
 * bench-lock.h's; ENDPOINT is HOST:PORT.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "bench-lock.h"

#define LOCK_PX "30000"
#define RETRY_NS 100000L
#define RETRY_FOR 50000

static const char s_release_lua[] =
    "if redis.call('get', KEYS[1]) == ARGV[1] then "
    "return redis.call('del', KEYS[1]) else return 0 end";

struct conn {
    redisContext *c;
    char sha[48];         /* the release script's SHA1 */
    char token[64];       /* the value of the lock held last */
    unsigned long n;      /* acquisitions so far */
};

static void s_close(void *p)
{
    struct conn *k = p;
    if (!k)
        return;
    if (k->c)
        redisFree(k->c);
    free(k);
}

static void *s_open(const char *endpoint, char *err)
{
    char host[256];
    const char *colon = strrchr(endpoint, ':');
    long port = colon ? strtol(colon + 1, NULL, 10) : 0;
    if (!colon || colon == endpoint || (size_t)(colon - endpoint) >= sizeof(host) ||
        port <= 0 || port > 65535) {
        snprintf(err, BENCH_ERR_MAX, "endpoint must be HOST:PORT, not '%s'", endpoint);
        return NULL;
    }
    memcpy(host, endpoint, (size_t)(colon - endpoint));
    host[colon - endpoint] = '\0';
    struct conn *k = calloc(1, sizeof(*k));
    if (!k) {
        snprintf(err, BENCH_ERR_MAX, "out of memory");
        return NULL;
    }
    struct timeval tv = { .tv_sec = 5 };
    k->c = redisConnectWithTimeout(host, (int)port, tv);
    if (!k->c || k->c->err) {
        snprintf(err, BENCH_ERR_MAX, "connect: %s", k->c ? k->c->errstr : "out of memory");
        s_close(k);
        return NULL;
    }
    redisSetTimeout(k->c, tv);
    redisReply *r = redisCommand(k->c, "SCRIPT LOAD %s", s_release_lua);
    if (!r || r->type != REDIS_REPLY_STRING || r->len >= (int)sizeof(k->sha)) {
        snprintf(err, BENCH_ERR_MAX, "SCRIPT LOAD: %s",
                 r ? (r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply")
                   : k->c->errstr);
        if (r)
            freeReplyObject(r);
        s_close(k);
        return NULL;
    }
    memcpy(k->sha, r->str, (size_t)r->len + 1);
    freeReplyObject(r);
    return k;
}

static int s_lock(void *p, const char *name, char *err)
{
    struct conn *k = p;
    snprintf(k->token, sizeof(k->token), "%d:%lu", (int)getpid(), ++k->n);
    for (int tries = 0; tries < RETRY_FOR; tries++) {
        redisReply *r = redisCommand(k->c, "SET %s %s NX PX " LOCK_PX, name, k->token);
        if (!r) {
            snprintf(err, BENCH_ERR_MAX, "SET: %s", k->c->errstr);
            return -EIO;
        }
        int type = r->type;
        int ok = type == REDIS_REPLY_STATUS && !strcmp(r->str, "OK");
        if (type == REDIS_REPLY_ERROR)
            snprintf(err, BENCH_ERR_MAX, "SET: %s", r->str);
        freeReplyObject(r);
        if (ok)
            return 0;
        if (type != REDIS_REPLY_NIL) {
            if (type != REDIS_REPLY_ERROR)
                snprintf(err, BENCH_ERR_MAX, "SET: unexpected reply type %d", type);
            return -EIO;
        }
        nanosleep(&(struct timespec){ .tv_nsec = RETRY_NS }, NULL);
    }
    snprintf(err, BENCH_ERR_MAX, "SET NX: still held after 5 s");
    return -ETIMEDOUT;
}

static int s_unlock(void *p, const char *name, char *err)
{
    struct conn *k = p;
    redisReply *r = redisCommand(k->c, "EVALSHA %s 1 %s %s", k->sha, name, k->token);
    if (!r) {
        snprintf(err, BENCH_ERR_MAX, "EVALSHA: %s", k->c->errstr);
        return -EIO;
    }
    int rc = 0;
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(err, BENCH_ERR_MAX, "EVALSHA: %s", r->str);
        rc = -EIO;
    } else if (r->type != REDIS_REPLY_INTEGER || r->integer != 1) {
        snprintf(err, BENCH_ERR_MAX, "release: the key no longer held our token");
        rc = -EPERM;
    }
    freeReplyObject(r);
    return rc;
}

static const char *s_describe(void *p)
{
    (void)p;
    return "\"method\":\"SET NX PX " LOCK_PX " + EVALSHA compare-and-delete\"";
}

int main(int argc, char **argv)
{
    static const bench_locker_t redis = {
        .name = "redis",
        .open = s_open,
        .lock = s_lock,
        .unlock = s_unlock,
        .close = s_close,
        .describe = s_describe,
    };
    return bench_lock_main(&redis, argc, argv);
}

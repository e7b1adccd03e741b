/* keys.c - the CURVE keys of a local cluster's nodes.
 *
 * A local cluster runs security mode curve unless `--security none` asked
 * otherwise: the README's demo is then what a real cluster should be, each
 * link between nodes authenticated and encrypted. Every node gets its own
 * keypair when it is planned (up) or added (node add): the secret in
 * <cluster dir>/keys/node-<id>.key, mode 0600 in a 0700 directory -- the
 * path the description's loader gives a <key> without a secret attribute,
 * since cluster.xml is in the same directory -- and the public key in the
 * node's state entry, from which describe.c writes the <key>. A node added
 * again under an old id gets a new key (its old one may have been
 * removed for a reason); node remove deletes the file, and down removes
 * the directory with everything else.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cairn/security.h"
#include "harness-private.h"

bool hx_curve(const json_t *st)
{
    const char *mode = hx_jstr(json_object_get(st, "security"), "mode");

    return mode && strcmp(mode, "curve") == 0;
}

int hx_key_make(const json_t *st, json_t *node, cairn_error_t *err)
{
    const char *dir = hx_jstr(json_object_get(st, "security"), "keys_dir");
    unsigned id = (unsigned)json_integer_value(json_object_get(node, "id"));
    char path[PATH_MAX], comment[64], fp[CAIRN_KEY_FINGERPRINT_LEN + 1];
    cairn_keypair_t kp;
    int r;

    if (!hx_curve(st))
        return 0;
    if (!dir)
        return cairn_error_set(err, -EINVAL, CAIRN_INTERNAL,
                               "state of cluster %s has no keys_dir",
                               hx_jstr(st, "cluster"));
    snprintf(path, sizeof(path), "%s/node-%u.key", dir, id);
    snprintf(comment, sizeof(comment), "node %u of local cluster %s", id,
             hx_jstr(st, "cluster"));
    r = cairn_keypair_generate(&kp, err);
    if (r == -ENOTSUP)
        return cairn_error_append(err, r, "; `cairn cluster up --security "
                                  "none` builds a cluster without keys");
    r = r ? r : cairn_keypair_write(path, &kp, comment, true, err);
    explicit_bzero(kp.secret_key, sizeof(kp.secret_key));
    if (r < 0)
        return r;
    cairn_key_fingerprint(kp.public_key, fp);
    /* clang-format off */
    json_t *key = json_pack("{s:s, s:s, s:s}",
                            "public", kp.public_key,
                            "fingerprint", fp,
                            "secret_path", path);
    /* clang-format on */
    if (!key || json_object_set_new(node, "key", key) < 0)
        return cairn_error_set(err, -ENOMEM, CAIRN_INTERNAL, "out of memory");
    return 0;
}

int hx_keys_make_all(json_t *st, cairn_error_t *err)
{
    size_t i;
    json_t *node;
    json_array_foreach(json_object_get(st, "nodes"), i, node) {
        int r = hx_key_make(st, node, err);
        if (r < 0)
            return r;
    }
    return 0;
}

bool hx_key_remove(const json_t *node)
{
    const char *path = hx_jstr(json_object_get(node, "key"), "secret_path");

    return path && unlink(path) == 0;
}

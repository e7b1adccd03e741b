/* cmd-keys.c - `cairn keys generate --node N`, `cairn keys list`: a node's
 * CURVE keypair, and what an operator checks of a cluster's keys.
 *
 * Design. A node's secret key is a file only root reads (cairn/security.h:
 * the zcert format, 0600, refused when others may read it); its public key
 * is written inline in the description, in a <key node public [secret]/>
 * of <security mode="curve">, on every node. So `keys generate` writes the
 * secret where the description will look for it -- the node's <key
 * secret> when it has one, else keys/node-<N>.key beside the description,
 * or --out -- and prints the public half with the very <key> element to
 * paste, XML-escaped (Z85 uses & < >). It never overwrites a key without
 * --force: a node keeps its key, and a lost one is a node cut off. A node
 * the description does not name yet is allowed (a node about to be
 * added), and the answer says so.
 *
 * `keys list` reads the description and, for every <key>, checks the
 * secret file on this host the way a daemon would read it: present or
 * not, readable, mode safe, holding that public key. One host normally
 * holds only its own node's secret: an absent file is no problem, an
 * unusable present one is.
 */
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "output.h"
#include "target.h"

/* The node is the global --node (an id, or a described node's name). */
const cairn_option_t cli_keys_generate_options[] = {
    { "--out", "FILE", "write the secret key to FILE (default: the node's "
      "<key secret> in the description, else keys/node-<N>.key beside it)" },
    { "--force", NULL, "replace an existing key file (the node's old key "
      "stops working once the description lists the new one)" },
    { NULL, NULL, NULL },
};
enum { O_OUT, O_FORCE };

CAIRN_DEFINE_CLEANUP(s_description_freep, cairn_description_t *,
                     cairn_description_free)

/* ---- helpers ----------------------------------------------------------- */

/* path made absolute against the cwd, malloc'ed into *ret. */
static int s_absolute(const char *path, char **ret, cairn_error_t *err)
{
    char cwd[PATH_MAX];

    if (path[0] == '/')
        return (*ret = strdup(path)) ? 0 : cli_oom(err);
    if (!getcwd(cwd, sizeof cwd))
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "getcwd: %s",
                               strerror(errno));
    return asprintf(ret, "%s/%s", cwd, path) < 0 ? cli_oom(err) : 0;
}

/* The loader's default secret path of node id: keys/node-<id>.key in the
 * description's directory (absolute). */
static int s_default_secret(const cairn_description_t *d, uint32_t id,
                            char **ret, cairn_error_t *err)
{
    _cleanup_free_ char *desc = NULL;
    char *slash;
    int r = s_absolute(cairn_description_path(d), &desc, err);

    if (r < 0)
        return r;
    slash = strrchr(desc, '/');
    *slash = '\0';
    return asprintf(ret, "%s/keys/node-%u.key", *desc ? desc : "", id) < 0
               ? cli_oom(err) : 0;
}

/* s with & < > " ' as XML entities, malloc'ed; NULL when out of memory. */
static char *s_xml_escape(const char *s)
{
    size_t len = 0;
    char *out = NULL;
    FILE *f = open_memstream(&out, &len);

    if (!f)
        return NULL;
    for (; *s; s++)
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&apos;", f); break;
        default: fputc(*s, f);
        }
    if (fclose(f) != 0) {
        free(out);
        return NULL;
    }
    return out;
}

/* <key node="N" public="..."[ secret="..."]/>; the secret only when it is
 * not the loader's default, so the element says where the key is. */
static char *s_key_element(uint32_t node, const char *public_key,
                           const char *secret)
{
    _cleanup_free_ char *pub = s_xml_escape(public_key);
    _cleanup_free_ char *sec = secret ? s_xml_escape(secret) : NULL;
    char *el = NULL;

    if (!pub || (secret && !sec) ||
        asprintf(&el, "<key node=\"%u\" public=\"%s\"%s%s%s/>", node, pub,
                 sec ? " secret=\"" : "", sec ? sec : "", sec ? "\"" : "") < 0)
        return NULL;
    return el;
}

/* ---- keys generate ----------------------------------------------------- */

/* What the operator does next with the new key, for "hint". */
static void s_hint(const cairn_description_t *d, uint32_t id, bool described,
                   bool listed, char *out, size_t size)
{
    const char *path = d ? cairn_description_path(d) : NULL;

    if (!d)
        snprintf(out, size, "no description found: add key_element to "
                 "<security mode=\"curve\"> of the cluster's description on "
                 "every node, then reload the daemons (systemctl reload, or "
                 "SIGHUP)");
    else if (!described)
        snprintf(out, size, "node %u is not in %s yet: add its <node> and "
                 "key_element to the description on every node, reload the "
                 "daemons there (systemctl reload, or SIGHUP), then start "
                 "node %u's daemons", id, path, id);
    else
        snprintf(out, size, "%s key_element %s <security mode=\"curve\"> of "
                 "%s on every node, then reload the daemons (systemctl "
                 "reload, or SIGHUP); node %u's own daemons need a restart "
                 "to serve the new key", listed ? "replace the node's <key> "
                 "with" : "add", listed ? "in" : "to", path, id);
}

/* Where node id's secret goes: --out, its <key secret>, the default; and
 * whether that is the loader's default (then <key> needs no secret). */
static int s_secret_path(const cairn_description_t *d, uint32_t id,
                         const char *out, char **ret, bool *ret_default,
                         cairn_error_t *err)
{
    _cleanup_free_ char *def = NULL;
    const cairn_key_desc_t *k = d ? cairn_description_find_key(d, id) : NULL;
    int r = d ? s_default_secret(d, id, &def, err) : 0;

    if (r < 0)
        return r;
    if (out)
        r = s_absolute(out, ret, err);
    else if (k)
        r = (*ret = strdup(k->secret_path)) ? 0 : cli_oom(err);
    else
        r = (*ret = TAKE_PTR(def)) ? 0 : cli_oom(err);
    if (r == 0)
        *ret_default = def ? strcmp(def, *ret) == 0 : !out;
    return r;
}

/* The description, or NULL when none is found and --out says where the
 * key goes (a key made before the description exists). */
static int s_generate_description(const cli_ctx *ctx, const char *out,
                                  cairn_description_t **ret,
                                  cairn_error_t *err)
{
    int r = cli_target_load_description(ctx, ret, err);

    if (r == -ENOENT && err->code == CAIRN_UNAVAILABLE && out &&
        !ctx->config && !getenv("CAIRN_CONFIG")) {
        cairn_error_clear(err);
        *ret = NULL;
        return 0;
    }
    if (r < 0 && err->code == CAIRN_UNAVAILABLE)
        cairn_error_append(err, r, " (keys generate needs it to know where "
                           "the key goes, or --out FILE)");
    return r;
}

/* The id --node names: a described node's id or name, or any id 1..255
 * (a node not described yet). */
static int s_node_id(const cairn_description_t *d, const char *named,
                     long *ret, cairn_error_t *err)
{
    const cairn_node_desc_t *n = d ? cairn_description_lookup_node(d, named)
                                   : NULL;

    if (n) {
        *ret = n->id;
        return 0;
    }
    return cairn_parse_long("--node", named, 1, 255, ret, err) < 0
               ? cairn_error_append(err, -EINVAL, " (an id, or the name of a "
                                    "node of the description)")
               : 0;
}

/* The keypair written to path (overwrite with --force). */
static int s_write_key(const cairn_description_t *d, uint32_t id,
                       const char *path, bool force, cairn_keypair_t *kp,
                       cairn_error_t *err)
{
    char comment[160];
    int r = cairn_keypair_generate(kp, err);

    snprintf(comment, sizeof comment, "node %u of cluster %s", id,
             d ? cairn_description_cluster(d) : "?");
    if (r == 0)
        r = cairn_keypair_write(path, kp, comment, force, err);
    if (r == -EEXIST)
        cairn_error_append(err, r, "; --force replaces it");
    return r;
}

int cli_cmd_keys_generate(cli_ctx *ctx, int argc, char **argv,
                          json_t **ret_result, cairn_error_t *err)
{
    _cleanup_(s_description_freep) cairn_description_t *d = NULL;
    _cleanup_free_ char *path = NULL, *element = NULL;
    char fp[CAIRN_KEY_FINGERPRINT_LEN + 1], hint[512];
    cairn_keypair_t kp;
    bool is_default = false, described, listed;
    cairn_args_t a;
    long id = 0;
    int r;

    r = cairn_args_parse("keys generate", cli_keys_generate_options, argc,
                         argv, 0, &a, err);
    if (r == 0 && !ctx->node)
        r = cairn_error_set(err, -EINVAL, CAIRN_USAGE, "keys generate: "
                            "--node N is required");
    if (r == 0 && a.values[O_OUT] && !*a.values[O_OUT])
        r = cairn_error_set(err, -EINVAL, CAIRN_USAGE, "--out is empty");
    if (r == 0)
        r = s_generate_description(ctx, a.values[O_OUT], &d, err);
    if (r == 0)
        r = s_node_id(d, ctx->node, &id, err);
    if (r == 0)
        r = s_secret_path(d, (uint32_t)id, a.values[O_OUT], &path,
                          &is_default, err);
    if (r == 0)
        r = s_write_key(d, (uint32_t)id, path, a.values[O_FORCE] != NULL, &kp,
                        err);
    if (r < 0)
        return r;
    explicit_bzero(kp.secret_key, sizeof kp.secret_key);
    cairn_key_fingerprint(kp.public_key, fp);
    described = d && cairn_description_find_node(d, (uint32_t)id);
    listed = d && cairn_description_find_key(d, (uint32_t)id);
    s_hint(d, (uint32_t)id, described, listed, hint, sizeof hint);
    element = s_key_element((uint32_t)id, kp.public_key,
                            is_default ? NULL : path);
    *ret_result = element ? json_pack("{s:I, s:s, s:s, s:s, s:s, s:s?, s:s?, "
                                      "s:b, s:s}",
                                      "node", (json_int_t)id,
                                      "public_key", kp.public_key,
                                      "fingerprint", fp, "secret_path", path,
                                      "key_element", element,
                                      "description",
                                      d ? cairn_description_path(d) : NULL,
                                      "cluster",
                                      d ? cairn_description_cluster(d) : NULL,
                                      "described", described, "hint", hint)
                          : NULL;
    return *ret_result ? 0 : cli_oom(err);
}

/* ---- keys list --------------------------------------------------------- */

/* The check of one secret file on this host, as {"exists", "readable",
 * "mode", "safe_mode", "matches", "state", "problem"}. */
static json_t *s_check_secret(const cairn_key_desc_t *k)
{
    struct stat st;
    cairn_keypair_t kp;
    cairn_error_t e = { 0 };
    char mode[8] = "", have[CAIRN_KEY_FINGERPRINT_LEN + 1];
    char problem[sizeof e.message] = "";
    const char *state = "ok";
    int matches = -1, r, sr = stat(k->secret_path, &st);
    bool stated = sr == 0, exists = stated || errno != ENOENT;

    if (!exists)
        return json_pack("{s:b, s:n, s:n, s:n, s:n, s:s, s:n}", "exists", 0,
                         "readable", "mode", "safe_mode", "matches", "state",
                         "absent", "problem");
    if (stated)
        snprintf(mode, sizeof mode, "%04o", (unsigned)(st.st_mode & 07777));
    r = cairn_keypair_read(k->secret_path, &kp, &e);
    if (r == 0) {
        matches = strcmp(kp.public_key, k->public_key) == 0;
        cairn_key_fingerprint(kp.public_key, have);
        explicit_bzero(&kp, sizeof kp);
        if (!matches) {
            state = "mismatch";
            snprintf(problem, sizeof problem, "it holds the secret key of "
                     "public key %s, not the one the description lists for "
                     "node %u: the file or the description is stale", have,
                     k->node);
        }
    } else {
        state = r == -EPERM   ? "unsafe-mode"
                : r == -EACCES ? "unreadable"
                : r == -EINVAL ? "invalid"
                               : "unreadable";
        snprintf(problem, sizeof problem, "%s", e.message);
    }
    return json_pack("{s:b, s:b, s:s?, s:o, s:o, s:s, s:s?}", "exists", 1,
                     "readable", access(k->secret_path, R_OK) == 0,
                     "mode", stated ? mode : NULL,
                     "safe_mode", stated ? json_boolean(!(st.st_mode & 077))
                                         : json_null(),
                     "matches", matches < 0 ? json_null()
                                            : json_boolean(matches),
                     "state", state, "problem", *problem ? problem : NULL);
}

/* One entry of "keys": the <key> and the check of its secret here. */
static json_t *s_key_json(const cairn_description_t *d,
                          const cairn_key_desc_t *k)
{
    const cairn_node_desc_t *n = cairn_description_find_node(d, k->node);
    char fp[CAIRN_KEY_FINGERPRINT_LEN + 1];
    json_t *entry, *check = s_check_secret(k);

    cairn_key_fingerprint(k->public_key, fp);
    entry = check ? json_pack("{s:I, s:s?, s:s, s:s, s:s}",
                              "node", (json_int_t)k->node,
                              "name", n ? n->name : NULL,
                              "public_key", k->public_key, "fingerprint", fp,
                              "secret_path", k->secret_path)
                  : NULL;
    if (entry && json_object_update(entry, check) < 0)
        entry = (json_decref(entry), NULL);
    json_decref(check);
    return entry;
}

/* The node whose key a tcp request from here would use, or null. */
static json_t *s_client_node(const cli_ctx *ctx, const cairn_description_t *d)
{
    cairn_keypair_t kp;
    uint32_t node = 0;

    if (cairn_description_client_keys(d, cli_target_key_path(ctx), &kp, &node,
                                      NULL) < 0 || node == 0)
        return json_null();
    explicit_bzero(&kp, sizeof kp);
    return json_integer(node);
}

int cli_cmd_keys_list(cli_ctx *ctx, int argc, char **argv, json_t **ret_result,
                      cairn_error_t *err)
{
    _cleanup_(s_description_freep) cairn_description_t *d = NULL;
    json_t *keys, *entry;
    size_t here = 0, problems = 0;
    cairn_args_t a;
    int r;

    r = cairn_args_parse("keys list", cli_no_options, argc, argv, 0, &a, err);
    if (r == 0)
        r = cli_target_load_description(ctx, &d, err);
    if (r < 0)
        return r;
    if (!(keys = json_array()))
        return cli_oom(err);
    for (size_t i = 0; i < cairn_description_n_keys(d); i++) {
        if (!(entry = s_key_json(d, cairn_description_key(d, i))) ||
            json_array_append_new(keys, entry) < 0) {
            json_decref(keys);
            return cli_oom(err);
        }
        here += json_is_true(json_object_get(entry, "exists"));
        problems += !json_is_null(json_object_get(entry, "problem"));
    }
    *ret_result = json_pack("{s:s, s:s, s:s, s:o, s:I, s:I, s:o, s:b}",
                            "cluster", cairn_description_cluster(d),
                            "description", cairn_description_path(d),
                            "security",
                            cairn_description_curve(d) ? "curve" : "none",
                            "keys", keys, "here", (json_int_t)here,
                            "problems", (json_int_t)problems,
                            "client_node", s_client_node(ctx, d),
                            "ok", problems == 0);
    return *ret_result ? 0 : cli_oom(err);
}

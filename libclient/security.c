/* security.c - CURVE keys, key files and socket setup (cairn/security.h).
 *
 * Key files follow czmq's zcert layout so that ZeroMQ tooling reads them,
 * but are parsed here line by line: only `public-key` and `secret-key`
 * under `curve` matter, and the public key is always derived again from
 * the secret one (a file whose two keys disagree is refused, not trusted).
 *
 * A secret key file is the node's identity: it is written 0600 through a
 * temp file (a crash never leaves half a key), and refused on reading when
 * group or others may read it, so a key that leaked through a chmod is
 * noticed at the next start instead of being used silently.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "cairn/security.h"
#include "util/cleanup.h"
#include "util/fileio.h"

#define S_MAX_KEY_FILE 4096

bool cairn_key_is_valid(const char *s)
{
    uint8_t raw[32];

    return s && strlen(s) == CAIRN_KEY_LEN && zmq_z85_decode(raw, s) != NULL;
}

void cairn_key_fingerprint(const char *public_key,
                           char out[CAIRN_KEY_FINGERPRINT_LEN + 1])
{
    uint8_t raw[32];

    if (!cairn_key_is_valid(public_key) || !zmq_z85_decode(raw, public_key)) {
        snprintf(out, CAIRN_KEY_FINGERPRINT_LEN + 1, "invalid");
        return;
    }
    for (int i = 0; i < CAIRN_KEY_FINGERPRINT_LEN / 2; i++)
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
}

int cairn_keypair_generate(cairn_keypair_t *ret, cairn_error_t *err)
{
    cairn_keypair_t kp = { 0 };

    if (!ret)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "no keypair to fill");
    if (!zmq_has("curve") || zmq_curve_keypair(kp.public_key, kp.secret_key) != 0)
        return cairn_error_set(err, -ENOTSUP, CAIRN_UNSUPPORTED,
                               "this libzmq has no CURVE support (built "
                               "without libsodium)");
    *ret = kp;
    return 0;
}

/* The directory part of path ("." for a bare name), malloc'ed. */
static char *s_dirname(const char *path)
{
    const char *slash = strrchr(path, '/');

    if (!slash)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

int cairn_keypair_write(const char *path, const cairn_keypair_t *kp,
                        const char *comment, bool overwrite,
                        cairn_error_t *err)
{
    _cleanup_free_ char *dir = NULL, *tmp = NULL, *text = NULL;
    int r;

    if (!path || !kp || !cairn_key_is_valid(kp->public_key) ||
        !cairn_key_is_valid(kp->secret_key))
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "no path or no valid keypair to write");
    if (!overwrite && access(path, F_OK) == 0)
        return cairn_error_set(err, -EEXIST, CAIRN_ALREADY_EXISTS,
                               "%s exists: a node keeps its key (remove the "
                               "file, or overwrite it, to make a new one)",
                               path);
    if (!(dir = s_dirname(path)) ||
        asprintf(&tmp, "%s.tmp.%d", path, (int)getpid()) < 0 ||
        asprintf(&text,
                 "#   ZeroMQ CURVE **Secret** Certificate (Cairn node key)\n"
                 "#   %s\n"
                 "#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its "
                 "permissions.\n\n"
                 "metadata\n"
                 "curve\n"
                 "    public-key = \"%s\"\n"
                 "    secret-key = \"%s\"\n",
                 comment ? comment : "", kp->public_key, kp->secret_key) < 0)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    if ((r = cairn_mkdir_p(dir, 0700)) < 0)
        return cairn_error_set(err, r, CAIRN_SYSTEM, "mkdir %s: %s", dir,
                               strerror(-r));
    if ((r = cairn_write_file(tmp, text, strlen(text),
                              O_CREAT | O_EXCL | O_TRUNC, 0600)) < 0 ||
        (rename(tmp, path) < 0 && (r = -errno) < 0)) {
        unlink(tmp);
        return cairn_error_set(err, r, CAIRN_SYSTEM, "write %s: %s", path,
                               strerror(-r));
    }
    return 0;
}

/* The quoted value of `name = "..."` in line, into out (41 bytes);
 * false if line is not that assignment. */
static bool s_key_line(const char *line, const char *name,
                       char out[CAIRN_KEY_LEN + 1])
{
    const char *p = line + strspn(line, " \t");
    size_t n = strlen(name);

    if (strncmp(p, name, n) != 0)
        return false;
    p += n;
    p += strspn(p, " \t");
    if (*p++ != '=')
        return false;
    p += strspn(p, " \t");
    if (*p++ != '"')
        return false;
    const char *end = strchr(p, '"');
    if (!end || end - p != CAIRN_KEY_LEN)
        return false;
    memcpy(out, p, CAIRN_KEY_LEN);
    out[CAIRN_KEY_LEN] = '\0';
    return true;
}

/* Fills the secret and (if present) public key found in text. */
static void s_parse_cert(char *text, char secret[CAIRN_KEY_LEN + 1],
                         char pub[CAIRN_KEY_LEN + 1])
{
    char *save = NULL;

    for (char *line = strtok_r(text, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        if (!s_key_line(line, "secret-key", secret))
            s_key_line(line, "public-key", pub);
    }
}

/* Opens path for reading a secret key; refuses one others may read. */
static int s_open_secret(const char *path, cairn_error_t *err)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

    if (fd < 0) {
        int e = errno;
        return cairn_error_set(err, -e,
                               e == ENOENT ? CAIRN_NOT_FOUND
                               : e == EACCES ? CAIRN_PERMISSION_DENIED
                                             : CAIRN_SYSTEM,
                               "secret key %s: %s%s", path, strerror(e),
                               e == EACCES ? " (only root reads node keys)"
                                           : "");
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_CONFIG,
                               "secret key %s is not a regular file", path);
    }
    if (st.st_mode & 077) {
        close(fd);
        return cairn_error_set(err, -EPERM, CAIRN_PERMISSION_DENIED,
                               "secret key %s has mode %04o: group or others "
                               "may read it; it is refused until `chmod 600 "
                               "%s` (and consider it leaked: make a new one)",
                               path, (unsigned)(st.st_mode & 07777), path);
    }
    return fd;
}

int cairn_keypair_read(const char *path, cairn_keypair_t *ret,
                       cairn_error_t *err)
{
    _cleanup_free_ char *text = NULL;
    cairn_keypair_t kp = { 0 };
    char derived[CAIRN_KEY_LEN + 1];
    size_t len = 0;
    int fd, r;

    if (!path || !ret)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "no key file to read");
    if ((fd = s_open_secret(path, err)) < 0)
        return fd;
    r = cairn_read_fd(fd, S_MAX_KEY_FILE, &text, &len);
    close(fd);
    if (r < 0)
        return cairn_error_set(err, r, CAIRN_SYSTEM, "read %s: %s", path,
                               strerror(-r));
    s_parse_cert(text, kp.secret_key, kp.public_key);
    if (!cairn_key_is_valid(kp.secret_key) ||
        zmq_curve_public(derived, kp.secret_key) != 0)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_CONFIG,
                               "%s holds no valid secret-key (a zcert secret "
                               "certificate, as `cairn keys generate` writes)",
                               path);
    if (kp.public_key[0] && strcmp(kp.public_key, derived) != 0)
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_CONFIG,
                               "%s: its public-key is not its secret-key's",
                               path);
    memcpy(kp.public_key, derived, sizeof(kp.public_key));
    *ret = kp;
    return 0;
}

/* ---- the description's keys -------------------------------------------- */

bool cairn_description_curve(const cairn_description_t *d)
{
    const char *mode = cairn_description_security_mode(d);

    return mode && strcmp(mode, "curve") == 0;
}

const cairn_key_desc_t *cairn_description_find_key(const cairn_description_t *d,
                                                   uint32_t node)
{
    for (size_t i = 0; i < cairn_description_n_keys(d); i++)
        if (cairn_description_key(d, i)->node == node)
            return cairn_description_key(d, i);
    return NULL;
}

uint32_t cairn_description_key_owner(const cairn_description_t *d,
                                     const char *public_key)
{
    if (!public_key)
        return 0;
    for (size_t i = 0; i < cairn_description_n_keys(d); i++) {
        const cairn_key_desc_t *k = cairn_description_key(d, i);
        if (strcmp(k->public_key, public_key) == 0)
            return k->node;
    }
    return 0;
}

int cairn_description_client_keys(const cairn_description_t *d,
                                  const char *key_path, cairn_keypair_t *ret,
                                  uint32_t *ret_node, cairn_error_t *err)
{
    cairn_keypair_t kp;
    char tried[512] = "";
    size_t used = 0;
    int r;

    if (key_path && *key_path) {
        if ((r = cairn_keypair_read(key_path, &kp, err)) < 0)
            return r;
        *ret = kp;
        *ret_node = cairn_description_key_owner(d, kp.public_key);
        return 0;
    }
    for (size_t i = 0; i < cairn_description_n_keys(d); i++) {
        const cairn_key_desc_t *k = cairn_description_key(d, i);
        if (cairn_keypair_read(k->secret_path, &kp, NULL) == 0 &&
            strcmp(kp.public_key, k->public_key) == 0) {
            *ret = kp;
            *ret_node = k->node;
            return 0;
        }
        if (used < sizeof(tried))
            used += (size_t)snprintf(tried + used, sizeof(tried) - used, "%s%s",
                                     used ? ", " : "", k->secret_path);
    }
    return cairn_error_set(err, -ENOENT, CAIRN_PERMISSION_DENIED,
                           "security mode curve: no node secret key this "
                           "process can read (tried %s); tcp requests need "
                           "one: run as root on a member node, or name one "
                           "with --key FILE",
                           used ? tried : "none: the description has no keys");
}

/* ---- sockets ------------------------------------------------------------ */

static int s_sockopt(void *zsock, int opt, const void *val, size_t len,
                     const char *name, cairn_error_t *err)
{
    if (zmq_setsockopt(zsock, opt, val, len) == 0)
        return 0;
    int e = zmq_errno();
    return cairn_error_set(err, -e, CAIRN_SYSTEM, "zmq_setsockopt %s: %s",
                           name, zmq_strerror(e));
}

int cairn_curve_server(void *zsock, const cairn_keypair_t *own,
                       cairn_error_t *err)
{
    int one = 1, r;

    if (!zsock || !own || !cairn_key_is_valid(own->secret_key))
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "no socket or no valid secret key");
    if ((r = s_sockopt(zsock, ZMQ_CURVE_SERVER, &one, sizeof(one),
                       "CURVE_SERVER", err)) < 0 ||
        (r = s_sockopt(zsock, ZMQ_CURVE_SECRETKEY, own->secret_key,
                       CAIRN_KEY_LEN, "CURVE_SECRETKEY", err)) < 0 ||
        (r = s_sockopt(zsock, ZMQ_ZAP_DOMAIN, CAIRN_ZAP_DOMAIN,
                       strlen(CAIRN_ZAP_DOMAIN), "ZAP_DOMAIN", err)) < 0)
        return r;
    return 0;
}

int cairn_curve_client(void *zsock, const char *server_public,
                       const cairn_keypair_t *own, cairn_error_t *err)
{
    int r;

    if (!zsock || !own || !cairn_key_is_valid(server_public) ||
        !cairn_key_is_valid(own->public_key) ||
        !cairn_key_is_valid(own->secret_key))
        return cairn_error_set(err, -EINVAL, CAIRN_INVALID_ARGUMENT,
                               "no socket, or a server or own key that is "
                               "not a Z85 CURVE key");
    if ((r = s_sockopt(zsock, ZMQ_CURVE_SERVERKEY, server_public,
                       CAIRN_KEY_LEN, "CURVE_SERVERKEY", err)) < 0 ||
        (r = s_sockopt(zsock, ZMQ_CURVE_PUBLICKEY, own->public_key,
                       CAIRN_KEY_LEN, "CURVE_PUBLICKEY", err)) < 0 ||
        (r = s_sockopt(zsock, ZMQ_CURVE_SECRETKEY, own->secret_key,
                       CAIRN_KEY_LEN, "CURVE_SECRETKEY", err)) < 0)
        return r;
    return 0;
}

int cairn_curve_off(void *zsock, cairn_error_t *err)
{
    int zero = 0;

    /* The ZAP domain stays: libzmq 4.3.4 refuses to clear it (any empty
     * value, even (NULL, 0), is EINVAL). */
    return s_sockopt(zsock, ZMQ_CURVE_SERVER, &zero, sizeof(zero),
                     "CURVE_SERVER", err);
}

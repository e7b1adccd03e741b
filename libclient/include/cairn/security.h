/* cairn/security.h - CURVE keys and the one place sockets get them.
 *
 * Between nodes every Cairn socket runs ZeroMQ's CURVE (CurveZMQ:
 * Curve25519 key exchange, every frame encrypted and authenticated) when
 * the description says <security mode="curve">. Each node has one keypair:
 * its secret key lives in a file only root reads (the description's
 * <key secret=...>, default keys/node-<id>.key beside the description),
 * its public key is written in the description itself, so every node
 * knows every other node's key and admits no other (docs/security.md).
 *
 * Key files are ZeroMQ certificates in the zcert text format (czmq's
 * `zcert_save_secret`): a `curve` section with `public-key = "..."` and
 * `secret-key = "..."`, Z85-encoded. They are written 0600, atomically,
 * and refused on reading when group or others may read them (as ssh
 * refuses a private key others can read).
 *
 * Sockets: cairn_curve_server() makes a socket a CURVE server for the
 * binds that follow (the skeleton's tcp ROUTER and PUB); the daemon's ZAP
 * handler then admits only the description's keys. cairn_curve_client()
 * makes a socket a CURVE client of one server key (the skeleton's peer
 * DEALERs, libcairn's client, the CLI's SUB). Both only set socket
 * options: nothing is sent.
 *
 * Nothing here logs; every call that can fail returns 0 or a negative
 * errno with err filled (err may be NULL).
 */
#ifndef CAIRN_SECURITY_H
#define CAIRN_SECURITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cairn/description.h"
#include "cairn/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CAIRN_KEY_LEN 40              /* a Z85-encoded 32-byte CURVE key */
#define CAIRN_KEY_FINGERPRINT_LEN 16  /* hex of the key's first 8 bytes */
/* The ZAP domain of every Cairn CURVE server socket. */
#define CAIRN_ZAP_DOMAIN "cairn"

typedef struct cairn_keypair {
    char public_key[CAIRN_KEY_LEN + 1];   /* Z85, NUL-terminated */
    char secret_key[CAIRN_KEY_LEN + 1];   /* Z85, NUL-terminated */
} cairn_keypair_t;

/* True if s is exactly CAIRN_KEY_LEN Z85 characters that decode to a
 * 32-byte key. */
bool cairn_key_is_valid(const char *s);

/* The short form of a public key used in logs and JSON: 16 hex digits of
 * its first 8 bytes ("3fa9...")). out has CAIRN_KEY_FINGERPRINT_LEN + 1
 * bytes; an invalid key gives "invalid". */
void cairn_key_fingerprint(const char *public_key,
                           char out[CAIRN_KEY_FINGERPRINT_LEN + 1]);

/* A new random keypair (libzmq's zmq_curve_keypair, libsodium's RNG).
 * -ENOTSUP (code UNSUPPORTED) if this libzmq has no CURVE. */
int cairn_keypair_generate(cairn_keypair_t *ret, cairn_error_t *err);

/* Writes kp to path as a zcert secret certificate, mode 0600, through a
 * temp file beside it, fsync and rename; the directory is made (0700) if
 * missing. An existing file is kept and -EEXIST (code ALREADY_EXISTS)
 * returned unless overwrite. `comment` (may be NULL) goes in a # line. */
int cairn_keypair_write(const char *path, const cairn_keypair_t *kp,
                        const char *comment, bool overwrite,
                        cairn_error_t *err);

/* Reads a secret certificate. Errors: -ENOENT / -EACCES (code
 * PERMISSION_DENIED for EACCES, NOT_FOUND for ENOENT), -EPERM (code
 * PERMISSION_DENIED) when the file is readable by group or others,
 * -EINVAL (code INVALID_CONFIG) when it holds no valid secret key or a
 * public key that is not the secret key's. */
int cairn_keypair_read(const char *path, cairn_keypair_t *ret,
                       cairn_error_t *err);

/* ---- the description's keys -------------------------------------------- */

/* True when the description runs CURVE between nodes. */
bool cairn_description_curve(const cairn_description_t *d);

/* The <key> of node, NULL if it has none. */
const cairn_key_desc_t *cairn_description_find_key(const cairn_description_t *d,
                                                   uint32_t node);

/* The node whose public key is public_key, 0 if none. */
uint32_t cairn_description_key_owner(const cairn_description_t *d,
                                     const char *public_key);

/* The keypair this process uses as a client of d's nodes over tcp:
 * key_path when given (--key, $CAIRN_KEY), else the secret key of the
 * first node of d (document order) whose key file this process can read
 * -- on a member host, as root, its own node's. *ret_node is that node's
 * id (0 for a key_path whose public key is no node's: such a client is
 * refused by every server, which is what a test of refusal wants).
 * Errors: -ENOENT (code PERMISSION_DENIED) when no key file is readable,
 * with a message naming the files tried and saying only root reads them;
 * cairn_keypair_read's errors for key_path. */
int cairn_description_client_keys(const cairn_description_t *d,
                                  const char *key_path, cairn_keypair_t *ret,
                                  uint32_t *ret_node, cairn_error_t *err);

/* ---- sockets ------------------------------------------------------------ */

/* Makes zsock a CURVE server with own's secret key and ZAP domain
 * CAIRN_ZAP_DOMAIN, for the binds made after this call. libzmq 4.3
 * (without its draft ZAP_ENFORCE_DOMAIN) admits every key when no ZAP
 * handler is bound in the socket's context, so the caller binds its
 * handler on inproc://zeromq.zap.01 first (the skeleton does). */
int cairn_curve_server(void *zsock, const cairn_keypair_t *own,
                       cairn_error_t *err);

/* Makes zsock a CURVE client of server_public with own's keys, for the
 * connects made after this call. */
int cairn_curve_client(void *zsock, const char *server_public,
                       const cairn_keypair_t *own, cairn_error_t *err);

/* Sets the socket back to the NULL mechanism for the binds or connects
 * that follow: ipc endpoints, which the kernel authenticates
 * (SO_PEERCRED). A ZAP domain set before stays (libzmq 4.3 cannot clear
 * one), so connections to those binds still go to the ZAP handler. */
int cairn_curve_off(void *zsock, cairn_error_t *err);

#ifdef __cplusplus
}
#endif
#endif

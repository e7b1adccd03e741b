/* inetsk.h - TCP and UDP sockets (inetsk.c): the fd kind FD_INET, with
 * the dump's hold on the TCP connections it put in repair mode and the
 * network lock of those whose peer is outside the tree.
 */
#ifndef GHOST_INETSK_H
#define GHOST_INETSK_H

#include "files.h"
#include "verify.h"

extern const files_kind_t inetsk_kind;

/* The dump's sockets in repair mode (inetsk.c); NULL until the first. */
typedef struct inetsk_dump inetsk_dump_t;

/* Ends the dump's hold on its sockets: the tree was killed (killed: they
 * stay in repair mode, so their last close sends nothing, and the peers
 * outside the tree stay locked out until the restore) or runs on (repair
 * mode off, the locks gone). Closes our copies and frees d; NULL. */
inetsk_dump_t *inetsk_dump_end(inetsk_dump_t *d, bool killed);

/* Locks (before the tree is made) or unlocks (once every task of it is
 * held, before they run; the unlock goes on past a failure) every TCP
 * connection of the image, as the dump
 * locked those to peers outside the tree: until both ends are back,
 * what one end sends must not reach the other's closed port (its answer
 * would be a RST), nor an outside peer's packets ours. 0, or -errno with
 * err set: on the lock the restore does not go on; on the unlock a
 * connection would stall, so the restore fails. */
int inetsk_lock_image(const rst_image_t *im, bool lock, cairn_error_t *err);

/* The verifier's comparison (verify.c's table): each inet socket of pr
 * against the restored one of pid -- family, protocol, state, address,
 * peer, every recorded option, a connection's queues (none shorter of
 * what was received, none longer of what is to send). 0, or -errno when
 * it could not look. */
int inetsk_verify(const rst_image_t *im, const rst_proc_t *pr, pid_t pid, ghost_verify_t *v,
                  cairn_error_t *err);

#endif

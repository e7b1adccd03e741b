/* cairn/dsm.h - distributed shared memory segments (dsmd): named memory
 * that processes on any nodes of the cluster map and share, sequentially
 * consistent between nodes (docs/dsm.md).
 *
 * A segment is named by a string (1..255 bytes, no '/'), has a size (a
 * multiple of 4096 bytes, at most the node's memory) and belongs to the
 * user who made it, with a mode (the rw bits of user, group and other, as
 * a file's). It lives until cairn_dsm_unlink, whether mapped or not.
 *
 * cairn_dsm_open() asks the node's dsmd (its socket <rundir>/dsmd.fd.sock:
 * $CAIRN_DSMD_SOCKET, else $CAIRN_NODE_RUNDIR/dsmd.fd.sock, else the one
 * under /run/cairn/<cluster>/<node>/) for the segment and maps it in the
 * calling process: the node's copy of the segment (a memfd, shared by all
 * the node's processes) whose page faults dsmd serves through the
 * process's userfaultfd. Loads and stores are then plain memory accesses;
 * a page the node does not hold waits for it (one round trip to its
 * owner's node, more while a write invalidates read copies).
 *
 * What a program sees: between nodes, sequential consistency (a write is
 * performed only after every other copy of its page is gone); within a
 * node, the machine's own model (x86: TSO), as between threads.
 * A page lost with a dead node is SIGBUS, never stale or zero bytes. The
 * mapping is not inherited by fork (MADV_DONTFORK: a child touching it
 * gets SIGSEGV, never unserved memory); open it again in the child.
 * Where the kernel keeps userfaultfd to user-mode faults (an unprivileged
 * process with vm.unprivileged_userfaultfd=0), a system call that reads or
 * writes a page the node does not hold fails with EFAULT: touch it first.
 *
 * Errors: 0 or a negative errno; err (may be NULL) gets a code and a
 * message for every failure:
 *   -ENOENT  no such segment (and no CAIRN_DSM_CREATE);
 *   -EEXIST  CAIRN_DSM_CREATE|CAIRN_DSM_EXCL and it exists;
 *   -EINVAL  a bad name, size or mode, or a size other than the segment's;
 *   -EACCES  the segment's mode does not let the caller map it so;
 *   -EBUSY   (unlink) a process still maps it;
 *   -EHOSTUNREACH, -EREMOTEIO  dsmd not running or could not answer.
 */
#ifndef CAIRN_DSM_H
#define CAIRN_DSM_H

#include <stddef.h>
#include <stdint.h>

#include "cairn/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cairn_dsm cairn_dsm_t;

#define CAIRN_DSM_CREATE 1u     /* make it if it does not exist */
#define CAIRN_DSM_EXCL 2u       /* with CREATE: fail if it exists */
#define CAIRN_DSM_RDONLY 4u     /* map it read-only (read permission is enough) */

/* Opens (and with CREATE makes, of `size` bytes and `mode`, 0 = 0600) the
 * segment `name` and maps it. size 0 opens an existing segment whatever
 * its size. *ret is the caller's (cairn_dsm_close). */
int cairn_dsm_open(const char *name, size_t size, unsigned flags, unsigned mode,
                   cairn_dsm_t **ret, cairn_error_t *err);

/* Same, through the dsmd socket at `socket_path` (a node's
 * <rundir>/dsmd.fd.sock; NULL: found as above). */
int cairn_dsm_open_at(const char *socket_path, const char *name, size_t size, unsigned flags,
                      unsigned mode, cairn_dsm_t **ret, cairn_error_t *err);

/* The mapping's address and size (valid until cairn_dsm_close). */
void *cairn_dsm_addr(const cairn_dsm_t *s);
size_t cairn_dsm_size(const cairn_dsm_t *s);
/* Whether this call made the segment. */
int cairn_dsm_created(const cairn_dsm_t *s);

/* Unmaps and frees; the segment stays. Accepts NULL, returns NULL. */
cairn_dsm_t *cairn_dsm_close(cairn_dsm_t *s);

/* Removes the segment from the cluster: refused (-EBUSY) while a process
 * maps it; only its owner and root may. */
int cairn_dsm_unlink(const char *name, cairn_error_t *err);
/* Same, through the dsmd of the node whose socket is socket_path. */
int cairn_dsm_unlink_at(const char *socket_path, const char *name, cairn_error_t *err);

#ifdef __cplusplus
}
#endif
#endif

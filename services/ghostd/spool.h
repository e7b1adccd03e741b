/* spool.h - ghostd's default image directory, <rundir>/ghost, kept on a
 * tmpfs of huge pages.
 *
 * Checkpoints asked for without a directory go to <rundir>/ghost/<pid>-<ms>.
 * The engine writes an image into a file of 2 MiB folios with several
 * threads and one copy per byte, but streams it through one writer on a
 * filesystem of small pages or on a disk (docs/ghost.md, bench/README.md).
 * So at start ghostd mounts a tmpfs with huge=always on that directory,
 * unless it is a mount already or holds files (a mount would hide them).
 * A mount already there is an earlier ghostd's (a tmpfs named
 * cairn-ghost: one that stopped with images in it, or that a watchdog or
 * a crash ended before it could unmount), which this ghostd adopts as if
 * it had mounted it, or the admin's, which it uses and leaves alone. <rundir> is the node's runtime
 * directory: nothing in it is meant to outlive a reboot, so a tmpfs takes
 * nothing away; a checkpoint meant to last goes to a directory given with
 * --dir. At stop ghostd unmounts the spool it mounted if no image is left
 * in it, and keeps it otherwise (the next ghostd finds and reuses it);
 * `cairn cluster down` unmounts what is left under a node's run dir.
 *
 * Users. The spool is root's, mode 0711: nobody but root makes anything
 * at its top, and a user may pass through to their own directory,
 * <rundir>/ghost/uid-<uid> (0700, theirs), which ghostd makes for a user's
 * first checkpoint without --dir; the checkpoint's own directory inside
 * it, and the image, the helper makes with the user's file rights.
 * Nobody lists the spool, so users do not see each other's checkpoints.
 */
#ifndef GHOSTD_SPOOL_H
#define GHOSTD_SPOOL_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cairn/error.h"

typedef struct ghostd_spool {
    char path[PATH_MAX];   /* <rundir>/ghost */
    bool mounted;          /* this ghostd's to unmount at stop */
    bool adopted;          /* ...mounted by an earlier ghostd */
    bool huge;             /* the tmpfs has huge pages */
} ghostd_spool_t;

/* Makes <rundir>/ghost (0711) and mounts the tmpfs on it: 0 when it is
 * mounted here (sp->mounted, sp->huge: huge=always was taken; a kernel
 * without huge tmpfs pages gets a plain tmpfs), 0 when it was an earlier
 * ghostd's mount (sp->mounted and sp->adopted, sp->huge as it was
 * mounted), 0 when it was another mount (sp->mounted false, sp->huge
 * unknown), else -errno and the reason in err, the
 * spool then being the directory as it is (checkpoints still go there). */
int ghostd_spool_prepare(ghostd_spool_t *sp, const char *rundir, cairn_error_t *err);

/* Unmounts the spool if this ghostd mounted or adopted it and, once its empty
 * checkpoint directories (and users' directories left empty) are
 * removed, it holds nothing: 0 unmounted or nothing to do, -ENOTEMPTY
 * images remain (left mounted), else -errno. */
int ghostd_spool_release(ghostd_spool_t *sp);

/* The spool's directory of user uid, <spool>/uid-<uid> into out: made if
 * missing, and in any case a directory (not a link) owned by uid:gid with
 * mode 0700 when this returns 0. Only root writes the spool's top, so
 * nothing there is a user's making. -errno with code SYSTEM (or
 * INVALID_ARGUMENT: path too long) otherwise. */
int ghostd_spool_user_dir(const ghostd_spool_t *sp, uint32_t uid, uint32_t gid,
                          char *out, size_t size, cairn_error_t *err);

#endif

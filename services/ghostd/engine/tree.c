/* tree.c - the process tree, both directions: who is in it, and how
 * sessions and groups come back.
 *
 * Dump side. The tree is its root and every descendant (/proc children).
 * A process of it must have its own memory: a child made by vfork shares
 * its parent's until it calls exec, and two images of one memory would
 * come back as two. Members that exit while the tree is looked at are
 * told apart from members that are refused (tree_vanished, tree_gone).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/kcmp.h>

#include "tree.h"

/* ---- dump ----------------------------------------------------------- */

/* Whether pid (a process or a thread) has exited and been reaped. */
bool tree_vanished(pid_t pid)
{
    proc_stat_t st;
    return proc_read_stat(pid, &st, NULL) < 0;
}

/* Whether it has exited: reaped, or a zombie. */
bool tree_gone(pid_t pid)
{
    proc_stat_t st;
    return proc_read_stat(pid, &st, NULL) < 0 || proc_state_exited(st.state);
}

/* pid and all its descendants, parents first; (*ret)[i*2+1] is the parent. */
int tree_list(pid_t root, pid_t **ret, size_t *ret_n, cairn_error_t *err)
{
    size_t n = 1, cap = 16;
    pid_t *v = malloc(cap * 2 * sizeof(pid_t));
    if (!v)
        return cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
    v[0] = root;
    v[1] = 0;
    int r = 0;
    for (size_t i = 0; r == 0 && i < n; i++) {
        pid_t *ch = NULL;
        size_t nc = 0;
        r = proc_list_children(v[i * 2], &ch, &nc, err);
        if (r == -ENOENT || r == -ESRCH)
            r = i == 0 ? cairn_error_set(err, -ESRCH, CAIRN_NOT_FOUND, "no process %d",
                                         (int)root) : 0;
        for (size_t j = 0; r == 0 && j < nc; j++) {
            if (n == cap) {
                pid_t *nv = realloc(v, cap * 4 * sizeof(pid_t));
                if (!nv) {
                    r = cairn_error_set(err, -ENOMEM, CAIRN_SYSTEM, "out of memory");
                    break;
                }
                v = nv;
                cap *= 2;
            }
            v[n * 2] = ch[j];
            v[n * 2 + 1] = v[i * 2];
            n++;
        }
        free(ch);
    }
    if (r < 0) {
        free(v);
        return r;
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

/* A process of the tree must have its own memory: a child made by vfork
 * (posix_spawn, many a runtime's process launcher) shares its parent's
 * until it calls exec or exits, and two images of one memory would come
 * back as two (the parent then repeats its vfork). -EBUSY, a moment the
 * next look is likely past (s_tree_moved); one that stays (a CLONE_VM
 * process pair) is refused. */
int tree_own_memory(pid_t parent, pid_t pid, cairn_error_t *err)
{
    long k = syscall(SYS_kcmp, parent, pid, KCMP_VM, 0, 0);
    if (k == 0)
        return cairn_error_set(err, -EBUSY, CAIRN_UNSUPPORTED,
                               "process %d shares its memory with its parent %d (a vfork "
                               "child that has not called exec yet, or CLONE_VM): not "
                               "restorable", (int)pid, (int)parent);
    if (k < 0 && errno != ENOSYS)   /* a kernel without kcmp cannot tell */
        return cairn_error_set(err, -errno, CAIRN_SYSTEM, "kcmp of %d and %d: %s",
                               (int)parent, (int)pid, strerror(errno));
    return 0;
}

/* ---- restore -------------------------------------------------------- */

int tree_index_of(const rst_image_t *im, uint32_t pid)
{
    for (size_t i = 0; i < im->n_procs; i++)
        if (im->procs[i].process->process->pid == pid)
            return (int)i;
    return -1;
}

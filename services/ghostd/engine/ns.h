/* ns.h - a job's pid and mount namespace, both directions (ns.c).
 *
 * Dump side: what the root is (a process of the dumper's pid namespace,
 * or pid 1 of one of its own: a job), every member in the root's pid and
 * mount namespaces, a job's mounts the node's, and the ids each process
 * and thread has as the image names them. Restore side: a job image's
 * own rules, its root cloned into a fresh pid and mount namespace with a
 * proc of its own on /proc, and the node's pid of every restored process.
 */
#ifndef GHOST_NS_H
#define GHOST_NS_H

#include "engine.h"

/* ---- dump -------------------------------------------------------------- */

/* What root is (*ret): a process of the dumper's pid namespace, or a job.
 * A refusal (exit 2, nothing touched) names why: pid 1 of no namespace of
 * its own, several levels below, a job without a mount namespace and a
 * proc of its own, or whose mounts are not the node's (other than /proc). */
int ns_dump_root(pid_t root, dump_ns_t *ret, cairn_error_t *err);

/* pid (a member of the tree rooted at root, or root itself) is in the
 * root's pid and mount namespaces and in the node's (the dumper's) user,
 * net, ipc, uts, cgroup and time ones, and -- unless a job -- has the
 * node's root directory (no chroot); else a refusal naming the namespace
 * or the root. */
int ns_dump_member(const dump_ns_t *ns, pid_t root, pid_t pid, cairn_error_t *err);

/* Every process's vpid, vpgid, vsid and every thread's vtid, from /proc of
 * the frozen tree: the node's ids, or the ones inside a job. */
int ns_dump_ids(const dump_ns_t *ns, dump_tree_t *tree, cairn_error_t *err);

/* Into *ret, pid's pid in its own pid namespace (the innermost of NSpid):
 * the pid a job image names it by; the node's pid outside any job. */
int ns_inner_pid(pid_t pid, pid_t *ret, cairn_error_t *err);

/* The image's pid of the tree's process pid (a node pid); 0 for 0. */
pid_t ns_dump_vpid(const dump_tree_t *tree, pid_t pid);

/* ---- restore ----------------------------------------------------------- */

/* The rules of a job image, once loaded: its root is pid 1; --new-pid
 * does not apply (every pid of it is free in a fresh namespace). Sets
 * t->job. */
int ns_plan(rst_tree_t *t, bool new_pid, cairn_error_t *err);

/* clone3 of the root as a fork: for a job into a new pid and mount
 * namespace (its pid 1 there), else with set_tid = want (0: any pid). */
pid_t ns_clone_root(const rst_tree_t *t, pid_t want);

/* In the job root's libc stage, before anything else: its mounts private
 * (nothing it does reaches the node), a fresh proc on /proc. Fails the
 * child on error; nothing for an image that is not a job. */
void ns_child_root(const rst_tree_t *t);

/* t->host_pids from the tracer's tasks (tids: every task held): each
 * process's pid on the node, found by its pid inside (NSpid). */
int ns_host_pids(rst_tree_t *t, const pid_t *tids, size_t n, cairn_error_t *err);

/* Process i's pid on the node (for ptrace, kill and /proc of the tracer). */
pid_t ns_host_pid(const rst_tree_t *t, size_t i);

#endif

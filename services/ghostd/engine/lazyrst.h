/* lazyrst.h - post-copy in the restore: the image's lazy pages, the
 * plan, each process's userfaultfd and the window while the pages come
 * (lazysrv.c; the server itself is lazy.h's).
 */
#ifndef GHOST_LAZYRST_H
#define GHOST_LAZYRST_H

#include "engine.h"
#include "lazy.h"
#include "seize.h"

/* A lazy_pages record of process pr (the one records are read for):
 * checked (a post-copy image, inside a dumped vma of private anonymous
 * memory, after the process's earlier lazy pages) and remembered. */
int lazy_load(rst_image_t *im, rst_proc_t *pr, const Cairn__Ghost__LazyPages *l, uint64_t at,
              cairn_error_t *err);

/* Pages the image's lazy ranges will take here: per process, what it
 * held at the freeze (Process.lazy_resident_pages) if that is less than
 * its ranges' extent (whole vmas, touched or not). */
uint64_t lazy_need_pages(const rst_image_t *im);

/* Before the plan of any process: the page server of a post-copy restore
 * (pages_fd: the page source, the caller's) with every lazy range of the
 * image, and the socket on which the restored processes send it their
 * userfaultfds (a helper of t). t->lazy: the server, not started. */
int lazy_plan_tree(rst_tree_t *t, int pages_fd, cairn_error_t *err);

/* Process index's plan: no userfaultfd unless it has lazy pages; if it
 * has, its vmas that hold them are marked for the blob to register. */
void lazy_plan_proc(rst_plan_t *pl, const rst_proc_t *pr, size_t index);

/* In process i's libc stage, once its fds are in place: its userfaultfd
 * made and sent to the server (fails the child on error). */
void lazy_child(const rst_tree_t *t, size_t i);

/* The window: the restored tree runs, traced by us (PTRACE_O_EXITKILL:
 * if we die it dies), every ptrace stop passed through, until the server
 * ends; then every task is detached -- or, if the server failed, killed
 * (root: the tree's root on the node, killed first). Takes over the
 * server and tr's tasks. The server's result: 0 or -errno and err. */
int lazy_window(lazy_srv_t *srv, seize_trace_t *tr, pid_t root, lazy_srv_stats_t *st,
                bool *ret_killed, cairn_error_t *err);

#endif

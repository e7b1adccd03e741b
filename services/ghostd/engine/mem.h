/* mem.h - the vmas of a process (mem.c); what they hold is pages.h's.
 *
 * Dump side: the vma check, the vma records and the dump policy that
 * says which pages of a vma pages.c writes. Restore side: the vma that
 * holds an address, and the vdso moves, region placement, vmas and mm
 * layout in the restorer's plan.
 */
#ifndef GHOST_MEM_H
#define GHOST_MEM_H

#include <sys/stat.h>

#include "engine.h"

/* ---- dump -------------------------------------------------------------- */

/* The vmas a check read for one process. */
typedef struct mem_seen_proc {
    pid_t pid;
    proc_vmas_t vm;
} mem_seen_proc_t;

/* What the check before the freeze read, for the check on the frozen tree
 * (mem_check_vmas); filled by the caller, freed by mem_seen_free. */
struct mem_seen {
    mem_seen_proc_t *v;
    size_t n;
};

void mem_seen_free(mem_seen_t *l);
const proc_vmas_t *mem_seen_find(const mem_seen_t *l, pid_t pid);

/* Every vma of pid of a kind the engine restores. With keep, the vmas
 * read go there on success. before: what an earlier check read (its
 * smaps flags are reused while the layout is the same), or NULL. Each
 * refusal goes into rs and the check goes on (without rs, the first is
 * returned). */
int mem_check_vmas(pid_t pid, const proc_vmas_t *before, proc_vmas_t *keep,
                   ghost_reasons_t *rs, cairn_error_t *err);

/* Memory the tree shares with a process outside it: shared anonymous
 * memory (inherited from a parent outside, say) or a memfd another program
 * maps too. A restore gives the tree its own copy, and the two would stop
 * seeing each other's writes without a word, so each such object is a
 * refusal (into rs, and on). tree: the tree's pids at tree[i * stride]
 * for i < n. Reads the maps of every other process of the node, and only
 * when the tree has such memory; a process that cannot be read (gone,
 * another user's under a user's dump) is not looked at. */
int mem_check_shared_outside(const pid_t *tree, size_t n, size_t stride,
                             ghost_reasons_t *rs, cairn_error_t *err);

/* The kind of v, a vma of pid, into *ret: 0, or a refusal naming it. */
int mem_vma_kind(pid_t pid, const proc_vma_t *v, Cairn__Ghost__VmaKind *ret,
                 cairn_error_t *err);

/* Which pages of v, of kind k, are dumped: 0 none, 1 present only, 2 all,
 * 3 the present anonymous ones (the written pages of a private file
 * mapping). The Vma record says whether any are; pages.c writes them. */
int mem_dump_policy(const dump_ctx_t *c, const proc_vma_t *v,
                    Cairn__Ghost__VmaKind k);

/* stat of the object v, a file or shared mapping of pid, maps: 0 or
 * -errno. */
int mem_map_file_stat(pid_t pid, const proc_vma_t *v, struct stat *st);

/* The Vma records of p (vm: its vmas, as the frozen check read them). */
int mem_write_vmas(dump_ctx_t *c, dump_proc_t *p, const proc_vmas_t *vm,
                   cairn_error_t *err);

/* Bytes of pid's vdso and vvar mappings (0 if unreadable). */
void mem_special_sizes(pid_t pid, uint64_t *vdso, uint64_t *vvar);

/* ---- restore ----------------------------------------------------------- */

/* The vma of a process holding [vaddr, vaddr + len), NULL if none. */
const Cairn__Ghost__Vma *mem_vma_of(const rst_proc_t *pr, uint64_t vaddr,
                                    uint64_t len);

/* [vaddr, vaddr + len) lies in one writable vma of the process. */
bool mem_writable(const rst_proc_t *pr, uint64_t vaddr, uint64_t len);

/* Maps pl's region (pl->region_len bytes) where it is free both here and
 * in pr's target layout. */
int mem_map_region(rst_plan_t *pl, const rst_proc_t *pr, cairn_error_t *err);

/* Restore check: every file pr's vmas map (there, the same file as at
 * the dump) and its executable can be opened here; each refusal into rs
 * (reasons.h) and on. Opens with the caller's file rights, as the plan. */
int mem_check_files(const rst_proc_t *pr, ghost_reasons_t *rs, cairn_error_t *err);

/* The vdso/vvar moves, the vmas and the mm layout of pr into pl's
 * argument block (its page runs: pages_plan_runs). */
int mem_plan_vdso(rst_plan_t *pl, const rst_proc_t *pr, cairn_error_t *err);
int mem_plan_vmas(rst_plan_t *pl, const rst_proc_t *pr, cairn_error_t *err);
int mem_plan_mm(rst_plan_t *pl, const rst_proc_t *pr, cairn_error_t *err);

/* ---- verify (verify-mem.c) -------------------------------------------- */

struct ghost_verify;

/* The verifier's memory area (verify.h's ghost_verify_fn): the mode,
 * seals and size of every memfd of pr (its FD_MEMFD fds, its memfd
 * mappings) against the restored process's; the vmas themselves are
 * verify.c's memory check. */
int mem_verify(const rst_proc_t *pr, pid_t pid, struct ghost_verify *v, cairn_error_t *err);

#endif

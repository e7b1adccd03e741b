/* mem.h - the memory of a process: its vmas and their pages (mem.c).
 *
 * Dump side: the vma check, the vma records and the page writer (a ring
 * of windows and a writer thread, or copies in place into the image
 * file). Restore side: page data staged as runs, the vmas, runs, vdso
 * moves, region placement and mm layout in the restorer's plan.
 */
#ifndef GHOST_MEM_H
#define GHOST_MEM_H

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
 * smaps flags are reused while the layout is the same), or NULL. */
int mem_check_vmas(pid_t pid, const proc_vmas_t *before, proc_vmas_t *keep,
                   cairn_error_t *err);

/* The page writer of c, for the image on out_fd: c->mem. */
int mem_dump_start(dump_ctx_t *c, int out_fd, cairn_error_t *err);
mem_dump_t *mem_dump_free(mem_dump_t *m); /* NULL-safe; NULL */

/* Threads that copied pages in place into the image file; 0: streamed. */
size_t mem_copy_threads(const mem_dump_t *m);

/* The Vma records of p (vm: its vmas, as the frozen check read them). */
int mem_write_vmas(dump_ctx_t *c, dump_proc_t *p, const proc_vmas_t *vm,
                   cairn_error_t *err);

/* The pages of p's vmas the dump policy keeps. */
int mem_write_pages(dump_ctx_t *c, dump_proc_t *p, const proc_vmas_t *vm,
                    cairn_error_t *err);

/* Bytes of pid's vdso and vvar mappings (0 if unreadable). */
void mem_special_sizes(pid_t pid, uint64_t *vdso, uint64_t *vvar);

/* ---- restore ----------------------------------------------------------- */

/* The vma of a process holding [vaddr, vaddr + len), NULL if none. */
const Cairn__Ghost__Vma *mem_vma_of(const rst_proc_t *pr, uint64_t vaddr,
                                    uint64_t len);

/* [vaddr, vaddr + len) lies in one writable vma of the process. */
bool mem_writable(const rst_proc_t *pr, uint64_t vaddr, uint64_t len);

/* Stages len raw bytes read from r; *ret_off says where they are in
 * im->staging_fd. */
int mem_stage(rst_image_t *im, ghost_reader_t *r, uint64_t len,
              uint64_t *ret_off, cairn_error_t *err);

/* The raw bytes of a pages record of process pr (the one records are read
 * for, NULL before any), staged and remembered as a run. */
int mem_load_pages(rst_image_t *im, rst_proc_t *pr, ghost_reader_t *r,
                   const Cairn__Ghost__Pages *p, cairn_error_t *err);

/* Maps pl's region (pl->region_len bytes) where it is free both here and
 * in pr's target layout. */
int mem_map_region(rst_plan_t *pl, const rst_proc_t *pr, cairn_error_t *err);

/* The vdso/vvar moves, the vmas, the page runs and the mm layout of pr
 * into pl's argument block. */
int mem_plan_vdso(rst_plan_t *pl, const rst_proc_t *pr, cairn_error_t *err);
int mem_plan_vmas(rst_plan_t *pl, const rst_proc_t *pr, cairn_error_t *err);
int mem_plan_runs(rst_plan_t *pl, const rst_proc_t *pr, cairn_error_t *err);
int mem_plan_mm(rst_plan_t *pl, const rst_proc_t *pr, cairn_error_t *err);

#endif

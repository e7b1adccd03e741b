/* pages.h - what the vmas of a process hold (pages.c); the vmas are
 * mem.h's.
 *
 * Dump side: the page writer (a ring of windows and a writer thread, or
 * copies in place into the image file) and the pages of each process.
 * Restore side: page data staged as runs, and the runs in the restorer's
 * plan.
 */
#ifndef GHOST_PAGES_H
#define GHOST_PAGES_H

#include "engine.h"

/* ---- dump -------------------------------------------------------------- */

/* The page writer of c, for the image on out_fd: c->pages. */
int pages_dump_start(dump_ctx_t *c, int out_fd, cairn_error_t *err);
pages_dump_t *pages_dump_free(pages_dump_t *m); /* NULL-safe; NULL */

/* Threads that copied pages in place into the image file; 0: streamed. */
size_t pages_copy_threads(const pages_dump_t *m);

/* The pages of p's vmas the dump policy keeps (vm: its vmas, as the
 * frozen check read them). */
int pages_write(dump_ctx_t *c, dump_proc_t *p, const proc_vmas_t *vm,
                cairn_error_t *err);

struct track;
/* One pre-copy round into w, while the tree runs: a round record, then
 * for every process t tracks, the pages it wrote since the last round
 * (every present one in round 0) as pages records naming it. *ret_bytes:
 * the page bytes written. */
int pages_round(ghost_writer_t *w, struct track *t, uint32_t round, uint32_t page_size,
                uint64_t *ret_bytes, cairn_error_t *err);

/* ---- restore ----------------------------------------------------------- */

/* Stages len raw bytes read from r; *ret_off says where they are in
 * im->staging_fd. */
int pages_stage(rst_image_t *im, ghost_reader_t *r, uint64_t len,
                uint64_t *ret_off, cairn_error_t *err);

/* The raw bytes of a pages record of process pr (the one records are read
 * for, NULL before any), staged and remembered as a run. */
int pages_load(rst_image_t *im, rst_proc_t *pr, ghost_reader_t *r,
               const Cairn__Ghost__Pages *p, cairn_error_t *err);

/* Pre-copy rounds (image version 3), read before the header. A round
 * record: the one before it is complete (its copies override earlier
 * ones of the same pages). */
int pages_round_begin(rst_image_t *im, const Cairn__Ghost__Round *rd, uint64_t at,
                      cairn_error_t *err);
/* The raw bytes of a round's pages record, staged and remembered as the
 * latest copy of those pages of process p->pid. */
int pages_load_round(rst_image_t *im, ghost_reader_t *r, const Cairn__Ghost__Pages *p,
                     cairn_error_t *err);
/* The header came: the last round is complete. */
int pages_rounds_end(rst_image_t *im, uint64_t at, cairn_error_t *err);
/* A kept_pages record of process pr: runs of the latest copies the rounds
 * hold of those pages (every page must have one). */
int pages_load_kept(rst_image_t *im, rst_proc_t *pr, const Cairn__Ghost__KeptPages *k,
                    uint64_t at, cairn_error_t *err);
/* NULL-safe. */
void pages_rounds_free(struct pages_rounds *rs);

/* A delta's parents (chain.c), oldest first, into im->rounds (which the
 * caller made): a pages record of process pid (as Process.pid says), its
 * raw bytes staged; a kept_pages record of it, resolved against the image
 * before (every page must be there); the image's end: what it held of
 * every process becomes what the next image's kept_pages name. */
int pages_chain_begin(rst_image_t *im, cairn_error_t *err);   /* makes im->rounds */
int pages_chain_pages(rst_image_t *im, uint32_t pid, ghost_reader_t *r,
                      const Cairn__Ghost__Pages *p, cairn_error_t *err);
int pages_chain_kept(rst_image_t *im, uint32_t pid, const Cairn__Ghost__KeptPages *k,
                     uint64_t at, cairn_error_t *err);
int pages_chain_end(rst_image_t *im, uint64_t at, cairn_error_t *err);

/* The page runs of pr into pl's argument block, with what the restorer
 * copies them into place with. */
int pages_plan_runs(rst_plan_t *pl, const rst_proc_t *pr, cairn_error_t *err);

#endif

/* restore-inplace.h - a streamed image's pages read straight to where they
 * will live (restore-inplace.c).
 *
 * Restore side only. One process of the image (the one the stream names,
 * ImageHeader/Round.placed_pid: the most resident anonymous memory; in
 * older images the first whose pages come) has the pages of
 * its private anonymous memory read into ghost-restore's own memory at
 * their addresses, as they arrive -- pre-copy rounds while the source
 * still runs, then the frozen part's. The restored process is born by
 * fork from ghost-restore (or from its restored parent, born so), so it
 * inherits them where they are: nothing is copied after the stream ends.
 * A page run placed so is a gr_run whose off is RST_PLACED | vaddr.
 *
 * Ownership: im->inplace is the image's (rst_image_free frees it, which
 * unmaps everything placed: our copy; the restored process keeps its own).
 */
#ifndef GHOST_RESTORE_INPLACE_H
#define GHOST_RESTORE_INPLACE_H

#include "engine.h"
#include "image.h"

/* Placement for im (a stream being restored, not checked): im->inplace.
 * -ENOMEM. */
int inplace_start(rst_image_t *im, cairn_error_t *err);

/* NULL-safe: unmaps every placed range; returns NULL. */
struct inplace *inplace_free(struct inplace *p);
/* The same, leaving the placed ranges mapped (a caller about to exit);
 * returns NULL. */
struct inplace *inplace_leave(struct inplace *p);

/* Whether a vma of this kind can hold placed pages: private anonymous
 * memory (the heap too) that ghost-restore's plain anonymous mapping
 * matches in every flag -- not growing down, not without reserve. */
bool inplace_vma_ok(const Cairn__Ghost__Vma *v);

/* Reads len raw bytes of process pid's pages at vaddr from r into place
 * (a page placed before is overwritten: the later copy wins) and sets
 * *ret_off to RST_PLACED | vaddr; v: their vma when known (the frozen
 * part: mapped whole at once), else NULL (a pre-copy round). -EAGAIN,
 * nothing read: not placed (no placement, another process's pages, or
 * the range is taken here) -- stage them. Other errors: the stream
 * failed (err set). */
int inplace_read(rst_image_t *im, ghost_reader_t *r, uint32_t pid, uint64_t vaddr,
                 uint64_t len, const Cairn__Ghost__Vma *v, uint64_t *ret_off,
                 cairn_error_t *err);

/* Pre-copy: a round's pages were just placed at [vaddr, vaddr + len);
 * every 2 MiB block that this record and the ones right before it
 * (contiguous) cover whole becomes a huge page, while the source runs:
 * the restored process's birth then copies one page-table entry per
 * block, not 512. MADV_COLLAPSE copies each block once (about 0.7 ms per
 * 2 MiB here), in the rounds, never after the freeze. A hint: nothing
 * fails. */
void inplace_collapse(rst_image_t *im, uint64_t vaddr, uint64_t len);

/* Once the image is loaded, before anything is planned: the placed
 * process's vmas that hold placed pages are completed here (the parts
 * no page came for mapped too, so each is one mapping of exactly its
 * range), placed pages the image no longer names are dropped, and those
 * of a vma that cannot be placed (a stack, a file's written pages, a
 * range taken here) are staged in the memfd instead (their runs move).
 * Then inplace_vma_placed says which vmas the restorer finds in place. */
int inplace_plan(rst_image_t *im, cairn_error_t *err);

/* [start, end) of process index i is a placed vma (after inplace_plan). */
bool inplace_vma_placed(const rst_image_t *im, size_t i, uint64_t start, uint64_t end);

/* Bytes placed (read into place) so far, for the figures. */
uint64_t inplace_bytes(const rst_image_t *im);

/* The process the stream names for placing (ImageHeader/Round.placed_pid,
 * as the image names pids): only its pages are placed from now on. The
 * first name holds, and none is taken once pages were placed; 0 keeps
 * the first-come rule of older images. */
void inplace_name(rst_image_t *im, uint32_t pid);

#endif

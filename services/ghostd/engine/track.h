/* track.h - which pages a running process tree writes: the write tracking
 * of pre-copy (ghost-dump --precopy; track.c, docs/ghost.md "Pre-copy").
 *
 * Each process of the tree gets a userfaultfd in write-protect async mode
 * (made inside it by an injected syscall, taken over with pidfd_getfd and
 * closed there), its private anonymous and private file mappings
 * registered with it; PAGEMAP_SCAN then reports the pages written since
 * the last scan and write-protects them again in the same walk. Nothing
 * of this is visible to the process but a minor fault on its first write
 * to each page after a scan. track_free undoes it all: every registration
 * is dropped (which clears the write-protect bits) and the fds closed, so
 * the kernel does the same if ghost-dump dies.
 *
 * Ownership: a track_t is the caller's, freed with track_free; the fds in
 * it are its own.
 */
#ifndef GHOST_TRACK_H
#define GHOST_TRACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/types.h>

#include "cairn/error.h"
#include "proc/proc.h"

/* PAGEMAP_SCAN (Linux 6.7; <linux/fs.h> of newer headers than Debian
 * 12's), here and in pages.c: the kernel walks the page tables and
 * returns only the ranges whose categories match. */
struct track_page_region {
    uint64_t start, end, categories;
};
struct track_pm_scan_arg {
    uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
    uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define TRACK_PAGEMAP_SCAN _IOWR('f', 16, struct track_pm_scan_arg)
#define TRACK_PM_SCAN_WP_MATCHING (1ull << 0)
#define TRACK_PAGE_IS_WPALLOWED (1ull << 0)  /* the vma is registered, async wp */
#define TRACK_PAGE_IS_WRITTEN (1ull << 1)    /* no uffd-wp bit */
#define TRACK_PAGE_IS_FILE (1ull << 2)
#define TRACK_PAGE_IS_PRESENT (1ull << 3)
#define TRACK_PAGE_IS_SWAPPED (1ull << 4)    /* swap entries and pte markers */

typedef struct track track_t;
typedef struct track_proc track_proc_t;

/* A run of pages [start, end) a scan found; kept: the last copy a round
 * took of them is still their content (track_scan_frozen). */
typedef struct track_region {
    uint64_t start, end;
    bool kept;
} track_region_t;

/* What to do with each batch of regions a scan found (at most a few
 * hundred at a time, ascending): 0 to go on, -errno to stop the scan. */
typedef int (*track_fn)(void *arg, track_proc_t *p, const track_region_t *reg, size_t n,
                        cairn_error_t *err);

/* Starts tracking every process of the tree rooted at root: freezes it
 * (as the dump does) for the time of one userfaultfd per process, then
 * lets it go; its mappings are registered by track_scan_written.
 * *ret_freeze_us: how long the tree was stopped. -EOPNOTSUPP with
 * UNSUPPORTED and the reason when the kernel lacks write-protect async
 * mode or PAGEMAP_SCAN, or forbids userfaultfd; nothing is left changed
 * on any failure. */
int track_start(pid_t root, track_t **ret, uint64_t *ret_freeze_us, cairn_error_t *err);

/* Unregisters every mapping (their pages are no longer write-protected)
 * and closes every fd. NULL-safe; returns NULL. */
track_t *track_free(track_t *t);

/* The tracked processes (those of the tree at track_start). */
size_t track_count(const track_t *t);
track_proc_t *track_proc(track_t *t, size_t i);
/* The tracked process pid, or NULL. */
track_proc_t *track_find(track_t *t, pid_t pid);
pid_t track_pid(const track_proc_t *p);
/* Its pid as the image names it: inside its pid namespace for a job's
 * member (round pages must name what Process.pid will). */
pid_t track_image_pid(const track_proc_t *p);
/* Its /proc/PID/mem (the caller reads pages through it; not its own). */
int track_mem_fd(const track_proc_t *p);

/* One pre-copy scan of p, while it runs: registers its private anonymous
 * and private file mappings made since the last scan, then calls fn with
 * the pages written since then (every present page the first time) --
 * write-protected again by the same walk, so a write after it is seen by
 * the next scan -- and vm, the vmas it read, for the caller to know each
 * region's protection. -ESRCH (no error set) once p has exited. */
int track_scan_written(track_t *t, track_proc_t *p, proc_vmas_t *vm, track_fn fn, void *arg,
                       cairn_error_t *err);

/* At the freeze, for vma v of p (anon_only: a private file mapping, whose
 * page-cache pages are the file's): its present or swapped pages, each
 * region kept when a round copied it and nothing wrote it since (still
 * write-protected, in a registered mapping, resident: a swapped page is
 * copied again, as is one track_lost names). */
int track_scan_frozen(track_proc_t *p, const proc_vma_t *v, bool anon_only, track_fn fn,
                      void *arg, cairn_error_t *err);

/* At an incremental checkpoint's freeze (ghost-dump --serve-fd), for vma
 * v of p: registers v if it is new, then calls fn with its present or
 * swapped pages (anon_only as above) and write-protects them all in the
 * same walk, so that the next checkpoint sees only what is written after
 * this one. keep: a region is kept when nothing wrote it since the last
 * checkpoint (still protected, registered, resident) -- its content is
 * that checkpoint's; !keep (a full image): nothing is kept. */
int track_scan_checkpoint(track_proc_t *p, const proc_vma_t *v, bool anon_only, bool keep,
                          track_fn fn, void *arg, cairn_error_t *err);

/* Whether t tracks exactly the n processes pids[0], pids[stride], ...
 * (a tree that gained or lost one needs its tracking started again). */
bool track_same_tree(const track_t *t, const pid_t *pids, size_t n, size_t stride);

/* A region a round found written but could not copy: never kept. */
int track_lost(track_proc_t *p, uint64_t start, uint64_t end);

#endif

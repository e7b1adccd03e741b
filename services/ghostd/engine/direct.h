/* direct.h - page runs of a dump copied into their place in the image
 * file by several threads.
 *
 * Streaming page runs through one writer is bound by one core doing two
 * copies (process_vm_readv into a buffer, write(2) into the page cache).
 * When the image is a seekable regular file on a filesystem of huge pages,
 * the dump instead leaves room for each run in the file
 * (ghost_write_pages_room) and queues its copy here; the copies are shared
 * between the calling thread and a few helpers (one per CPU the dump may
 * run on, at most GHOST_DIRECT_MAX_THREADS in all), each populating a
 * folio of a shared mapping of the file and reading the process's pages
 * straight onto it (direct.c).
 *
 * Use: ghost_direct_new on the image fd (-EOPNOTSUPP: stream instead);
 * ghost_direct_add for each run placed by ghost_write_pages_room;
 * ghost_direct_flush before the process's mem_fd is closed and before the
 * image is used. Queued copies are also flushed once they span a batch
 * of the file. A page that cannot be read fails
 * the flush (its room would otherwise read as zeros), as does a failed
 * write. Only the calling thread uses the API; the helpers only read the
 * process's memory and write the image.
 *
 * Ownership: the fd stays the caller's; ghost_direct_free joins the
 * helpers.
 */
#ifndef GHOST_DIRECT_H
#define GHOST_DIRECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cairn/error.h"

/* File bytes mapped and copied at once by default. Measured: 1 GiB dumps
 * in 119-127 ms with 1 GiB batches, 122-131 with 256 MiB ones, 138-147
 * with 64 MiB ones (each batch maps, waits for its slowest piece, unmaps). */
#define GHOST_DIRECT_BATCH (1024u << 20)
#define GHOST_DIRECT_MAX_THREADS 4

typedef struct ghost_direct ghost_direct_t;

/* A copier for fd flushing every batch bytes of the file (0: the default
 * GHOST_DIRECT_BATCH): 0 and *ret, or -EOPNOTSUPP with the reason (not a
 * regular file, not open read-write, O_APPEND, cannot seek, a filesystem
 * of small pages) - the caller then streams the pages - or -ENOMEM. */
int ghost_direct_new(int fd, size_t batch, ghost_direct_t **ret, cairn_error_t *err);

/* Queues the copy of len bytes (a page multiple) at addr in process pid
 * into file offset off: process_vm_readv when readable, through mem_fd
 * (/proc/PID/mem, the caller's) for what that cannot read. */
int ghost_direct_add(ghost_direct_t *d, pid_t pid, int mem_fd, bool readable,
                     uint64_t addr, uint64_t off, size_t len, cairn_error_t *err);

/* Performs every queued copy. On failure, says which page of which
 * process could not be read, or why the image could not be written. */
int ghost_direct_flush(ghost_direct_t *d, cairn_error_t *err);

/* Threads sharing the copies, the caller's included (>= 1). */
size_t ghost_direct_threads(const ghost_direct_t *d);

/* NULL-safe; returns NULL. Queued copies are dropped. */
ghost_direct_t *ghost_direct_free(ghost_direct_t *d);

#endif

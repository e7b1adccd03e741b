/* image.h - the checkpoint image stream (proto/ghost.proto).
 *
 * magic "CAIRNGH1", then records: u32 little-endian length + Record; a
 * Record{pages} or Record{object_pages} is followed by its pad (zero
 * bytes) and n_pages * page_size raw bytes. A pre-copy image (version 3)
 * opens with its rounds: Record{round} and pages records naming their
 * process (Pages.pid), before the header; the page size is the round's
 * until the header says it again. The writer pads runs of
 * GHOST_ALIGN_MIN_PAGES or more so their raw bytes start at a multiple of
 * the page size in the stream: a file image then holds them page-aligned,
 * which copies into or out of it need (a copy whose source and destination
 * differ by a few bytes modulo 4 KiB runs at a third of the speed on
 * x86 -- bench/README.md) and which keeps a run of a huge-page filesystem
 * from straddling folios. The reader skips the pad. The writer
 * and reader work on a plain fd (file, pipe or socket: no seeking), buffer
 * small records and pass page data straight through (large writes / reads
 * without an intermediate copy where possible).
 *
 * Ownership: a record passed to ghost_write_record stays the caller's; one
 * returned by ghost_read_record is the caller's to free with
 * cairn__ghost__record__free_unpacked(r, NULL).
 */
#ifndef GHOST_IMAGE_H
#define GHOST_IMAGE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "cairn/error.h"
#include "ghost.pb-c.h"

#define GHOST_IMAGE_MAGIC "CAIRNGH1"
#define GHOST_IMAGE_VERSION 2u       /* written */
#define GHOST_IMAGE_VERSION_PRECOPY 3u  /* written after pre-copy rounds */
#define GHOST_IMAGE_VERSION_DELTA 4u /* a delta: kept_pages name its parent's */
#define GHOST_IMAGE_VERSION_MIN 1u   /* oldest read: version 1 has no pads */
#define GHOST_IMAGE_VERSION_MAX 4u   /* newest read */
#define GHOST_ALIGN_MIN_PAGES 16u    /* shorter runs are not padded (<= 1/16 waste) */
#define GHOST_MAX_RECORD (1u << 20)

typedef struct ghost_writer ghost_writer_t;
typedef struct ghost_reader ghost_reader_t;

/* The fd stays the caller's. NULL on ENOMEM. */
ghost_writer_t *ghost_writer_new(int fd);
/* Flushes nothing: call ghost_writer_flush first. NULL-safe; returns NULL. */
ghost_writer_t *ghost_writer_free(ghost_writer_t *w);
int ghost_write_record(ghost_writer_t *w, const Cairn__Ghost__Record *rec,
                       cairn_error_t *err);
/* A pages record for [vaddr, vaddr + n_pages*page_size) followed by the
 * bytes in iov (their total must be n_pages * page_size). */
int ghost_write_pages(ghost_writer_t *w, uint64_t vaddr, uint64_t n_pages,
                      uint32_t page_size, const struct iovec *iov, int iovcnt,
                      cairn_error_t *err);
/* A pages record of a pre-copy round (before the header) for process pid
 * (nonzero), followed by the bytes in iov, as ghost_write_pages. */
int ghost_write_round_pages(ghost_writer_t *w, uint32_t pid, uint64_t vaddr,
                            uint64_t n_pages, uint32_t page_size,
                            const struct iovec *iov, int iovcnt, cairn_error_t *err);
/* The same record as ghost_write_pages, for a writer on a regular file
 * the caller will fill itself (pwrite or a shared mapping of the file):
 * buffered records and the pages record are written, the file position
 * then moves past n_pages*page_size bytes of room, and *ret_off is where
 * that room starts. The room reads as zeros (a hole, maybe past the end
 * of the file) until filled; the caller must fill all of it before the
 * image is used. The fd must not be O_APPEND. -ESPIPE if it cannot seek. */
int ghost_write_pages_room(ghost_writer_t *w, uint64_t vaddr, uint64_t n_pages,
                           uint32_t page_size, uint64_t *ret_off, cairn_error_t *err);
/* An object_pages record for [offset, offset + n_pages*page_size) of the
 * shared object shmid (a memfd), followed by the bytes in iov (their total
 * must be n_pages * page_size). */
int ghost_write_object_pages(ghost_writer_t *w, uint64_t shmid, uint64_t offset,
                             uint64_t n_pages, uint32_t page_size,
                             const struct iovec *iov, int iovcnt, cairn_error_t *err);
int ghost_writer_flush(ghost_writer_t *w, cairn_error_t *err);
uint64_t ghost_writer_bytes(const ghost_writer_t *w);   /* written so far */

/* The fd stays the caller's. NULL on ENOMEM. */
ghost_reader_t *ghost_reader_new(int fd);
ghost_reader_t *ghost_reader_free(ghost_reader_t *r);
/* Next record into *ret (caller frees). After a pages or object_pages
 * record, its raw bytes must be consumed with ghost_read_raw before the next call.
 * Errors: -EBADMSG (bad magic, length over GHOST_MAX_RECORD, undecodable
 * record, stream ends early) with code INVALID_ARGUMENT and the byte offset
 * in the message. */
int ghost_read_record(ghost_reader_t *r, Cairn__Ghost__Record **ret,
                      cairn_error_t *err);
int ghost_read_raw(ghost_reader_t *r, void *dst, size_t len, cairn_error_t *err);
uint64_t ghost_reader_bytes(const ghost_reader_t *r);   /* consumed so far */
/* Skips len pending raw bytes without copying them: lseek on a regular
 * file (checked against its size: a truncated image is -EBADMSG), reads
 * into a scratch buffer otherwise. For a reader of a file read from offset
 * 0, ghost_reader_bytes() before the call is the raw bytes' file offset. */
int ghost_skip_raw(ghost_reader_t *r, size_t len, cairn_error_t *err);

#endif

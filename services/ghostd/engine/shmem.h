/* shmem.h - shared memory objects: memfds and anonymous shared mappings
 * (shmem.c). The fd kind FD_MEMFD, the dump's memfds whose contents go
 * out once as object pages, and the restore's memfd per object.
 */
#ifndef GHOST_SHMEM_H
#define GHOST_SHMEM_H

#include <fcntl.h>

#include "files.h"

/* Seals newer than this libc's headers (kernel 5.1, 6.3). */
#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif
#ifndef F_SEAL_EXEC
#define F_SEAL_EXEC 0x0020
#endif

extern const files_kind_t shmem_kind;

/* ---- dump -------------------------------------------------------------- */

shmem_dump_t *shmem_dump_new(void);
shmem_dump_t *shmem_dump_free(shmem_dump_t *sd); /* NULL-safe; NULL */

/* Notes the memfds the fds of the frozen tree refer to (tfds): their
 * contents are object pages, so their mappings' pages are not dumped. */
int shmem_note_fd_memfds(shmem_dump_t *sd, const files_tree_fds_t *tfds,
                         cairn_error_t *err);

/* The mode, seals and size of the memfd fd (what: its name in messages)
 * into *ret; a refusal for a hugetlb memfd. */
int shmem_memfd_read(int fd, const char *what, Cairn__Ghost__Memfd *ret,
                     cairn_error_t *err);

/* Whether some fd of the tree refers to the memfd of inode ino. */
bool shmem_fd_memfd(const shmem_dump_t *sd, uint64_t ino);

/* ---- restore ----------------------------------------------------------- */

/* The FD_MEMFD fd of a process on object shmid, NULL if none. */
const Cairn__Ghost__Fd *shmem_fd_of(const rst_proc_t *pr, uint64_t shmid);

/* Stages the raw bytes of an object_pages record: pages of a memfd an
 * fd of process pr (the one records are read for, NULL before any)
 * refers to, inside its size. */
int shmem_load_object_pages(rst_image_t *im, const rst_proc_t *pr,
                            ghost_reader_t *r,
                            const Cairn__Ghost__ObjectPages *p,
                            cairn_error_t *err);

/* The helper memfd a shared vma v maps (made on first use, sized to its
 * furthest mapping in the tree), or -errno. */
int shmem_open_vma(rst_plan_t *pl, const Cairn__Ghost__Vma *v,
                   cairn_error_t *err);

/* Whether the pages of vma v come from its object's pages instead. */
bool shmem_vma_from_object(const rst_tree_t *t, const Cairn__Ghost__Vma *v);

void shmem_rst_free(rst_tree_t *t);

#endif

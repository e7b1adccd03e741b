/* util/uffd-compat.h - userfaultfd names newer than Debian 12's kernel
 * headers (6.1), for the kernels Cairn runs on (6.6 and later: poison,
 * UFFDIO_CONTINUE with write-protect). Include after <linux/userfaultfd.h>.
 * One place for them: the hooks' regions, libcairn's DSM segments and
 * dsmd all use them.
 */
#ifndef CAIRN_UTIL_UFFD_COMPAT_H
#define CAIRN_UTIL_UFFD_COMPAT_H

#include <linux/userfaultfd.h>

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef UFFDIO_CONTINUE_MODE_WP
#define UFFDIO_CONTINUE_MODE_WP ((__u64)1 << 1)
#endif
#ifndef UFFDIO_POISON
#define UFFD_FEATURE_POISON (1 << 14)
struct uffdio_poison {
    struct uffdio_range range;
    __u64 mode;
    __s64 updated;
};
#define UFFDIO_POISON _IOWR(UFFDIO, 0x08, struct uffdio_poison)
#endif

#endif

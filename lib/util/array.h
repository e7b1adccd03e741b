/* util/array.h - growable arrays: one grow-by-doubling for the tree.
 *
 * An array is a typed pointer plus a capacity the caller keeps next to its
 * count:
 *
 *     struct item *v = NULL; size_t n = 0, cap = 0;
 *     if (CAIRN_GROW(v, cap, n + 1, 16) < 0) return -ENOMEM;
 *     v[n++] = item;
 *
 * CAIRN_GROW makes room for at least `need` elements, doubling from `min`
 * (the first allocation), and leaves v and cap untouched when it fails.
 * New elements are not initialised, except by CAIRN_GROW_ZERO.
 */
#ifndef CAIRN_UTIL_ARRAY_H
#define CAIRN_UTIL_ARRAY_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>

/* Returns the array to use for `need` elements of `size` bytes: `items`
 * itself when *cap already suffices, else a reallocated copy (with *cap
 * updated and, when zero is true, the new elements zeroed); NULL with
 * *cap untouched on overflow or ENOMEM (items is still valid then). */
void *cairn_array_grow(void *items, size_t *cap, size_t need, size_t size,
                       size_t min, bool zero);

#define CAIRN_GROW_(v, cap, need, min, zero)                                  \
    ({                                                                        \
        void *_g_ = cairn_array_grow((v), &(cap), (need), sizeof(*(v)),       \
                                     (min), (zero));                          \
        _g_ ? ((v) = _g_, 0) : -ENOMEM;                                       \
    })
/* 0, or -ENOMEM with v and cap unchanged. */
#define CAIRN_GROW(v, cap, need, min) CAIRN_GROW_(v, cap, need, min, false)
#define CAIRN_GROW_ZERO(v, cap, need, min) CAIRN_GROW_(v, cap, need, min, true)

#endif

/* util/array.c - grow-by-doubling with overflow checks (array.h). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "array.h"

void *cairn_array_grow(void *items, size_t *cap, size_t need, size_t size,
                       size_t min, bool zero)
{
    size_t ncap = *cap ? *cap : (min ? min : 1);
    void *nv;

    if (need <= *cap && items)
        return items;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2)
            return NULL;
        ncap *= 2;
    }
    if (size && ncap > SIZE_MAX / size)
        return NULL;
    nv = realloc(items, ncap * size);
    if (!nv)
        return NULL;
    if (zero && ncap > *cap)
        memset((char *)nv + *cap * size, 0, (ncap - *cap) * size);
    *cap = ncap;
    return nv;
}

/* description-private.h - what the description's loader (description.c)
 * and its writer (description-build.c) share inside libcairn. Not
 * installed; the functions are hidden from libcairn.so's exports.
 */
#ifndef CAIRN_DESCRIPTION_PRIVATE_H
#define CAIRN_DESCRIPTION_PRIVATE_H

#include <stdbool.h>

#define DESC_MAX_NODES 255   /* node ids are 1..255 */

/* Parses an address literal into family + 16 bytes; false if not one. */
__attribute__((visibility("hidden")))
bool desc_parse_ip(const char *s, int *ret_family, unsigned char out[16]);

static inline bool desc_is_absolute(const char *p)
{
    return p && p[0] == '/';
}

#endif

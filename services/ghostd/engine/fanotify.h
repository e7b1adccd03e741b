/* fanotify.h - fanotify groups, both directions (fanotify.c): the fd kind
 * FD_FANOTIFY.
 */
#ifndef GHOST_FANOTIFY_H
#define GHOST_FANOTIFY_H

#include "files.h"

extern const files_kind_t fanotify_kind;

#endif

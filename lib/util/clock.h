/* util/clock.h - the one monotonic clock of the tree.
 *
 * Every deadline, timeout and duration in Cairn is measured on
 * CLOCK_MONOTONIC through these helpers, so a wall-clock step (NTP, a VM
 * resumed) never fires or starves a timer. Wall-clock time is only used
 * where a timestamp is shown to a human or written into an image.
 */
#ifndef CAIRN_UTIL_CLOCK_H
#define CAIRN_UTIL_CLOCK_H

#include <stdint.h>

/* Monotonic time since an arbitrary origin (boot). Never fails. */
uint64_t cairn_now_ns(void);
uint64_t cairn_now_us(void);
uint64_t cairn_now_ms(void);

/* Wall-clock time (CLOCK_REALTIME) in ms since the epoch: for timestamps
 * shown to people or written into records, never for deadlines. */
uint64_t cairn_realtime_ms(void);

/* Milliseconds left until deadline_ms (a cairn_now_ms() value), 0 once it
 * has passed. */
uint64_t cairn_ms_left(uint64_t deadline_ms);

#endif

/* util/clock.c - CLOCK_MONOTONIC in the units the tree uses, and the
 * wall clock for timestamps (clock.h). */
#include <time.h>

#include "clock.h"

uint64_t cairn_now_ns(void)
{
    struct timespec ts;

    /* CLOCK_MONOTONIC cannot fail with a valid pointer. */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t cairn_now_us(void)
{
    return cairn_now_ns() / 1000ull;
}

uint64_t cairn_now_ms(void)
{
    return cairn_now_ns() / 1000000ull;
}

uint64_t cairn_realtime_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t cairn_ms_left(uint64_t deadline_ms)
{
    uint64_t now = cairn_now_ms();

    return deadline_ms > now ? deadline_ms - now : 0;
}

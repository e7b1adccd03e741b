/* test-reasons.c - the list of every reason a check found (engine/reasons.c)
 * and the room a restore may get here (engine/room.c).
 *
 * The list: refusals are kept in order and the rest returned as they are
 * (a failure, a process gone: -ESRCH); the first reason is the check's
 * error; the error that ended a check is brought to the front, moved when
 * the list holds it already; past 32 reasons only the count grows;
 * reasons of a process that left the tree are cut. The room: what
 * ghost_room_read finds agrees with /proc/meminfo, and ghost_room_check
 * refuses more than that with both numbers in the message.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "reasons.h"
#include "room.h"

/* An error with code and message, returning r (as a check's would). */
static int s_err(cairn_error_t *err, int r, int code, const char *msg)
{
    return cairn_error_set(err, r, code, "%s", msg);
}

Test(reasons, refusals_kept_in_order_others_returned)
{
    ghost_reasons_t rs = { 0 };
    cairn_error_t err;

    cr_assert_eq(ghost_reason_add(&rs, s_err(&err, -EBUSY, CAIRN_FAILED_PRECONDITION,
                                             "traced"), &err, 7, "thread %d", 7), 0);
    cr_assert_eq(ghost_reason_add(&rs, s_err(&err, -EOPNOTSUPP, CAIRN_UNSUPPORTED,
                                             "a socket"), &err, 7, "fd %d", 4), 0);
    /* A failure and a process gone are no refusals: returned, not kept. */
    cr_assert_eq(ghost_reason_add(&rs, s_err(&err, -EIO, CAIRN_SYSTEM, "read"), &err, 7,
                                  "fd 5"), -EIO);
    cr_assert_eq(ghost_reason_add(&rs, s_err(&err, -ESRCH, CAIRN_FAILED_PRECONDITION,
                                             "zombie"), &err, 8, "process"), -ESRCH);
    /* Without a list the first refusal ends the check. */
    cr_assert_eq(ghost_reason_add(NULL, s_err(&err, -EOPNOTSUPP, CAIRN_UNSUPPORTED, "x"),
                                  &err, 7, "fd 6"), -EOPNOTSUPP);
    cr_assert_eq(ghost_reason_add(&rs, 0, &err, 7, "fd 6"), 0);
    cr_assert_eq(rs.n, 2);
    cr_assert_eq(rs.total, 2);
    cr_assert_str_eq(rs.v[0].what, "thread 7");
    cr_assert_str_eq(rs.v[1].what, "fd 4");
    cr_assert_eq(rs.v[1].code, CAIRN_UNSUPPORTED);
    cr_assert_eq(rs.v[1].pid, 7);
    cr_assert_eq(ghost_reasons_first(&rs, &err), -EBUSY);
    cr_assert_eq(err.code, CAIRN_FAILED_PRECONDITION);
    cr_assert_str_eq(err.message, "traced");
    ghost_reasons_free(&rs);
    cr_assert_eq(ghost_reasons_first(&rs, &err), 0);
}

Test(reasons, the_ending_error_comes_first)
{
    ghost_reasons_t rs = { 0 };
    cairn_error_t err;

    ghost_reason_add(&rs, s_err(&err, -EOPNOTSUPP, CAIRN_UNSUPPORTED, "a"), &err, 1, "fd 3");
    ghost_reason_add(&rs, s_err(&err, -ESTALE, CAIRN_FAILED_PRECONDITION, "b"), &err, 1, "fd 4");
    /* held already: moved to the front, not added again */
    s_err(&err, -ESTALE, CAIRN_FAILED_PRECONDITION, "b");
    ghost_reasons_put_first(&rs, -ESTALE, &err, 0, "image");
    cr_assert_eq(rs.n, 2);
    cr_assert_str_eq(rs.v[0].message, "b");
    cr_assert_str_eq(rs.v[0].what, "fd 4");
    cr_assert_str_eq(rs.v[1].message, "a");
    /* new: added in front (a zombie that stayed one counts, -ESRCH too) */
    s_err(&err, -ESRCH, CAIRN_FAILED_PRECONDITION, "zombie");
    ghost_reasons_put_first(&rs, -ESRCH, &err, 9, "process");
    cr_assert_eq(rs.n, 3);
    cr_assert_eq(rs.total, 3);
    cr_assert_str_eq(rs.v[0].message, "zombie");
    cr_assert_eq(rs.v[0].pid, 9);
    /* not a refusal: nothing changes */
    s_err(&err, -EIO, CAIRN_SYSTEM, "io");
    ghost_reasons_put_first(&rs, -EIO, &err, 0, "image");
    cr_assert_eq(rs.n, 3);
    cr_assert_str_eq(rs.v[0].message, "zombie");
    ghost_reasons_free(&rs);
}

Test(reasons, at_most_32_kept_all_counted_and_cut)
{
    ghost_reasons_t rs = { 0 };
    cairn_error_t err;

    for (int i = 0; i < 40; i++) {
        char m[32];
        snprintf(m, sizeof m, "socket %d", i);
        cr_assert_eq(ghost_reason_add(&rs, s_err(&err, -EOPNOTSUPP, CAIRN_UNSUPPORTED, m),
                                      &err, 5, "fd %d", i), 0);
    }
    cr_assert_eq(rs.n, GHOST_REASONS_MAX);
    cr_assert_eq(rs.total, 40);
    cr_assert_str_eq(rs.v[31].message, "socket 31");
    /* a full list still takes the ending error first, dropping its last */
    s_err(&err, -EPERM, CAIRN_PERMISSION_DENIED, "not yours");
    ghost_reasons_put_first(&rs, -EPERM, &err, 5, "process");
    cr_assert_eq(rs.n, GHOST_REASONS_MAX);
    cr_assert_eq(rs.total, 41);
    cr_assert_str_eq(rs.v[0].message, "not yours");
    cr_assert_str_eq(rs.v[31].message, "socket 30");
    ghost_reasons_cut(&rs, 3, 3);
    cr_assert_eq(rs.n, 3);
    cr_assert_eq(rs.total, 3);
    ghost_reasons_clear(&rs);
    cr_assert_eq(rs.n + rs.total, 0);
    ghost_reasons_free(&rs);
}

/* MemAvailable in bytes, read here independently. */
static uint64_t s_mem_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    unsigned long long kb = 0;

    cr_assert_not_null(f);
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
            break;
    fclose(f);
    return kb * 1024;
}

Test(room, reads_meminfo_and_refuses_what_does_not_fit)
{
    ghost_room_t room;
    cairn_error_t err;
    uint64_t avail = s_mem_available();

    cr_assert_eq(ghost_room_read(&room, &err), 0, "%s", err.message);
    /* MemAvailable moves a little between two reads */
    cr_assert(room.mem_available > avail / 2 && room.mem_available < avail * 2,
              "MemAvailable %" PRIu64 ", read here %" PRIu64, room.mem_available, avail);
    cr_assert(room.cg_room == UINT64_MAX || room.cgroup[0] == '/');
    cr_assert_eq(ghost_room_check(4096, &err), 0, "%s", err.message);
    uint64_t fits = room.cg_room < room.mem_available ? room.cg_room : room.mem_available;
    uint64_t need = fits * 2 + (1ull << 30);
    cr_assert_eq(ghost_room_check(need, &err), -ENOMEM);
    cr_assert_eq(err.code, CAIRN_FAILED_PRECONDITION);
    char want[64];
    snprintf(want, sizeof want, "needs %" PRIu64 " bytes", need);
    cr_assert(strstr(err.message, want), "%s", err.message);
    cr_assert(strstr(err.message, "MemAvailable") || strstr(err.message, "in use"), "%s",
              err.message);
}

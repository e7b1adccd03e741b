/* test-dsmd-unit.c - dsmd's pure parts: segment names, the permission
 * rule, copysets, and a segment's pages in its memfd (made, written,
 * read, punched) without a daemon around them. */
#include <criterion/criterion.h>
#include <string.h>

#include "dsmd.h"

Test(dsmd, names)
{
    char big[300];
    memset(big, 'x', sizeof big);
    big[256] = '\0';
    cr_assert(dsm_name_ok("grid"));
    cr_assert(dsm_name_ok("shm.frames-1"));
    cr_assert(!dsm_name_ok(""));
    cr_assert(!dsm_name_ok(NULL));
    cr_assert(!dsm_name_ok("a/b"));
    cr_assert(!dsm_name_ok("tab\there"));
    cr_assert(!dsm_name_ok(big), "256 bytes");
    big[255] = '\0';
    cr_assert(dsm_name_ok(big), "255 bytes");
}

Test(dsmd, permissions)
{
    /* owner 1000:100, mode 0640 */
    cr_assert(dsm_may(1000, 100, 1000, 100, 0640, 6));
    cr_assert(dsm_may(2000, 100, 1000, 100, 0640, 4), "group reads");
    cr_assert(!dsm_may(2000, 100, 1000, 100, 0640, 6), "group may not write");
    cr_assert(!dsm_may(3000, 300, 1000, 100, 0640, 4), "others nothing");
    cr_assert(dsm_may(0, 0, 1000, 100, 0600, 6), "root anything");
    cr_assert(dsm_may(3000, 300, 1000, 100, 0606, 6), "others rw");
    cr_assert(!dsm_may(1000, 100, 1000, 100, 0066, 4), "the owner's own bits count, not others'");
}

Test(dsmd, copysets)
{
    dsm_page_t pg = { 0 };
    dsm_copyset_add(&pg, 1);
    dsm_copyset_add(&pg, 64);
    dsm_copyset_add(&pg, 255);
    dsm_copyset_add(&pg, 256);   /* beyond node ids: ignored */
    cr_assert(dsm_copyset_has(&pg, 1) && dsm_copyset_has(&pg, 64) && dsm_copyset_has(&pg, 255));
    cr_assert(!dsm_copyset_has(&pg, 0) && !dsm_copyset_has(&pg, 63) && !dsm_copyset_has(&pg, 256));
}

Test(dsmd, pages_in_the_memfd)
{
    dsmd_t d = { .self = 2, .listen_fd = -1 };
    cairn_error_t err = { 0 };
    Cairn__Dsmd__Segment rec = CAIRN__DSMD__SEGMENT__INIT;
    rec.name = "seg";
    rec.size = 4 * DSM_PAGE;
    rec.creator = 2;
    rec.generation = 7;
    dsm_seg_t *seg = NULL;
    cr_assert_eq(dsm_seg_new(&d, &rec, &seg, &err), 0, "%s", err.message);
    cr_assert_eq(seg->npages, 4);
    cr_assert_eq(seg->pages[3].state, DSM_WRITE, "the creator owns every page");
    cr_assert_eq(seg->pages[3].hint, 2);
    cr_assert_eq(dsm_seg_find(&d, "seg"), seg);
    uint8_t in[DSM_PAGE], out[DSM_PAGE];
    memset(in, 0xab, sizeof in);
    cr_assert_eq(dsm_page_write(seg, 1, in), 0);
    cr_assert_eq(dsm_page_read(seg, 1, out), 0);
    cr_assert_eq(memcmp(in, out, DSM_PAGE), 0);
    cr_assert_eq(dsm_page_punch(seg, 1), 0);
    cr_assert_eq(dsm_page_read(seg, 1, out), 0);
    cr_assert_eq(out[0], 0, "a punched page reads as a hole");
    rec.name = "other";
    rec.creator = 3;
    dsm_seg_t *other = NULL;
    cr_assert_eq(dsm_seg_new(&d, &rec, &other, &err), 0);
    cr_assert_eq(other->pages[0].state, DSM_INVALID, "another node's pages start here invalid");
    cr_assert_eq(other->pages[0].hint, 3, "... their hint the creator");
    dsm_seg_free(&d, seg);
    dsm_seg_free(&d, other);
    cr_assert_null(d.segs);
}

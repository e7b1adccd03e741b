/* fuzz-common.c - the service table and the checks every decoder target
 * shares (fuzz.h).
 *
 * The round trip is the one invariant a decode-only target can check on
 * its own: the codec must hand out messages it can write back, and what it
 * writes must decode to the same message. protobuf-c canonicalises on the
 * first pack (fields in descriptor order, repeated scalars packed, unknown
 * fields last), so the first and second pack must be equal byte for byte.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cairn/wire.h"
#include "clusterd.pb-c.h"
#include "fuzz.h"
#include "ghostd.pb-c.h"

/* Every service with a Request: a new service adds its row here, its name
 * to tests/fuzz/meson.build's fuzz_services and its seeds (README.md). */
const fuzz_service_t fuzz_services[] = {
    { "clusterd", &cairn__clusterd__request__descriptor,
      &cairn__clusterd__reply__descriptor },
    { "ghostd", &cairn__ghostd__request__descriptor,
      &cairn__ghostd__reply__descriptor },
};
const size_t fuzz_n_services = sizeof(fuzz_services) / sizeof(fuzz_services[0]);

_Noreturn void fuzz_fail(const char *file, int line, const char *what)
{
    fprintf(stderr, "%s:%d: fuzz check failed: %s\n", file, line, what);
    abort();
}

const fuzz_service_t *fuzz_service_find(const char *name)
{
    for (size_t i = 0; name && i < fuzz_n_services; i++)
        if (strcmp(fuzz_services[i].name, name) == 0)
            return &fuzz_services[i];
    return NULL;
}

void fuzz_check_round_trip(const ProtobufCMessage *msg, uint32_t expect_type)
{
    uint8_t *first = NULL, *second = NULL;
    size_t first_len = 0, second_len = 0;
    ProtobufCMessage *again = NULL;
    cairn_error_t err;

    FUZZ_CHECK(protobuf_c_message_check(msg));
    FUZZ_CHECK(expect_type == 0 || cairn_wire_oneof_case(msg) == expect_type);
    /* A decoded message may pack bigger than it came (a negative int32
     * sent as 5 bytes packs as 10): over the frame limit is no bug. */
    int r = cairn_wire_pack(msg, &first, &first_len);
    if (r == -EMSGSIZE)
        return;
    FUZZ_CHECK(r == 0);
    FUZZ_CHECK(cairn_wire_decode_body(msg->descriptor, first, first_len,
                                      expect_type, &again, &err) == 0);
    FUZZ_CHECK(cairn_wire_oneof_case(again) == cairn_wire_oneof_case(msg));
    FUZZ_CHECK(cairn_wire_pack(again, &second, &second_len) == 0);
    FUZZ_CHECK(second_len == first_len);
    FUZZ_CHECK(memcmp(first, second, first_len) == 0);
    protobuf_c_message_free_unpacked(again, NULL);
    free(first);
    free(second);
}

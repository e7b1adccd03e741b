/* fuzz-request.c - fuzz target: one service's Request body as the daemon
 * skeleton decodes it, built once per service (fuzz-<service>-request)
 * with -DFUZZ_SERVICE="<service>" (tests/fuzz/meson.build).
 *
 * Input: one byte, the Header.type the body is checked against (0: no
 * check, as a client decodes a Reply), then the body frame.
 *
 * Design. The skeleton hands a handler only a body that decoded as the
 * service's Request with its oneof case equal to Header.type; the handlers
 * of clusterd and ghostd validate inside themselves, with a live daemon
 * around them (membership, running jobs, the file system), so this target
 * stops where they start: the decode, the type check, and the round trip
 * (fuzz_check_round_trip) over the whole decoded message, which reads
 * every field a handler could read. A service with validation callable on
 * its own gets a target file of its own that calls it after the decode.
 */
#include <errno.h>
#include <string.h>

#include "cairn/wire.h"
#include "fuzz.h"

#ifndef FUZZ_SERVICE
#error "build with -DFUZZ_SERVICE=\"<service name>\""
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const fuzz_service_t *svc = fuzz_service_find(FUZZ_SERVICE);
    ProtobufCMessage *m = NULL;
    cairn_error_t err;
    uint32_t type;
    int r;

    FUZZ_CHECK(svc != NULL); /* a row in fuzz-common.c's table */
    if (size < 1)
        return 0;
    type = data[0];
    r = cairn_wire_decode_body(svc->request_desc, data + 1, size - 1, type, &m,
                               &err);
    if (r < 0) {
        FUZZ_CHECK(r == -EBADMSG || r == -EMSGSIZE);
        FUZZ_CHECK(err.code == CAIRN_DECODE_ERROR ||
                   err.code == CAIRN_UNKNOWN_TYPE ||
                   err.code == CAIRN_TOO_LARGE);
        FUZZ_CHECK(memchr(err.message, '\0', sizeof(err.message)) != NULL);
        return 0;
    }
    fuzz_check_round_trip(m, type);
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}

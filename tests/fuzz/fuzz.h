/* fuzz.h - what the fuzz targets share (tests/fuzz/README.md).
 *
 * Each target is one file defining LLVMFuzzerTestOneInput. It is linked
 * twice: with libFuzzer (clang, -Dfuzzing=true) to search for crashes, and
 * with replay.c (any compiler, the `unit` suite) to run its corpus as a
 * regression test. So a target must behave the same under both: no state
 * kept between inputs beyond caches that do not change the outcome, every
 * allocation freed, every fd closed.
 *
 * An invariant a target checks is a FUZZ_CHECK, not an assert: it aborts
 * in every build type (NDEBUG included), and the abort is what both
 * libFuzzer and the replay test report as a failure.
 */
#ifndef CAIRN_FUZZ_H
#define CAIRN_FUZZ_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

/* libFuzzer's entry point: one input; returns 0 (-1 keeps it out of the
 * corpus, which no target here needs). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Aborts with the failed condition and where it is. */
#define FUZZ_CHECK(cond)                                                       \
    do {                                                                       \
        if (!(cond))                                                           \
            fuzz_fail(__FILE__, __LINE__, #cond);                              \
    } while (0)
_Noreturn void fuzz_fail(const char *file, int line, const char *what);

/* One service as the skeleton sees it: its name in Header.service and the
 * types of its Request and Reply. A new service is one row of the table
 * (fuzz-common.c). */
typedef struct fuzz_service {
    const char *name;                               /* "clusterd" */
    const ProtobufCMessageDescriptor *request_desc; /* its Request */
    const ProtobufCMessageDescriptor *reply_desc;   /* its Reply */
} fuzz_service_t;

extern const fuzz_service_t fuzz_services[];
extern const size_t fuzz_n_services;

/* The row named `name`; NULL if none (name may be NULL). */
const fuzz_service_t *fuzz_service_find(const char *name);

/* Checks what must hold of any message the codec hands out: it passes
 * protobuf_c_message_check, and packing it, decoding the bytes again
 * (with expect_type as the codec's check) and packing that gives the same
 * bytes. Aborts (FUZZ_CHECK) otherwise. */
void fuzz_check_round_trip(const ProtobufCMessage *msg, uint32_t expect_type);

#endif

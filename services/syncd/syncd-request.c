/* syncd-request - sends syncd one request that libcairn would refuse to
 * build, for the integration test's bad-input checks, and prints what
 * syncd answered as one JSON line.
 *
 *   syncd-request ENDPOINT acquire-name-bytes N
 *       an acquire (mutex, try once) whose name is N bytes of 'x'
 *   syncd-request ENDPOINT acquire-mode M
 *       an acquire of "bad-mode" with mode number M (a kind mismatch when
 *       M is not a mutex mode: the spec says mutex)
 *
 * Output: {"code":"<status name>","message":"...","ms":<round trip>}.
 * Exit: 0 an answer came (whatever its status); 1 none; 100 usage.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cairn/client.h"
#include "syncd.pb-c.h"
#include "util/clock.h"

static void s_json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            printf("\\u%04x", *s);
        else
            putchar(*s);
    }
    putchar('"');
}

int main(int argc, char **argv)
{
    Cairn__Syncd__Request req = CAIRN__SYNCD__REQUEST__INIT;
    Cairn__Syncd__AcquireRequest a = CAIRN__SYNCD__ACQUIRE_REQUEST__INIT;
    Cairn__Syncd__Spec spec = CAIRN__SYNCD__SPEC__INIT;
    ProtobufCMessage *reply = NULL;
    cairn_error_t err;
    char *name = NULL;

    if (argc != 4) {
        fprintf(stderr, "usage: syncd-request ENDPOINT acquire-name-bytes N | "
                "acquire-mode M\n");
        return 100;
    }
    long n = strtol(argv[3], NULL, 10);
    spec.kind = CAIRN__SYNCD__KIND__KIND_MUTEX;
    a.spec = &spec;
    a.mode = CAIRN__SYNCD__MODE__MODE_LOCK;
    a.timeout_ms = 0;
    a.tag = 1;
    if (strcmp(argv[2], "acquire-name-bytes") == 0 && n >= 0 && n < (64L << 20)) {
        name = malloc((size_t)n + 1);
        if (!name)
            return 1;
        memset(name, 'x', (size_t)n);
        name[n] = '\0';
        a.name = name;
    } else if (strcmp(argv[2], "acquire-mode") == 0) {
        a.name = (char *)"bad-mode";
        a.mode = (Cairn__Syncd__Mode)n;
    } else {
        fprintf(stderr, "syncd-request: unknown request '%s'\n", argv[2]);
        return 100;
    }
    req.acquire = &a;
    req.msg_case = CAIRN__SYNCD__REQUEST__MSG_ACQUIRE;

    cairn_client_t *c = cairn_client_new(argv[1], "syncd");
    if (!c) {
        fprintf(stderr, "syncd-request: bad endpoint %s\n", argv[1]);
        return 100;
    }
    cairn_client_set_timeout(c, 5000);
    cairn_client_set_retries(c, 0);
    uint64_t t0 = cairn_now_ms();
    int r = cairn_client_call(c, &req.base, &cairn__syncd__reply__descriptor,
                              &reply, &err);
    uint64_t ms = cairn_now_ms() - t0;
    cairn_client_free(c);
    free(name);
    if (r == 0) {
        protobuf_c_message_free_unpacked(reply, NULL);
        printf("{\"code\":\"ok\",\"message\":\"\",\"ms\":%llu}\n", (unsigned long long)ms);
        return 0;
    }
    if (r != -EREMOTEIO) {
        fprintf(stderr, "syncd-request: no answer: %s\n", err.message);
        return 1;
    }
    printf("{\"code\":\"%s\",\"message\":", cairn_code_name(err.code));
    s_json_string(err.message);
    printf(",\"ms\":%llu}\n", (unsigned long long)ms);
    return 0;
}

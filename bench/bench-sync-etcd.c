/* bench-sync-etcd - bench/sync.sh's etcd baseline: etcd 3.4's v3 lock API
 * spoken natively (gRPC over one kept-open HTTP/2 connection), from C.
 *
 * What a lock is in etcd's own client (clientv3/concurrency): a session
 * holds one lease; Lock(name, lease) puts name/<lease> and waits for the
 * keys before it to go, answering our ownership key; Unlock(key) deletes
 * it. This program does the same with the Lock service etcd runs inside
 * the server (v3lock, what `etcdctl lock` uses): one LeaseGrant (TTL 300 s)
 * per connection, then per pair Lock + Unlock -- two unary RPCs, as
 * cairn_mutex_lock + unlock are two requests.
 *
 * Why gRPC core and not the HTTP/JSON gateway: the gateway is a proxy
 * inside etcd that turns each JSON request into a gRPC call over loopback,
 * a round trip and two JSON codecs the native clients never pay; measuring
 * etcd through it would flatter syncd. gRPC's C core library (Debian's
 * libgrpc-dev) is the transport etcd's Go client uses, on the wire; the
 * messages are protobuf-c encoded from etcd-lock.proto (etcd's field
 * numbers). Modes and output are bench-lock.h's; ENDPOINT is HOST:PORT.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "bench-lock.h"
#include "etcd-lock.pb-c.h"

#define LEASE_TTL_S 300
#define CALL_TIMEOUT_MS 5000

struct conn {
    grpc_channel *ch;
    grpc_completion_queue *cq;
    int64_t lease;
    ProtobufCBinaryData key;   /* the ownership key of the lock held last */
};

/* One unary call of method with req; *ret gets the unpacked reply (the
 * caller frees it with protobuf_c_message_free_unpacked). 0 or -errno. */
static int s_call(struct conn *k, const char *method, const ProtobufCMessage *req,
                  const ProtobufCMessageDescriptor *rd, ProtobufCMessage **ret,
                  char *err)
{
    size_t len = protobuf_c_message_get_packed_size(req);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        snprintf(err, BENCH_ERR_MAX, "out of memory");
        return -ENOMEM;
    }
    protobuf_c_message_pack(req, buf);
    grpc_slice s = grpc_slice_from_copied_buffer((const char *)buf, len);
    free(buf);
    grpc_byte_buffer *out = grpc_raw_byte_buffer_create(&s, 1), *in = NULL;
    grpc_slice_unref(s);
    gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                         gpr_time_from_millis(CALL_TIMEOUT_MS, GPR_TIMESPAN));
    grpc_call *call = grpc_channel_create_call(k->ch, NULL, GRPC_PROPAGATE_DEFAULTS, k->cq,
                                               grpc_slice_from_static_string(method),
                                               NULL, deadline, NULL);
    grpc_metadata_array initial, trailing;
    grpc_metadata_array_init(&initial);
    grpc_metadata_array_init(&trailing);
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    grpc_op ops[6];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = out;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &in;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &trailing;
    ops[5].data.recv_status_on_client.status = &status;
    ops[5].data.recv_status_on_client.status_details = &details;
    int rc = 0;
    if (!call || grpc_call_start_batch(call, ops, 6, k, NULL) != GRPC_CALL_OK) {
        snprintf(err, BENCH_ERR_MAX, "%s: the call could not start", method);
        rc = -EIO;
    } else {
        grpc_event ev = grpc_completion_queue_pluck(k->cq, k, gpr_inf_future(GPR_CLOCK_MONOTONIC),
                                                    NULL);
        if (ev.type != GRPC_OP_COMPLETE || !ev.success) {
            snprintf(err, BENCH_ERR_MAX, "%s: the call failed", method);
            rc = -EIO;
        } else if (status != GRPC_STATUS_OK) {
            char *d = grpc_slice_to_c_string(details);
            snprintf(err, BENCH_ERR_MAX, "%s: status %d: %s", method, (int)status, d);
            gpr_free(d);
            rc = status == GRPC_STATUS_DEADLINE_EXCEEDED ? -ETIMEDOUT : -EREMOTEIO;
        } else if (!in) {
            snprintf(err, BENCH_ERR_MAX, "%s: no reply message", method);
            rc = -EPROTO;
        }
    }
    if (rc == 0) {
        grpc_byte_buffer_reader r;
        grpc_byte_buffer_reader_init(&r, in);
        grpc_slice all = grpc_byte_buffer_reader_readall(&r);
        grpc_byte_buffer_reader_destroy(&r);
        *ret = protobuf_c_message_unpack(rd, NULL, GRPC_SLICE_LENGTH(all),
                                         GRPC_SLICE_START_PTR(all));
        grpc_slice_unref(all);
        if (!*ret) {
            snprintf(err, BENCH_ERR_MAX, "%s: reply does not decode", method);
            rc = -EPROTO;
        }
    }
    if (in)
        grpc_byte_buffer_destroy(in);
    grpc_byte_buffer_destroy(out);
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&initial);
    grpc_metadata_array_destroy(&trailing);
    if (call)
        grpc_call_unref(call);
    return rc;
}

static void s_close(void *p)
{
    struct conn *k = p;
    if (!k)
        return;
    if (k->lease) {
        char err[BENCH_ERR_MAX];
        Bench__Etcd__LeaseRevokeRequest req = BENCH__ETCD__LEASE_REVOKE_REQUEST__INIT;
        ProtobufCMessage *rep = NULL;
        req.id = k->lease;
        if (s_call(k, "/etcdserverpb.Lease/LeaseRevoke", &req.base,
                   &bench__etcd__unlock_response__descriptor, &rep, err) == 0)
            protobuf_c_message_free_unpacked(rep, NULL);
    }
    free(k->key.data);
    if (k->ch)
        grpc_channel_destroy(k->ch);
    if (k->cq) {
        grpc_completion_queue_shutdown(k->cq);
        grpc_completion_queue_destroy(k->cq);
    }
    free(k);
    grpc_shutdown();
}

static void *s_open(const char *endpoint, char *err)
{
    if (!strchr(endpoint, ':')) {
        snprintf(err, BENCH_ERR_MAX, "endpoint must be HOST:PORT, not '%s'", endpoint);
        return NULL;
    }
    grpc_init();
    struct conn *k = calloc(1, sizeof(*k));
    if (!k) {
        grpc_shutdown();
        snprintf(err, BENCH_ERR_MAX, "out of memory");
        return NULL;
    }
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    k->ch = grpc_channel_create(endpoint, creds, NULL);
    grpc_channel_credentials_release(creds);
    k->cq = grpc_completion_queue_create_for_pluck(NULL);
    Bench__Etcd__LeaseGrantRequest req = BENCH__ETCD__LEASE_GRANT_REQUEST__INIT;
    Bench__Etcd__LeaseGrantResponse *rep = NULL;
    req.ttl = LEASE_TTL_S;
    int r = s_call(k, "/etcdserverpb.Lease/LeaseGrant", &req.base,
                   &bench__etcd__lease_grant_response__descriptor,
                   (ProtobufCMessage **)&rep, err);
    if (r == 0 && (rep->id == 0 || (rep->error && *rep->error))) {
        snprintf(err, BENCH_ERR_MAX, "LeaseGrant: %s", rep->error && *rep->error
                 ? rep->error : "no lease id");
        r = -EREMOTEIO;
    }
    if (r == 0)
        k->lease = rep->id;
    if (rep)
        protobuf_c_message_free_unpacked(&rep->base, NULL);
    if (r < 0) {
        s_close(k);
        return NULL;
    }
    return k;
}

static int s_lock(void *p, const char *name, char *err)
{
    struct conn *k = p;
    Bench__Etcd__LockRequest req = BENCH__ETCD__LOCK_REQUEST__INIT;
    Bench__Etcd__LockResponse *rep = NULL;
    req.name.data = (uint8_t *)name;
    req.name.len = strlen(name);
    req.lease = k->lease;
    int r = s_call(k, "/v3lockpb.Lock/Lock", &req.base, &bench__etcd__lock_response__descriptor,
                   (ProtobufCMessage **)&rep, err);
    if (r < 0)
        return r;
    if (!rep->key.len) {
        snprintf(err, BENCH_ERR_MAX, "Lock: no ownership key in the reply");
        protobuf_c_message_free_unpacked(&rep->base, NULL);
        return -EPROTO;
    }
    free(k->key.data);
    k->key.data = malloc(rep->key.len);
    if (!k->key.data) {
        protobuf_c_message_free_unpacked(&rep->base, NULL);
        snprintf(err, BENCH_ERR_MAX, "out of memory");
        return -ENOMEM;
    }
    memcpy(k->key.data, rep->key.data, rep->key.len);
    k->key.len = rep->key.len;
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    return 0;
}

static int s_unlock(void *p, const char *name, char *err)
{
    struct conn *k = p;
    (void)name;
    if (!k->key.len) {
        snprintf(err, BENCH_ERR_MAX, "Unlock: nothing locked");
        return -EPERM;
    }
    Bench__Etcd__UnlockRequest req = BENCH__ETCD__UNLOCK_REQUEST__INIT;
    ProtobufCMessage *rep = NULL;
    req.key = k->key;
    int r = s_call(k, "/v3lockpb.Lock/Unlock", &req.base,
                   &bench__etcd__unlock_response__descriptor, &rep, err);
    if (r == 0)
        protobuf_c_message_free_unpacked(rep, NULL);
    free(k->key.data);
    k->key.data = NULL;
    k->key.len = 0;
    return r;
}

static const char *s_describe(void *p)
{
    (void)p;
    return "\"method\":\"v3 gRPC: LeaseGrant once, Lock + Unlock\"";
}

int main(int argc, char **argv)
{
    static const bench_locker_t etcd = {
        .name = "etcd",
        .open = s_open,
        .lock = s_lock,
        .unlock = s_unlock,
        .close = s_close,
        .describe = s_describe,
    };
    return bench_lock_main(&etcd, argc, argv);
}

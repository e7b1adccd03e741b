/* test-security.c - CURVE keys, key files and which key a client uses
 * (cairn/security.h).
 *
 * Key files are a node's identity, so what is checked here is what an
 * operator relies on: a written key reads back as the same pair, is 0600,
 * is never silently replaced, and a key file others may read, a file
 * whose public key is not its secret key's, or noise is refused with a
 * message that says so.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cairn/description.h"
#include "cairn/security.h"

static char dir[64];

static void setup(void)
{
    strcpy(dir, "/tmp/cairn-sec-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

static void path_in(char *out, size_t size, const char *name)
{
    snprintf(out, size, "%s/%s", dir, name);
}

static void write_text(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    cr_assert_eq(chmod(path, mode), 0);
}

TestSuite(keys, .init = setup, .fini = teardown, .timeout = 30);

Test(keys, valid_and_fingerprint)
{
    cairn_keypair_t kp;
    char fp[CAIRN_KEY_FINGERPRINT_LEN + 1];

    cr_assert_eq(cairn_keypair_generate(&kp, NULL), 0);
    cr_assert(cairn_key_is_valid(kp.public_key));
    cr_assert(cairn_key_is_valid(kp.secret_key));
    cr_assert_not(cairn_key_is_valid(NULL));
    cr_assert_not(cairn_key_is_valid("short"));
    /* 40 Z85 characters whose 5-character groups overflow 32 bits */
    cr_assert_not(cairn_key_is_valid("########################################"));
    cairn_key_fingerprint(kp.public_key, fp);
    cr_assert_eq(strlen(fp), CAIRN_KEY_FINGERPRINT_LEN);
    cr_assert_eq(strspn(fp, "0123456789abcdef"), CAIRN_KEY_FINGERPRINT_LEN);
    cairn_key_fingerprint("nope", fp);
    cr_assert_str_eq(fp, "invalid");
}

Test(keys, written_0600_read_back_never_replaced_silently)
{
    cairn_keypair_t kp, back, other;
    cairn_error_t err;
    char path[128];
    struct stat st;

    path_in(path, sizeof(path), "keys/sub/node-1.key");
    cr_assert_eq(cairn_keypair_generate(&kp, NULL), 0);
    cr_assert_eq(cairn_keypair_write(path, &kp, "node 1", false, &err), 0, "%s",
                 err.message);
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 07777, 0600);
    cr_assert_eq(cairn_keypair_read(path, &back, &err), 0, "%s", err.message);
    cr_assert_str_eq(back.public_key, kp.public_key);
    cr_assert_str_eq(back.secret_key, kp.secret_key);
    cr_assert_eq(cairn_keypair_generate(&other, NULL), 0);
    cr_assert_eq(cairn_keypair_write(path, &other, NULL, false, &err), -EEXIST);
    cr_assert_eq(err.code, CAIRN_ALREADY_EXISTS);
    cr_assert_eq(cairn_keypair_read(path, &back, NULL), 0);
    cr_assert_str_eq(back.secret_key, kp.secret_key, "the old key is kept");
    cr_assert_eq(cairn_keypair_write(path, &other, NULL, true, &err), 0);
    cr_assert_eq(cairn_keypair_read(path, &back, NULL), 0);
    cr_assert_str_eq(back.secret_key, other.secret_key);
}

Test(keys, refused_when_others_may_read_it)
{
    cairn_keypair_t kp;
    cairn_error_t err;
    char path[128];

    path_in(path, sizeof(path), "k.key");
    cr_assert_eq(cairn_keypair_generate(&kp, NULL), 0);
    cr_assert_eq(cairn_keypair_write(path, &kp, NULL, false, NULL), 0);
    cr_assert_eq(chmod(path, 0640), 0);
    cr_assert_eq(cairn_keypair_read(path, &kp, &err), -EPERM);
    cr_assert_eq(err.code, CAIRN_PERMISSION_DENIED);
    cr_assert(strstr(err.message, "group or others may read it"), "%s", err.message);
}

Test(keys, missing_noise_and_mismatched_files_are_refused)
{
    cairn_keypair_t a, b, kp;
    cairn_error_t err;
    char path[128], text[512];

    path_in(path, sizeof(path), "absent.key");
    cr_assert_eq(cairn_keypair_read(path, &kp, &err), -ENOENT);
    cr_assert_eq(err.code, CAIRN_NOT_FOUND);
    path_in(path, sizeof(path), "noise.key");
    write_text(path, "curve\n    secret-key = \"tooshort\"\n", 0600);
    cr_assert_eq(cairn_keypair_read(path, &kp, &err), -EINVAL);
    cr_assert_eq(err.code, CAIRN_INVALID_CONFIG);
    cr_assert_eq(cairn_keypair_generate(&a, NULL), 0);
    cr_assert_eq(cairn_keypair_generate(&b, NULL), 0);
    snprintf(text, sizeof(text), "curve\n    public-key = \"%s\"\n"
             "    secret-key = \"%s\"\n", b.public_key, a.secret_key);
    path_in(path, sizeof(path), "mixed.key");
    write_text(path, text, 0600);
    cr_assert_eq(cairn_keypair_read(path, &kp, &err), -EINVAL);
    cr_assert(strstr(err.message, "not its secret-key's"), "%s", err.message);
    /* a secret key alone is enough: the public one is derived */
    snprintf(text, sizeof(text), "secret-key = \"%s\"\n", a.secret_key);
    path_in(path, sizeof(path), "bare.key");
    write_text(path, text, 0400);
    cr_assert_eq(cairn_keypair_read(path, &kp, &err), 0, "%s", err.message);
    cr_assert_str_eq(kp.public_key, a.public_key);
}

/* A description of nodes 1..3 with keys k[0..3); node n's secret at
 * keys/node-<n>.key beside it (the default) when written. */
static cairn_description_t *curve_description(cairn_keypair_t k[3],
                                              const bool written[3])
{
    cairn_description_builder_t *b = cairn_description_builder_new("t", "/tmp/t");
    cairn_description_t *d = NULL;
    cairn_error_t err;
    char path[128];

    cr_assert_eq(cairn_description_builder_add_defaults(b, &err), 0);
    cr_assert_eq(cairn_description_builder_add_appliance(
                     b, "c", (const char *[]){ "clusterd" }, 1, NULL, &err), 0);
    cr_assert_eq(cairn_description_builder_set_security(b, "curve", &err), 0);
    for (uint32_t n = 1; n <= 3; n++) {
        char name[8], addr[16];
        snprintf(name, sizeof(name), "n%u", n);
        snprintf(addr, sizeof(addr), "10.1.1.%u", n);
        cr_assert_eq(cairn_keypair_generate(&k[n - 1], NULL), 0);
        cr_assert_eq(cairn_description_builder_add_node(b, n, name, addr, "c",
                                                        n == 1, &err), 0);
        cr_assert_eq(cairn_description_builder_add_key(b, n, k[n - 1].public_key,
                                                       NULL, &err), 0);
        snprintf(path, sizeof(path), "%s/keys/node-%u.key", dir, n);
        if (written[n - 1])
            cr_assert_eq(cairn_keypair_write(path, &k[n - 1], NULL, false, NULL), 0);
    }
    snprintf(path, sizeof(path), "%s/cluster.xml", dir);
    cr_assert_eq(cairn_description_builder_write_file(b, path, &err), 0, "%s",
                 err.message);
    cr_assert_eq(cairn_description_load(path, &d, &err), 0, "%s", err.message);
    cairn_description_builder_free(b);
    return d;
}

Test(keys, a_client_uses_the_first_node_key_it_can_read)
{
    cairn_keypair_t k[3], got, stranger;
    cairn_description_t *d = curve_description(k, (bool[]){ false, true, true });
    cairn_error_t err;
    uint32_t node = 99;
    char path[128];

    cr_assert(cairn_description_curve(d));
    cr_assert_eq(cairn_description_key_owner(d, k[2].public_key), 3);
    cr_assert_eq(cairn_description_client_keys(d, NULL, &got, &node, &err), 0, "%s",
                 err.message);
    cr_assert_eq(node, 2, "node 1's key file is not here");
    cr_assert_str_eq(got.public_key, k[1].public_key);
    /* --key: a key of no node is used as given (and refused by servers) */
    cr_assert_eq(cairn_keypair_generate(&stranger, NULL), 0);
    path_in(path, sizeof(path), "stranger.key");
    cr_assert_eq(cairn_keypair_write(path, &stranger, NULL, false, NULL), 0);
    cr_assert_eq(cairn_description_client_keys(d, path, &got, &node, &err), 0);
    cr_assert_eq(node, 0);
    cr_assert_str_eq(got.public_key, stranger.public_key);
    cairn_description_free(d);
}

Test(keys, no_readable_key_is_a_clear_refusal)
{
    cairn_keypair_t k[3], got;
    cairn_description_t *d = curve_description(k, (bool[]){ false, false, false });
    cairn_error_t err;
    uint32_t node;

    cr_assert_eq(cairn_description_client_keys(d, NULL, &got, &node, &err), -ENOENT);
    cr_assert_eq(err.code, CAIRN_PERMISSION_DENIED);
    cr_assert(strstr(err.message, "node-1.key"), "names the files tried: %s",
              err.message);
    cr_assert(strstr(err.message, "--key"), "%s", err.message);
    cairn_description_free(d);
}

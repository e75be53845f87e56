/* test_redact: secrets never printed; printed commands paste back into a shell. */
#include <string.h>

#include "test.h"
#include "util/redact.h"

static void test_join(void)
{
    char *argv[] = {"vllm", "serve", "m", "--api-key", "sk-123", "--x=a b", "--api-key=sk-9", NULL};
    char out[256];
    redact_argv_join(7, argv, out, sizeof out);
    CHECK(strstr(out, "sk-123") == NULL);
    CHECK(strstr(out, "sk-9") == NULL);
    CHECK_EQ_STR(out, "vllm serve m --api-key *** '--x=a b' --api-key=***");
    char *q[] = {"a'b", NULL};
    redact_argv_join(1, q, out, sizeof out);
    CHECK_EQ_STR(out, "'a'\\''b'");
    char tiny[8];
    redact_argv_join(7, argv, tiny, sizeof tiny);
    CHECK(strlen(tiny) < sizeof tiny);
}

static void test_in_text(void)
{
    char s[] = "Authorization: Bearer sk-secret, again sk-secret.";
    redact_secret_in(s, "sk-secret");
    CHECK_EQ_STR(s, "Authorization: Bearer ***, again ***.");
    char t[] = "ab";
    redact_secret_in(t, NULL);
    CHECK_EQ_STR(t, "ab");
    CHECK(redact_is_secret_opt("--api-key"));
    CHECK(redact_is_secret_opt("--api-key=x"));
    CHECK(!redact_is_secret_opt("--api-keys"));
}

int main(void)
{
    TEST_RUN(test_join);
    TEST_RUN(test_in_text);
    return TEST_DONE();
}

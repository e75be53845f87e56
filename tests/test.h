/* test.h: the project's tiny test harness. Each test binary calls TEST_RUN for each case and ends
 * with TEST_DONE(), which prints "N passed, N failed" and returns the exit status.
 *
 *   static void test_foo(void) { CHECK(1 + 1 == 2); CHECK_EQ_INT(f(), 3); }
 *   int main(void) { TEST_RUN(test_foo); return TEST_DONE(); }
 */
#ifndef SLM_TEST_H
#define SLM_TEST_H

#include <math.h>
#include <stdio.h>
#include <string.h>

static int test_n_pass, test_n_fail, test_cur_failed;
static const char *test_cur_name;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "  FAIL %s:%d (%s): %s\n", __FILE__, __LINE__, test_cur_name, #cond);  \
            test_cur_failed = 1;                                                                   \
        }                                                                                          \
    } while (0)

#define CHECK_MSG(cond, ...)                                                                       \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "  FAIL %s:%d (%s): %s: ", __FILE__, __LINE__, test_cur_name, #cond);  \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            test_cur_failed = 1;                                                                   \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                         \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        CHECK_MSG(a_ == b_, "%lld != %lld", a_, b_);                                               \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                                         \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        CHECK_MSG(a_ && b_ && strcmp(a_, b_) == 0, "\"%s\" != \"%s\"", a_ ? a_ : "(null)",         \
                  b_ ? b_ : "(null)");                                                             \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                                      \
    do {                                                                                           \
        double a_ = (a), b_ = (b);                                                                 \
        CHECK_MSG(fabs(a_ - b_) <= (tol), "%.9g vs %.9g (tol %g)", a_, b_, (double)(tol));          \
    } while (0)

#define TEST_RUN(fn)                                                                               \
    do {                                                                                           \
        test_cur_name = #fn;                                                                       \
        test_cur_failed = 0;                                                                       \
        fprintf(stderr, "- %s\n", #fn);                                                            \
        fn();                                                                                      \
        if (test_cur_failed)                                                                       \
            test_n_fail++;                                                                         \
        else                                                                                       \
            test_n_pass++;                                                                         \
    } while (0)

#define TEST_DONE()                                                                                \
    (fflush(stderr), printf("%d passed, %d failed\n", test_n_pass, test_n_fail), fflush(stdout),   \
     test_n_fail ? 1 : 0)

#endif

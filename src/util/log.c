/* log: one formatted line per call to stderr; the level comes from SLMPROBE_LOG at first use. */
#include "util/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int level_set;
static enum log_level min_level = LOG_LEVEL_INFO;
static int with_timestamps;

static const char *level_names[] = {"DEBUG", "INFO", "WARNING", "ERROR"};

void log_set_level(enum log_level level)
{
    min_level = level;
    level_set = 1;
}

enum log_level log_get_level(void)
{
    if (!level_set) {
        const char *e = getenv("SLMPROBE_LOG");
        if (e && !strcmp(e, "debug"))
            min_level = LOG_LEVEL_DEBUG;
        else if (e && !strcmp(e, "warn"))
            min_level = LOG_LEVEL_WARN;
        else if (e && !strcmp(e, "error"))
            min_level = LOG_LEVEL_ERROR;
        level_set = 1;
    }
    return min_level;
}

void log_set_timestamps(int on)
{
    with_timestamps = on;
}

void log_msg(enum log_level level, const char *module, const char *fmt, ...)
{
    if (level < log_get_level())
        return;
    char line[2048];
    size_t n = 0;
    if (with_timestamps) {
        time_t t = time(NULL);
        struct tm tm;
        localtime_r(&t, &tm);
        n += (size_t)snprintf(line + n, sizeof line - n, "%s ", level_names[level]);
        n += strftime(line + n, sizeof line - n, "%m-%d %H:%M:%S ", &tm);
    } else if (level >= LOG_LEVEL_WARN) {
        n += (size_t)snprintf(line, sizeof line, "%s: ", level == LOG_LEVEL_WARN ? "warning" : "error");
    }
    if (n < sizeof line)
        n += (size_t)snprintf(line + n, sizeof line - n, "%s: ", module);
    if (n < sizeof line) {
        va_list ap;
        va_start(ap, fmt);
        n += (size_t)vsnprintf(line + n, sizeof line - n, fmt, ap);
        va_end(ap);
    }
    if (n >= sizeof line - 1)
        n = sizeof line - 2;
    line[n++] = '\n';
    line[n] = 0;
    fputs(line, stderr);
}

/* log: leveled messages to stderr with a module prefix ("serve: ..."). stdout is for results.
 * Thread-safe (one fprintf per line). Does not buffer or rotate. */
#ifndef SLM_LOG_H
#define SLM_LOG_H

enum log_level { LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR };

/* Minimum level printed; default INFO, or SLMPROBE_LOG=debug|info|warn|error. */
void log_set_level(enum log_level level);
enum log_level log_get_level(void);

/* When on, each line starts with "INFO MM-DD HH:MM:SS " like vLLM's logger. Default off. */
void log_set_timestamps(int on);

void log_msg(enum log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_debug(mod, ...) log_msg(LOG_LEVEL_DEBUG, mod, __VA_ARGS__)
#define log_info(mod, ...) log_msg(LOG_LEVEL_INFO, mod, __VA_ARGS__)
#define log_warn(mod, ...) log_msg(LOG_LEVEL_WARN, mod, __VA_ARGS__)
#define log_error(mod, ...) log_msg(LOG_LEVEL_ERROR, mod, __VA_ARGS__)

#endif

/* session: the shared state of one probe run (run/session.h): output directory, host/GPU facts,
 * client ceiling, redacted command line, cancellation and the exit-code policy, plus the
 * asynchronous JSONL sink: a bounded queue of deep-copied records drained by a writer thread
 * that owns the record_writer, so the thread that takes timestamps never touches the disk. It
 * launches nothing and sends no request. */
#include "run/session.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "calibrate/calibrate.h"
#include "server/target.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/redact.h"

#define MOD "session"
#define SINK_QUEUE_CAP 1024

int session_init(struct session *s, const struct probe_opts *po, int argc, char **argv, char *err,
                 size_t err_len)
{
    memset(s, 0, sizeof *s);
    s->po = po;
    atomic_init(&s->cancel_, 0);
    target_install_signal_handlers();
    clock_wall_iso(s->started_at, sizeof s->started_at);
    /* argv[0] is the command word ("ttft"): the line a user can paste starts with "slmprobe" */
    size_t pre = argc > 0 && argv[0] && strncmp(argv[0], "slmprobe", 8) ? strlen("slmprobe ") : 0;
    memcpy(s->command_line, "slmprobe ", pre);
    redact_argv_join(argc, argv, s->command_line + pre, sizeof s->command_line - pre);
    const char *dir = po && po->out_dir && po->out_dir[0] ? po->out_dir : "results";
    snprintf(s->out_dir, sizeof s->out_dir, "%s", dir);
    s->have_host = telemetry_host_read(&s->host) == 0;
    telemetry_gpu_read(&s->gpus);
    s->sample_interval_ms = s->gpus.available && s->gpus.source &&
                                    strcmp(s->gpus.source, "nvidia-smi") == 0
                                ? SESSION_SAMPLE_INTERVAL_SMI_MS
                                : SESSION_SAMPLE_INTERVAL_MS;
    calibrate_ceiling_load(&s->ceiling, s->ceiling_note, sizeof s->ceiling_note);
    if (dir_make_all(s->out_dir) != 0) {
        snprintf(err, err_len, "cannot create the output directory %s: %s", s->out_dir,
                 strerror(errno));
        return -1;
    }
    return 0;
}

void session_free(struct session *s)
{
    (void)s; /* nothing owned yet: the sinks belong to the probe */
}

const char *session_path(const struct session *s, const char *name, char *out, size_t out_len)
{
    snprintf(out, out_len, "%s/%s", s->out_dir, name);
    return out;
}

int session_cancelled(const struct session *s)
{
    return target_interrupted() || atomic_load(&s->cancel_) != 0;
}

int session_interrupted(const struct session *s)
{
    (void)s;
    return target_interrupted();
}

void session_cancel(struct session *s, const char *reason)
{
    if (!atomic_load(&s->cancel_))
        snprintf(s->cancel_reason_, sizeof s->cancel_reason_, "%s", reason ? reason : "cancelled");
    atomic_store(&s->cancel_, 1);
}

void session_cancel_reset(struct session *s)
{
    atomic_store(&s->cancel_, 0);
    s->cancel_reason_[0] = '\0';
}

const char *session_cancel_reason(const struct session *s)
{
    if (atomic_load(&s->cancel_))
        return s->cancel_reason_;
    return target_interrupted() ? "interrupted" : "";
}

int session_exit_code(const struct session *s, int failed)
{
    if (session_interrupted(s))
        return PROBE_EXIT_INTERRUPTED;
    return failed ? PROBE_EXIT_FAILED : PROBE_EXIT_OK;
}

/* ---- the asynchronous sink ---- */

struct record_sink {
    struct record_writer *w;
    char path[1200];
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    struct request_record *q; /* ring [SINK_QUEUE_CAP] of owned deep copies */
    size_t head, n_queued;
    size_t n_written;
    int closing;
    int failed;
};

static void *sink_main(void *arg)
{
    struct record_sink *k = arg;
    pthread_mutex_lock(&k->mu);
    for (;;) {
        while (k->n_queued == 0 && !k->closing)
            pthread_cond_wait(&k->not_empty, &k->mu);
        if (k->n_queued == 0)
            break; /* closing and drained */
        struct request_record rec = k->q[k->head];
        k->head = (k->head + 1) % SINK_QUEUE_CAP;
        k->n_queued--;
        pthread_cond_signal(&k->not_full);
        int failed = k->failed;
        pthread_mutex_unlock(&k->mu);
        int rc = failed ? -1 : record_writer_append(k->w, &rec);
        int e = errno;
        record_free(&rec);
        pthread_mutex_lock(&k->mu);
        if (rc == 0) {
            k->n_written++;
        } else if (!k->failed) {
            k->failed = 1;
            log_error(MOD, "cannot append to %s: %s", k->path, strerror(e));
        }
    }
    pthread_mutex_unlock(&k->mu);
    return NULL;
}

struct record_sink *session_sink_open(struct session *s, const char *name, char *err,
                                      size_t err_len)
{
    char path[1200];
    session_path(s, name, path, sizeof path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, err_len, "cannot create %s: %s", path, strerror(errno));
        return NULL;
    }
    close(fd);
    struct record_writer *w = record_writer_open(path, err, err_len);
    if (!w)
        return NULL;
    struct record_sink *k = xcalloc(1, sizeof *k);
    k->w = w;
    snprintf(k->path, sizeof k->path, "%s", path);
    k->q = xcalloc(SINK_QUEUE_CAP, sizeof *k->q);
    pthread_mutex_init(&k->mu, NULL);
    pthread_cond_init(&k->not_empty, NULL);
    pthread_cond_init(&k->not_full, NULL);
    if (pthread_create(&k->thread, NULL, sink_main, k) != 0) {
        snprintf(err, err_len, "cannot start the writer thread for %s", path);
        record_writer_close(w);
        pthread_cond_destroy(&k->not_full);
        pthread_cond_destroy(&k->not_empty);
        pthread_mutex_destroy(&k->mu);
        free(k->q);
        free(k);
        return NULL;
    }
    return k;
}

int record_sink_push(struct record_sink *k, const struct request_record *rec)
{
    struct request_record copy = *rec;
    copy.t_content_ns = NULL;
    if (rec->t_content_ns && rec->n_content_events) {
        size_t bytes = (size_t)rec->n_content_events * sizeof *copy.t_content_ns;
        copy.t_content_ns = xmalloc(bytes);
        memcpy(copy.t_content_ns, rec->t_content_ns, bytes);
    }
    pthread_mutex_lock(&k->mu);
    while (k->n_queued == SINK_QUEUE_CAP && !k->failed)
        pthread_cond_wait(&k->not_full, &k->mu); /* the disk is behind: wait, never drop */
    int failed = k->failed;
    if (!failed) {
        k->q[(k->head + k->n_queued) % SINK_QUEUE_CAP] = copy;
        k->n_queued++;
        pthread_cond_signal(&k->not_empty);
    }
    pthread_mutex_unlock(&k->mu);
    if (failed)
        record_free(&copy);
    return failed ? -1 : 0;
}

size_t record_sink_n_written(struct record_sink *k)
{
    pthread_mutex_lock(&k->mu);
    size_t n = k->n_written;
    pthread_mutex_unlock(&k->mu);
    return n;
}

void record_sink_close(struct record_sink *k)
{
    if (!k)
        return;
    pthread_mutex_lock(&k->mu);
    k->closing = 1;
    pthread_cond_signal(&k->not_empty);
    pthread_mutex_unlock(&k->mu);
    pthread_join(k->thread, NULL);
    while (k->n_queued) { /* only after a write failure */
        record_free(&k->q[k->head]);
        k->head = (k->head + 1) % SINK_QUEUE_CAP;
        k->n_queued--;
    }
    record_writer_close(k->w);
    pthread_cond_destroy(&k->not_full);
    pthread_cond_destroy(&k->not_empty);
    pthread_mutex_destroy(&k->mu);
    free(k->q);
    free(k);
}

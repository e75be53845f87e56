/* target_signals: the orphan registry and process setup shared by target.c and
 * target_signals.c; not for other callers (the public calls, target_install_signal_handlers,
 * target_interrupted, target_signal_fd and target_kill_all, are in target.h). */
#ifndef SLM_TARGET_SIGNALS_H
#define SLM_TARGET_SIGNALS_H

#include <sys/types.h>

/* Records a launched process group so that exit and a second Ctrl-C can kill it.
 * 0, or -1 when all 64 slots are taken (the group is then not protected). Any thread. */
int target_registry_add(pid_t pgid);
/* Forgets pgid (after it was stopped and reaped). Any thread. */
void target_registry_remove(pid_t pgid);
/* Before every launch: installs the atexit hook that stops registered groups (once per process
 * image) and sets the child-subreaper flag (every time: fork does not inherit it), so orphaned
 * members of a server's group (vLLM's engine core, say) are reparented to us and stop can reap
 * them. */
void target_process_setup(void);

#endif

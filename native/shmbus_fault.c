#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shmbus_fault.h"

int shmbus_fault_armed = SHMBUS_FAULT_NONE;
static int fault_action; /* 0 kill, 1 stop, 2 sleep */
static long fault_ms = 1000;

static const char *const POINTS[] = {"",           "after_claim",  "during_copy", "before_commit",
                                     "after_commit", "group_create", "after_take",
                                     "window_read", "spill_write", "spill_move",
                                     "recover",     "send_checked", "inside_ack",
                                     "rebalance",   "create",       "sweep",
                                     "dedup_locked"};

void shmbus_fault_load(void)
{
    const char *spec = getenv("SHMBUS_FAULT");
    shmbus_fault_armed = SHMBUS_FAULT_NONE;
    if (!spec || !*spec)
        return;
    char buf[128];
    strncpy(buf, spec, sizeof buf - 1);
    buf[sizeof buf - 1] = 0;
    char *point = strtok(buf, ":"), *action = strtok(NULL, ":"), *arg = strtok(NULL, ":");
    if (!point || !action)
        return;
    for (int i = 1; i < (int)(sizeof POINTS / sizeof *POINTS); i++)
        if (!strcmp(point, POINTS[i]))
            shmbus_fault_armed = i;
    fault_action = !strcmp(action, "stop") ? 1 : !strcmp(action, "sleep") ? 2 : 0;
    if (arg)
        fault_ms = atol(arg);
}

void shmbus_fault_fire(int point)
{
    (void)point;
    if (fault_action == 0)
        kill(getpid(), SIGKILL);
    else if (fault_action == 1)
        kill(getpid(), SIGSTOP);
    else {
        struct timespec ts = {fault_ms / 1000, (fault_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* Fault points that tests switch on by name: SHMBUS_FAULT="point:action[:arg]",
 * read when a producer or consumer opens, a topic is created or swept, or a
 * disk topic is recovered.  Actions: kill (SIGKILL), stop (SIGSTOP), sleep
 * (arg milliseconds, default 1000).  Off, a point costs one predictable branch. */
#ifndef SHMBUS_FAULT_H
#define SHMBUS_FAULT_H

enum shmbus_fault_point {
    SHMBUS_FAULT_NONE = 0,
    SHMBUS_FAULT_AFTER_CLAIM,   /* offset and bytes reserved, nothing written */
    SHMBUS_FAULT_DURING_COPY,   /* slot written, value half copied */
    SHMBUS_FAULT_BEFORE_COMMIT, /* record written, not yet published */
    SHMBUS_FAULT_AFTER_COMMIT,  /* published, consumers not yet woken */
    SHMBUS_FAULT_GROUP_CREATE,  /* a new group's entry filled, not yet active */
    SHMBUS_FAULT_AFTER_TAKE,    /* a tracked group's entry taken, cursor not yet moved */
    SHMBUS_FAULT_WINDOW_READ,   /* a group's committed offset read, its cursor not yet */
    SHMBUS_FAULT_SPILL_WRITE,   /* a record written to a spill file, not yet counted */
    SHMBUS_FAULT_SPILL_MOVE,    /* a spilled record committed in the ring, not yet counted moved */
    SHMBUS_FAULT_RECOVER,       /* a disk topic's partition about to be recovered */
    SHMBUS_FAULT_SEND_CHECKED,  /* a send found no spill waiting, and has not claimed yet */
    SHMBUS_FAULT_INSIDE_ACK,    /* deliveries marked done, not yet counted nor committed past */
    SHMBUS_FAULT_REBALANCE,     /* a partition taken by its new owner, the group not yet told */
    SHMBUS_FAULT_CREATE,        /* a topic's metadata filled in, its version not yet written */
    SHMBUS_FAULT_SWEEP,         /* a recovery sweep has recovered something, and goes on */
    SHMBUS_FAULT_DEDUP_LOCKED,  /* a send with a msg_id holds its bucket's lock, nothing looked up */
};

extern int shmbus_fault_armed;
void shmbus_fault_load(void);
void shmbus_fault_fire(int point);

#define FAULT_POINT(point)                                   \
    do {                                                     \
        if (__builtin_expect(shmbus_fault_armed == (point), 0)) \
            shmbus_fault_fire(point);                        \
    } while (0)
#endif

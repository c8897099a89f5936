#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <time.h>

#include "shmbus.h"
#include "shmbus_liveness.h"
#include "shmbus_wait.h"

static struct flock lock_of(short type, uint64_t byte)
{
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = (off_t)byte;
    fl.l_len = 1;
    return fl;
}

int shmbus_lock_try(int fd, uint64_t byte)
{
    struct flock fl = lock_of(F_WRLCK, byte);
    if (fcntl(fd, F_OFD_SETLK, &fl) == 0)
        return 1;
    return (errno == EAGAIN || errno == EACCES) ? 0 : SHMBUS_ESYS;
}

void shmbus_lock_release(int fd, uint64_t byte)
{
    struct flock fl = lock_of(F_UNLCK, byte);
    fcntl(fd, F_OFD_SETLK, &fl);
}

int shmbus_lock_held(int fd, uint64_t byte)
{
    struct flock fl = lock_of(F_WRLCK, byte);
    if (fcntl(fd, F_OFD_GETLK, &fl) != 0)
        return 1; /* cannot tell: assume alive, never steal from the living */
    return fl.l_type != F_UNLCK;
}

int shmbus_lock_wait(int fd, uint64_t byte, int64_t timeout_ns)
{
    int64_t deadline = shmbus_now_monotonic() + timeout_ns;
    for (;;) {
        int r = shmbus_lock_try(fd, byte);
        if (r != 0)
            return r > 0 ? SHMBUS_OK : r;
        if (shmbus_now_monotonic() >= deadline)
            return SHMBUS_EBUSY;
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
}

int shmbus_open_exclusive(int fd)
{
    return shmbus_lock_try(fd, SHMBUS_LOCK_OPEN);
}

/* A process that waits while another recovers tries for the exclusive lock
 * first each time: once the recoverer died (or gave up on a damaged segment)
 * nobody holds the byte, the topic is not recovered, and 1 says it is this
 * caller's to recover (it then calls shmbus_open_recovered). */
int shmbus_open_shared(int fd, int64_t timeout_ns)
{
    int64_t deadline = shmbus_now_monotonic() + timeout_ns;
    for (;;) {
        int r = shmbus_lock_try(fd, SHMBUS_LOCK_OPEN);
        if (r != 0)
            return r;
        struct flock fl = lock_of(F_RDLCK, SHMBUS_LOCK_OPEN);
        if (fcntl(fd, F_OFD_SETLK, &fl) == 0)
            return SHMBUS_OK;
        if (errno != EAGAIN && errno != EACCES)
            return SHMBUS_ESYS;
        if (shmbus_now_monotonic() >= deadline)
            return SHMBUS_EBUSY;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

int shmbus_open_held(int fd) { return shmbus_lock_held(fd, SHMBUS_LOCK_OPEN); }

/* The exclusive lock becomes a shared one at once (no gap for another to
 * recover in). */
int shmbus_open_recovered(int fd)
{
    struct flock fl = lock_of(F_RDLCK, SHMBUS_LOCK_OPEN);
    return fcntl(fd, F_OFD_SETLK, &fl) == 0 ? SHMBUS_OK : SHMBUS_ESYS;
}

int shmbus_create_begin(int fd) { return shmbus_lock_try(fd, SHMBUS_LOCK_CREATE); }

void shmbus_create_end(int fd) { shmbus_lock_release(fd, SHMBUS_LOCK_CREATE); }

int shmbus_creator_gone(int fd) { return shmbus_lock_try(fd, SHMBUS_LOCK_CREATE); }

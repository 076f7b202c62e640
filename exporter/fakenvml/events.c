/*
 * events.c - event sets and Xid delivery for the fake NVML driver.
 *
 * Part of gpu-node-exporter. Compiled against NVIDIA's nvml.h; see fakenvml.h for the
 * Disclaimer and U.S. Government End Users Notice that nvml.h requires us to carry.
 *
 * Each event set owns a FIFO. An injected Xid is queued once into every set that has the
 * GPU registered for nvmlEventTypeXidCriticalError, so each waiter sees it exactly once.
 * nvmlEventSetWait_v2 waits on a condition variable in slices of at most 50 ms (the lock
 * is released while waiting), re-reading the faults file between slices.
 */
#include "fakenvml.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SUPPORTED_BASE (nvmlEventTypePState | nvmlEventTypeXidCriticalError)
#define ECC_EVENTS (nvmlEventTypeSingleBitEccError | nvmlEventTypeDoubleBitEccError)

struct nvmlEventSet_st {
    unsigned long long mask[FK_MAX_GPUS];
    nvmlEventData_t *q;
    size_t head, n, cap;
    struct nvmlEventSet_st *next;
};

static struct nvmlEventSet_st *sets;

static int valid_set(struct nvmlEventSet_st *s)
{
    for (struct nvmlEventSet_st *p = sets; p; p = p->next)
        if (p == s) return 1;
    return 0;
}

static unsigned long long supported_events(const fk_gpu *g)
{
    unsigned long long m = SUPPORTED_BASE;
    if (g->ecc_supported) m |= ECC_EVENTS;
    if (g->mig_capable) m |= nvmlEventMigConfigChange;
    return m;
}

static int push(struct nvmlEventSet_st *s, const nvmlEventData_t *e)
{
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 16;
        nvmlEventData_t *nq = malloc(nc * sizeof *nq);
        if (!nq) return -1;
        for (size_t i = 0; i < s->n; i++) nq[i] = s->q[(s->head + i) % s->cap];
        free(s->q);
        s->q = nq;
        s->cap = nc;
        s->head = 0;
    }
    s->q[(s->head + s->n) % s->cap] = *e;
    s->n++;
    return 0;
}

int fk_inject_xid_locked(int gpu, unsigned long long xid, unsigned int gi, unsigned int ci)
{
    int delivered = 0;
    if (xid == 79) fk_set_fallen_locked(gpu, 1); /* fell off the bus: GPU_IS_LOST from now on */
    for (struct nvmlEventSet_st *s = sets; s; s = s->next) {
        int want = 0;
        if (gpu >= 0) want = (s->mask[gpu] & nvmlEventTypeXidCriticalError) != 0;
        else
            for (int i = 0; i < FK_MAX_GPUS && !want; i++) want = (s->mask[i] & nvmlEventTypeXidCriticalError) != 0;
        if (!want) continue;
        nvmlEventData_t e;
        memset(&e, 0, sizeof e);
        e.device = gpu >= 0 ? &fk_dev[gpu] : NULL;
        e.eventType = nvmlEventTypeXidCriticalError;
        e.eventData = xid;
        e.gpuInstanceId = gi;
        e.computeInstanceId = ci;
        if (!push(s, &e)) delivered++;
    }
    pthread_cond_broadcast(&fk_cond);
    return delivered;
}

FK_API nvmlReturn_t nvmlEventSetCreate(nvmlEventSet_t *set)
{
    nvmlReturn_t r = fk_enter_idx(__func__, -1);
    if (r) return r;
    FK_NULLCHK(set);
    struct nvmlEventSet_st *s = calloc(1, sizeof *s);
    if (!s) FK_RET(NVML_ERROR_MEMORY);
    s->next = sets;
    sets = s;
    *set = s;
    FK_RET(NVML_SUCCESS);
}

FK_API nvmlReturn_t nvmlEventSetFree(nvmlEventSet_t set)
{
    nvmlReturn_t r = fk_enter_idx(__func__, -1);
    if (r) return r;
    if (!set || !valid_set(set)) FK_RET(NVML_ERROR_INVALID_ARGUMENT);
    for (struct nvmlEventSet_st **pp = &sets; *pp; pp = &(*pp)->next)
        if (*pp == set) {
            *pp = set->next;
            break;
        }
    free(set->q);
    free(set);
    pthread_cond_broadcast(&fk_cond);
    FK_RET(NVML_SUCCESS);
}

FK_API nvmlReturn_t nvmlDeviceGetSupportedEventTypes(nvmlDevice_t device, unsigned long long *eventTypes)
{
    FK_DEV_BEGIN(device, c);
    FK_NULLCHK(eventTypes);
    FK_PHYS_ONLY(c);
    *eventTypes = supported_events(c.g);
    FK_RET(NVML_SUCCESS);
}

FK_API nvmlReturn_t nvmlDeviceRegisterEvents(nvmlDevice_t device, unsigned long long eventTypes, nvmlEventSet_t set)
{
    FK_DEV_BEGIN(device, c);
    if (!set || !valid_set(set)) FK_RET(NVML_ERROR_INVALID_ARGUMENT);
    /* "does not currently support per-instance event reporting using MIG device handles" */
    FK_PHYS_ONLY(c);
    unsigned long long m = eventTypes & supported_events(c.g);
    if (!m) FK_RET(NVML_ERROR_NOT_SUPPORTED);
    set->mask[c.gpu] |= m;
    FK_RET(NVML_SUCCESS);
}

static nvmlReturn_t wait_impl(const char *fn, nvmlEventSet_t set, nvmlEventData_t *data, unsigned int timeoutms)
{
    nvmlReturn_t r = fk_enter_idx(fn, -1);
    if (r) return r;
    if (!set || !valid_set(set) || !data) FK_RET(NVML_ERROR_INVALID_ARGUMENT);
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        if (!fk_refcount) FK_RET(NVML_ERROR_UNINITIALIZED);
        if (!valid_set(set)) FK_RET(NVML_ERROR_INVALID_ARGUMENT);
        if (set->n) {
            *data = set->q[set->head];
            set->head = (set->head + 1) % set->cap;
            set->n--;
            FK_RET(NVML_SUCCESS);
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        double elapsed_ms = (double)(now.tv_sec - start.tv_sec) * 1e3 + (double)(now.tv_nsec - start.tv_nsec) / 1e6;
        double left = (double)timeoutms - elapsed_ms;
        if (left <= 0) FK_RET(NVML_ERROR_TIMEOUT);
        if (left > 50) left = 50;
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        long ns = dl.tv_nsec + (long)(left * 1e6);
        dl.tv_sec += ns / 1000000000L;
        dl.tv_nsec = ns % 1000000000L;
        pthread_cond_timedwait(&fk_cond, &fk_lock, &dl);
        fk_faults_poll_locked();
    }
}

FK_API nvmlReturn_t nvmlEventSetWait_v2(nvmlEventSet_t set, nvmlEventData_t *data, unsigned int timeoutms)
{
    return wait_impl(__func__, set, data, timeoutms);
}

FK_API nvmlReturn_t nvmlEventSetWait(nvmlEventSet_t set, nvmlEventData_t *data, unsigned int timeoutms)
{
    return wait_impl(__func__, set, data, timeoutms);
}

/*
 * calls.c - per-call accounting for benchmarks: a call counter, a per-call latency and a
 * synthetic process list.
 *
 * Part of gpu-node-exporter. Compiled against NVIDIA's nvml.h; see fakenvml.h for the
 * Disclaimer and U.S. Government End Users Notice that nvml.h requires us to carry.
 *
 * Why: the fake answers in a few hundred nanoseconds, a real driver ioctl takes tens of
 * microseconds, so an exporter that makes many NVML calls would look as cheap as one that
 * makes few. Every NVML entry point (modelled or stub) calls fk_count_call(): it counts the
 * call (in-process, and in a shared 8-byte file another process can read at any time) and,
 * when asked, spends the configured latency, spinning by default because the real cost is
 * kernel CPU time in the calling thread. The counter file is mmap'd, so reading it needs no
 * request and no signal: the benchmark reads two values and subtracts.
 */
#include "fakenvml.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static unsigned long long calls;
static unsigned long long *shared_calls;   /* mmap of FAKE_NVML_CALL_COUNTER, or NULL */
static char shared_path[4096];
static unsigned int latency_env_us;
static int latency_ctl_us = -1;            /* fakeNvmlSetCallLatency; -1 = use the env */
static int latency_sleep;                  /* FAKE_NVML_CALL_LATENCY_MODE=sleep */
int fk_synth_procs = -1;

static double mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

static void spend(unsigned int us)
{
    if (latency_sleep) {
        struct timespec ts = {(time_t)(us / 1000000u), (long)(us % 1000000u) * 1000L};
        while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
        }
        return;
    }
    double end = mono_us() + (double)us;
    while (mono_us() < end) {
    }
}

void fk_count_call(int with_latency)
{
    __atomic_fetch_add(&calls, 1ULL, __ATOMIC_RELAXED);
    unsigned long long *sh = __atomic_load_n(&shared_calls, __ATOMIC_ACQUIRE);
    if (sh) __atomic_fetch_add(sh, 1ULL, __ATOMIC_RELAXED);
    if (!with_latency) return;
    int ctl = __atomic_load_n(&latency_ctl_us, __ATOMIC_RELAXED);
    unsigned int us = ctl >= 0 ? (unsigned int)ctl : __atomic_load_n(&latency_env_us, __ATOMIC_RELAXED);
    if (us) spend(us);
}

static void open_counter_locked(const char *path)
{
    if (!path || !*path || strcmp(path, shared_path) == 0) return;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        fk_log("fake NVML: FAKE_NVML_CALL_COUNTER %s: %s", path, strerror(errno));
        return;
    }
    if (lseek(fd, 0, SEEK_END) < (off_t)sizeof(unsigned long long) &&
        ftruncate(fd, (off_t)sizeof(unsigned long long)) != 0) {
        fk_log("fake NVML: FAKE_NVML_CALL_COUNTER %s: %s", path, strerror(errno));
        close(fd);
        return;
    }
    void *p = mmap(NULL, sizeof(unsigned long long), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        fk_log("fake NVML: FAKE_NVML_CALL_COUNTER %s: mmap: %s", path, strerror(errno));
        return;
    }
    /* The old mapping stays mapped: a thread may still be incrementing through it. */
    snprintf(shared_path, sizeof shared_path, "%s", path);
    __atomic_store_n(&shared_calls, (unsigned long long *)p, __ATOMIC_RELEASE);
}

static long env_long(const char *name, long fallback, long lo, long hi)
{
    const char *v = getenv(name);
    if (!v || !*v) return fallback;
    char *end;
    long n = strtol(v, &end, 10);
    if (*end || n < lo || n > hi) {
        fk_log("fake NVML: %s=%s ignored (expected an integer %ld-%ld)", name, v, lo, hi);
        return fallback;
    }
    return n;
}

void fk_calls_env_locked(void)
{
    __atomic_store_n(&latency_env_us, (unsigned int)env_long("FAKE_NVML_CALL_LATENCY_US", 0, 0, 1000000),
                     __ATOMIC_RELAXED);
    const char *mode = getenv("FAKE_NVML_CALL_LATENCY_MODE");
    latency_sleep = mode && strcmp(mode, "sleep") == 0;
    open_counter_locked(getenv("FAKE_NVML_CALL_COUNTER"));
    fk_synth_procs = (int)env_long("FAKE_NVML_PROCESSES", -1, 0, 1000000);
    if (fk_synth_procs >= 0 && fk_scn)
        for (unsigned int g = 0; g < fk_scn->gpu_count; g++) fk_scn->gpus[g].n_procs = 0;
}

int fk_proc_count(const fk_gpu *g, int gpu)
{
    if (fk_synth_procs < 0) return g->n_procs;
    int n = (int)fk_scn->gpu_count;
    if (n <= 0 || gpu >= fk_synth_procs) return 0;
    return (fk_synth_procs - gpu + n - 1) / n;
}

void fk_proc_at(const fk_gpu *g, int gpu, int i, fk_proc *out)
{
    if (fk_synth_procs < 0) {
        *out = g->procs[i];
        return;
    }
    int k = gpu + i * (int)fk_scn->gpu_count;   /* synthetic process k lives on GPU k % count */
    memset(out, 0, sizeof *out);
    out->pid = 200000u + (unsigned int)k;
    out->used_mib = 64;
    out->compute = 1;
    out->share = 1;   /* equal shares of the GPU's activity */
    out->gi = out->ci = FK_NA;
    snprintf(out->name, sizeof out->name, "bench-proc-%d", k);
    if (!g->mig_current) return;
    int present[FK_MAX_MIG], np = 0;
    for (int m = 0; m < FK_MAX_MIG; m++)
        if (g->mig[m].present) present[np++] = m;
    if (!np) return;
    const fk_mig *m = &g->mig[present[i % np]];
    out->gi = m->gi;
    out->ci = m->ci;
}

int fk_synth_pid_gpu(unsigned int pid)
{
    if (fk_synth_procs < 0 || pid < 200000u || pid >= 200000u + (unsigned int)fk_synth_procs) return -1;
    return (int)((pid - 200000u) % fk_scn->gpu_count);
}

FK_API unsigned long long fakeNvmlGetCallCount(void) { return __atomic_load_n(&calls, __ATOMIC_RELAXED); }

FK_API void fakeNvmlResetCallCount(void) { __atomic_store_n(&calls, 0ULL, __ATOMIC_RELAXED); }

FK_API void fakeNvmlSetCallLatency(int us) { __atomic_store_n(&latency_ctl_us, us < 0 ? -1 : us, __ATOMIC_RELAXED); }

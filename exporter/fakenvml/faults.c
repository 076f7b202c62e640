/*
 * faults.c - fault table, faults file and the fakeNvml* control symbols.
 *
 * Part of gpu-node-exporter. Compiled against NVIDIA's nvml.h; see fakenvml.h for the
 * Disclaimer and U.S. Government End Users Notice that nvml.h requires us to carry.
 *
 * Faults come from two independent sources: ctypes calls (fakeNvmlSetFault & co., kept
 * until cleared) and the file named by FAKE_NVML_FAULTS (replaced as a whole each time
 * the file changes), so a test can drive an exporter running in another process.
 * Injected delays are slept with the global lock released, so one hung call does not
 * freeze other threads - exactly the situation the exporter must survive.
 */
#include "fakenvml.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define MAX_FAULTS 256
#define MAX_XID_IDS 1024

typedef struct {
    char fn[64];
    int gpu;          /* -1 = every GPU (and system functions) */
    int ret;
    unsigned int delay_ms;
} fault;

static fault ctl_faults[MAX_FAULTS];
static int n_ctl;
static fault file_faults[MAX_FAULTS];
static int n_file;
static int ctl_lost[FK_MAX_GPUS];
static int file_lost[FK_MAX_GPUS];
static int file_lost_all;
/* Set by an injected Xid 79: like the real driver, a GPU that fell off the bus answers every
 * call with GPU_IS_LOST until it is reset (a `reset` line, or fakeNvmlSetGpuLost(gpu, 0)). */
static int fallen[FK_MAX_GPUS];

static char faults_path[4096];
static double last_poll = -1;
static struct { long long mtime_ns; long long size; unsigned long long ino; int exists; } file_sig;
static char *xid_ids[MAX_XID_IDS];
static int n_xid_ids;

/* Where fk_log goes: stderr unless a program installed a handler (the exporter routes the
 * lines into its structured log, so raw text never lands in a JSON log stream). */
typedef void (*fk_log_handler)(const char *message);
static fk_log_handler log_handler;

FK_API void fakeNvmlSetLogHandler(fk_log_handler handler)
{
    __atomic_store_n(&log_handler, handler, __ATOMIC_SEQ_CST);
}

void fk_log(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fk_log_handler handler = __atomic_load_n(&log_handler, __ATOMIC_SEQ_CST);
    if (handler) {
        handler(buf);
        return;
    }
    fprintf(stderr, "%s\n", buf);
    fflush(stderr);
}

int fk_copy_str(char *dst, unsigned int len, const char *src)
{
    if (!dst) return NVML_ERROR_INVALID_ARGUMENT;
    size_t n = strlen(src);
    if (n + 1 > len) return NVML_ERROR_INSUFFICIENT_SIZE;
    memcpy(dst, src, n + 1);
    return NVML_SUCCESS;
}

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_ms(unsigned int ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

/* "nvmlDeviceGetFoo" matches "nvmlDeviceGetFoo", "nvmlDeviceGetFoo_v2", "nvmlDeviceGetFooV". */
int fk_name_matches(const char *pattern, const char *fn)
{
    size_t n = strlen(pattern);
    if (strncmp(pattern, fn, n)) return 0;
    const char *rest = fn + n;
    if (!*rest) return 1;
    if (rest[0] == '_' && rest[1] == 'v' && rest[2] >= '0' && rest[2] <= '9') return 1;
    if (rest[0] == 'V' && (!rest[1] || (rest[1] >= '0' && rest[1] <= '9'))) return 1;
    return 0;
}

static const fault *find_in(const fault *tab, int n, const char *fn, int gpu)
{
    for (int i = n - 1; i >= 0; i--) {
        const fault *f = &tab[i];
        if (f->gpu != -1 && f->gpu != gpu) continue;
        if (!strncmp(f->fn, "field:", 6)) continue;
        if (!strcmp(f->fn, "*")) {
            if (gpu >= 0) return f;
            continue;
        }
        if (fk_name_matches(f->fn, fn)) return f;
    }
    return NULL;
}

static const fault *find_fault(const char *fn, int gpu)
{
    const fault *f = find_in(ctl_faults, n_ctl, fn, gpu);
    return f ? f : find_in(file_faults, n_file, fn, gpu);
}

int fk_field_fault_locked(int gpu, unsigned int field, int *ret)
{
    char name[32];
    snprintf(name, sizeof name, "field:%u", field);
    const fault *tabs[2] = {ctl_faults, file_faults};
    int ns[2] = {n_ctl, n_file};
    for (int t = 0; t < 2; t++)
        for (int i = ns[t] - 1; i >= 0; i--) {
            const fault *f = &tabs[t][i];
            if ((f->gpu == -1 || f->gpu == gpu) && !strcmp(f->fn, name)) {
                *ret = f->ret;
                return 1;
            }
        }
    return 0;
}

int fk_gpu_lost_locked(int gpu)
{
    if (gpu < 0 || gpu >= FK_MAX_GPUS) return 0;
    return ctl_lost[gpu] || file_lost[gpu] || file_lost_all || fallen[gpu];
}

void fk_set_fallen_locked(int gpu, int value)
{
    if (gpu < 0)
        for (int i = 0; i < FK_MAX_GPUS; i++) fallen[i] = value;
    else if (gpu < FK_MAX_GPUS)
        fallen[gpu] = value;
}

int fk_unsupported_locked(const fk_gpu *g, const char *fn)
{
    for (int i = 0; i < g->n_not_supported; i++)
        if (fk_name_matches(g->not_supported[i], fn)) return 1;
    return 0;
}

static int add_fault(fault *tab, int *n, const char *fn, int gpu, int ret, unsigned int delay)
{
    if (!fn || !*fn || strlen(fn) >= sizeof tab[0].fn || gpu < -1 || gpu >= FK_MAX_GPUS) return -1;
    for (int i = 0; i < *n; i++)
        if (tab[i].gpu == gpu && !strcmp(tab[i].fn, fn)) {
            tab[i].ret = ret;
            tab[i].delay_ms = delay;
            return 0;
        }
    if (*n >= MAX_FAULTS) return -1;
    fault *f = &tab[(*n)++];
    snprintf(f->fn, sizeof f->fn, "%s", fn);
    f->gpu = gpu;
    f->ret = ret;
    f->delay_ms = delay;
    return 0;
}

/* ------------------------------------------------------------------ faults file */

static int xid_id_seen(const char *id)
{
    for (int i = 0; i < n_xid_ids; i++)
        if (!strcmp(xid_ids[i], id)) return 1;
    return 0;
}

static int parse_gpu(const char *s, int *gpu)
{
    if (!strcmp(s, "*") || !strcmp(s, "-1")) {
        *gpu = -1;
        return 0;
    }
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < 0 || v >= FK_MAX_GPUS) return -1;
    *gpu = (int)v;
    return 0;
}

static void reload_file_locked(void)
{
    n_file = 0;
    memset(file_lost, 0, sizeof file_lost);
    file_lost_all = 0;
    fk_time_file = -1;
    FILE *f = fopen(faults_path, "r");
    if (!f) return;
    char line[1024];
    int lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash) *hash = '\0';
        char *tok[8], *save = NULL;
        int n = 0;
        for (char *p = strtok_r(line, " \t\r\n", &save); p && n < 8; p = strtok_r(NULL, " \t\r\n", &save))
            tok[n++] = p;
        if (!n) continue;
        const char *why = NULL;
        if (!strcmp(tok[0], "fault")) {
            int gpu, ret;
            unsigned long delay = 0;
            if (n < 4 || n > 5) why = "expected: fault <function|*|field:ID> <gpu|*> <RETURN> [delay_ms=N]";
            else if (parse_gpu(tok[2], &gpu)) why = "bad gpu";
            else if (fk_parse_return(tok[3], &ret)) why = "unknown return code";
            else if (n == 5) {
                char *end;
                if (strncmp(tok[4], "delay_ms=", 9)) why = "expected delay_ms=N";
                else {
                    delay = strtoul(tok[4] + 9, &end, 10);
                    if (end == tok[4] + 9 || *end || delay > 3600000) why = "bad delay_ms";
                }
            }
            if (!why && !strncmp(tok[1], "field:", 6)) {
                char *end;
                unsigned long id = strtoul(tok[1] + 6, &end, 10);
                if (end == tok[1] + 6 || *end || id > 0xffff) why = "bad field id";
            }
            if (!why && add_fault(file_faults, &n_file, tok[1], gpu, ret, (unsigned int)delay)) why = "too many faults";
        } else if (!strcmp(tok[0], "lost")) {
            int gpu;
            if (n != 2 || parse_gpu(tok[1], &gpu)) why = "expected: lost <gpu|*>";
            else if (gpu < 0) file_lost_all = 1;
            else file_lost[gpu] = 1;
        } else if (!strcmp(tok[0], "time")) {
            char *end;
            double v = n == 2 ? strtod(tok[1], &end) : -1;
            if (n != 2 || end == tok[1] || *end || v < 0) why = "expected: time <seconds>";
            else fk_time_file = v;
        } else if (!strcmp(tok[0], "xid")) {
            int gpu;
            unsigned long long code = 0;
            unsigned int gi = FK_NA, ci = FK_NA;
            const char *id = NULL;
            char *end;
            if (n < 4) why = "expected: xid <gpu|*> <code> [gi=N] [ci=N] id=<token>";
            else if (parse_gpu(tok[1], &gpu)) why = "bad gpu";
            else {
                code = strtoull(tok[2], &end, 0);
                if (end == tok[2] || *end) why = "bad xid code";
            }
            for (int i = 3; i < n && !why; i++) {
                if (!strncmp(tok[i], "gi=", 3)) {
                    unsigned long v = strtoul(tok[i] + 3, &end, 0);
                    if (end == tok[i] + 3 || *end) why = "bad gi";
                    gi = (unsigned int)v;
                } else if (!strncmp(tok[i], "ci=", 3)) {
                    unsigned long v = strtoul(tok[i] + 3, &end, 0);
                    if (end == tok[i] + 3 || *end) why = "bad ci";
                    ci = (unsigned int)v;
                } else if (!strncmp(tok[i], "id=", 3) && tok[i][3]) {
                    id = tok[i] + 3;
                } else {
                    why = "unknown xid attribute";
                }
            }
            if (!why && !id) why = "xid needs id=<unique token>";
            if (!why && !xid_id_seen(id)) {
                if (n_xid_ids < MAX_XID_IDS) xid_ids[n_xid_ids++] = strdup(id);
                fk_inject_xid_locked(gpu, code, gi, ci);
            }
        } else if (!strcmp(tok[0], "reset")) {
            int gpu;
            if (n != 3 || parse_gpu(tok[1], &gpu) || strncmp(tok[2], "id=", 3) || !tok[2][3])
                why = "expected: reset <gpu|*> id=<token>";
            else if (!xid_id_seen(tok[2] + 3)) {
                if (n_xid_ids < MAX_XID_IDS) xid_ids[n_xid_ids++] = strdup(tok[2] + 3);
                fk_set_fallen_locked(gpu, 0);
            }
        } else {
            why = "unknown directive (fault, lost, xid, reset, time)";
        }
        if (why) fk_log("fake NVML: %s:%d: ignored: %s", faults_path, lineno, why);
    }
    fclose(f);
}

void fk_faults_poll_locked(void)
{
    if (!faults_path[0]) return;
    double now = mono();
    if (last_poll >= 0 && now - last_poll < 0.1) return;
    last_poll = now;
    struct stat st;
    int exists = stat(faults_path, &st) == 0;
    long long mt = exists ? (long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec : 0;
    long long sz = exists ? (long long)st.st_size : 0;
    unsigned long long ino = exists ? (unsigned long long)st.st_ino : 0;
    if (exists == file_sig.exists && mt == file_sig.mtime_ns && sz == file_sig.size && ino == file_sig.ino) return;
    file_sig.exists = exists;
    file_sig.mtime_ns = mt;
    file_sig.size = sz;
    file_sig.ino = ino;
    reload_file_locked();
}

/* Called from nvmlInit (lock held): picks up FAKE_NVML_FAULTS and reads it now. */
void fk_faults_init_locked(void)
{
    const char *p = getenv("FAKE_NVML_FAULTS");
    snprintf(faults_path, sizeof faults_path, "%s", p ? p : "");
    memset(&file_sig, 0, sizeof file_sig);
    file_sig.mtime_ns = -1;
    last_poll = -1;
    n_file = 0;
    memset(file_lost, 0, sizeof file_lost);
    file_lost_all = 0;
    fk_time_file = -1;
    fk_faults_poll_locked();
}

/* ------------------------------------------------------------------ entry helpers */

static int resolve(nvmlDevice_t dev, int *gpu, int *slot)
{
    uintptr_t p = (uintptr_t)dev;
    uintptr_t a = (uintptr_t)&fk_dev[0], b = a + sizeof fk_dev;
    if (p >= a && p < b && (p - a) % sizeof(struct nvmlDevice_st) == 0) {
        *gpu = (int)((p - a) / sizeof(struct nvmlDevice_st));
        *slot = -1;
        return 0;
    }
    a = (uintptr_t)&fk_migdev[0][0];
    b = a + sizeof fk_migdev;
    if (p >= a && p < b && (p - a) % sizeof(struct nvmlDevice_st) == 0) {
        size_t k = (p - a) / sizeof(struct nvmlDevice_st);
        *gpu = (int)(k / FK_MAX_MIG);
        *slot = (int)(k % FK_MAX_MIG);
        return 0;
    }
    return -1;
}

/* Applies a fault for (fn, gpu). Returns with the lock held on NVML_SUCCESS. */
static nvmlReturn_t apply_fault_locked(const char *fn, int gpu)
{
    const fault *f = find_fault(fn, gpu);
    if (!f) return NVML_SUCCESS;
    int ret = f->ret;
    unsigned int delay = f->delay_ms;
    if (delay) {
        pthread_mutex_unlock(&fk_lock);
        sleep_ms(delay);
        pthread_mutex_lock(&fk_lock);
        if (!fk_refcount) {
            pthread_mutex_unlock(&fk_lock);
            return NVML_ERROR_UNINITIALIZED;
        }
    }
    if (ret != NVML_SUCCESS) pthread_mutex_unlock(&fk_lock);
    return (nvmlReturn_t)ret;
}

/* nvmlInit* with fk_lock held and the faults file just read: an injected fault on the init
 * function makes this init fail, like a driver that is not loaded. The lock stays held. */
nvmlReturn_t fk_init_fault_locked(const char *fn)
{
    const fault *f = find_fault(fn, -1);
    return f ? (nvmlReturn_t)f->ret : NVML_SUCCESS;
}

nvmlReturn_t fk_enter_dev(const char *fn, nvmlDevice_t dev, fk_ctx *c)
{
    int gpu, slot;
    fk_count_call(1);
    pthread_mutex_lock(&fk_lock);
    if (!fk_refcount) {
        pthread_mutex_unlock(&fk_lock);
        return NVML_ERROR_UNINITIALIZED;
    }
    if (!dev || resolve(dev, &gpu, &slot) || gpu >= (int)fk_scn->gpu_count) {
        pthread_mutex_unlock(&fk_lock);
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    fk_faults_poll_locked();
    fk_gpu *g = &fk_scn->gpus[gpu];
    if (slot >= 0 && (!g->mig_current || !g->mig[slot].present)) {
        pthread_mutex_unlock(&fk_lock);
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    if (fk_gpu_lost_locked(gpu)) {
        pthread_mutex_unlock(&fk_lock);
        return NVML_ERROR_GPU_IS_LOST;
    }
    nvmlReturn_t r = apply_fault_locked(fn, gpu);
    if (r != NVML_SUCCESS) return r;
    /* The scenario may have been replaced while we slept outside the lock. */
    if (gpu >= (int)fk_scn->gpu_count || (slot >= 0 && !fk_scn->gpus[gpu].mig[slot].present)) {
        pthread_mutex_unlock(&fk_lock);
        return NVML_ERROR_INVALID_ARGUMENT;
    }
    g = &fk_scn->gpus[gpu];
    if (fk_unsupported_locked(g, fn)) {
        pthread_mutex_unlock(&fk_lock);
        return NVML_ERROR_NOT_SUPPORTED;
    }
    c->gpu = gpu;
    c->slot = slot;
    c->g = g;
    return NVML_SUCCESS;
}

nvmlReturn_t fk_enter_idx(const char *fn, int gpu)
{
    fk_count_call(1);
    pthread_mutex_lock(&fk_lock);
    if (!fk_refcount) {
        pthread_mutex_unlock(&fk_lock);
        return NVML_ERROR_UNINITIALIZED;
    }
    fk_faults_poll_locked();
    return apply_fault_locked(fn, gpu);
}

nvmlReturn_t fk_leave(nvmlReturn_t r)
{
    pthread_mutex_unlock(&fk_lock);
    return r;
}

/* ------------------------------------------------------------------ control symbols */

FK_API int fakeNvmlSetFault(const char *function, int gpu, int nvmlReturn, unsigned int delayMs)
{
    pthread_mutex_lock(&fk_lock);
    int r = add_fault(ctl_faults, &n_ctl, function, gpu, nvmlReturn, delayMs);
    pthread_mutex_unlock(&fk_lock);
    return r;
}

FK_API void fakeNvmlClearFaults(void)
{
    pthread_mutex_lock(&fk_lock);
    n_ctl = 0;
    memset(ctl_lost, 0, sizeof ctl_lost);
    memset(fallen, 0, sizeof fallen);
    pthread_mutex_unlock(&fk_lock);
}

FK_API int fakeNvmlSetGpuLost(int gpu, int lost)
{
    if (gpu < -1 || gpu >= FK_MAX_GPUS) return -1;
    pthread_mutex_lock(&fk_lock);
    if (gpu == -1)
        for (int i = 0; i < FK_MAX_GPUS; i++) ctl_lost[i] = lost != 0;
    else
        ctl_lost[gpu] = lost != 0;
    if (!lost) fk_set_fallen_locked(gpu, 0); /* bringing a GPU back is a reset */
    pthread_mutex_unlock(&fk_lock);
    return 0;
}

FK_API int fakeNvmlInjectXid(int gpu, unsigned long long xid, unsigned int gi, unsigned int ci)
{
    if (gpu < -1 || gpu >= FK_MAX_GPUS) return -1;
    pthread_mutex_lock(&fk_lock);
    int r = fk_inject_xid_locked(gpu, xid, gi, ci);
    pthread_mutex_unlock(&fk_lock);
    return r;
}

FK_API void fakeNvmlSetTime(double seconds)
{
    pthread_mutex_lock(&fk_lock);
    fk_time_ctl = seconds < 0 ? -1 : seconds;
    pthread_mutex_unlock(&fk_lock);
}

FK_API double fakeNvmlGetTime(void)
{
    pthread_mutex_lock(&fk_lock);
    double t = fk_now();
    pthread_mutex_unlock(&fk_lock);
    return t;
}

FK_API int fakeNvmlSetValue(int gpu, const char *key, double value)
{
    char buf[64], err[256];
    if (!key) return -1;
    snprintf(buf, sizeof buf, "%.17g", value);
    pthread_mutex_lock(&fk_lock);
    int r = -1;
    if (fk_scn && gpu >= -1 && gpu < (int)fk_scn->gpu_count) {
        r = 0;
        for (int i = 0; i < (int)fk_scn->gpu_count; i++) {
            if (gpu != -1 && gpu != i) continue;
            if (fk_apply_override(&fk_scn->gpus[i], key, buf, err, sizeof err)) {
                fk_log("fake NVML: fakeNvmlSetValue(%d, %s): %s", gpu, key, err);
                r = -1;
                break;
            }
        }
    }
    pthread_mutex_unlock(&fk_lock);
    return r;
}

FK_API int fakeNvmlSetKey(int gpu, const char *key, const char *value)
{
    char err[256];
    if (!key || !value) return -1;
    pthread_mutex_lock(&fk_lock);
    int r = -1;
    if (fk_scn && gpu >= -1 && gpu < (int)fk_scn->gpu_count) {
        r = 0;
        for (int i = 0; i < (int)fk_scn->gpu_count; i++) {
            if (gpu != -1 && gpu != i) continue;
            if (fk_apply_override(&fk_scn->gpus[i], key, value, err, sizeof err)) {
                fk_log("fake NVML: fakeNvmlSetKey(%d, %s): %s", gpu, key, err);
                r = -1;
                break;
            }
        }
    }
    pthread_mutex_unlock(&fk_lock);
    return r;
}

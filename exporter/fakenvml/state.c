/*
 * state.c - global state, init/shutdown, error strings and system-level calls.
 *
 * Part of gpu-node-exporter. Compiled against NVIDIA's nvml.h; see fakenvml.h for the
 * Disclaimer and U.S. Government End Users Notice that nvml.h requires us to carry.
 *
 * The scenario is (re)loaded whenever the init refcount goes from 0 to 1, so a test can
 * switch FAKE_NVML_SCENARIO between nvmlShutdown and nvmlInit inside one process (pynvml
 * never unloads the library).
 */
#define _GNU_SOURCE
#include "fakenvml.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

pthread_mutex_t fk_lock = PTHREAD_MUTEX_INITIALIZER;
pthread_cond_t fk_cond = PTHREAD_COND_INITIALIZER;
fk_scenario *fk_scn;
int fk_refcount;
struct nvmlDevice_st fk_dev[FK_MAX_GPUS];
struct nvmlDevice_st fk_migdev[FK_MAX_GPUS][FK_MAX_MIG];
struct nvmlGpuInstance_st fk_gi[FK_MAX_GPUS][FK_MAX_MIG];

static const struct {
    int code;
    const char *name;
    const char *text;
} returns[] = {
    {NVML_SUCCESS, "SUCCESS", "Success"},
    {NVML_ERROR_UNINITIALIZED, "UNINITIALIZED", "Uninitialized"},
    {NVML_ERROR_INVALID_ARGUMENT, "INVALID_ARGUMENT", "Invalid Argument"},
    {NVML_ERROR_NOT_SUPPORTED, "NOT_SUPPORTED", "Not Supported"},
    {NVML_ERROR_NO_PERMISSION, "NO_PERMISSION", "Insufficient Permissions"},
    {NVML_ERROR_ALREADY_INITIALIZED, "ALREADY_INITIALIZED", "Already Initialized"},
    {NVML_ERROR_NOT_FOUND, "NOT_FOUND", "Not Found"},
    {NVML_ERROR_INSUFFICIENT_SIZE, "INSUFFICIENT_SIZE", "Insufficient Size"},
    {NVML_ERROR_INSUFFICIENT_POWER, "INSUFFICIENT_POWER", "Insufficient External Power"},
    {NVML_ERROR_DRIVER_NOT_LOADED, "DRIVER_NOT_LOADED", "Driver Not Loaded"},
    {NVML_ERROR_TIMEOUT, "TIMEOUT", "Timeout"},
    {NVML_ERROR_IRQ_ISSUE, "IRQ_ISSUE", "Interrupt Request Issue"},
    {NVML_ERROR_LIBRARY_NOT_FOUND, "LIBRARY_NOT_FOUND", "NVML Shared Library Not Found"},
    {NVML_ERROR_FUNCTION_NOT_FOUND, "FUNCTION_NOT_FOUND", "Function Not Found"},
    {NVML_ERROR_CORRUPTED_INFOROM, "CORRUPTED_INFOROM", "Corrupted infoROM"},
    {NVML_ERROR_GPU_IS_LOST, "GPU_IS_LOST", "GPU is lost"},
    {NVML_ERROR_RESET_REQUIRED, "RESET_REQUIRED", "GPU requires restart"},
    {NVML_ERROR_OPERATING_SYSTEM, "OPERATING_SYSTEM", "The operating system has blocked the request."},
    {NVML_ERROR_LIB_RM_VERSION_MISMATCH, "LIB_RM_VERSION_MISMATCH", "RM has detected an NVML/RM version mismatch."},
    {NVML_ERROR_IN_USE, "IN_USE", "In use by another client"},
    {NVML_ERROR_MEMORY, "MEMORY", "Insufficient Memory"},
    {NVML_ERROR_NO_DATA, "NO_DATA", "No data"},
    {NVML_ERROR_VGPU_ECC_NOT_SUPPORTED, "VGPU_ECC_NOT_SUPPORTED", "vGPU ECC Not Supported"},
    {NVML_ERROR_INSUFFICIENT_RESOURCES, "INSUFFICIENT_RESOURCES", "Insufficient Resources"},
    {NVML_ERROR_FREQ_NOT_SUPPORTED, "FREQ_NOT_SUPPORTED", "Frequency Not Supported"},
    {NVML_ERROR_ARGUMENT_VERSION_MISMATCH, "ARGUMENT_VERSION_MISMATCH", "Argument Version Mismatch"},
    {NVML_ERROR_DEPRECATED, "DEPRECATED", "Deprecated"},
    {NVML_ERROR_NOT_READY, "NOT_READY", "Not Ready"},
    {NVML_ERROR_GPU_NOT_FOUND, "GPU_NOT_FOUND", "GPU Not Found"},
    {NVML_ERROR_INVALID_STATE, "INVALID_STATE", "Invalid State"},
    {NVML_ERROR_RESET_TYPE_NOT_SUPPORTED, "RESET_TYPE_NOT_SUPPORTED", "Reset Type Not Supported"},
    {NVML_ERROR_UNKNOWN, "UNKNOWN", "Unknown Error"},
};

const char *fk_return_name(int code)
{
    for (size_t i = 0; i < sizeof returns / sizeof returns[0]; i++)
        if (returns[i].code == code) return returns[i].name;
    return NULL;
}

/* Accepts "GPU_IS_LOST", "NVML_ERROR_GPU_IS_LOST", "NVML_SUCCESS", "SUCCESS" or a number. */
int fk_parse_return(const char *s, int *out)
{
    char *end;
    long v = strtol(s, &end, 0);
    if (end != s && !*end) {
        if (v < 0 || v > 0x7fffffff) return -1;
        *out = (int)v;
        return 0;
    }
    if (!strncasecmp(s, "NVML_ERROR_", 11)) s += 11;
    else if (!strncasecmp(s, "NVML_", 5)) s += 5;
    else if (!strncasecmp(s, "ERROR_", 6)) s += 6;
    for (size_t i = 0; i < sizeof returns / sizeof returns[0]; i++)
        if (!strcasecmp(returns[i].name, s)) {
            *out = returns[i].code;
            return 0;
        }
    return -1;
}

FK_API const char *nvmlErrorString(nvmlReturn_t result)
{
    fk_count_call(0);   /* a string table in the real library too: counted, no latency */
    for (size_t i = 0; i < sizeof returns / sizeof returns[0]; i++)
        if ((int)returns[i].code == (int)result) return returns[i].text;
    return "Unknown Error";
}

static void anchor(void) {}

/* Scenario path for FAKE_NVML_SCENARIO (a name or a path). */
static void scenario_path(char *out, size_t n)
{
    const char *s = getenv("FAKE_NVML_SCENARIO");
    if (!s || !*s) s = "a100-mig";
    size_t len = strlen(s);
    if (strchr(s, '/') || (len > 4 && !strcmp(s + len - 4, ".scn"))) {
        snprintf(out, n, "%s", s);
        return;
    }
    const char *dir = getenv("FAKE_NVML_SCENARIO_DIR");
    if (dir && *dir) {
        snprintf(out, n, "%s/%s.scn", dir, s);
        return;
    }
    Dl_info info;
    char libdir[4096] = ".";
    if (dladdr((void *)anchor, &info) && info.dli_fname) {
        snprintf(libdir, sizeof libdir, "%s", info.dli_fname);
        char *slash = strrchr(libdir, '/');
        if (slash) *slash = '\0';
        else snprintf(libdir, sizeof libdir, ".");
    }
    snprintf(out, n, "%s/scenarios/%s.scn", libdir, s);
}

/* Parses a scenario file without loading it, so a program can reject a broken file before it
 * starts (the exporter's --simulate=FILE) instead of retrying an nvmlInit that fails with
 * UNKNOWN. Returns 0 when it loads, else -1 with "file:line: field: message" in err. */
FK_API int fakeNvmlCheckScenario(const char *path, char *err, unsigned int errlen)
{
    char msg[1024] = "";
    if (!path) return -1;
    pthread_mutex_lock(&fk_lock);   /* the parser shares state with nvmlInit's */
    fk_scenario *s = fk_scenario_load(path, msg, sizeof msg);
    pthread_mutex_unlock(&fk_lock);
    if (err && errlen) snprintf(err, errlen, "%s", s ? "" : msg);
    free(s);
    return s ? 0 : -1;
}

static nvmlReturn_t do_first_init(const char *fn);

static nvmlReturn_t do_init(const char *fn)
{
    pthread_mutex_lock(&fk_lock);
    if (fk_refcount > 0) {
        fk_refcount++;
        pthread_mutex_unlock(&fk_lock);
        fk_count_call(1);
        return NVML_SUCCESS;
    }
    nvmlReturn_t res = do_first_init(fn);
    pthread_mutex_unlock(&fk_lock);
    fk_count_call(1);   /* after the env is read, so the first init is counted in the file too */
    return res;
}

/* Refcount 0 -> 1, lock held: loads the scenario and reads the environment. */
static nvmlReturn_t do_first_init(const char *fn)
{
    char path[4096], err[1024];
    scenario_path(path, sizeof path);
    fk_scenario *s = fk_scenario_load(path, err, sizeof err);
    if (!s) {
        fk_log("fake NVML: nvmlInit failed: %s", err);
        fk_calls_env_locked();
        return NVML_ERROR_UNKNOWN;
    }
    free(fk_scn);
    fk_scn = s;
    for (int g = 0; g < FK_MAX_GPUS; g++) {
        fk_dev[g].gpu = g;
        fk_dev[g].slot = -1;
        for (int m = 0; m < FK_MAX_MIG; m++) {
            fk_migdev[g][m].gpu = fk_gi[g][m].gpu = g;
            fk_migdev[g][m].slot = fk_gi[g][m].slot = m;
        }
    }
    fk_time_start();
    fk_time_env();
    fk_refcount = 1;
    fk_faults_init_locked();
    fk_calls_env_locked();
    nvmlReturn_t injected = fk_init_fault_locked(fn);
    if (injected != NVML_SUCCESS) fk_refcount = 0;
    return injected;
}

FK_API nvmlReturn_t nvmlInitWithFlags(unsigned int flags)
{
    (void)flags;
    return do_init(__func__);
}

FK_API nvmlReturn_t nvmlInit_v2(void) { return do_init(__func__); }
FK_API nvmlReturn_t nvmlInit(void) { return do_init(__func__); }

FK_API nvmlReturn_t nvmlShutdown(void)
{
    fk_count_call(1);
    pthread_mutex_lock(&fk_lock);
    if (!fk_refcount) {
        pthread_mutex_unlock(&fk_lock);
        return NVML_ERROR_UNINITIALIZED;
    }
    fk_refcount--;
    pthread_cond_broadcast(&fk_cond);
    pthread_mutex_unlock(&fk_lock);
    return NVML_SUCCESS;
}

FK_API nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length)
{
    nvmlReturn_t r = fk_enter_idx(__func__, -1);
    if (r) return r;
    FK_RET((nvmlReturn_t)fk_copy_str(version, length, fk_scn->driver_version));
}

FK_API nvmlReturn_t nvmlSystemGetNVMLVersion(char *version, unsigned int length)
{
    nvmlReturn_t r = fk_enter_idx(__func__, -1);
    if (r) return r;
    FK_RET((nvmlReturn_t)fk_copy_str(version, length, fk_scn->nvml_version));
}

FK_API nvmlReturn_t nvmlSystemGetCudaDriverVersion(int *cudaDriverVersion)
{
    nvmlReturn_t r = fk_enter_idx(__func__, -1);
    if (r) return r;
    FK_NULLCHK(cudaDriverVersion);
    *cudaDriverVersion = fk_scn->cuda_version;
    FK_RET(NVML_SUCCESS);
}

FK_API nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int *cudaDriverVersion)
{
    nvmlReturn_t r = fk_enter_idx(__func__, -1);
    if (r) return r;
    FK_NULLCHK(cudaDriverVersion);
    *cudaDriverVersion = fk_scn->cuda_version;
    FK_RET(NVML_SUCCESS);
}

FK_API nvmlReturn_t nvmlSystemGetProcessName(unsigned int pid, char *name, unsigned int length)
{
    nvmlReturn_t r = fk_enter_idx(__func__, -1);
    if (r) return r;
    FK_NULLCHK(name);
    if (!length) FK_RET(NVML_ERROR_INVALID_ARGUMENT);
    int sg = fk_synth_pid_gpu(pid);
    if (sg >= 0) {
        snprintf(name, length, "bench-proc-%u", pid - 200000u);
        FK_RET(NVML_SUCCESS);
    }
    for (unsigned int g = 0; g < fk_scn->gpu_count; g++)
        for (int p = 0; p < fk_scn->gpus[g].n_procs; p++)
            if (fk_scn->gpus[g].procs[p].pid == pid) {
                /* The real call truncates to the buffer rather than failing. */
                snprintf(name, length, "%s", fk_scn->gpus[g].procs[p].name);
                FK_RET(NVML_SUCCESS);
            }
    FK_RET(NVML_ERROR_NOT_FOUND);
}

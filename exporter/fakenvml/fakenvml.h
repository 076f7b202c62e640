/*
 * fakenvml.h - internal declarations of the fake libnvidia-ml.so.1.
 *
 * This file is part of gpu-node-exporter. It is compiled against NVIDIA's nvml.h,
 * which is installed at build time (PyPI nvidia-nvml-dev) and never committed.
 * nvml.h requires the following notice in the internal comments of code using it:
 *
 * --- begin notice copied from nvml.h ---
 * NVIDIA MAKES NO REPRESENTATION ABOUT THE SUITABILITY OF THIS SOURCE
 * CODE FOR ANY PURPOSE.  IT IS PROVIDED "AS IS" WITHOUT EXPRESS OR
 * IMPLIED WARRANTY OF ANY KIND.  NVIDIA DISCLAIMS ALL WARRANTIES WITH
 * REGARD TO THIS SOURCE CODE, INCLUDING ALL IMPLIED WARRANTIES OF
 * MERCHANTABILITY, NONINFRINGEMENT, AND FITNESS FOR A PARTICULAR PURPOSE.
 * IN NO EVENT SHALL NVIDIA BE LIABLE FOR ANY SPECIAL, INDIRECT, INCIDENTAL,
 * OR CONSEQUENTIAL DAMAGES, OR ANY DAMAGES WHATSOEVER RESULTING FROM LOSS
 * OF USE, DATA OR PROFITS,  WHETHER IN AN ACTION OF CONTRACT, NEGLIGENCE
 * OR OTHER TORTIOUS ACTION,  ARISING OUT OF OR IN CONNECTION WITH THE USE
 * OR PERFORMANCE OF THIS SOURCE CODE.
 *
 * U.S. Government End Users.   This source code is a "commercial item" as
 * that term is defined at  48 C.F.R. 2.101 (OCT 1995), consisting  of
 * "commercial computer  software"  and "commercial computer software
 * documentation" as such terms are  used in 48 C.F.R. 12.212 (SEPT 1995)
 * and is provided to the U.S. Government only as a commercial end item.
 * Consistent with 48 C.F.R.12.212 and 48 C.F.R. 227.7202-1 through
 * 227.7202-4 (JUNE 1995), all U.S. Government End Users acquire the
 * source code with only those rights set forth herein.
 * --- end notice ---
 */
#ifndef FAKENVML_H
#define FAKENVML_H

/* Keep the legacy (unversioned) prototypes: we export both names explicitly. */
#ifndef NVML_NO_UNVERSIONED_FUNC_DEFS
#define NVML_NO_UNVERSIONED_FUNC_DEFS
#endif
#include <nvml.h>
#include <pthread.h>
#include <stddef.h>

#define FK_API __attribute__((visibility("default")))

#define FK_MAX_GPUS 64
#define FK_MAX_MIG 8        /* MIG device slots per GPU */
#define FK_MAX_PROFILES 18  /* NVML_GPU_INSTANCE_PROFILE_COUNT */
#define FK_MAX_PROCS 32
#define FK_MAX_LINKS 36
#define FK_MAX_NAMES 32     /* entries in a not_supported list */
#define FK_MAX_REASONS 16
#define FK_STR 96
#define FK_NA 0xFFFFFFFFu

/* A value that moves with time. FK_SINE: base + amp * sin(2*pi*(t + phase)/period).
 * FK_SQUARE: high during the first `on` seconds of every period of (t + phase), else low. */
#define FK_SINE 0
#define FK_SQUARE 1
typedef struct {
    double base, amp, period, phase;
    int kind;
    double high, low, on;
} fk_expr;
#define FK_CONST(v) ((fk_expr){(v), 0, 60, 0, FK_SINE, 0, 0, 0})

/* GPM activity factors (fractions of utilization_gpu / utilization_memory), see api_gpm.c. */
enum {
    FK_GPM_SM_ACTIVE, FK_GPM_SM_OCCUPANCY, FK_GPM_TENSOR_ACTIVE, FK_GPM_TENSOR_HMMA,
    FK_GPM_TENSOR_IMMA, FK_GPM_TENSOR_DMMA, FK_GPM_TENSOR_DFMA, FK_GPM_FP64, FK_GPM_FP32,
    FK_GPM_FP16, FK_GPM_INTEGER, FK_GPM_DRAM_ACTIVE, FK_GPM_FACTORS
};

/* A monotonic counter: start + rate * t. */
typedef struct {
    double start, rate;
} fk_counter;

typedef struct {
    int used;
    char name[32];        /* e.g. 1g.10gb */
    unsigned int id;      /* NVML_GPU_INSTANCE_PROFILE_* */
    unsigned int slices;
    unsigned int instances;
    unsigned long long memory_mib;
    unsigned int sm;
    unsigned int ce, dec, enc, jpg, ofa;
} fk_profile;

typedef struct {
    int present;
    unsigned int gi, ci;
    char profile[32];
    unsigned int gi_slices, ci_slices;
    unsigned int profile_id;
    unsigned int start;         /* placement start */
    unsigned long long memory_mib;
    unsigned int sm;
    unsigned int ce, dec, enc, jpg, ofa;
    char uuid[FK_STR];
    int has_util;               /* util= given: constant busy percent of this GPU instance */
    double util;
    double gpm[FK_GPM_FACTORS]; /* factors given on the mig_device line (bit i of gpm_set) */
    unsigned int gpm_set;
} fk_mig;

typedef struct {
    unsigned int pid;
    unsigned long long used_mib;
    int compute, graphics;
    unsigned int gi, ci;        /* FK_NA when not MIG */
    unsigned int sm_util;       /* sm=: constant smUtil percent (0 = use the share model) */
    double share;               /* share=: weight in the GPU's activity (default 1) */
    char name[64];
} fk_proc;

typedef struct {
    char name[FK_STR];
    unsigned int brand, arch, cc_major, cc_minor;
    char vbios[32], serial[32], uuid[FK_STR], uuid_seed[64];
    unsigned int minor;
    int has_minor;
    unsigned int pci_domain, pci_bus, pci_device;
    int has_pci;
    unsigned int pci_device_id, pci_subsystem_id;
    unsigned long long mem_total_mib, mem_reserved_mib, bar1_total_mib;
    fk_expr mem_used_mib, bar1_used_mib;
    unsigned int power_default_mw, power_min_mw, power_max_mw, power_limit_mw, power_enforced_mw;
    fk_expr power_w;
    fk_counter energy_offset_mj;
    int ecc_supported, ecc_current, ecc_pending;
    int persistence, compute_mode, pstate;
    unsigned int temp_shutdown, temp_slowdown, temp_mem_max, temp_gpu_max;
    fk_expr temp_gpu, temp_mem;
    unsigned int clock_max[4];    /* graphics, sm, mem, video */
    unsigned int clock_app[4];
    fk_expr clock[4];
    unsigned int pcie_max_gen, pcie_max_width, pcie_cur_gen, pcie_cur_width;
    fk_expr pcie_tx_kbps, pcie_rx_kbps;
    fk_counter pcie_replay, pcie_replay_rollover;
    unsigned int nvlink_links, nvlink_version;
    unsigned long long nvlink_inactive_mask;
    fk_expr nvlink_tx_kibps, nvlink_rx_kibps;   /* per link */
    fk_counter nvlink_err[5];                  /* per link, indexed by nvmlNvLinkErrorCounter_t */
    int fan_present;
    fk_expr fan_pct;
    fk_expr util_gpu, util_mem, util_enc, util_dec;
    double sample_period_s;                     /* utilization sample period (default 1/6 s) */
    unsigned int sample_buffer;                 /* samples kept (default 100) */
    int gpm;                                    /* -1: by architecture (>= hopper), else 0/1 */
    double gpm_factor[FK_GPM_FACTORS];
    int variation;                              /* 0: gpu_variation leaves this GPU alone */
    int retired_pages, row_remapping;
    unsigned int retired_sbe, retired_dbe, retired_pending;
    unsigned int remap_cor, remap_unc, remap_pending, remap_failure;
    unsigned int remap_hist[5];
    fk_counter ecc[2][2];                       /* [corrected/uncorrected][volatile/aggregate] */
    fk_counter throttle_ns[12];                 /* see fk_throttle_index() */
    unsigned long long reasons[FK_MAX_REASONS];
    int n_reasons;
    double reasons_period;
    unsigned long long supported_reasons;
    int mig_capable, mig_current, mig_pending;
    unsigned int mig_max;
    fk_profile profiles[FK_MAX_PROFILES];
    fk_mig mig[FK_MAX_MIG];
    fk_proc procs[FK_MAX_PROCS];
    int n_procs;
    char not_supported[FK_MAX_NAMES][64];
    int n_not_supported;
    /* list-valued keys seen in the section currently being applied (replace, not append) */
    int procs_epoch, mig_epoch, prof_epoch, ns_epoch;
} fk_gpu;

typedef struct {
    char name[64];
    char path[4096];
    char driver_version[80];
    char nvml_version[80];
    int cuda_version;
    unsigned int gpu_count;
    double gpu_variation;     /* [system] gpu_variation, 0..0.5 */
    fk_gpu gpus[FK_MAX_GPUS];
} fk_scenario;

/* Opaque handle targets. Static arrays so handles are stable for the process lifetime. */
struct nvmlDevice_st {
    int gpu;
    int slot;   /* -1 for a physical GPU, else MIG device index */
};
struct nvmlGpuInstance_st {
    int gpu;
    int slot;
};

/* ---- global state (state.c) ---- */
extern pthread_mutex_t fk_lock;
extern pthread_cond_t fk_cond;
extern fk_scenario *fk_scn;   /* NULL until the first successful init */
extern int fk_refcount;
extern struct nvmlDevice_st fk_dev[FK_MAX_GPUS];
extern struct nvmlDevice_st fk_migdev[FK_MAX_GPUS][FK_MAX_MIG];
extern struct nvmlGpuInstance_st fk_gi[FK_MAX_GPUS][FK_MAX_MIG];

/* ---- scenario.c ---- */
/* Parses a scenario file. On error returns NULL and fills err (file:line: message). */
fk_scenario *fk_scenario_load(const char *path, char *err, size_t errlen);
/* Applies one "key = value" line to a GPU; used by the parser and fakeNvmlSetValue. */
int fk_apply_key(fk_gpu *g, const char *key, const char *value, char *err, size_t errlen);
int fk_apply_override(fk_gpu *g, const char *key, const char *value, char *err, size_t errlen);
int fk_parse_return(const char *s, int *out);
/* Writes a formatted parse error into err; returns -1 (the parsers' error result). */
int fk_seterr(char *err, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
const char *fk_return_name(int code);

/* ---- model.c ---- */
double fk_now(void);                    /* scenario time t in seconds */
void fk_time_start(void);               /* marks the first init */
void fk_time_env(void);                 /* reads FAKE_NVML_TIME */
extern double fk_time_ctl;              /* < 0: unset */
extern double fk_time_file;             /* < 0: unset */
double fk_eval(const fk_expr *e, double t);
double fk_eval_clamped(const fk_expr *e, double t, double lo, double hi);
double fk_integral(const fk_expr *e, double t);   /* integral of e from 0 to t (>= 0) */
double fk_avg(const fk_expr *e, double a, double b);   /* exact mean over (a, b], any sign */
double fk_expr_min(const fk_expr *e);
double fk_expr_max(const fk_expr *e);
extern unsigned long long fk_wall_base_us;   /* wall clock at scenario time 0 (first init) */
unsigned long long fk_count(const fk_counter *c, double t);
unsigned long long fk_energy_mj(const fk_gpu *g, double t);
unsigned int fk_power_mw(const fk_gpu *g, double t);
unsigned long long fk_mig_used_mib(const fk_gpu *g, int slot);
unsigned long long fk_gpu_used_mib(const fk_gpu *g, double t);
unsigned long long fk_reasons(const fk_gpu *g, double t);
unsigned long long fk_now_us(void);   /* wall clock, microseconds since epoch */
int fk_throttle_index(unsigned int field);

/* ---- scenario_activity.c ---- */
int fk_parse_square(char **tok, int n, fk_expr *e, int nonneg);   /* tok[0] == "square" */
void fk_activity_defaults(fk_gpu *g);
/* Activity keys (samples, GPM, variation): 0 applied, -1 error, 1 not an activity key. */
int fk_apply_activity_key(fk_gpu *g, const char *key, const char *value, char *err, size_t errlen);
/* A mig_device / process attribute this file owns: 0 applied, -1 error, 1 not one of them. */
int fk_apply_mig_attr(fk_mig *m, const char *key, const char *value, char *err, size_t errlen);
extern const char *const fk_gpm_factor_keys[FK_GPM_FACTORS];
void fk_apply_variation(fk_scenario *s);

/* ---- api_activity.c ---- */
double fk_sample_period(const fk_gpu *g);
long long fk_sample_last(const fk_gpu *g, double t);             /* index of the last complete sample */
unsigned long long fk_sample_ts(const fk_gpu *g, long long k);    /* its timestamp, us */
unsigned int fk_util_now(const fk_gpu *g, const fk_expr *e, double t); /* what a gauge shows */

/* ---- api_gpm.c ---- */
int fk_gpm_enabled(const fk_gpu *g);

/* ---- faults.c ---- */
typedef struct {
    int gpu;        /* physical index, -1 when the call has no device */
    int slot;       /* MIG slot or -1 */
    fk_gpu *g;      /* scenario data (lock held) */
} fk_ctx;
/* Entry for device functions: validates, applies faults (sleeping outside the lock) and
 * returns NVML_SUCCESS with fk_lock held, or an error with the lock released. */
nvmlReturn_t fk_enter_dev(const char *fn, nvmlDevice_t dev, fk_ctx *c);
/* Entry for functions that address a GPU by index (gpu = -1 for system functions). */
nvmlReturn_t fk_enter_idx(const char *fn, int gpu);
nvmlReturn_t fk_leave(nvmlReturn_t r);
void fk_faults_poll_locked(void);   /* re-reads FAKE_NVML_FAULTS when due */
nvmlReturn_t fk_init_fault_locked(const char *fn); /* injected init failure, lock held */
void fk_faults_init_locked(void);   /* reads FAKE_NVML_FAULTS at nvmlInit */
int fk_field_fault_locked(int gpu, unsigned int field, int *ret);
int fk_gpu_lost_locked(int gpu);
void fk_set_fallen_locked(int gpu, int value);
/* NVML reports row remapping NOT_SUPPORTED on a MIG-enabled GPU only while it has instances. */
static inline int fk_mig_instances_active(const fk_gpu *g)
{
    if (!g->mig_current) return 0;
    for (int m = 0; m < FK_MAX_MIG; m++)
        if (g->mig[m].present) return 1;
    return 0;
}
int fk_unsupported_locked(const fk_gpu *g, const char *fn);
int fk_name_matches(const char *pattern, const char *fn);

/* ---- events.c ---- */
int fk_inject_xid_locked(int gpu, unsigned long long xid, unsigned int gi, unsigned int ci);

/* ---- calls.c ---- */
/* Counts one NVML entry point call and, with_latency, spends FAKE_NVML_CALL_LATENCY_US. */
void fk_count_call(int with_latency);
void fk_calls_env_locked(void);     /* reads the FAKE_NVML_CALL_* / FAKE_NVML_PROCESSES vars at init */
extern int fk_synth_procs;          /* FAKE_NVML_PROCESSES, -1 = use the scenario's processes */
int fk_proc_count(const fk_gpu *g, int gpu);
void fk_proc_at(const fk_gpu *g, int gpu, int i, fk_proc *out);
int fk_synth_pid_gpu(unsigned int pid);   /* GPU of a synthetic pid, -1 if not one */

/* ---- helpers ---- */
int fk_copy_str(char *dst, unsigned int len, const char *src);   /* NVML_ERROR_INSUFFICIENT_SIZE if short */
void fk_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define FK_DEV_BEGIN(dev, c)                                        \
    fk_ctx c;                                                       \
    do {                                                            \
        nvmlReturn_t _r = fk_enter_dev(__func__, (dev), &c);        \
        if (_r != NVML_SUCCESS) return _r;                          \
    } while (0)
#define FK_RET(r) return fk_leave(r)
#define FK_PHYS_ONLY(c)                                             \
    do {                                                            \
        if ((c).slot >= 0) FK_RET(NVML_ERROR_NOT_SUPPORTED);        \
    } while (0)
#define FK_NULLCHK(p)                                               \
    do {                                                            \
        if (!(p)) FK_RET(NVML_ERROR_INVALID_ARGUMENT);              \
    } while (0)

#endif

/*
 * api_activity.c - the utilization sample buffer of the fake NVML driver: nvmlDeviceGetSamples,
 * the utilization gauges that show its last sample, and per-process utilization.
 *
 * Part of gpu-node-exporter. Compiled against NVIDIA's nvml.h; see fakenvml.h for the
 * Disclaimer and U.S. Government End Users Notice that nvml.h requires us to carry.
 *
 * Model (docs/fake-driver.md): sample k covers scenario time ((k-1)P, kP], P the
 * GPU's sample_period_ms; its value is the exact mean of the curve over that interval
 * (closed-form integral), clamped to 0..100 and rounded; its timestamp is
 * fk_wall_base_us + kP * 1e6 (microseconds, the CPU wall clock at scenario time 0 plus the
 * scenario time), so it depends on the scenario time only. Only the last sample_buffer samples
 * exist, and the buffer is full from the first call (k <= 0: the periods before scenario time
 * 0, as a driver loaded before the program has them). Like the real driver, none of it is
 * supported on MIG handles or MIG-enabled GPUs.
 */
#include "fakenvml.h"

#include <math.h>
#include <string.h>

double fk_sample_period(const fk_gpu *g) { return g->sample_period_s > 0 ? g->sample_period_s : 1.0 / 6.0; }

long long fk_sample_last(const fk_gpu *g, double t)
{
    if (!(t > 0)) return 0;
    return (long long)floor(t / fk_sample_period(g) + 1e-9);   /* t = kP exactly is sample k */
}

unsigned long long fk_sample_ts(const fk_gpu *g, long long k)
{
    /* signed: k <= 0 are the samples the buffer held before scenario time 0 */
    return (unsigned long long)((long long)fk_wall_base_us + llround((double)k * fk_sample_period(g) * 1e6));
}

static double clamp_pct(double v) { return v < 0 ? 0 : v > 100 ? 100 : v; }

static unsigned int sample_value(const fk_gpu *g, const fk_expr *e, long long k)
{
    double p = fk_sample_period(g);
    return (unsigned int)lround(clamp_pct(fk_avg(e, (double)(k - 1) * p, (double)k * p)));
}

/* The gauge a utilization call shows: the last complete sample. */
unsigned int fk_util_now(const fk_gpu *g, const fk_expr *e, double t)
{
    return sample_value(g, e, fk_sample_last(g, t));
}

/* The first sample index in [kmin, kmax] with a timestamp > last_seen; kmax + 1 if none. */
static long long first_unseen(const fk_gpu *g, unsigned long long last_seen, long long kmin, long long kmax)
{
    if (last_seen < fk_sample_ts(g, kmin)) return kmin;
    if (last_seen >= fk_sample_ts(g, kmax)) return kmax + 1;
    double guess = (double)(long long)(last_seen - fk_wall_base_us) / 1e6 / fk_sample_period(g);
    long long k = (long long)floor(guess);
    if (k < kmin) k = kmin;
    if (k > kmax) k = kmax;
    while (k <= kmax && fk_sample_ts(g, k) <= last_seen) k++;
    while (k > kmin && fk_sample_ts(g, k - 1) > last_seen) k--;
    return k;
}

/* The samples that exist now: [*kmin, *kmax]. Like a driver that was loaded before the
 * program started, the buffer is full from the first call: samples k <= 0 are the sample
 * periods before scenario time 0 (the curves extend to negative time). Returns 1. */
static int buffer_range(const fk_gpu *g, long long *kmin, long long *kmax)
{
    *kmax = fk_sample_last(g, fk_now());
    *kmin = *kmax - (long long)g->sample_buffer + 1;
    return 1;
}

static const fk_expr *sample_curve(const fk_gpu *g, nvmlSamplingType_t type)
{
    switch (type) {
    case NVML_GPU_UTILIZATION_SAMPLES: return &g->util_gpu;
    case NVML_MEMORY_UTILIZATION_SAMPLES: return &g->util_mem;
    case NVML_ENC_UTILIZATION_SAMPLES: return &g->util_enc;
    case NVML_DEC_UTILIZATION_SAMPLES: return &g->util_dec;
    default: return NULL;
    }
}

FK_API nvmlReturn_t nvmlDeviceGetSamples(nvmlDevice_t device, nvmlSamplingType_t type, unsigned long long lastSeenTimeStamp,
                                         nvmlValueType_t *sampleValType, unsigned int *sampleCount, nvmlSample_t *samples)
{
    FK_DEV_BEGIN(device, c);
    if (!sampleValType || !sampleCount) FK_RET(NVML_ERROR_INVALID_ARGUMENT);
    const fk_expr *e = sample_curve(c.g, type);
    if (!e || c.slot >= 0 || c.g->mig_current) FK_RET(NVML_ERROR_NOT_SUPPORTED);
    if (samples && !*sampleCount) FK_RET(NVML_ERROR_INVALID_ARGUMENT);
    long long kmin, kmax;
    if (!buffer_range(c.g, &kmin, &kmax)) FK_RET(NVML_ERROR_NOT_FOUND);
    long long first = first_unseen(c.g, lastSeenTimeStamp, kmin, kmax);
    if (first > kmax) FK_RET(NVML_ERROR_NOT_FOUND);
    unsigned long long avail = (unsigned long long)(kmax - first + 1);
    *sampleValType = NVML_VALUE_TYPE_UNSIGNED_INT;
    if (!samples) {
        *sampleCount = (unsigned int)avail;
        FK_RET(NVML_SUCCESS);
    }
    unsigned int n = *sampleCount < avail ? *sampleCount : (unsigned int)avail;
    for (unsigned int i = 0; i < n; i++) {   /* oldest first */
        long long k = first + (long long)i;
        memset(&samples[i], 0, sizeof samples[i]);
        samples[i].timeStamp = fk_sample_ts(c.g, k);
        samples[i].sampleValue.uiVal = sample_value(c.g, e, k);
    }
    *sampleCount = n;
    FK_RET(NVML_SUCCESS);
}

/* ------------------------------------------------------------------ gauges */

FK_API nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device, nvmlUtilization_t *utilization)
{
    FK_DEV_BEGIN(device, c);
    FK_NULLCHK(utilization);
    if (c.slot >= 0 || c.g->mig_current) FK_RET(NVML_ERROR_NOT_SUPPORTED);
    double t = fk_now();
    utilization->gpu = fk_util_now(c.g, &c.g->util_gpu, t);
    utilization->memory = fk_util_now(c.g, &c.g->util_mem, t);
    FK_RET(NVML_SUCCESS);
}

static nvmlReturn_t codec_util(const char *fn, nvmlDevice_t device, unsigned int *u, unsigned int *period, int enc)
{
    fk_ctx c;
    nvmlReturn_t r = fk_enter_dev(fn, device, &c);
    if (r) return r;
    if (!u || !period) FK_RET(NVML_ERROR_INVALID_ARGUMENT);
    if (c.slot >= 0 || c.g->mig_current) FK_RET(NVML_ERROR_NOT_SUPPORTED);
    *u = fk_util_now(c.g, enc ? &c.g->util_enc : &c.g->util_dec, fk_now());
    *period = (unsigned int)llround(fk_sample_period(c.g) * 1e6);
    FK_RET(NVML_SUCCESS);
}

FK_API nvmlReturn_t nvmlDeviceGetEncoderUtilization(nvmlDevice_t device, unsigned int *utilization, unsigned int *samplingPeriodUs)
{
    return codec_util(__func__, device, utilization, samplingPeriodUs, 1);
}

FK_API nvmlReturn_t nvmlDeviceGetDecoderUtilization(nvmlDevice_t device, unsigned int *utilization, unsigned int *samplingPeriodUs)
{
    return codec_util(__func__, device, utilization, samplingPeriodUs, 0);
}

/* ------------------------------------------------------------------ per process */

/* Each compute/graphics process p gets w_p = share_p / (sum of the GPU's shares) of every
 * curve. Its one entry covers the samples after lastSeenTimeStamp that are still in the buffer,
 * the interval (t_first-1, t_last] on sample boundaries, and carries the last one's timestamp:
 * consecutive calls passing the previous timestamp split the GPU's busy time among processes.
 * sm= (a constant percent) replaces smUtil only. */
FK_API nvmlReturn_t nvmlDeviceGetProcessUtilization(nvmlDevice_t device, nvmlProcessUtilizationSample_t *utilization,
                                                    unsigned int *processSamplesCount, unsigned long long lastSeenTimeStamp)
{
    FK_DEV_BEGIN(device, c);
    FK_NULLCHK(processSamplesCount);
    if (c.slot >= 0 || c.g->mig_current) FK_RET(NVML_ERROR_NOT_SUPPORTED);
    const fk_gpu *g = c.g;
    fk_proc p;
    int np = fk_proc_count(g, c.gpu);
    unsigned int n = 0;
    double shares = 0;
    for (int i = 0; i < np; i++) {
        fk_proc_at(g, c.gpu, i, &p);
        if (!(p.compute || p.graphics)) continue;
        n++;
        shares += p.share;
    }
    long long kmin, kmax;
    /* Like the driver: no samples newer than lastSeenTimeStamp -> NOT_FOUND. */
    if (!n || !buffer_range(g, &kmin, &kmax)) FK_RET(NVML_ERROR_NOT_FOUND);
    long long first = first_unseen(g, lastSeenTimeStamp, kmin, kmax);
    if (first > kmax) FK_RET(NVML_ERROR_NOT_FOUND);
    if (!utilization || *processSamplesCount < n) {
        *processSamplesCount = n;
        FK_RET(NVML_ERROR_INSUFFICIENT_SIZE);
    }
    double per = fk_sample_period(g), a = (double)(first - 1) * per, b = (double)kmax * per;
    double sm = clamp_pct(fk_avg(&g->util_gpu, a, b)), mem = clamp_pct(fk_avg(&g->util_mem, a, b));
    double enc = clamp_pct(fk_avg(&g->util_enc, a, b)), dec = clamp_pct(fk_avg(&g->util_dec, a, b));
    unsigned long long ts = fk_sample_ts(g, kmax);
    unsigned int k = 0;
    for (int i = 0; i < np; i++) {
        fk_proc_at(g, c.gpu, i, &p);
        if (!(p.compute || p.graphics)) continue;
        double w = shares > 0 ? p.share / shares : 0;
        nvmlProcessUtilizationSample_t *o = &utilization[k++];
        memset(o, 0, sizeof *o);
        o->pid = p.pid;
        o->timeStamp = ts;
        o->smUtil = p.sm_util ? p.sm_util : (unsigned int)lround(sm * w);
        o->memUtil = (unsigned int)lround(mem * w);
        o->encUtil = (unsigned int)lround(enc * w);
        o->decUtil = (unsigned int)lround(dec * w);
    }
    *processSamplesCount = k;
    FK_RET(NVML_SUCCESS);
}

/*
 * api_gpm.c - GPU Performance Monitoring (GPM) of the fake NVML driver: samples of a whole GPU
 * or of one MIG GPU instance, and metrics computed from two samples.
 *
 * Part of gpu-node-exporter. Compiled against NVIDIA's nvml.h; see fakenvml.h for the
 * Disclaimer and U.S. Government End Users Notice that nvml.h requires us to carry.
 *
 * A sample records which GPU (and GPU instance) it was taken on and the scenario time. A
 * metric is the exact mean over (t1, t2] of the activity curves (closed-form integrals) times
 * the scenario's GPM factors, so it is consistent with the utilization samples: SM_UTIL is
 * mean(utilization_gpu) * gpm_sm_active, and so on (docs/fake-driver.md). GPM is on by default
 * for Hopper and newer (scenario key gpm = on|off).
 */
#include "fakenvml.h"

#include <stdlib.h>
#include <string.h>

struct nvmlGpmSample_st {
    struct nvmlGpmSample_st *next;   /* registry of live samples (fk_lock) */
    int filled;
    int gpu;
    int gi;                          /* GPU instance id, -1 = the whole GPU */
    double t;                        /* scenario time of the last SampleGet */
};

static struct nvmlGpmSample_st *live;

static int valid_sample(const struct nvmlGpmSample_st *s)
{
    for (const struct nvmlGpmSample_st *p = live; p; p = p->next)
        if (p == s) return 1;
    return 0;
}

int fk_gpm_enabled(const fk_gpu *g) { return g->gpm < 0 ? g->arch >= NVML_DEVICE_ARCH_HOPPER : g->gpm; }

FK_API nvmlReturn_t nvmlGpmQueryDeviceSupport(nvmlDevice_t device, nvmlGpmSupport_t *gpmSupport)
{
    FK_DEV_BEGIN(device, c);
    FK_NULLCHK(gpmSupport);
    if (gpmSupport->version != NVML_GPM_SUPPORT_VERSION) FK_RET(NVML_ERROR_ARGUMENT_VERSION_MISMATCH);
    gpmSupport->isSupportedDevice = fk_gpm_enabled(c.g) ? 1 : 0;   /* a MIG handle: its parent's */
    FK_RET(NVML_SUCCESS);
}

FK_API nvmlReturn_t nvmlGpmSampleAlloc(nvmlGpmSample_t *gpmSample)
{
    nvmlReturn_t r = fk_enter_idx(__func__, -1);
    if (r) return r;
    FK_NULLCHK(gpmSample);
    struct nvmlGpmSample_st *s = calloc(1, sizeof *s);
    if (!s) FK_RET(NVML_ERROR_MEMORY);
    s->gpu = -1;
    s->gi = -1;
    s->next = live;
    live = s;
    *gpmSample = s;
    FK_RET(NVML_SUCCESS);
}

FK_API nvmlReturn_t nvmlGpmSampleFree(nvmlGpmSample_t gpmSample)
{
    nvmlReturn_t r = fk_enter_idx(__func__, -1);
    if (r) return r;
    for (struct nvmlGpmSample_st **p = &live; *p; p = &(*p)->next)
        if (*p == gpmSample) {
            *p = gpmSample->next;
            free(gpmSample);
            FK_RET(NVML_SUCCESS);
        }
    FK_RET(NVML_ERROR_INVALID_ARGUMENT);   /* NULL, freed or never allocated */
}

static void take(nvmlGpmSample_t s, int gpu, int gi)
{
    s->filled = 1;
    s->gpu = gpu;
    s->gi = gi;
    s->t = fk_now();
}

/* Whole physical GPUs only: a MIG-enabled GPU is sampled per GPU instance (MigSampleGet). */
FK_API nvmlReturn_t nvmlGpmSampleGet(nvmlDevice_t device, nvmlGpmSample_t gpmSample)
{
    FK_DEV_BEGIN(device, c);
    if (!valid_sample(gpmSample)) FK_RET(NVML_ERROR_INVALID_ARGUMENT);
    if (c.slot >= 0 || !fk_gpm_enabled(c.g) || c.g->mig_current) FK_RET(NVML_ERROR_NOT_SUPPORTED);
    take(gpmSample, c.gpu, -1);
    FK_RET(NVML_SUCCESS);
}

static const fk_mig *gi_slot(const fk_gpu *g, unsigned int gi)
{
    for (int m = 0; m < FK_MAX_MIG; m++)
        if (g->mig[m].present && g->mig[m].gi == gi) return &g->mig[m];   /* first CI of the GI */
    return NULL;
}

FK_API nvmlReturn_t nvmlGpmMigSampleGet(nvmlDevice_t device, unsigned int gpuInstanceId, nvmlGpmSample_t gpmSample)
{
    FK_DEV_BEGIN(device, c);
    if (!valid_sample(gpmSample) || c.slot >= 0) FK_RET(NVML_ERROR_INVALID_ARGUMENT);
    if (!fk_gpm_enabled(c.g) || !c.g->mig_current) FK_RET(NVML_ERROR_NOT_SUPPORTED);
    if (!gi_slot(c.g, gpuInstanceId)) FK_RET(NVML_ERROR_NOT_FOUND);
    take(gpmSample, c.gpu, (int)gpuInstanceId);
    FK_RET(NVML_SUCCESS);
}

/* ------------------------------------------------------------------ metrics */

enum { SRC_U, SRC_M, SRC_PCIE_TX, SRC_PCIE_RX, SRC_NVLINK_RX, SRC_NVLINK_TX };

static const struct {
    unsigned int id;
    int src;
    int factor;   /* FK_GPM_* or -1 */
    const char *short_name, *long_name, *unit;
} metric_table[] = {
    {NVML_GPM_METRIC_GRAPHICS_UTIL, SRC_U, -1, "gr_util", "graphics/compute engine active", "%"},
    {NVML_GPM_METRIC_SM_UTIL, SRC_U, FK_GPM_SM_ACTIVE, "sm_util", "SM active", "%"},
    {NVML_GPM_METRIC_SM_OCCUPANCY, SRC_U, FK_GPM_SM_OCCUPANCY, "sm_occupancy", "SM warp occupancy", "%"},
    {NVML_GPM_METRIC_INTEGER_UTIL, SRC_U, FK_GPM_INTEGER, "integer_util", "integer pipe active", "%"},
    {NVML_GPM_METRIC_ANY_TENSOR_UTIL, SRC_U, FK_GPM_TENSOR_ACTIVE, "any_tensor_util", "any tensor pipe active", "%"},
    {NVML_GPM_METRIC_DFMA_TENSOR_UTIL, SRC_U, FK_GPM_TENSOR_DFMA, "dfma_tensor_util", "DFMA tensor pipe active", "%"},
    {NVML_GPM_METRIC_HMMA_TENSOR_UTIL, SRC_U, FK_GPM_TENSOR_HMMA, "hmma_tensor_util", "HMMA tensor pipe active", "%"},
    {NVML_GPM_METRIC_DMMA_TENSOR_UTIL, SRC_U, FK_GPM_TENSOR_DMMA, "dmma_tensor_util", "DMMA tensor pipe active", "%"},
    {NVML_GPM_METRIC_IMMA_TENSOR_UTIL, SRC_U, FK_GPM_TENSOR_IMMA, "imma_tensor_util", "IMMA tensor pipe active", "%"},
    {NVML_GPM_METRIC_DRAM_BW_UTIL, SRC_M, FK_GPM_DRAM_ACTIVE, "dram_bw_util", "DRAM bandwidth used", "%"},
    {NVML_GPM_METRIC_FP64_UTIL, SRC_U, FK_GPM_FP64, "fp64_util", "FP64 pipe active", "%"},
    {NVML_GPM_METRIC_FP32_UTIL, SRC_U, FK_GPM_FP32, "fp32_util", "FP32 pipe active", "%"},
    {NVML_GPM_METRIC_FP16_UTIL, SRC_U, FK_GPM_FP16, "fp16_util", "FP16 pipe active", "%"},
    {NVML_GPM_METRIC_PCIE_TX_PER_SEC, SRC_PCIE_TX, -1, "pcie_tx", "PCIe transmit bandwidth", "MiB/sec"},
    {NVML_GPM_METRIC_PCIE_RX_PER_SEC, SRC_PCIE_RX, -1, "pcie_rx", "PCIe receive bandwidth", "MiB/sec"},
    {NVML_GPM_METRIC_NVLINK_TOTAL_RX_PER_SEC, SRC_NVLINK_RX, -1, "nvlink_rx", "NVLink receive bandwidth, all links", "MiB/sec"},
    {NVML_GPM_METRIC_NVLINK_TOTAL_TX_PER_SEC, SRC_NVLINK_TX, -1, "nvlink_tx", "NVLink transmit bandwidth, all links", "MiB/sec"},
};

typedef struct {
    double u, m;                        /* mean utilization_gpu / utilization_memory, percent */
    double f[FK_GPM_FACTORS];
    double pcie_tx, pcie_rx;            /* MiB/s */
    double nvlink_rx, nvlink_tx;        /* MiB/s */
} gpm_means;

static double nonneg(double v) { return v < 0 ? 0 : v; }
static double pct(double v) { return v < 0 ? 0 : v > 100 ? 100 : v; }

/* Sum over active links l of mean(per-link KiB/s) * (1 + 0.01 l) (the per-link skew of fields
 * 138/139), in MiB/s. */
static double nvlink_mib(const fk_gpu *g, const fk_expr *e, double t1, double t2)
{
    double per_link = nonneg(fk_avg(e, t1, t2)), sum = 0;
    for (unsigned int l = 0; l < g->nvlink_links; l++)
        if (!((g->nvlink_inactive_mask >> l) & 1)) sum += per_link * (1.0 + 0.01 * l);
    return sum / 1024.0;
}

/* Sum of the slices of the GPU's GPU instances (each GI once). */
static unsigned int gi_slices_total(const fk_gpu *g)
{
    unsigned int total = 0;
    for (int m = 0; m < FK_MAX_MIG; m++) {
        if (!g->mig[m].present || gi_slot(g, g->mig[m].gi) != &g->mig[m]) continue;
        total += g->mig[m].gi_slices;
    }
    return total;
}

static void means(const fk_gpu *g, const fk_mig *mi, double t1, double t2, gpm_means *out)
{
    out->u = mi && mi->has_util ? mi->util : pct(fk_avg(&g->util_gpu, t1, t2));
    out->m = pct(fk_avg(&g->util_mem, t1, t2));
    for (int i = 0; i < FK_GPM_FACTORS; i++)
        out->f[i] = mi && ((mi->gpm_set >> i) & 1) ? mi->gpm[i] : g->gpm_factor[i];
    /* pcie_*_kbps are kB/s of 1000 bytes (fields 197/198 count integral * 1000 bytes) */
    double scale = 1.0;
    unsigned int total = mi ? gi_slices_total(g) : 0;
    if (mi) scale = total ? (double)mi->gi_slices / (double)total : 0;
    out->pcie_tx = nonneg(fk_avg(&g->pcie_tx_kbps, t1, t2)) * 1000.0 / 1048576.0 * scale;
    out->pcie_rx = nonneg(fk_avg(&g->pcie_rx_kbps, t1, t2)) * 1000.0 / 1048576.0 * scale;
    out->nvlink_rx = nvlink_mib(g, &g->nvlink_rx_kibps, t1, t2) * scale;
    out->nvlink_tx = nvlink_mib(g, &g->nvlink_tx_kibps, t1, t2) * scale;
}

static void fill_metric(nvmlGpmMetric_t *out, const gpm_means *mv)
{
    unsigned int id = out->metricId;
    memset(&out->metricInfo, 0, sizeof out->metricInfo);
    out->value = 0;
    out->nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
    for (size_t i = 0; i < sizeof metric_table / sizeof metric_table[0]; i++) {
        if (metric_table[i].id != id) continue;
        double f = metric_table[i].factor >= 0 ? mv->f[metric_table[i].factor] : 1.0, v;
        switch (metric_table[i].src) {
        case SRC_U: v = mv->u * f; break;
        case SRC_M: v = mv->m * f; break;
        case SRC_PCIE_TX: v = mv->pcie_tx; break;
        case SRC_PCIE_RX: v = mv->pcie_rx; break;
        case SRC_NVLINK_RX: v = mv->nvlink_rx; break;
        default: v = mv->nvlink_tx; break;
        }
        out->value = v;
        out->nvmlReturn = NVML_SUCCESS;
        out->metricInfo.shortName = (char *)metric_table[i].short_name;
        out->metricInfo.longName = (char *)metric_table[i].long_name;
        out->metricInfo.unit = (char *)metric_table[i].unit;
        return;
    }
}

FK_API nvmlReturn_t nvmlGpmMetricsGet(nvmlGpmMetricsGet_t *metricsGet)
{
    /* The samples name the GPU, so they are checked before the usual device entry. */
    nvmlReturn_t bad = NVML_SUCCESS;
    int gpu = -1, gi = -1;
    double t1 = 0, t2 = 0;
    pthread_mutex_lock(&fk_lock);
    if (!fk_refcount) bad = NVML_ERROR_UNINITIALIZED;
    else if (!metricsGet) bad = NVML_ERROR_INVALID_ARGUMENT;
    else if (metricsGet->version != NVML_GPM_METRICS_GET_VERSION) bad = NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    else {
        const struct nvmlGpmSample_st *s1 = metricsGet->sample1, *s2 = metricsGet->sample2;
        if (!valid_sample(s1) || !valid_sample(s2) || !s1->filled || !s2->filled || s1->gpu != s2->gpu ||
            s1->gi != s2->gi || s2->t < s1->t || metricsGet->numMetrics > NVML_GPM_METRIC_MAX)
            bad = NVML_ERROR_INVALID_ARGUMENT;
        else {
            gpu = s1->gpu;
            gi = s1->gi;
            t1 = s1->t;
            t2 = s2->t;
        }
    }
    pthread_mutex_unlock(&fk_lock);
    if (bad != NVML_SUCCESS) {
        fk_count_call(1);
        return bad;
    }
    FK_DEV_BEGIN(&fk_dev[gpu], c);   /* faults, lost GPU, not_supported; counts the call */
    const fk_mig *mi = NULL;
    if (gi >= 0 && (!c.g->mig_current || !(mi = gi_slot(c.g, (unsigned int)gi)))) FK_RET(NVML_ERROR_NOT_FOUND);
    gpm_means mv;
    means(c.g, mi, t1, t2, &mv);
    for (unsigned int i = 0; i < metricsGet->numMetrics; i++) fill_metric(&metricsGet->metrics[i], &mv);
    FK_RET(NVML_SUCCESS);
}

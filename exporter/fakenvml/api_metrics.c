/*
 * api_metrics.c - metric getters, process lists and field values of the fake NVML driver.
 *
 * Part of gpu-node-exporter. Compiled against NVIDIA's nvml.h; see fakenvml.h for the
 * Disclaimer and U.S. Government End Users Notice that nvml.h requires us to carry.
 *
 * Physical-only quantities (power, temperature, clocks, fan, PCIe, NVLink, ECC totals,
 * energy, field values) return NOT_SUPPORTED on MIG handles, as the exporter must read
 * them from the parent. Utilization calls (the sample buffer) live in api_activity.c, GPM in
 * api_gpm.c.
 */
#include "fakenvml.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define MIB (1024ull * 1024ull)

static unsigned int pct(const fk_expr *e, double t) { return (unsigned int)lround(fk_eval_clamped(e, t, 0, 100)); }

/* ------------------------------------------------------------------ memory */

static void mem_values(const fk_ctx *c, unsigned long long *total, unsigned long long *reserved, unsigned long long *used)
{
    const fk_gpu *g = c->g;
    if (c->slot >= 0) {
        *total = g->mig[c->slot].memory_mib * MIB;
        *reserved = 0;
        *used = fk_mig_used_mib(g, c->slot) * MIB;
    } else {
        *total = g->mem_total_mib * MIB;
        *reserved = g->mem_reserved_mib * MIB;
        *used = fk_gpu_used_mib(g, fk_now()) * MIB;
    }
}

FK_API nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory)
{
    FK_DEV_BEGIN(device, c);
    FK_NULLCHK(memory);
    unsigned long long total, reserved, used;
    mem_values(&c, &total, &reserved, &used);
    /* v1 semantics on new drivers: reserved memory counts as used */
    memory->total = total;
    memory->used = used + reserved;
    memory->free = total - memory->used;
    FK_RET(NVML_SUCCESS);
}

FK_API nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t *memory)
{
    FK_DEV_BEGIN(device, c);
    FK_NULLCHK(memory);
    if (memory->version != nvmlMemory_v2) FK_RET(NVML_ERROR_ARGUMENT_VERSION_MISMATCH);
    unsigned long long total, reserved, used;
    mem_values(&c, &total, &reserved, &used);
    memory->total = total;
    memory->reserved = reserved;
    memory->used = used;
    memory->free = total - reserved - used;
    FK_RET(NVML_SUCCESS);
}

FK_API nvmlReturn_t nvmlDeviceGetBAR1MemoryInfo(nvmlDevice_t device, nvmlBAR1Memory_t *bar1Memory)
{
    FK_DEV_BEGIN(device, c);
    FK_NULLCHK(bar1Memory);
    double t = fk_now();
    unsigned long long total = c.g->bar1_total_mib * MIB;
    unsigned long long used = (unsigned long long)fk_eval_clamped(&c.g->bar1_used_mib, t, 0, (double)c.g->bar1_total_mib) * MIB;
    if (c.slot >= 0 && c.g->mem_total_mib) {
        /* per-instance share of the BAR1 aperture, proportional to its memory */
        const fk_mig *m = &c.g->mig[c.slot];
        total = total / c.g->mem_total_mib * m->memory_mib;
        total -= total % MIB;
        used = used / 8 < total ? used / 8 : total;
    }
    bar1Memory->bar1Total = total;
    bar1Memory->bar1Used = used;
    bar1Memory->bar1Free = total - used;
    FK_RET(NVML_SUCCESS);
}

/* ------------------------------------------------------------------ power / energy */

FK_API nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int *power)
{
    FK_DEV_BEGIN(device, c);
    FK_NULLCHK(power);
    FK_PHYS_ONLY(c);
    *power = fk_power_mw(c.g, fk_now());
    FK_RET(NVML_SUCCESS);
}

#define POWER_GETTER(fname, member)                                         \
    FK_API nvmlReturn_t fname(nvmlDevice_t device, unsigned int *limit)     \
    {                                                                       \
        FK_DEV_BEGIN(device, c);                                            \
        FK_NULLCHK(limit);                                                  \
        FK_PHYS_ONLY(c);                                                    \
        *limit = c.g->member;                                               \
        FK_RET(NVML_SUCCESS);                                               \
    }
POWER_GETTER(nvmlDeviceGetEnforcedPowerLimit, power_enforced_mw)
POWER_GETTER(nvmlDeviceGetPowerManagementLimit, power_limit_mw)
POWER_GETTER(nvmlDeviceGetPowerManagementDefaultLimit, power_default_mw)

FK_API nvmlReturn_t nvmlDeviceGetPowerManagementLimitConstraints(nvmlDevice_t device, unsigned int *minLimit, unsigned int *maxLimit)
{
    FK_DEV_BEGIN(device, c);
    if (!minLimit || !maxLimit) FK_RET(NVML_ERROR_INVALID_ARGUMENT);
    FK_PHYS_ONLY(c);
    *minLimit = c.g->power_min_mw;
    *maxLimit = c.g->power_max_mw;
    FK_RET(NVML_SUCCESS);
}

FK_API nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t device, unsigned long long *energy)
{
    FK_DEV_BEGIN(device, c);
    FK_NULLCHK(energy);
    FK_PHYS_ONLY(c);
    if (c.g->arch < NVML_DEVICE_ARCH_VOLTA) FK_RET(NVML_ERROR_NOT_SUPPORTED);
    *energy = fk_energy_mj(c.g, fk_now());
    FK_RET(NVML_SUCCESS);
}

/* ------------------------------------------------------------------ temperature */

FK_API nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t device, nvmlTemperatureSensors_t sensorType, unsigned int *temp)
{
    FK_DEV_BEGIN(device, c);
    FK_NULLCHK(temp);
    FK_PHYS_ONLY(c);
    if (sensorType != NVML_TEMPERATURE_GPU) FK_RET(NVML_ERROR_INVALID_ARGUMENT);
    *temp = (unsigned int)lround(fk_eval_clamped(&c.g->temp_gpu, fk_now(), 0, 200));
    FK_RET(NVML_SUCCESS);
}

FK_API nvmlReturn_t nvmlDeviceGetTemperatureV(nvmlDevice_t device, nvmlTemperature_t *temperature)
{
    FK_DEV_BEGIN(device, c);
    FK_NULLCHK(temperature);
    if (temperature->version != nvmlTemperature_v1) FK_RET(NVML_ERROR_ARGUMENT_VERSION_MISMATCH);
    FK_PHYS_ONLY(c);
    if (temperature->sensorType != NVML_TEMPERATURE_GPU) FK_RET(NVML_ERROR_INVALID_ARGUMENT);
    temperature->temperature = (int)lround(fk_eval_clamped(&c.g->temp_gpu, fk_now(), -50, 200));
    FK_RET(NVML_SUCCESS);
}

FK_API nvmlReturn_t nvmlDeviceGetTemperatureThreshold(nvmlDevice_t device, nvmlTemperatureThresholds_t thresholdType, unsigned int *temp)
{
    FK_DEV_BEGIN(device, c);
    FK_NULLCHK(temp);
    FK_PHYS_ONLY(c);
    unsigned int v;
    switch (thresholdType) {
    case NVML_TEMPERATURE_THRESHOLD_SHUTDOWN: v = c.g->temp_shutdown; break;
    case NVML_TEMPERATURE_THRESHOLD_SLOWDOWN: v = c.g->temp_slowdown; break;
    case NVML_TEMPERATURE_THRESHOLD_MEM_MAX: v = c.g->temp_mem_max; break;
    case NVML_TEMPERATURE_THRESHOLD_GPU_MAX: v = c.g->temp_gpu_max; break;
    default: FK_RET(NVML_ERROR_NOT_SUPPORTED);
    }
    if (!v) FK_RET(NVML_ERROR_NOT_SUPPORTED);
    *temp = v;
    FK_RET(NVML_SUCCESS);
}

/* ------------------------------------------------------------------ clocks */

static unsigned int cur_clock(const fk_gpu *g, int type, double t)
{
    return (unsigned int)lround(fk_eval_clamped(&g->clock[type], t, 0, g->clock_max[type]));
}

FK_API nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t device, nvmlClockType_t type, unsigned int *clock)
{
    FK_DEV_BEGIN(device, c);
    FK_NULLCHK(clock);
    FK_PHYS_ONLY(c);
    if ((unsigned int)type > NVML_CLOCK_VIDEO) FK_RET(NVML_ERROR_INVALID_ARGUMENT);
    *clock = cur_clock(c.g, (int)type, fk_now());
    FK_RET(NVML_SUCCESS);
}

FK_API nvmlReturn_t nvmlDeviceGetMaxClockInfo(nvmlDevice_t device, nvmlClockType_t type, unsigned int *clock)
{
    FK_DEV_BEGIN(device, c);
    FK_NULLCHK(clock);
    FK_PHYS_ONLY(c);
    if ((unsigned int)type > NVML_CLOCK_VIDEO) FK_RET(NVML_ERROR_INVALID_ARGUMENT);
    *clock = c.g->clock_max[type];
    FK_RET(NVML_SUCCESS);
}

FK_API nvmlReturn_t nvmlDeviceGetClock(nvmlDevice_t device, nvmlClockType_t clockType, nvmlClockId_t clockId, unsigned int *clockMHz)
{
    FK_DEV_BEGIN(device, c);
    FK_NULLCHK(clockMHz);
    FK_PHYS_ONLY(c);
    if ((unsigned int)clockType > NVML_CLOCK_VIDEO) FK_RET(NVML_ERROR_INVALID_ARGUMENT);
    switch (clockId) {
    case NVML_CLOCK_ID_CURRENT: *clockMHz = cur_clock(c.g, (int)clockType, fk_now()); break;
    case NVML_CLOCK_ID_APP_CLOCK_TARGET:
    case NVML_CLOCK_ID_APP_CLOCK_DEFAULT: *clockMHz = c.g->clock_app[clockType]; break;
    case NVML_CLOCK_ID_CUSTOMER_BOOST_MAX: *clockMHz = c.g->clock_max[clockType]; break;
    default: FK_RET(NVML_ERROR_INVALID_ARGUMENT);
    }
    FK_RET(NVML_SUCCESS);
}

static nvmlReturn_t reasons(const char *fn, nvmlDevice_t device, unsigned long long *out, int supported)
{
    fk_ctx c;
    nvmlReturn_t r = fk_enter_dev(fn, device, &c);
    if (r) return r;
    FK_NULLCHK(out);
    FK_PHYS_ONLY(c);
    *out = supported ? c.g->supported_reasons : fk_reasons(c.g, fk_now()) & c.g->supported_reasons;
    FK_RET(NVML_SUCCESS);
}

FK_API nvmlReturn_t nvmlDeviceGetCurrentClocksEventReasons(nvmlDevice_t device, unsigned long long *clocksEventReasons)
{
    return reasons(__func__, device, clocksEventReasons, 0);
}
FK_API nvmlReturn_t nvmlDeviceGetSupportedClocksEventReasons(nvmlDevice_t device, unsigned long long *supportedClocksEventReasons)
{
    return reasons(__func__, device, supportedClocksEventReasons, 1);
}
FK_API nvmlReturn_t nvmlDeviceGetCurrentClocksThrottleReasons(nvmlDevice_t device, unsigned long long *clocksThrottleReasons)
{
    return reasons(__func__, device, clocksThrottleReasons, 0);
}
FK_API nvmlReturn_t nvmlDeviceGetSupportedClocksThrottleReasons(nvmlDevice_t device, unsigned long long *supportedClocksThrottleReasons)
{
    return reasons(__func__, device, supportedClocksThrottleReasons, 1);
}

FK_API nvmlReturn_t nvmlDeviceGetPerformanceState(nvmlDevice_t device, nvmlPstates_t *pState)
{
    FK_DEV_BEGIN(device, c);
    FK_NULLCHK(pState);
    FK_PHYS_ONLY(c);
    *pState = (nvmlPstates_t)c.g->pstate;
    FK_RET(NVML_SUCCESS);
}

FK_API nvmlReturn_t nvmlDeviceGetFanSpeed(nvmlDevice_t device, unsigned int *speed)
{
    FK_DEV_BEGIN(device, c);
    FK_NULLCHK(speed);
    FK_PHYS_ONLY(c);
    if (!c.g->fan_present) FK_RET(NVML_ERROR_NOT_SUPPORTED);
    *speed = pct(&c.g->fan_pct, fk_now());
    FK_RET(NVML_SUCCESS);
}

FK_API nvmlReturn_t nvmlDeviceGetViolationStatus(nvmlDevice_t device, nvmlPerfPolicyType_t perfPolicyType, nvmlViolationTime_t *violTime)
{
    FK_DEV_BEGIN(device, c);
    FK_NULLCHK(violTime);
    FK_PHYS_ONLY(c);
    int idx;
    switch (perfPolicyType) {
    case NVML_PERF_POLICY_POWER: idx = 0; break;
    case NVML_PERF_POLICY_THERMAL: idx = 1; break;
    case NVML_PERF_POLICY_SYNC_BOOST: idx = 2; break;
    case NVML_PERF_POLICY_BOARD_LIMIT: idx = 3; break;
    case NVML_PERF_POLICY_LOW_UTILIZATION: idx = 4; break;
    case NVML_PERF_POLICY_RELIABILITY: idx = 5; break;
    case NVML_PERF_POLICY_TOTAL_APP_CLOCKS: idx = 6; break;
    case NVML_PERF_POLICY_TOTAL_BASE_CLOCKS: idx = 7; break;
    default: FK_RET(NVML_ERROR_INVALID_ARGUMENT);
    }
    violTime->referenceTime = fk_now_us();
    violTime->violationTime = fk_count(&c.g->throttle_ns[idx], fk_now());
    FK_RET(NVML_SUCCESS);
}

/* ------------------------------------------------------------------ ECC */

FK_API nvmlReturn_t nvmlDeviceGetEccMode(nvmlDevice_t device, nvmlEnableState_t *current, nvmlEnableState_t *pending)
{
    FK_DEV_BEGIN(device, c);
    if (!current || !pending) FK_RET(NVML_ERROR_INVALID_ARGUMENT);
    FK_PHYS_ONLY(c);
    if (!c.g->ecc_supported) FK_RET(NVML_ERROR_NOT_SUPPORTED);
    *current = c.g->ecc_current ? NVML_FEATURE_ENABLED : NVML_FEATURE_DISABLED;
    *pending = c.g->ecc_pending ? NVML_FEATURE_ENABLED : NVML_FEATURE_DISABLED;
    FK_RET(NVML_SUCCESS);
}

static int ecc_ok(const fk_gpu *g) { return g->ecc_supported && g->ecc_current; }

FK_API nvmlReturn_t nvmlDeviceGetTotalEccErrors(nvmlDevice_t device, nvmlMemoryErrorType_t errorType,
                                                nvmlEccCounterType_t counterType, unsigned long long *eccCounts)
{
    FK_DEV_BEGIN(device, c);
    FK_NULLCHK(eccCounts);
    FK_PHYS_ONLY(c);
    if ((unsigned int)errorType > 1 || (unsigned int)counterType > 1) FK_RET(NVML_ERROR_INVALID_ARGUMENT);
    if (!ecc_ok(c.g)) FK_RET(NVML_ERROR_NOT_SUPPORTED);
    *eccCounts = fk_count(&c.g->ecc[errorType][counterType], fk_now());
    FK_RET(NVML_SUCCESS);
}

FK_API nvmlReturn_t nvmlDeviceGetMemoryErrorCounter(nvmlDevice_t device, nvmlMemoryErrorType_t errorType,
                                                    nvmlEccCounterType_t counterType, nvmlMemoryLocation_t locationType,
                                                    unsigned long long *count)
{
    FK_DEV_BEGIN(device, c);
    FK_NULLCHK(count);
    if ((unsigned int)errorType > 1 || (unsigned int)counterType > 1 || (unsigned int)locationType > NVML_MEMORY_LOCATION_SRAM)
        FK_RET(NVML_ERROR_INVALID_ARGUMENT);
    if (!ecc_ok(c.g)) FK_RET(NVML_ERROR_NOT_SUPPORTED);
    /* MIG handles: only non-DRAM uncorrectable volatile counts are per instance (zero here). */
    if (c.slot >= 0) {
        if (errorType != NVML_MEMORY_ERROR_TYPE_UNCORRECTED || counterType != NVML_VOLATILE_ECC ||
            locationType == NVML_MEMORY_LOCATION_DRAM)
            FK_RET(NVML_ERROR_NOT_SUPPORTED);
        *count = 0;
        FK_RET(NVML_SUCCESS);
    }
    /* All errors of the model are DRAM errors. */
    *count = locationType == NVML_MEMORY_LOCATION_DRAM ? fk_count(&c.g->ecc[errorType][counterType], fk_now()) : 0;
    FK_RET(NVML_SUCCESS);
}

/* ------------------------------------------------------------------ retired pages / row remapping */

static nvmlReturn_t retired(const char *fn, nvmlDevice_t device, nvmlPageRetirementCause_t cause, unsigned int *pageCount,
                            unsigned long long *addresses, unsigned long long *timestamps)
{
    fk_ctx c;
    nvmlReturn_t r = fk_enter_dev(fn, device, &c);
    if (r) return r;
    FK_NULLCHK(pageCount);
    FK_PHYS_ONLY(c);
    if (!c.g->retired_pages) FK_RET(NVML_ERROR_NOT_SUPPORTED);
    unsigned int n;
    if (cause == NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS) n = c.g->retired_sbe;
    else if (cause == NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR) n = c.g->retired_dbe;
    else FK_RET(NVML_ERROR_INVALID_ARGUMENT);
    if (*pageCount < n || (n && !addresses)) {
        *pageCount = n;
        FK_RET(n ? NVML_ERROR_INSUFFICIENT_SIZE : NVML_SUCCESS);
    }
    for (unsigned int i = 0; i < n; i++) {
        addresses[i] = 0x1000ull * (0x3a000 + 0x100 * (unsigned long long)cause + i * 7 + (unsigned long long)c.gpu);
        if (timestamps) timestamps[i] = 1700000000ull + 3600ull * i;
    }
    *pageCount = n;
    FK_RET(NVML_SUCCESS);
}

FK_API nvmlReturn_t nvmlDeviceGetRetiredPages(nvmlDevice_t device, nvmlPageRetirementCause_t cause, unsigned int *pageCount,
                                              unsigned long long *addresses)
{
    return retired(__func__, device, cause, pageCount, addresses, NULL);
}

FK_API nvmlReturn_t nvmlDeviceGetRetiredPages_v2(nvmlDevice_t device, nvmlPageRetirementCause_t cause, unsigned int *pageCount,
                                                 unsigned long long *addresses, unsigned long long *timestamps)
{
    return retired(__func__, device, cause, pageCount, addresses, timestamps);
}

FK_API nvmlReturn_t nvmlDeviceGetRetiredPagesPendingStatus(nvmlDevice_t device, nvmlEnableState_t *isPending)
{
    FK_DEV_BEGIN(device, c);
    FK_NULLCHK(isPending);
    FK_PHYS_ONLY(c);
    if (!c.g->retired_pages) FK_RET(NVML_ERROR_NOT_SUPPORTED);
    *isPending = c.g->retired_pending ? NVML_FEATURE_ENABLED : NVML_FEATURE_DISABLED;
    FK_RET(NVML_SUCCESS);
}

FK_API nvmlReturn_t nvmlDeviceGetRemappedRows(nvmlDevice_t device, unsigned int *corrRows, unsigned int *uncRows,
                                              unsigned int *isPending, unsigned int *failureOccurred)
{
    FK_DEV_BEGIN(device, c);
    if (!corrRows || !uncRows || !isPending || !failureOccurred) FK_RET(NVML_ERROR_INVALID_ARGUMENT);
    FK_PHYS_ONLY(c);
    if (!c.g->row_remapping || fk_mig_instances_active(c.g)) FK_RET(NVML_ERROR_NOT_SUPPORTED);
    *corrRows = c.g->remap_cor;
    *uncRows = c.g->remap_unc;
    *isPending = c.g->remap_pending;
    *failureOccurred = c.g->remap_failure;
    FK_RET(NVML_SUCCESS);
}

FK_API nvmlReturn_t nvmlDeviceGetRowRemapperHistogram(nvmlDevice_t device, nvmlRowRemapperHistogramValues_t *values)
{
    FK_DEV_BEGIN(device, c);
    FK_NULLCHK(values);
    FK_PHYS_ONLY(c);
    if (!c.g->row_remapping || fk_mig_instances_active(c.g)) FK_RET(NVML_ERROR_NOT_SUPPORTED);
    values->max = c.g->remap_hist[0];
    values->high = c.g->remap_hist[1];
    values->partial = c.g->remap_hist[2];
    values->low = c.g->remap_hist[3];
    values->none = c.g->remap_hist[4];
    FK_RET(NVML_SUCCESS);
}

/* ------------------------------------------------------------------ PCIe */

FK_API nvmlReturn_t nvmlDeviceGetPcieThroughput(nvmlDevice_t device, nvmlPcieUtilCounter_t counter, unsigned int *value)
{
    FK_DEV_BEGIN(device, c);
    FK_NULLCHK(value);
    FK_PHYS_ONLY(c);
    if (counter == NVML_PCIE_UTIL_TX_BYTES) *value = (unsigned int)lround(fk_eval_clamped(&c.g->pcie_tx_kbps, fk_now(), 0, 4e9));
    else if (counter == NVML_PCIE_UTIL_RX_BYTES) *value = (unsigned int)lround(fk_eval_clamped(&c.g->pcie_rx_kbps, fk_now(), 0, 4e9));
    else FK_RET(NVML_ERROR_INVALID_ARGUMENT);
    FK_RET(NVML_SUCCESS);
}

FK_API nvmlReturn_t nvmlDeviceGetPcieReplayCounter(nvmlDevice_t device, unsigned int *value)
{
    FK_DEV_BEGIN(device, c);
    FK_NULLCHK(value);
    FK_PHYS_ONLY(c);
    *value = (unsigned int)fk_count(&c.g->pcie_replay, fk_now());
    FK_RET(NVML_SUCCESS);
}

#define PCIE_GETTER(fname, member)                                          \
    FK_API nvmlReturn_t fname(nvmlDevice_t device, unsigned int *v)         \
    {                                                                       \
        FK_DEV_BEGIN(device, c);                                            \
        FK_NULLCHK(v);                                                      \
        FK_PHYS_ONLY(c);                                                    \
        *v = c.g->member;                                                   \
        FK_RET(NVML_SUCCESS);                                               \
    }
PCIE_GETTER(nvmlDeviceGetCurrPcieLinkGeneration, pcie_cur_gen)
PCIE_GETTER(nvmlDeviceGetCurrPcieLinkWidth, pcie_cur_width)
PCIE_GETTER(nvmlDeviceGetMaxPcieLinkGeneration, pcie_max_gen)
PCIE_GETTER(nvmlDeviceGetMaxPcieLinkWidth, pcie_max_width)

/* ------------------------------------------------------------------ NVLink */

#define LINK_CHECK(c, link)                                                 \
    do {                                                                    \
        FK_PHYS_ONLY(c);                                                    \
        if (!(c).g->nvlink_links) FK_RET(NVML_ERROR_NOT_SUPPORTED);         \
        if ((link) >= (c).g->nvlink_links) FK_RET(NVML_ERROR_INVALID_ARGUMENT); \
    } while (0)

FK_API nvmlReturn_t nvmlDeviceGetNvLinkState(nvmlDevice_t device, unsigned int link, nvmlEnableState_t *isActive)
{
    FK_DEV_BEGIN(device, c);
    FK_NULLCHK(isActive);
    LINK_CHECK(c, link);
    *isActive = (c.g->nvlink_inactive_mask >> link) & 1 ? NVML_FEATURE_DISABLED : NVML_FEATURE_ENABLED;
    FK_RET(NVML_SUCCESS);
}

FK_API nvmlReturn_t nvmlDeviceGetNvLinkVersion(nvmlDevice_t device, unsigned int link, unsigned int *version)
{
    FK_DEV_BEGIN(device, c);
    FK_NULLCHK(version);
    LINK_CHECK(c, link);
    *version = c.g->nvlink_version;
    FK_RET(NVML_SUCCESS);
}

static int link_active(const fk_gpu *g, unsigned int link) { return !((g->nvlink_inactive_mask >> link) & 1); }

/* Per-link counters get a small per-link skew so links are distinguishable. */
static unsigned long long link_err(const fk_gpu *g, int counter, unsigned int link, double t)
{
    if (!link_active(g, link)) return 0;
    fk_counter k = g->nvlink_err[counter];
    k.rate *= 1.0 + 0.01 * link;
    return fk_count(&k, t);
}

static unsigned long long link_kib(const fk_gpu *g, int rx, unsigned int link, double t)
{
    if (!link_active(g, link)) return 0;
    return (unsigned long long)floor(fk_integral(rx ? &g->nvlink_rx_kibps : &g->nvlink_tx_kibps, t) * (1.0 + 0.01 * link));
}

FK_API nvmlReturn_t nvmlDeviceGetNvLinkErrorCounter(nvmlDevice_t device, unsigned int link, nvmlNvLinkErrorCounter_t counter,
                                                    unsigned long long *counterValue)
{
    FK_DEV_BEGIN(device, c);
    FK_NULLCHK(counterValue);
    LINK_CHECK(c, link);
    if ((unsigned int)counter > NVML_NVLINK_ERROR_DL_ECC_DATA) FK_RET(NVML_ERROR_INVALID_ARGUMENT);
    *counterValue = link_err(c.g, (int)counter, link, fk_now());
    FK_RET(NVML_SUCCESS);
}

/* ------------------------------------------------------------------ processes */

static int proc_matches(const fk_ctx *c, const fk_proc *p, int graphics)
{
    if (graphics ? !p->graphics : !p->compute) return 0;
    if (c->slot >= 0) {
        const fk_mig *m = &c->g->mig[c->slot];
        return p->gi == m->gi && p->ci == m->ci;
    }
    return 1;
}

static nvmlReturn_t procs(const char *fn, nvmlDevice_t device, unsigned int *infoCount, void *infos, size_t elem, int graphics)
{
    fk_ctx c;
    nvmlReturn_t r = fk_enter_dev(fn, device, &c);
    if (r) return r;
    FK_NULLCHK(infoCount);
    unsigned int n = 0;
    fk_proc pbuf;
    const fk_proc *p = &pbuf;
    int np = fk_proc_count(c.g, c.gpu);
    for (int i = 0; i < np; i++) {
        fk_proc_at(c.g, c.gpu, i, &pbuf);
        n += (unsigned int)proc_matches(&c, p, graphics);
    }
    if (*infoCount < n || (n && !infos)) {
        *infoCount = n;
        FK_RET(NVML_ERROR_INSUFFICIENT_SIZE);
    }
    unsigned int k = 0;
    for (int i = 0; i < np; i++) {
        fk_proc_at(c.g, c.gpu, i, &pbuf);
        if (!proc_matches(&c, p, graphics)) continue;
        if (elem == sizeof(nvmlProcessInfo_v2_t)) {
            nvmlProcessInfo_v2_t *o = (nvmlProcessInfo_v2_t *)infos + k;
            memset(o, 0, sizeof *o);
            o->pid = p->pid;
            o->usedGpuMemory = p->used_mib * MIB;
            o->gpuInstanceId = p->gi;
            o->computeInstanceId = p->ci;
        } else {
            nvmlProcessInfo_v1_t *o = (nvmlProcessInfo_v1_t *)infos + k;
            memset(o, 0, sizeof *o);
            o->pid = p->pid;
            o->usedGpuMemory = p->used_mib * MIB;
        }
        k++;
    }
    *infoCount = k;
    FK_RET(NVML_SUCCESS);
}

FK_API nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t device, unsigned int *infoCount, nvmlProcessInfo_t *infos)
{
    return procs(__func__, device, infoCount, infos, sizeof(nvmlProcessInfo_v2_t), 0);
}
FK_API nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v2(nvmlDevice_t device, unsigned int *infoCount, nvmlProcessInfo_v2_t *infos)
{
    return procs(__func__, device, infoCount, infos, sizeof(nvmlProcessInfo_v2_t), 0);
}
FK_API nvmlReturn_t nvmlDeviceGetComputeRunningProcesses(nvmlDevice_t device, unsigned int *infoCount, nvmlProcessInfo_v1_t *infos)
{
    return procs(__func__, device, infoCount, infos, sizeof(nvmlProcessInfo_v1_t), 0);
}
FK_API nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses_v3(nvmlDevice_t device, unsigned int *infoCount, nvmlProcessInfo_t *infos)
{
    return procs(__func__, device, infoCount, infos, sizeof(nvmlProcessInfo_v2_t), 1);
}
FK_API nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses_v2(nvmlDevice_t device, unsigned int *infoCount, nvmlProcessInfo_v2_t *infos)
{
    return procs(__func__, device, infoCount, infos, sizeof(nvmlProcessInfo_v2_t), 1);
}
FK_API nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses(nvmlDevice_t device, unsigned int *infoCount, nvmlProcessInfo_v1_t *infos)
{
    return procs(__func__, device, infoCount, infos, sizeof(nvmlProcessInfo_v1_t), 1);
}

/* ------------------------------------------------------------------ field values */

static void set_uint(nvmlFieldValue_t *v, unsigned long long x)
{
    v->valueType = NVML_VALUE_TYPE_UNSIGNED_INT;
    v->value.uiVal = (unsigned int)x;
}

static void set_ull(nvmlFieldValue_t *v, unsigned long long x)
{
    v->valueType = NVML_VALUE_TYPE_UNSIGNED_LONG_LONG;
    v->value.ullVal = x;
}

/* Fills one entry; returns its nvmlReturn. */
static nvmlReturn_t field(const fk_ctx *c, nvmlFieldValue_t *v, double t)
{
    const fk_gpu *g = c->g;
    unsigned int id = v->fieldId, scope = v->scopeId;
    int ecc = ecc_ok(g);
    int ti = fk_throttle_index(id);
    if (ti >= 0) {
        set_ull(v, fk_count(&g->throttle_ns[ti], t));
        return NVML_SUCCESS;
    }
    switch (id) {
    case NVML_FI_DEV_ECC_CURRENT:
    case NVML_FI_DEV_ECC_PENDING:
        if (!g->ecc_supported) return NVML_ERROR_NOT_SUPPORTED;
        set_uint(v, id == NVML_FI_DEV_ECC_CURRENT ? g->ecc_current : g->ecc_pending);
        return NVML_SUCCESS;
    case NVML_FI_DEV_ECC_SBE_VOL_TOTAL:
    case NVML_FI_DEV_ECC_DBE_VOL_TOTAL:
    case NVML_FI_DEV_ECC_SBE_AGG_TOTAL:
    case NVML_FI_DEV_ECC_DBE_AGG_TOTAL: {
        if (!ecc) return NVML_ERROR_NOT_SUPPORTED;
        int unc = id == NVML_FI_DEV_ECC_DBE_VOL_TOTAL || id == NVML_FI_DEV_ECC_DBE_AGG_TOTAL;
        int agg = id == NVML_FI_DEV_ECC_SBE_AGG_TOTAL || id == NVML_FI_DEV_ECC_DBE_AGG_TOTAL;
        set_ull(v, fk_count(&g->ecc[unc][agg], t));
        return NVML_SUCCESS;
    }
    case NVML_FI_DEV_RETIRED_SBE:
    case NVML_FI_DEV_RETIRED_DBE:
    case NVML_FI_DEV_RETIRED_PENDING:
        if (!g->retired_pages) return NVML_ERROR_NOT_SUPPORTED;
        set_uint(v, id == NVML_FI_DEV_RETIRED_SBE ? g->retired_sbe : id == NVML_FI_DEV_RETIRED_DBE ? g->retired_dbe : g->retired_pending);
        return NVML_SUCCESS;
    case NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL:
    case NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL:
    case NVML_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL:
    case NVML_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL:
    case NVML_FI_DEV_NVLINK_ECC_DATA_ERROR_COUNT_TOTAL: {
        if (!g->nvlink_links) return NVML_ERROR_NOT_SUPPORTED;
        int k = id == NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL ? NVML_NVLINK_ERROR_DL_CRC_FLIT
              : id == NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL ? NVML_NVLINK_ERROR_DL_CRC_DATA
              : id == NVML_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL   ? NVML_NVLINK_ERROR_DL_REPLAY
              : id == NVML_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL ? NVML_NVLINK_ERROR_DL_RECOVERY
                                                                    : NVML_NVLINK_ERROR_DL_ECC_DATA;
        unsigned long long s = 0;
        for (unsigned int l = 0; l < g->nvlink_links; l++) s += link_err(g, k, l, t);
        set_ull(v, s);
        return NVML_SUCCESS;
    }
    case NVML_FI_DEV_NVLINK_ERROR_DL_REPLAY:
    case NVML_FI_DEV_NVLINK_ERROR_DL_RECOVERY:
    case NVML_FI_DEV_NVLINK_ERROR_DL_CRC: {
        if (!g->nvlink_links) return NVML_ERROR_NOT_SUPPORTED;
        int k = id == NVML_FI_DEV_NVLINK_ERROR_DL_REPLAY ? NVML_NVLINK_ERROR_DL_REPLAY
              : id == NVML_FI_DEV_NVLINK_ERROR_DL_RECOVERY ? NVML_NVLINK_ERROR_DL_RECOVERY
                                                           : NVML_NVLINK_ERROR_DL_CRC_FLIT;
        if (scope >= g->nvlink_links) return NVML_ERROR_INVALID_ARGUMENT;
        set_ull(v, link_err(g, k, scope, t));
        return NVML_SUCCESS;
    }
    case NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX:
    case NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX: {
        if (!g->nvlink_links) return NVML_ERROR_NOT_SUPPORTED;
        int rx = id == NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX;
        if (scope == 0xFFFFFFFFu) {
            unsigned long long s = 0;
            for (unsigned int l = 0; l < g->nvlink_links; l++) s += link_kib(g, rx, l, t);
            set_ull(v, s);
            return NVML_SUCCESS;
        }
        if (scope >= g->nvlink_links) return NVML_ERROR_INVALID_ARGUMENT;
        set_ull(v, link_kib(g, rx, scope, t));
        return NVML_SUCCESS;
    }
    case NVML_FI_DEV_NVLINK_GET_STATE:
        if (!g->nvlink_links) return NVML_ERROR_NOT_SUPPORTED;
        if (scope >= g->nvlink_links) return NVML_ERROR_INVALID_ARGUMENT;
        set_uint(v, link_active(g, scope));
        return NVML_SUCCESS;
    case NVML_FI_DEV_NVLINK_LINK_COUNT:
        set_uint(v, g->nvlink_links);
        return NVML_SUCCESS;
    case NVML_FI_DEV_MEMORY_TEMP:
        set_uint(v, (unsigned long long)lround(fk_eval_clamped(&g->temp_mem, t, 0, 200)));
        return NVML_SUCCESS;
    case NVML_FI_DEV_GPU_TEMP:
        v->valueType = NVML_VALUE_TYPE_DOUBLE;
        v->value.dVal = fk_eval(&g->temp_gpu, t);
        return NVML_SUCCESS;
    case NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION:
    case NVML_FI_DEV_ENERGY:
        if (g->arch < NVML_DEVICE_ARCH_VOLTA) return NVML_ERROR_NOT_SUPPORTED;
        if (id == NVML_FI_DEV_ENERGY && scope != 0) return NVML_ERROR_NOT_SUPPORTED;
        set_ull(v, fk_energy_mj(g, t));
        return NVML_SUCCESS;
    case NVML_FI_DEV_PCIE_REPLAY_COUNTER:
        set_uint(v, fk_count(&g->pcie_replay, t));
        return NVML_SUCCESS;
    case NVML_FI_DEV_PCIE_REPLAY_ROLLOVER_COUNTER:
        set_uint(v, fk_count(&g->pcie_replay_rollover, t));
        return NVML_SUCCESS;
    case NVML_FI_DEV_PCIE_COUNT_TX_BYTES:
    case NVML_FI_DEV_PCIE_COUNT_RX_BYTES: {
        const fk_expr *e = id == NVML_FI_DEV_PCIE_COUNT_TX_BYTES ? &g->pcie_tx_kbps : &g->pcie_rx_kbps;
        set_ull(v, (unsigned long long)floor(fk_integral(e, t) * 1000.0));
        return NVML_SUCCESS;
    }
    case NVML_FI_DEV_REMAPPED_COR:
    case NVML_FI_DEV_REMAPPED_UNC:
    case NVML_FI_DEV_REMAPPED_PENDING:
    case NVML_FI_DEV_REMAPPED_FAILURE:
        if (!g->row_remapping || fk_mig_instances_active(g)) return NVML_ERROR_NOT_SUPPORTED;
        set_uint(v, id == NVML_FI_DEV_REMAPPED_COR ? g->remap_cor : id == NVML_FI_DEV_REMAPPED_UNC ? g->remap_unc
                  : id == NVML_FI_DEV_REMAPPED_PENDING ? g->remap_pending : g->remap_failure);
        return NVML_SUCCESS;
    case NVML_FI_DEV_POWER_AVERAGE:
    case NVML_FI_DEV_POWER_INSTANT:
        if (scope != 0) return NVML_ERROR_NOT_SUPPORTED;
        if (id == NVML_FI_DEV_POWER_AVERAGE) {
            /* exact 1 s average of the power curve */
            double a = t >= 1 ? (fk_integral(&g->power_w, t) - fk_integral(&g->power_w, t - 1)) : fk_eval(&g->power_w, t);
            set_uint(v, (unsigned long long)llround(a * 1000.0));
        } else {
            set_uint(v, fk_power_mw(g, t));
        }
        return NVML_SUCCESS;
    case NVML_FI_DEV_POWER_MIN_LIMIT: set_uint(v, g->power_min_mw); return NVML_SUCCESS;
    case NVML_FI_DEV_POWER_MAX_LIMIT: set_uint(v, g->power_max_mw); return NVML_SUCCESS;
    case NVML_FI_DEV_POWER_DEFAULT_LIMIT: set_uint(v, g->power_default_mw); return NVML_SUCCESS;
    case NVML_FI_DEV_POWER_CURRENT_LIMIT: set_uint(v, g->power_limit_mw); return NVML_SUCCESS;
    default:
        return NVML_ERROR_NOT_SUPPORTED;
    }
}

FK_API nvmlReturn_t nvmlDeviceGetFieldValues(nvmlDevice_t device, int valuesCount, nvmlFieldValue_t *values)
{
    FK_DEV_BEGIN(device, c);
    if (!values || valuesCount < 0) FK_RET(NVML_ERROR_INVALID_ARGUMENT);
    double t = fk_now();
    long long ts = (long long)fk_now_us();
    for (int i = 0; i < valuesCount; i++) {
        nvmlFieldValue_t *v = &values[i];
        v->timestamp = ts;
        v->latencyUsec = 0;
        v->valueType = NVML_VALUE_TYPE_UNSIGNED_LONG_LONG;
        v->value.ullVal = 0;
        char name[32];
        snprintf(name, sizeof name, "field:%u", v->fieldId);
        int fr;
        if (c.slot >= 0) v->nvmlReturn = NVML_ERROR_NOT_SUPPORTED;   /* physical-only */
        else if (fk_field_fault_locked(c.gpu, v->fieldId, &fr)) v->nvmlReturn = (nvmlReturn_t)fr;
        else if (fk_unsupported_locked(c.g, name)) v->nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
        else {
            v->nvmlReturn = field(&c, v, t);
            v->latencyUsec = 5 + (long long)(v->fieldId % 7);
        }
        if (v->nvmlReturn != NVML_SUCCESS) v->value.ullVal = 0;
    }
    FK_RET(NVML_SUCCESS);
}

/*
 * scenario_activity.c - scenario keys of the activity model: square waves, the utilization
 * sample buffer, GPM factors, per-MIG-instance activity and per-GPU variation.
 *
 * Part of gpu-node-exporter. Compiled against NVIDIA's nvml.h; see fakenvml.h for the
 * Disclaimer and U.S. Government End Users Notice that nvml.h requires us to carry.
 *
 * Kept apart from scenario.c (the generic parser), which calls in here for the keys and
 * attributes below. Documented in docs/fake-driver.md.
 */
#include "fakenvml.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *const fk_gpm_factor_keys[FK_GPM_FACTORS] = {
    "gpm_sm_active", "gpm_sm_occupancy", "gpm_tensor_active", "gpm_tensor_hmma",
    "gpm_tensor_imma", "gpm_tensor_dmma", "gpm_tensor_dfma", "gpm_fp64",
    "gpm_fp32", "gpm_fp16", "gpm_integer", "gpm_dram_active"};

static const double gpm_factor_defaults[FK_GPM_FACTORS] = {
    0.85, 0.45, 0.50, 0.45, 0.03, 0.0, 0.0, 0.01, 0.25, 0.10, 0.15, 0.9};


static int num(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

static int onoff(const char *s, int *out)
{
    static const char *const on[] = {"1", "on", "yes", "true", "enabled"};
    static const char *const off[] = {"0", "off", "no", "false", "disabled"};
    for (size_t i = 0; i < sizeof on / sizeof on[0]; i++) {
        if (!strcasecmp(s, on[i]) || !strcasecmp(s, off[i])) {
            *out = !strcasecmp(s, on[i]);
            return 0;
        }
    }
    return -1;
}

/* "square HIGH LOW PERIOD_S ON_S [PHASE_S]" (tok[0] is "square"). */
int fk_parse_square(char **tok, int n, fk_expr *e, int nonneg)
{
    fk_expr x = {0, 0, 60, 0, FK_SQUARE, 0, 0, 0};
    if (n < 5 || n > 6) return -1;
    if (num(tok[1], &x.high) || num(tok[2], &x.low) || num(tok[3], &x.period) || num(tok[4], &x.on)) return -1;
    if (n == 6 && num(tok[5], &x.phase)) return -1;
    if (!(x.period > 0) || x.on < 0 || x.on > x.period) return -1;
    if (nonneg && (x.high < 0 || x.low < 0)) return -1;
    *e = x;
    return 0;
}

void fk_activity_defaults(fk_gpu *g)
{
    g->sample_period_s = 1.0 / 6.0;
    g->sample_buffer = 100;
    g->gpm = -1;
    memcpy(g->gpm_factor, gpm_factor_defaults, sizeof g->gpm_factor);
    g->variation = 1;
}

static int factor_index(const char *key)
{
    for (int i = 0; i < FK_GPM_FACTORS; i++)
        if (!strcmp(key, fk_gpm_factor_keys[i])) return i;
    return -1;
}

int fk_apply_activity_key(fk_gpu *g, const char *key, const char *value, char *err, size_t errlen)
{
    double v;
    int b, f;
    if (!strcmp(key, "sample_period_ms")) {
        if (num(value, &v) || v < 1 || v > 60000)
            return fk_seterr(err, errlen, "sample_period_ms: expected milliseconds 1..60000");
        g->sample_period_s = v / 1000.0;
        return 0;
    }
    if (!strcmp(key, "sample_buffer")) {
        if (num(value, &v) || v < 1 || v > 100000 || v != floor(v))
            return fk_seterr(err, errlen, "sample_buffer: expected a sample count 1..100000");
        g->sample_buffer = (unsigned int)v;
        return 0;
    }
    if (!strcmp(key, "gpm")) {
        if (onoff(value, &b)) return fk_seterr(err, errlen, "gpm: expected on/off");
        g->gpm = b;
        return 0;
    }
    if (!strcmp(key, "variation")) {
        if (onoff(value, &b)) return fk_seterr(err, errlen, "variation: expected on/off");
        g->variation = b;
        return 0;
    }
    if ((f = factor_index(key)) >= 0) {
        if (num(value, &v) || v < 0 || v > 1) return fk_seterr(err, errlen, "%s: expected a fraction 0..1", key);
        g->gpm_factor[f] = v;
        return 0;
    }
    return 1;
}

int fk_apply_mig_attr(fk_mig *m, const char *key, const char *value, char *err, size_t errlen)
{
    double v;
    int f;
    if (!strcmp(key, "util")) {
        if (num(value, &v) || v < 0 || v > 100) return fk_seterr(err, errlen, "bad util (a percent 0..100)");
        m->has_util = 1;
        m->util = v;
        return 0;
    }
    if ((f = factor_index(key)) >= 0) {
        if (num(value, &v) || v < 0 || v > 1) return fk_seterr(err, errlen, "bad %s (a fraction 0..1)", key);
        m->gpm[f] = v;
        m->gpm_set |= 1u << f;
        return 0;
    }
    return 1;
}

/* d_i in [-1, 1]: the top 53 bits of splitmix64(i) as a fraction u in [0, 1), d = 2u - 1. */
static double deviation(unsigned int i)
{
    uint64_t x = (uint64_t)i + 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    x ^= x >> 31;
    return 2.0 * (double)(x >> 11) / 9007199254740992.0 - 1.0;
}

static void vary(fk_expr *e, unsigned int i, unsigned int count, double f, double d, int nonneg)
{
    e->phase += (double)i * e->period / (double)count;
    if (e->kind == FK_SQUARE) return;   /* square waves: phase only */
    e->base *= 1.0 + f * d;
    if (nonneg && e->base < fabs(e->amp)) e->base = fabs(e->amp);
}

/* gpu_variation = F: GPU i's curves get phase += i*period/gpu_count and base *= 1 + F*d_i. */
void fk_apply_variation(fk_scenario *s)
{
    if (!(s->gpu_variation > 0) || !s->gpu_count) return;
    for (unsigned int i = 0; i < s->gpu_count; i++) {
        fk_gpu *g = &s->gpus[i];
        if (!g->variation) continue;
        double d = deviation(i), f = s->gpu_variation;
        fk_expr *any[] = {&g->temp_gpu, &g->temp_mem, &g->util_gpu, &g->util_mem, &g->mem_used_mib,
                          &g->clock[0], &g->clock[1], &g->clock[2], &g->clock[3]};
        fk_expr *nonneg[] = {&g->power_w, &g->pcie_tx_kbps, &g->pcie_rx_kbps, &g->nvlink_tx_kibps,
                             &g->nvlink_rx_kibps};
        for (size_t k = 0; k < sizeof any / sizeof any[0]; k++) vary(any[k], i, s->gpu_count, f, d, 0);
        for (size_t k = 0; k < sizeof nonneg / sizeof nonneg[0]; k++) vary(nonneg[k], i, s->gpu_count, f, d, 1);
    }
}

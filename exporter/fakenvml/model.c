/*
 * model.c - time base and value model of the fake NVML driver.
 *
 * Part of gpu-node-exporter. Compiled against NVIDIA's nvml.h; see fakenvml.h for the
 * Disclaimer and U.S. Government End Users Notice that nvml.h requires us to carry.
 *
 * Gauges are sines (base + amp*sin(2*pi*(t+phase)/period)) or square waves (high for the
 * first `on` seconds of every period of t+phase, low otherwise); counters are start + rate*t;
 * energy and byte counters are closed-form integrals of their gauge, so they are exactly
 * consistent with the gauge and never decrease. Sample and GPM averages use the same
 * closed-form integrals (fk_avg), so they are exact too.
 */
#include "fakenvml.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double t0 = -1;            /* CLOCK_MONOTONIC at the first init */
static double time_env = -1;      /* FAKE_NVML_TIME */
double fk_time_ctl = -1;
double fk_time_file = -1;
unsigned long long fk_wall_base_us;   /* CLOCK_REALTIME at t0, in microseconds */

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Scenario time 0 is fixed once per process (shutdown + init keeps it), and so is the wall
 * clock that goes with it: sample timestamps are fk_wall_base_us + t_k * 1e6. */
void fk_time_start(void)
{
    if (t0 < 0) {
        t0 = mono();
        fk_wall_base_us = fk_now_us();
    }
}

void fk_time_env(void)
{
    const char *e = getenv("FAKE_NVML_TIME");
    time_env = -1;
    if (e && *e) {
        char *end;
        double v = strtod(e, &end);
        if (end != e && !*end && v >= 0) time_env = v;
        else fk_log("fake NVML: ignoring FAKE_NVML_TIME=%s (expected seconds >= 0)", e);
    }
}

double fk_now(void)
{
    if (fk_time_ctl >= 0) return fk_time_ctl;
    if (fk_time_file >= 0) return fk_time_file;
    if (time_env >= 0) return time_env;
    if (t0 < 0) return 0;
    return mono() - t0;
}

unsigned long long fk_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000ull;
}

/* Seconds spent high in [0, u) of the square wave's own (phase-shifted) time u. */
static double square_on_time(const fk_expr *e, double u)
{
    double n = floor(u / e->period);
    double r = u - n * e->period;
    if (r < 0) r = 0;
    if (r > e->period) r = e->period;
    return n * e->on + (r < e->on ? r : e->on);
}

double fk_eval(const fk_expr *e, double t)
{
    if (e->kind == FK_SQUARE) {
        double u = t + e->phase;
        double r = u - floor(u / e->period) * e->period;
        return r < e->on ? e->high : e->low;
    }
    if (e->amp == 0) return e->base;
    return e->base + e->amp * sin(2.0 * M_PI * (t + e->phase) / e->period);
}

double fk_eval_clamped(const fk_expr *e, double t, double lo, double hi)
{
    double v = fk_eval(e, t);
    if (v < lo) v = lo;
    if (v > hi) v = hi;
    return v;
}

/* The antiderivative that is 0 at t = 0; defined for negative t too. */
static double antiderivative(const fk_expr *e, double t)
{
    if (e->kind == FK_SQUARE)
        return e->low * t + (e->high - e->low) * (square_on_time(e, t + e->phase) - square_on_time(e, e->phase));
    double v = e->base * t;
    if (e->amp != 0) {
        double w = 2.0 * M_PI / e->period;
        v += e->amp / w * (cos(w * e->phase) - cos(w * (t + e->phase)));
    }
    return v;
}

double fk_integral(const fk_expr *e, double t)
{
    if (t <= 0) return 0;
    double v = antiderivative(e, t);
    return v < 0 ? 0 : v;
}

double fk_avg(const fk_expr *e, double a, double b)
{
    if (!(b > a)) return fk_eval(e, b);
    return (antiderivative(e, b) - antiderivative(e, a)) / (b - a);
}

double fk_expr_min(const fk_expr *e)
{
    if (e->kind == FK_SQUARE) return e->high < e->low ? e->high : e->low;
    return e->base - fabs(e->amp);
}

double fk_expr_max(const fk_expr *e)
{
    if (e->kind == FK_SQUARE) return e->high > e->low ? e->high : e->low;
    return e->base + fabs(e->amp);
}

unsigned long long fk_count(const fk_counter *c, double t)
{
    if (t < 0) t = 0;
    return (unsigned long long)floor(c->start + c->rate * t);
}

unsigned long long fk_energy_mj(const fk_gpu *g, double t)
{
    return fk_count(&g->energy_offset_mj, t) + (unsigned long long)floor(fk_integral(&g->power_w, t) * 1000.0);
}

unsigned int fk_power_mw(const fk_gpu *g, double t)
{
    return (unsigned int)(fk_eval_clamped(&g->power_w, t, 0, 1e7) * 1000.0 + 0.5);
}

unsigned long long fk_mig_used_mib(const fk_gpu *g, int slot)
{
    const fk_mig *m = &g->mig[slot];
    unsigned long long used = 0;
    for (int p = 0; p < g->n_procs; p++)
        if (g->procs[p].gi == m->gi && g->procs[p].ci == m->ci) used += g->procs[p].used_mib;
    if (used > m->memory_mib) used = m->memory_mib;
    return used;
}

unsigned long long fk_gpu_used_mib(const fk_gpu *g, double t)
{
    unsigned long long avail = g->mem_total_mib > g->mem_reserved_mib ? g->mem_total_mib - g->mem_reserved_mib : 0;
    unsigned long long used = 0, procs = 0;
    if (g->mig_current) {
        for (int m = 0; m < FK_MAX_MIG; m++)
            if (g->mig[m].present) used += fk_mig_used_mib(g, m);
    } else {
        used = (unsigned long long)fk_eval_clamped(&g->mem_used_mib, t, 0, 1e15);
        for (int p = 0; p < g->n_procs; p++) procs += g->procs[p].used_mib;
        if (used < procs) used = procs;   /* used memory always covers the processes */
    }
    return used > avail ? avail : used;
}

unsigned long long fk_reasons(const fk_gpu *g, double t)
{
    if (g->n_reasons <= 1) return g->n_reasons ? g->reasons[0] : 0;
    long long step = (long long)floor(t / g->reasons_period);
    if (step < 0) step = 0;
    return g->reasons[step % g->n_reasons];
}

/* Index into fk_gpu.throttle_ns for a throttle-time field id, or -1. */
int fk_throttle_index(unsigned int field)
{
    switch (field) {
    case NVML_FI_DEV_PERF_POLICY_POWER: return 0;
    case NVML_FI_DEV_PERF_POLICY_THERMAL: return 1;
    case NVML_FI_DEV_PERF_POLICY_SYNC_BOOST: return 2;
    case NVML_FI_DEV_PERF_POLICY_BOARD_LIMIT: return 3;
    case NVML_FI_DEV_PERF_POLICY_LOW_UTILIZATION: return 4;
    case NVML_FI_DEV_PERF_POLICY_RELIABILITY: return 5;
    case NVML_FI_DEV_PERF_POLICY_TOTAL_APP_CLOCKS: return 6;
    case NVML_FI_DEV_PERF_POLICY_TOTAL_BASE_CLOCKS: return 7;
    case NVML_FI_DEV_CLOCKS_EVENT_REASON_SW_THERM_SLOWDOWN: return 8;
    case NVML_FI_DEV_CLOCKS_EVENT_REASON_HW_THERM_SLOWDOWN: return 9;
    case NVML_FI_DEV_CLOCKS_EVENT_REASON_HW_POWER_BRAKE_SLOWDOWN: return 10;
    default: return -1;
    }
}

/*
 * scenario.c - parser for the .scn scenario format of the fake NVML driver.
 *
 * Part of gpu-node-exporter. Compiled against NVIDIA's nvml.h; see fakenvml.h for the
 * Disclaimer and U.S. Government End Users Notice that nvml.h requires us to carry.
 *
 * Format (documented in docs/fake-driver.md): line oriented, '#' comments, sections
 * [system], [gpu *], [gpu N], [gpu A-B]; "key = value" lines. GPU sections are applied in
 * file order to every GPU they match, so a [gpu *] block gives defaults and later
 * [gpu N] blocks override single keys. List keys (process, mig_device, mig_profile,
 * not_supported) replace the inherited list on their first line inside a section.
 */
#include "fakenvml.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_epoch;   /* identifies one (section, gpu) application for list replacement */

static char *trim(char *s)
{
    while (*s && isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
    return s;
}

int fk_seterr(char *err, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
    return -1;
}

/* Splits a value into whitespace-separated tokens (modifies s). */
static int split(char *s, char **tok, int max)
{
    int n = 0;
    char *save = NULL;
    for (char *p = strtok_r(s, " \t", &save); p && n < max; p = strtok_r(NULL, " \t", &save))
        tok[n++] = p;
    return n;
}

static int parse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end) return -1;
    *out = v;
    return 0;
}

static int parse_ull(const char *s, unsigned long long *out)
{
    char *end;
    if (*s == '-') return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || end == s || *end) return -1;
    *out = v;
    return 0;
}

static int parse_uint(const char *s, unsigned int *out)
{
    unsigned long long v;
    if (parse_ull(s, &v) || v > 0xFFFFFFFFull) return -1;
    *out = (unsigned int)v;
    return 0;
}

static int parse_bool(const char *s, int *out)
{
    if (!strcasecmp(s, "1") || !strcasecmp(s, "on") || !strcasecmp(s, "yes") ||
        !strcasecmp(s, "true") || !strcasecmp(s, "enabled")) {
        *out = 1;
        return 0;
    }
    if (!strcasecmp(s, "0") || !strcasecmp(s, "off") || !strcasecmp(s, "no") ||
        !strcasecmp(s, "false") || !strcasecmp(s, "disabled")) {
        *out = 0;
        return 0;
    }
    return -1;
}

static int parse_expr(const char *v, fk_expr *e, int nonneg)
{
    char buf[256], *tok[8];
    snprintf(buf, sizeof buf, "%s", v);
    int n = split(buf, tok, 8);
    if (n >= 1 && !strcmp(tok[0], "square")) return fk_parse_square(tok, n, e, nonneg);
    fk_expr x = {0, 0, 60, 0, FK_SINE, 0, 0, 0};
    if (n < 1 || n > 4 || n == 2) return -1;
    if (parse_double(tok[0], &x.base)) return -1;
    if (n >= 3 && (parse_double(tok[1], &x.amp) || parse_double(tok[2], &x.period))) return -1;
    if (n == 4 && parse_double(tok[3], &x.phase)) return -1;
    if (x.period <= 0) return -1;
    if (nonneg && (x.base < 0 || x.base < (x.amp < 0 ? -x.amp : x.amp))) return -1;
    *e = x;
    return 0;
}

static int parse_counter(const char *v, fk_counter *c)
{
    char buf[256], *tok[4];
    snprintf(buf, sizeof buf, "%s", v);
    int n = split(buf, tok, 4);
    fk_counter x = {0, 0};
    if (n < 1 || n > 2) return -1;
    if (parse_double(tok[0], &x.start)) return -1;
    if (n == 2 && parse_double(tok[1], &x.rate)) return -1;
    if (x.start < 0 || x.rate < 0) return -1;   /* counters never go down */
    *c = x;
    return 0;
}

static int parse_uints(const char *v, unsigned int *out, int want_min, int want_max)
{
    char buf[256], *tok[16];
    snprintf(buf, sizeof buf, "%s", v);
    int n = split(buf, tok, 16);
    if (n < want_min || n > want_max) return -1;
    for (int i = 0; i < n; i++)
        if (parse_uint(tok[i], &out[i])) return -1;
    return n;
}

static int parse_watts_mw(const char *v, unsigned int *out)
{
    double w;
    if (parse_double(v, &w) || w < 0 || w > 4e6) return -1;
    *out = (unsigned int)(w * 1000.0 + 0.5);
    return 0;
}

/* "key=value" tokens of list lines such as process / mig_device / mig_profile. */
#define KV_MAX 32
typedef struct {
    char *k[KV_MAX];
    char *v[KV_MAX];
    int n;
} kvs;

static int parse_kvs(char *s, kvs *out)
{
    char *tok[KV_MAX + 1];
    int n = split(s, tok, KV_MAX + 1);
    if (n > KV_MAX) return -1;
    out->n = 0;
    for (int i = 0; i < n; i++) {
        char *eq = strchr(tok[i], '=');
        if (!eq) return -1;
        *eq = '\0';
        out->k[out->n] = tok[i];
        out->v[out->n] = eq + 1;
        out->n++;
    }
    return 0;
}

static const char *kv_get(const kvs *k, const char *key)
{
    for (int i = 0; i < k->n; i++)
        if (!strcmp(k->k[i], key)) return k->v[i];
    return NULL;
}

static int kv_check(const kvs *k, const char *const *allowed, char *err, size_t errlen)
{
    for (int i = 0; i < k->n; i++) {
        int ok = 0;
        for (const char *const *a = allowed; *a; a++)
            if (!strcmp(k->k[i], *a)) ok = 1;
        if (!ok) return fk_seterr(err, errlen, "unknown attribute '%s'", k->k[i]);
    }
    return 0;
}

/* Slice counts from a profile name "<g>g.<N>gb" or "<c>c.<g>g.<N>gb" (+attributes ignored). */
static int profile_slices(const char *name, unsigned int *gi_slices, unsigned int *ci_slices)
{
    unsigned int a = 0, b = 0;
    char c1 = 0, c2 = 0;
    if (sscanf(name, "%u%c.%u%c", &a, &c1, &b, &c2) == 4 && c1 == 'c' && c2 == 'g') {
        *ci_slices = a;
        *gi_slices = b;
        return 0;
    }
    if (sscanf(name, "%u%c", &a, &c1) == 2 && c1 == 'g' && a > 0) {
        *gi_slices = *ci_slices = a;
        return 0;
    }
    return -1;
}

static unsigned int profile_id_for_slices(unsigned int slices)
{
    switch (slices) {
    case 1: return NVML_GPU_INSTANCE_PROFILE_1_SLICE;
    case 2: return NVML_GPU_INSTANCE_PROFILE_2_SLICE;
    case 3: return NVML_GPU_INSTANCE_PROFILE_3_SLICE;
    case 4: return NVML_GPU_INSTANCE_PROFILE_4_SLICE;
    case 6: return NVML_GPU_INSTANCE_PROFILE_6_SLICE;
    case 7: return NVML_GPU_INSTANCE_PROFILE_7_SLICE;
    case 8: return NVML_GPU_INSTANCE_PROFILE_8_SLICE;
    default: return FK_NA;
    }
}

static const fk_profile *find_profile(const fk_gpu *g, const char *name)
{
    for (int i = 0; i < FK_MAX_PROFILES; i++)
        if (g->profiles[i].used && !strcmp(g->profiles[i].name, name)) return &g->profiles[i];
    return NULL;
}

static int apply_profile(fk_gpu *g, char *v, char *err, size_t errlen)
{
    static const char *const allowed[] = {"id", "name", "slices", "instances", "memory_mib", "sm",
                                          "ce", "dec", "enc", "jpg", "ofa", NULL};
    kvs k;
    if (parse_kvs(v, &k) || kv_check(&k, allowed, err, errlen))
        return err[0] ? -1 : fk_seterr(err, errlen, "expected key=value attributes");
    fk_profile p;
    memset(&p, 0, sizeof p);
    const char *name = kv_get(&k, "name");
    if (!name || strlen(name) >= sizeof p.name) return fk_seterr(err, errlen, "mig_profile needs name=");
    snprintf(p.name, sizeof p.name, "%s", name);
    unsigned int gs = 0, cs = 0;
    if (profile_slices(name, &gs, &cs)) return fk_seterr(err, errlen, "bad profile name '%s'", name);
    p.slices = gs;
    p.id = profile_id_for_slices(gs);
    const char *s;
    if ((s = kv_get(&k, "id")) && parse_uint(s, &p.id)) return fk_seterr(err, errlen, "bad id");
    if ((s = kv_get(&k, "slices")) && parse_uint(s, &p.slices)) return fk_seterr(err, errlen, "bad slices");
    p.instances = 1;
    if ((s = kv_get(&k, "instances")) && parse_uint(s, &p.instances))
        return fk_seterr(err, errlen, "bad instances");
    if (!(s = kv_get(&k, "memory_mib")) || parse_ull(s, &p.memory_mib))
        return fk_seterr(err, errlen, "mig_profile needs memory_mib=");
    if (!(s = kv_get(&k, "sm")) || parse_uint(s, &p.sm)) return fk_seterr(err, errlen, "mig_profile needs sm=");
    p.ce = p.slices;
    struct { const char *k; unsigned int *dst; } opt[] = {
        {"ce", &p.ce}, {"dec", &p.dec}, {"enc", &p.enc}, {"jpg", &p.jpg}, {"ofa", &p.ofa}};
    for (size_t i = 0; i < sizeof opt / sizeof opt[0]; i++)
        if ((s = kv_get(&k, opt[i].k)) && parse_uint(s, opt[i].dst))
            return fk_seterr(err, errlen, "bad %s", opt[i].k);
    if (p.id >= FK_MAX_PROFILES) return fk_seterr(err, errlen, "profile id %u out of range", p.id);
    p.used = 1;
    if (g->profiles[p.id].used && strcmp(g->profiles[p.id].name, p.name))
        return fk_seterr(err, errlen, "profile id %u already used by %s", p.id, g->profiles[p.id].name);
    g->profiles[p.id] = p;
    return 0;
}

static int apply_mig_device(fk_gpu *g, char *v, char *err, size_t errlen)
{
    static const char *const allowed[] = {"slot", "gi", "ci", "profile", "memory_mib", "sm",
                                          "start", "uuid", NULL};
    kvs k;
    if (parse_kvs(v, &k)) return fk_seterr(err, errlen, "expected key=value attributes");
    fk_mig m;
    memset(&m, 0, sizeof m);
    /* util= and the gpm_* factors (scenario_activity.c) are taken out before the check. */
    int kept = 0;
    for (int i = 0; i < k.n; i++) {
        int r = fk_apply_mig_attr(&m, k.k[i], k.v[i], err, errlen);
        if (r < 0) return -1;
        if (r > 0) {
            k.k[kept] = k.k[i];
            k.v[kept++] = k.v[i];
        }
    }
    k.n = kept;
    if (kv_check(&k, allowed, err, errlen)) return -1;
    unsigned int slot;
    const char *s;
    if (!(s = kv_get(&k, "slot")) || parse_uint(s, &slot) || slot >= FK_MAX_MIG)
        return fk_seterr(err, errlen, "mig_device needs slot=0..%d", FK_MAX_MIG - 1);
    if (!(s = kv_get(&k, "gi")) || parse_uint(s, &m.gi)) return fk_seterr(err, errlen, "mig_device needs gi=");
    if (!(s = kv_get(&k, "ci")) || parse_uint(s, &m.ci)) return fk_seterr(err, errlen, "mig_device needs ci=");
    const char *prof = kv_get(&k, "profile");
    if (!prof || strlen(prof) >= sizeof m.profile) return fk_seterr(err, errlen, "mig_device needs profile=");
    snprintf(m.profile, sizeof m.profile, "%s", prof);
    if (profile_slices(prof, &m.gi_slices, &m.ci_slices))
        return fk_seterr(err, errlen, "bad profile name '%s'", prof);
    /* The GPU-instance profile is the name without a leading "<c>c." part. */
    const char *giname = prof;
    if (m.ci_slices != m.gi_slices || strchr(prof, 'c')) {
        const char *dot = strchr(prof, '.');
        if (dot && strchr(prof, 'c') && strchr(prof, 'c') < dot) giname = dot + 1;
    }
    const fk_profile *p = find_profile(g, giname);
    m.profile_id = p ? p->id : profile_id_for_slices(m.gi_slices);
    m.memory_mib = p ? p->memory_mib : 0;
    m.sm = p ? p->sm : 0;
    if (p) {
        m.ce = p->ce; m.dec = p->dec; m.enc = p->enc; m.jpg = p->jpg; m.ofa = p->ofa;
        if (m.ci_slices != m.gi_slices && m.gi_slices) m.sm = p->sm * m.ci_slices / m.gi_slices;
    }
    if ((s = kv_get(&k, "memory_mib")) && parse_ull(s, &m.memory_mib)) return fk_seterr(err, errlen, "bad memory_mib");
    if ((s = kv_get(&k, "sm")) && parse_uint(s, &m.sm)) return fk_seterr(err, errlen, "bad sm");
    m.start = FK_NA;
    if ((s = kv_get(&k, "start")) && parse_uint(s, &m.start)) return fk_seterr(err, errlen, "bad start");
    if ((s = kv_get(&k, "uuid"))) snprintf(m.uuid, sizeof m.uuid, "%s", s);
    if (!m.memory_mib || !m.sm)
        return fk_seterr(err, errlen, "mig_device: profile '%s' unknown; give memory_mib= and sm= or a mig_profile line", prof);
    m.present = 1;
    g->mig[slot] = m;
    return 0;
}

static int apply_process(fk_gpu *g, char *v, char *err, size_t errlen)
{
    static const char *const allowed[] = {"pid", "mem_mib", "type", "gi", "ci", "name", "sm", "share", NULL};
    kvs k;
    if (parse_kvs(v, &k) || kv_check(&k, allowed, err, errlen))
        return err[0] ? -1 : fk_seterr(err, errlen, "expected key=value attributes");
    if (g->n_procs >= FK_MAX_PROCS) return fk_seterr(err, errlen, "too many processes (max %d)", FK_MAX_PROCS);
    fk_proc p;
    memset(&p, 0, sizeof p);
    const char *s;
    if (!(s = kv_get(&k, "pid")) || parse_uint(s, &p.pid) || !p.pid) return fk_seterr(err, errlen, "process needs pid=");
    if (!(s = kv_get(&k, "mem_mib")) || parse_ull(s, &p.used_mib)) return fk_seterr(err, errlen, "process needs mem_mib=");
    s = kv_get(&k, "type");
    if (!s || !strcmp(s, "compute")) p.compute = 1;
    else if (!strcmp(s, "graphics")) p.graphics = 1;
    else if (!strcmp(s, "both") || !strcmp(s, "C+G")) p.compute = p.graphics = 1;
    else return fk_seterr(err, errlen, "process type must be compute, graphics or both");
    p.gi = p.ci = FK_NA;
    if ((s = kv_get(&k, "gi")) && parse_uint(s, &p.gi)) return fk_seterr(err, errlen, "bad gi");
    if ((s = kv_get(&k, "ci")) && parse_uint(s, &p.ci)) return fk_seterr(err, errlen, "bad ci");
    if ((p.gi == FK_NA) != (p.ci == FK_NA)) return fk_seterr(err, errlen, "process needs both gi= and ci= or neither");
    p.sm_util = 0;
    if ((s = kv_get(&k, "sm")) && parse_uint(s, &p.sm_util)) return fk_seterr(err, errlen, "bad sm");
    p.share = 1;
    if ((s = kv_get(&k, "share")) && (parse_double(s, &p.share) || !(p.share >= 0) || p.share > 1e6))
        return fk_seterr(err, errlen, "bad share (a weight >= 0)");
    snprintf(p.name, sizeof p.name, "%s", (s = kv_get(&k, "name")) ? s : "python3");
    g->procs[g->n_procs++] = p;
    return 0;
}

static const struct { const char *name; unsigned int v; } arch_names[] = {
    {"kepler", 2}, {"maxwell", 3}, {"pascal", 4}, {"volta", 5}, {"turing", 6},
    {"ampere", 7}, {"ada", 8}, {"hopper", 9}, {"blackwell", 10}};

static const char *const throttle_keys[12] = {
    "throttle_power_ns", "throttle_thermal_ns", "throttle_sync_boost_ns", "throttle_board_limit_ns",
    "throttle_low_util_ns", "throttle_reliability_ns", "throttle_app_clocks_ns", "throttle_base_clocks_ns",
    "throttle_sw_thermal_ns", "throttle_hw_thermal_ns", "throttle_hw_power_brake_ns", NULL};

int fk_apply_key(fk_gpu *g, const char *key, const char *value, char *err, size_t errlen)
{
    char vbuf[1024];
    if (strlen(value) >= sizeof vbuf) return fk_seterr(err, errlen, "value too long");
    snprintf(vbuf, sizeof vbuf, "%s", value);
    char *v = vbuf;
    unsigned int u4[8];
    int activity = fk_apply_activity_key(g, key, v, err, errlen);
    if (activity <= 0) return activity;

#define STR(k, dst)                                                         \
    if (!strcmp(key, k)) {                                                  \
        if (strlen(v) >= sizeof(dst)) return fk_seterr(err, errlen, "%s too long", k); \
        snprintf(dst, sizeof(dst), "%s", v);                                \
        return 0;                                                           \
    }
#define UINT(k, dst)                                                        \
    if (!strcmp(key, k)) {                                                  \
        if (parse_uint(v, &(dst))) return fk_seterr(err, errlen, "%s: expected an unsigned integer", k); \
        return 0;                                                           \
    }
#define ULL(k, dst)                                                         \
    if (!strcmp(key, k)) {                                                  \
        if (parse_ull(v, &(dst))) return fk_seterr(err, errlen, "%s: expected an unsigned integer", k); \
        return 0;                                                           \
    }
#define BOOL(k, dst)                                                        \
    if (!strcmp(key, k)) {                                                  \
        if (parse_bool(v, &(dst))) return fk_seterr(err, errlen, "%s: expected on/off", k); \
        return 0;                                                           \
    }
#define EXPR(k, dst, nn)                                                    \
    if (!strcmp(key, k)) {                                                  \
        if (parse_expr(v, &(dst), nn))                                      \
            return fk_seterr(err, errlen, "%s: expected 'base [amplitude period_s [phase_s]]'%s" \
                          " or 'square high low period_s on_s [phase_s]'", k, \
                          nn ? " with base >= |amplitude|" : "");           \
        return 0;                                                           \
    }
#define COUNTER(k, dst)                                                     \
    if (!strcmp(key, k)) {                                                  \
        if (parse_counter(v, &(dst)))                                       \
            return fk_seterr(err, errlen, "%s: expected 'start [rate_per_s]' (both >= 0)", k); \
        return 0;                                                           \
    }
#define WATTS(k, dst)                                                       \
    if (!strcmp(key, k)) {                                                  \
        if (parse_watts_mw(v, &(dst))) return fk_seterr(err, errlen, "%s: expected watts", k); \
        return 0;                                                           \
    }

    STR("name", g->name)
    STR("vbios", g->vbios)
    STR("serial", g->serial)
    STR("uuid", g->uuid)
    STR("uuid_seed", g->uuid_seed)
    if (!strcmp(key, "brand")) {
        if (!strcasecmp(v, "nvidia")) g->brand = NVML_BRAND_NVIDIA;
        else if (!strcasecmp(v, "tesla")) g->brand = NVML_BRAND_TESLA;
        else if (parse_uint(v, &g->brand)) return fk_seterr(err, errlen, "brand: nvidia, tesla or a number");
        return 0;
    }
    if (!strcmp(key, "architecture")) {
        for (size_t i = 0; i < sizeof arch_names / sizeof arch_names[0]; i++)
            if (!strcasecmp(v, arch_names[i].name)) {
                g->arch = arch_names[i].v;
                return 0;
            }
        if (parse_uint(v, &g->arch)) return fk_seterr(err, errlen, "architecture: unknown '%s'", v);
        return 0;
    }
    if (!strcmp(key, "compute_capability")) {
        if (sscanf(v, "%u.%u", &g->cc_major, &g->cc_minor) != 2)
            return fk_seterr(err, errlen, "compute_capability: expected MAJOR.MINOR");
        return 0;
    }
    if (!strcmp(key, "minor")) {
        if (parse_uint(v, &g->minor)) return fk_seterr(err, errlen, "minor: expected an unsigned integer");
        g->has_minor = 1;
        return 0;
    }
    if (!strcmp(key, "pci_bus_id")) {
        unsigned int d, bus, dev, fn;
        if (sscanf(v, "%x:%x:%x.%x", &d, &bus, &dev, &fn) == 4) {
        } else if (sscanf(v, "%x:%x.%x", &bus, &dev, &fn) == 3) {
            d = 0;
        } else {
            return fk_seterr(err, errlen, "pci_bus_id: expected DOMAIN:BUS:DEV.FN");
        }
        if (bus > 0xff || dev > 0x1f) return fk_seterr(err, errlen, "pci_bus_id out of range");
        g->pci_domain = d;
        g->pci_bus = bus;
        g->pci_device = dev;
        g->has_pci = 1;
        return 0;
    }
    UINT("pci_device_id", g->pci_device_id)
    UINT("pci_subsystem_id", g->pci_subsystem_id)
    ULL("memory_total_mib", g->mem_total_mib)
    ULL("memory_reserved_mib", g->mem_reserved_mib)
    EXPR("memory_used_mib", g->mem_used_mib, 0)
    ULL("bar1_total_mib", g->bar1_total_mib)
    EXPR("bar1_used_mib", g->bar1_used_mib, 0)
    WATTS("power_default_w", g->power_default_mw)
    WATTS("power_min_w", g->power_min_mw)
    WATTS("power_max_w", g->power_max_mw)
    WATTS("power_limit_w", g->power_limit_mw)
    WATTS("power_enforced_w", g->power_enforced_mw)
    EXPR("power_w", g->power_w, 1)
    COUNTER("energy_offset_mj", g->energy_offset_mj)
    BOOL("ecc_supported", g->ecc_supported)
    if (!strcmp(key, "ecc_mode") || !strcmp(key, "mig_mode")) {
        char *tok[3];
        int n = split(v, tok, 3);
        int cur, pend;
        if (n < 1 || n > 2 || parse_bool(tok[0], &cur) || (n == 2 && parse_bool(tok[1], &pend)))
            return fk_seterr(err, errlen, "%s: expected 'current [pending]' as on/off", key);
        if (n == 1) pend = cur;
        if (key[0] == 'e') {
            g->ecc_current = cur;
            g->ecc_pending = pend;
        } else {
            g->mig_current = cur;
            g->mig_pending = pend;
        }
        return 0;
    }
    BOOL("persistence_mode", g->persistence)
    if (!strcmp(key, "compute_mode")) {
        unsigned int m;
        if (parse_uint(v, &m) || m > 3) return fk_seterr(err, errlen, "compute_mode: 0..3");
        g->compute_mode = (int)m;
        return 0;
    }
    if (!strcmp(key, "pstate")) {
        unsigned int m;
        if (parse_uint(v, &m) || m > 15) return fk_seterr(err, errlen, "pstate: 0..15");
        g->pstate = (int)m;
        return 0;
    }
    UINT("temp_shutdown", g->temp_shutdown)
    UINT("temp_slowdown", g->temp_slowdown)
    UINT("temp_mem_max", g->temp_mem_max)
    UINT("temp_gpu_max", g->temp_gpu_max)
    EXPR("temperature", g->temp_gpu, 0)
    EXPR("memory_temperature", g->temp_mem, 0)
    if (!strcmp(key, "clock_max") || !strcmp(key, "clock_app")) {
        if (parse_uints(v, u4, 4, 4) < 0)
            return fk_seterr(err, errlen, "%s: expected 'graphics sm mem video' in MHz", key);
        memcpy(key[6] == 'm' ? g->clock_max : g->clock_app, u4, sizeof(unsigned int) * 4);
        return 0;
    }
    EXPR("clock_graphics", g->clock[0], 0)
    EXPR("clock_sm", g->clock[1], 0)
    EXPR("clock_mem", g->clock[2], 0)
    EXPR("clock_video", g->clock[3], 0)
    if (!strcmp(key, "pcie_max") || !strcmp(key, "pcie_current")) {
        if (parse_uints(v, u4, 2, 2) < 0) return fk_seterr(err, errlen, "%s: expected 'gen width'", key);
        if (key[5] == 'm') {
            g->pcie_max_gen = u4[0];
            g->pcie_max_width = u4[1];
        } else {
            g->pcie_cur_gen = u4[0];
            g->pcie_cur_width = u4[1];
        }
        return 0;
    }
    EXPR("pcie_tx_kbps", g->pcie_tx_kbps, 1)
    EXPR("pcie_rx_kbps", g->pcie_rx_kbps, 1)
    COUNTER("pcie_replay", g->pcie_replay)
    COUNTER("pcie_replay_rollover", g->pcie_replay_rollover)
    if (!strcmp(key, "nvlink_links")) {
        if (parse_uint(v, &g->nvlink_links) || g->nvlink_links > FK_MAX_LINKS)
            return fk_seterr(err, errlen, "nvlink_links: 0..%d", FK_MAX_LINKS);
        return 0;
    }
    UINT("nvlink_version", g->nvlink_version)
    if (!strcmp(key, "nvlink_inactive")) {
        unsigned int l[16];
        int n = (!strcmp(v, "none") || !*v) ? 0 : parse_uints(v, l, 1, 16);
        if (n < 0) return fk_seterr(err, errlen, "nvlink_inactive: list of link indices or none");
        g->nvlink_inactive_mask = 0;
        for (int i = 0; i < n; i++) {
            if (l[i] >= FK_MAX_LINKS) return fk_seterr(err, errlen, "nvlink_inactive: link %u out of range", l[i]);
            g->nvlink_inactive_mask |= 1ull << l[i];
        }
        return 0;
    }
    EXPR("nvlink_tx_kibps", g->nvlink_tx_kibps, 1)
    EXPR("nvlink_rx_kibps", g->nvlink_rx_kibps, 1)
    COUNTER("nvlink_replay", g->nvlink_err[NVML_NVLINK_ERROR_DL_REPLAY])
    COUNTER("nvlink_recovery", g->nvlink_err[NVML_NVLINK_ERROR_DL_RECOVERY])
    COUNTER("nvlink_crc_flit", g->nvlink_err[NVML_NVLINK_ERROR_DL_CRC_FLIT])
    COUNTER("nvlink_crc_data", g->nvlink_err[NVML_NVLINK_ERROR_DL_CRC_DATA])
    COUNTER("nvlink_ecc_data", g->nvlink_err[NVML_NVLINK_ERROR_DL_ECC_DATA])
    BOOL("fan_present", g->fan_present)
    EXPR("fan", g->fan_pct, 0)
    EXPR("utilization_gpu", g->util_gpu, 0)
    EXPR("utilization_memory", g->util_mem, 0)
    EXPR("utilization_encoder", g->util_enc, 0)
    EXPR("utilization_decoder", g->util_dec, 0)
    BOOL("retired_pages", g->retired_pages)
    UINT("retired_pages_sbe", g->retired_sbe)
    UINT("retired_pages_dbe", g->retired_dbe)
    UINT("retired_pages_pending", g->retired_pending)
    BOOL("row_remapping", g->row_remapping)
    if (!strcmp(key, "remapped_rows")) {
        if (parse_uints(v, u4, 4, 4) < 0)
            return fk_seterr(err, errlen, "remapped_rows: expected 'correctable uncorrectable pending failure'");
        g->remap_cor = u4[0];
        g->remap_unc = u4[1];
        g->remap_pending = u4[2];
        g->remap_failure = u4[3];
        return 0;
    }
    if (!strcmp(key, "remap_histogram")) {
        if (parse_uints(v, g->remap_hist, 5, 5) < 0)
            return fk_seterr(err, errlen, "remap_histogram: expected 'max high partial low none'");
        return 0;
    }
    COUNTER("ecc_corrected_volatile", g->ecc[0][0])
    COUNTER("ecc_corrected_aggregate", g->ecc[0][1])
    COUNTER("ecc_uncorrected_volatile", g->ecc[1][0])
    COUNTER("ecc_uncorrected_aggregate", g->ecc[1][1])
    for (int i = 0; throttle_keys[i]; i++)
        COUNTER(throttle_keys[i], g->throttle_ns[i])
    if (!strcmp(key, "clocks_event_reasons")) {
        char *tok[FK_MAX_REASONS];
        int n = split(v, tok, FK_MAX_REASONS);
        if (n < 1) return fk_seterr(err, errlen, "clocks_event_reasons: expected one or more bitmasks");
        for (int i = 0; i < n; i++)
            if (parse_ull(tok[i], &g->reasons[i])) return fk_seterr(err, errlen, "clocks_event_reasons: bad mask '%s'", tok[i]);
        g->n_reasons = n;
        return 0;
    }
    if (!strcmp(key, "clocks_event_reasons_period")) {
        if (parse_double(v, &g->reasons_period) || g->reasons_period <= 0)
            return fk_seterr(err, errlen, "clocks_event_reasons_period: seconds > 0");
        return 0;
    }
    ULL("supported_clocks_event_reasons", g->supported_reasons)
    BOOL("mig_capable", g->mig_capable)
    UINT("mig_max_devices", g->mig_max)
    if (!strcmp(key, "mig_profile")) {
        if (g->prof_epoch != g_epoch) {
            memset(g->profiles, 0, sizeof g->profiles);
            g->prof_epoch = g_epoch;
        }
        return apply_profile(g, v, err, errlen);
    }
    if (!strcmp(key, "mig_device")) {
        if (g->mig_epoch != g_epoch) {
            memset(g->mig, 0, sizeof g->mig);
            g->mig_epoch = g_epoch;
        }
        if (!strcmp(v, "none")) return 0;
        return apply_mig_device(g, v, err, errlen);
    }
    if (!strcmp(key, "process")) {
        if (g->procs_epoch != g_epoch) {
            g->n_procs = 0;
            g->procs_epoch = g_epoch;
        }
        if (!strcmp(v, "none")) return 0;
        return apply_process(g, v, err, errlen);
    }
    if (!strcmp(key, "not_supported")) {
        if (g->ns_epoch != g_epoch) {
            g->n_not_supported = 0;
            g->ns_epoch = g_epoch;
        }
        char *tok[FK_MAX_NAMES];
        int n = split(v, tok, FK_MAX_NAMES);
        for (int i = 0; i < n; i++) {
            if (!strcmp(tok[i], "none")) continue;
            if (g->n_not_supported >= FK_MAX_NAMES) return fk_seterr(err, errlen, "not_supported: too many names");
            snprintf(g->not_supported[g->n_not_supported++], 64, "%s", tok[i]);
        }
        return 0;
    }
    return fk_seterr(err, errlen, "unknown key '%s'", key);
#undef STR
#undef UINT
#undef ULL
#undef BOOL
#undef EXPR
#undef COUNTER
#undef WATTS
}

/* Deterministic 64-bit mixing so generated ids are stable across runs and machines. */
static uint64_t mix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static uint64_t hash_str(const char *s, uint64_t h)
{
    h ^= 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return mix64(h);
}

static void make_uuid(char *dst, size_t n, const char *prefix, uint64_t seed)
{
    uint64_t a = mix64(seed), b = mix64(seed ^ 0x5555555555555555ull);
    snprintf(dst, n, "%s%08x-%04x-%04x-%04x-%012llx", prefix, (unsigned int)(a >> 32),
             (unsigned int)(a >> 16) & 0xffff, (unsigned int)(a & 0x0fff) | 0x4000,
             ((unsigned int)(b >> 48) & 0x3fff) | 0x8000, (unsigned long long)(b & 0xffffffffffffull));
}

static void gpu_defaults(fk_gpu *g)
{
    memset(g, 0, sizeof *g);
    snprintf(g->name, sizeof g->name, "NVIDIA Fake GPU");
    g->brand = NVML_BRAND_NVIDIA;
    g->arch = NVML_DEVICE_ARCH_AMPERE;
    g->cc_major = 8;
    snprintf(g->vbios, sizeof g->vbios, "92.00.00.00.01");
    g->pci_device_id = 0x20B010DE;
    g->pci_subsystem_id = 0x134F10DE;
    g->mem_total_mib = 16384;
    g->bar1_total_mib = 256;
    g->mem_used_mib = FK_CONST(0);
    g->bar1_used_mib = FK_CONST(2);
    g->power_default_mw = g->power_max_mw = g->power_limit_mw = g->power_enforced_mw = 250000;
    g->power_min_mw = 100000;
    g->power_w = FK_CONST(60);
    g->ecc_supported = 1;
    g->ecc_current = g->ecc_pending = 1;
    g->persistence = 1;
    g->temp_shutdown = 92;
    g->temp_slowdown = 89;
    g->temp_mem_max = 95;
    g->temp_gpu_max = 87;
    g->temp_gpu = FK_CONST(40);
    g->temp_mem = FK_CONST(45);
    unsigned int mx[4] = {1410, 1410, 1215, 1275};
    memcpy(g->clock_max, mx, sizeof mx);
    memcpy(g->clock_app, mx, sizeof mx);
    for (int i = 0; i < 4; i++) g->clock[i] = FK_CONST(mx[i]);
    g->pcie_max_gen = g->pcie_cur_gen = 4;
    g->pcie_max_width = g->pcie_cur_width = 16;
    g->pcie_tx_kbps = g->pcie_rx_kbps = FK_CONST(1000);
    g->nvlink_version = 3;
    g->util_gpu = g->util_mem = g->util_enc = g->util_dec = FK_CONST(0);
    g->fan_pct = FK_CONST(30);
    g->retired_pages = 0;
    g->row_remapping = 1;
    g->reasons[0] = 0;
    g->n_reasons = 1;
    g->reasons_period = 30;
    g->supported_reasons = 0x1ff;
    g->mig_max = 7;
    fk_activity_defaults(g);
}

typedef struct {
    int line;
    int kind;          /* 0 = system, 1 = gpu */
    int lo, hi;        /* gpu range, hi = -1 for '*' */
    char *key, *value;
    int section_id;
} entry;

static int parse_section(char *s, entry *e, char *err, size_t n)
{
    /* s is the text between the brackets */
    s = trim(s);
    if (!strcmp(s, "system")) {
        e->kind = 0;
        return 0;
    }
    if (strncmp(s, "gpu", 3) || !isspace((unsigned char)s[3]))
        return fk_seterr(err, n, "unknown section [%s] (expected [system], [gpu *], [gpu N] or [gpu A-B])", s);
    char *r = trim(s + 4);
    e->kind = 1;
    if (!strcmp(r, "*")) {
        e->lo = 0;
        e->hi = -1;
        return 0;
    }
    unsigned int a, b;
    char extra;
    if (sscanf(r, "%u-%u%c", &a, &b, &extra) == 2 && a <= b) {
        e->lo = (int)a;
        e->hi = (int)b;
        return 0;
    }
    if (sscanf(r, "%u%c", &a, &extra) == 1) {
        e->lo = e->hi = (int)a;
        return 0;
    }
    return fk_seterr(err, n, "bad GPU selector [%s]", s);
}

static const char *base_name(const char *path, char *out, size_t n)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    snprintf(out, n, "%s", b);
    char *dot = strrchr(out, '.');
    if (dot && !strcmp(dot, ".scn")) *dot = '\0';
    return out;
}

/* Every message names the field: "key: what is wrong" unless it already starts with the key
 * or says the key is unknown (attribute errors such as "bad id" do not know their key). */
static void name_key(char *msg, size_t n, const char *key)
{
    size_t k = strlen(key);
    if (!strncmp(msg, key, k) || !strncmp(msg, "unknown key", 11)) return;
    char tmp[384];   /* shorter than msg: room for the key, and no truncation warning */
    snprintf(tmp, sizeof tmp, "%s", msg);
    snprintf(msg, n, "%s: %s", key, tmp);
}

fk_scenario *fk_scenario_load(const char *path, char *err, size_t errlen)
{
    char msg[512] = "";
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s:0: cannot open scenario: %s", path, strerror(errno));
        return NULL;
    }
    fk_scenario *s = calloc(1, sizeof *s);
    size_t cap = 256, n = 0;
    entry *ents = calloc(cap, sizeof *ents);
    char line[2048];
    int lineno = 0, have_section = 0, section_id = 0;
    entry cur = {0, 0, 0, 0, NULL, NULL, 0};
    int bad_line = 0;
    if (!s || !ents) {
        snprintf(msg, sizeof msg, "out of memory");
        goto fail;
    }
    snprintf(s->path, sizeof s->path, "%s", path);
    base_name(path, s->name, sizeof s->name);
    snprintf(s->driver_version, sizeof s->driver_version, "550.54.15");
    snprintf(s->nvml_version, sizeof s->nvml_version, "12.550.54.15");
    s->cuda_version = 12040;
    s->gpu_count = 1;

    while (fgets(line, sizeof line, f)) {
        lineno++;
        if (!strchr(line, '\n') && !feof(f)) {
            bad_line = lineno;
            snprintf(msg, sizeof msg, "line too long");
            goto fail;
        }
        char *hash = strchr(line, '#');
        if (hash) *hash = '\0';
        char *t = trim(line);
        if (!*t) continue;
        if (*t == '[') {
            char *close = strchr(t, ']');
            if (!close || *trim(close + 1)) {
                bad_line = lineno;
                snprintf(msg, sizeof msg, "malformed section header");
                goto fail;
            }
            *close = '\0';
            if (parse_section(t + 1, &cur, msg, sizeof msg)) {
                bad_line = lineno;
                goto fail;
            }
            cur.section_id = ++section_id;
            have_section = 1;
            continue;
        }
        char *eq = strchr(t, '=');
        if (!eq) {
            bad_line = lineno;
            snprintf(msg, sizeof msg, "expected 'key = value' or a [section]");
            goto fail;
        }
        if (!have_section) {
            bad_line = lineno;
            snprintf(msg, sizeof msg, "key outside a section");
            goto fail;
        }
        *eq = '\0';
        if (n == cap) {
            cap *= 2;
            entry *ne = realloc(ents, cap * sizeof *ents);
            if (!ne) {
                snprintf(msg, sizeof msg, "out of memory");
                goto fail;
            }
            ents = ne;
        }
        entry e = cur;
        e.line = lineno;
        e.key = strdup(trim(t));
        e.value = strdup(trim(eq + 1));
        ents[n++] = e;
    }
    fclose(f);
    f = NULL;

    /* Pass 1: the [system] section (gpu_count must be known before GPU sections). */
    for (size_t i = 0; i < n; i++) {
        entry *e = &ents[i];
        if (e->kind != 0) continue;
        bad_line = e->line;
        if (!strcmp(e->key, "driver_version")) snprintf(s->driver_version, sizeof s->driver_version, "%s", e->value);
        else if (!strcmp(e->key, "nvml_version")) snprintf(s->nvml_version, sizeof s->nvml_version, "%s", e->value);
        else if (!strcmp(e->key, "name")) snprintf(s->name, sizeof s->name, "%s", e->value);
        else if (!strcmp(e->key, "cuda_driver_version")) {
            unsigned int v;
            if (parse_uint(e->value, &v) || v > 0x7fffffff) {
                snprintf(msg, sizeof msg, "cuda_driver_version: expected an integer like 12040");
                goto fail;
            }
            s->cuda_version = (int)v;
        } else if (!strcmp(e->key, "gpu_variation")) {
            char *end;
            double v = strtod(e->value, &end);
            if (end == e->value || *end || !(v >= 0 && v <= 0.5)) {
                snprintf(msg, sizeof msg, "gpu_variation: expected a fraction 0..0.5");
                goto fail;
            }
            s->gpu_variation = v;
        } else if (!strcmp(e->key, "gpu_count")) {
            if (parse_uint(e->value, &s->gpu_count) || s->gpu_count > FK_MAX_GPUS) {
                snprintf(msg, sizeof msg, "gpu_count: 0..%d", FK_MAX_GPUS);
                goto fail;
            }
        } else {
            snprintf(msg, sizeof msg, "unknown [system] key '%s'", e->key);
            goto fail;
        }
    }
    /* A simulated node's identity and driver: several fake nodes from one scenario must not
     * share UUIDs and serials, and a fleet test needs one node on another driver version. */
    const char *node = getenv("FAKE_NVML_NODE");
    const char *driver = getenv("FAKE_NVML_DRIVER_VERSION");
    if (driver && *driver) {
        snprintf(s->driver_version, sizeof s->driver_version, "%s", driver);
        snprintf(s->nvml_version, sizeof s->nvml_version, "12.%s", driver);
    }
    for (unsigned int g = 0; g < FK_MAX_GPUS; g++) gpu_defaults(&s->gpus[g]);

    /* Pass 2: GPU sections, in file order, to each GPU they select. */
    for (size_t i = 0; i < n; i++) {
        entry *e = &ents[i];
        if (e->kind != 1) continue;
        bad_line = e->line;
        int hi = e->hi < 0 ? (int)s->gpu_count - 1 : e->hi;
        if (e->hi >= 0 && e->hi >= (int)s->gpu_count) {
            snprintf(msg, sizeof msg, "GPU %d selected but gpu_count is %u", e->hi, s->gpu_count);
            goto fail;
        }
        for (int gi = e->lo; gi <= hi; gi++) {
            g_epoch = e->section_id * 1000 + gi + 1;
            if (fk_apply_key(&s->gpus[gi], e->key, e->value, msg, sizeof msg)) {
                name_key(msg, sizeof msg, e->key);
                goto fail;
            }
        }
    }
    bad_line = 0;
    fk_apply_variation(s);   /* after every section, so [gpu N] overrides are varied too */

    /* Finalize: generated identities and consistency checks. */
    static const unsigned int buses[8] = {0x07, 0x0F, 0x47, 0x4E, 0x87, 0x90, 0xB7, 0xBD};
    for (unsigned int i = 0; i < s->gpu_count; i++) {
        fk_gpu *g = &s->gpus[i];
        char seedbuf[160];
        snprintf(seedbuf, sizeof seedbuf, "%s%s%s/%u/%s", node && *node ? node : "", node && *node ? "/" : "",
                 g->uuid_seed[0] ? g->uuid_seed : s->name, i, g->name);
        uint64_t seed = hash_str(seedbuf, 0);
        if (!g->uuid[0]) make_uuid(g->uuid, sizeof g->uuid, "GPU-", seed);
        if (!g->serial[0])
            snprintf(g->serial, sizeof g->serial, "1%012llu", (unsigned long long)(mix64(seed ^ 7) % 1000000000000ull));
        if (!g->has_minor) g->minor = i;
        if (!g->has_pci) {
            g->pci_domain = i / 8;
            g->pci_bus = buses[i % 8];
            g->pci_device = 0;
        }
        if (g->mig_current && !g->mig_capable) {
            snprintf(msg, sizeof msg, "GPU %u: mig_mode on but mig_capable off", i);
            goto fail;
        }
        if (fk_expr_min(&g->power_w) < 0) {
            snprintf(msg, sizeof msg, "GPU %u: power_w must stay >= 0", i);
            goto fail;
        }
        unsigned int next_start = 0;
        for (int m = 0; m < FK_MAX_MIG; m++) {
            fk_mig *mg = &g->mig[m];
            if (!mg->present) continue;
            if (!g->mig_current) {
                snprintf(msg, sizeof msg, "GPU %u: mig_device given but mig_mode is off", i);
                goto fail;
            }
            if ((unsigned int)m >= g->mig_max) {
                snprintf(msg, sizeof msg, "GPU %u: mig_device slot %d >= mig_max_devices %u", i, m, g->mig_max);
                goto fail;
            }
            for (int o = 0; o < m; o++)
                if (g->mig[o].present && g->mig[o].gi == mg->gi && g->mig[o].ci == mg->ci) {
                    snprintf(msg, sizeof msg, "GPU %u: duplicate MIG gi=%u ci=%u", i, mg->gi, mg->ci);
                    goto fail;
                }
            if (mg->start == FK_NA) {
                /* Compute instances sharing a GPU instance share its placement. */
                int shared = 0;
                for (int o = 0; o < m; o++)
                    if (g->mig[o].present && g->mig[o].gi == mg->gi) {
                        mg->start = g->mig[o].start;
                        shared = 1;
                    }
                if (!shared) {
                    mg->start = next_start;
                    next_start += mg->gi_slices;
                }
            }
            if (!mg->uuid[0]) make_uuid(mg->uuid, sizeof mg->uuid, "MIG-", seed ^ mix64(((uint64_t)mg->gi << 8) | mg->ci));
        }
        for (int p = 0; p < g->n_procs; p++) {
            fk_proc *pr = &g->procs[p];
            if (pr->gi == FK_NA) continue;
            int found = 0;
            for (int m = 0; m < FK_MAX_MIG; m++)
                if (g->mig[m].present && g->mig[m].gi == pr->gi && g->mig[m].ci == pr->ci) found = 1;
            if (!found) {
                snprintf(msg, sizeof msg, "GPU %u: process %u names gi=%u ci=%u, which is not a MIG device",
                         i, pr->pid, pr->gi, pr->ci);
                goto fail;
            }
        }
        for (unsigned int o = 0; o < i; o++) {
            fk_gpu *h = &s->gpus[o];
            if (h->pci_domain == g->pci_domain && h->pci_bus == g->pci_bus && h->pci_device == g->pci_device) {
                snprintf(msg, sizeof msg, "GPU %u and GPU %u have the same PCI bus id", o, i);
                goto fail;
            }
            if (!strcmp(h->uuid, g->uuid)) {
                snprintf(msg, sizeof msg, "GPU %u and GPU %u have the same UUID", o, i);
                goto fail;
            }
        }
    }
    for (size_t i = 0; i < n; i++) {
        free(ents[i].key);
        free(ents[i].value);
    }
    free(ents);
    return s;

fail:
    snprintf(err, errlen, "%s:%d: %s", path, bad_line, msg);
    if (f) fclose(f);
    for (size_t i = 0; i < n; i++) {
        free(ents[i].key);
        free(ents[i].value);
    }
    free(ents);
    free(s);
    return NULL;
}

/* Run-time override (fakeNvmlSetValue): a fresh epoch, so list keys replace the list. */
int fk_apply_override(fk_gpu *g, const char *key, const char *value, char *err, size_t errlen)
{
    static int override_epoch = -1;
    g_epoch = --override_epoch;
    return fk_apply_key(g, key, value, err, errlen);
}

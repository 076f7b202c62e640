/*
 * api_device.c - enumeration, identity and MIG calls of the fake NVML driver.
 *
 * Part of gpu-node-exporter. Compiled against NVIDIA's nvml.h; see fakenvml.h for the
 * Disclaimer and U.S. Government End Users Notice that nvml.h requires us to carry.
 *
 * Handles are pointers into static arrays (one per physical GPU, one per MIG slot), so
 * they stay valid and compare equal across calls like the real driver's handles.
 */
#include "fakenvml.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static nvmlReturn_t get_count(const char *fn, unsigned int *count)
{
    nvmlReturn_t r = fk_enter_idx(fn, -1);
    if (r) return r;
    FK_NULLCHK(count);
    *count = fk_scn->gpu_count;
    FK_RET(NVML_SUCCESS);
}

FK_API nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *deviceCount) { return get_count(__func__, deviceCount); }
FK_API nvmlReturn_t nvmlDeviceGetCount(unsigned int *deviceCount) { return get_count(__func__, deviceCount); }

static nvmlReturn_t by_index(const char *fn, unsigned int index, nvmlDevice_t *device)
{
    nvmlReturn_t r = fk_enter_idx(fn, index < FK_MAX_GPUS ? (int)index : -1);
    if (r) return r;
    FK_NULLCHK(device);
    if (index >= fk_scn->gpu_count) FK_RET(NVML_ERROR_INVALID_ARGUMENT);
    if (fk_gpu_lost_locked((int)index)) FK_RET(NVML_ERROR_GPU_IS_LOST);
    *device = &fk_dev[index];
    FK_RET(NVML_SUCCESS);
}

FK_API nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device)
{
    return by_index(__func__, index, device);
}
FK_API nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned int index, nvmlDevice_t *device)
{
    return by_index(__func__, index, device);
}

FK_API nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *device)
{
    nvmlReturn_t r = fk_enter_idx(__func__, -1);
    if (r) return r;
    if (!uuid || !device) FK_RET(NVML_ERROR_INVALID_ARGUMENT);
    for (unsigned int i = 0; i < fk_scn->gpu_count; i++) {
        fk_gpu *g = &fk_scn->gpus[i];
        if (!strcasecmp(g->uuid, uuid)) {
            if (fk_gpu_lost_locked((int)i)) FK_RET(NVML_ERROR_GPU_IS_LOST);
            *device = &fk_dev[i];
            FK_RET(NVML_SUCCESS);
        }
        if (!g->mig_current) continue;
        for (int m = 0; m < FK_MAX_MIG; m++)
            if (g->mig[m].present && !strcasecmp(g->mig[m].uuid, uuid)) {
                if (fk_gpu_lost_locked((int)i)) FK_RET(NVML_ERROR_GPU_IS_LOST);
                *device = &fk_migdev[i][m];
                FK_RET(NVML_SUCCESS);
            }
    }
    FK_RET(NVML_ERROR_NOT_FOUND);
}

static int parse_bus_id(const char *s, unsigned int *dom, unsigned int *bus, unsigned int *dev, unsigned int *fn)
{
    char extra;
    if (sscanf(s, "%x:%x:%x.%x%c", dom, bus, dev, fn, &extra) == 4) return 0;
    *dom = 0;
    if (sscanf(s, "%x:%x.%x%c", bus, dev, fn, &extra) == 3) return 0;
    return -1;
}

static nvmlReturn_t by_pci(const char *fn, const char *busid, nvmlDevice_t *device)
{
    nvmlReturn_t r = fk_enter_idx(fn, -1);
    if (r) return r;
    if (!busid || !device) FK_RET(NVML_ERROR_INVALID_ARGUMENT);
    unsigned int d, b, dv, f;
    if (parse_bus_id(busid, &d, &b, &dv, &f)) FK_RET(NVML_ERROR_INVALID_ARGUMENT);
    for (unsigned int i = 0; i < fk_scn->gpu_count; i++) {
        fk_gpu *g = &fk_scn->gpus[i];
        if (g->pci_domain == d && g->pci_bus == b && g->pci_device == dv && f == 0) {
            if (fk_gpu_lost_locked((int)i)) FK_RET(NVML_ERROR_GPU_IS_LOST);
            *device = &fk_dev[i];
            FK_RET(NVML_SUCCESS);
        }
    }
    FK_RET(NVML_ERROR_NOT_FOUND);
}

FK_API nvmlReturn_t nvmlDeviceGetHandleByPciBusId_v2(const char *pciBusId, nvmlDevice_t *device)
{
    return by_pci(__func__, pciBusId, device);
}
FK_API nvmlReturn_t nvmlDeviceGetHandleByPciBusId(const char *pciBusId, nvmlDevice_t *device)
{
    return by_pci(__func__, pciBusId, device);
}

FK_API nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length)
{
    FK_DEV_BEGIN(device, c);
    char buf[FK_STR * 2];
    if (c.slot >= 0) snprintf(buf, sizeof buf, "%s MIG %s", c.g->name, c.g->mig[c.slot].profile);
    else snprintf(buf, sizeof buf, "%s", c.g->name);
    FK_RET((nvmlReturn_t)fk_copy_str(name, length, buf));
}

FK_API nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length)
{
    FK_DEV_BEGIN(device, c);
    FK_RET((nvmlReturn_t)fk_copy_str(uuid, length, c.slot >= 0 ? c.g->mig[c.slot].uuid : c.g->uuid));
}

FK_API nvmlReturn_t nvmlDeviceGetSerial(nvmlDevice_t device, char *serial, unsigned int length)
{
    FK_DEV_BEGIN(device, c);
    FK_RET((nvmlReturn_t)fk_copy_str(serial, length, c.g->serial));
}

FK_API nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t device, unsigned int *index)
{
    FK_DEV_BEGIN(device, c);
    FK_NULLCHK(index);
    *index = c.slot >= 0 ? (unsigned int)c.slot : (unsigned int)c.gpu;
    FK_RET(NVML_SUCCESS);
}

FK_API nvmlReturn_t nvmlDeviceGetMinorNumber(nvmlDevice_t device, unsigned int *minorNumber)
{
    FK_DEV_BEGIN(device, c);
    FK_NULLCHK(minorNumber);
    FK_PHYS_ONLY(c);
    *minorNumber = c.g->minor;
    FK_RET(NVML_SUCCESS);
}

static void fill_pci(const fk_gpu *g, nvmlPciInfo_t *pci)
{
    memset(pci, 0, sizeof *pci);
    pci->domain = g->pci_domain;
    pci->bus = g->pci_bus;
    pci->device = g->pci_device;
    pci->pciDeviceId = g->pci_device_id;
    pci->pciSubSystemId = g->pci_subsystem_id;
    snprintf(pci->busId, sizeof pci->busId, "%08X:%02X:%02X.0", g->pci_domain, g->pci_bus, g->pci_device);
    snprintf(pci->busIdLegacy, sizeof pci->busIdLegacy, "%04X:%02X:%02X.0", g->pci_domain & 0xffff, g->pci_bus,
             g->pci_device);
}

static nvmlReturn_t pci_info(const char *fn, nvmlDevice_t device, nvmlPciInfo_t *pci)
{
    fk_ctx c;
    nvmlReturn_t r = fk_enter_dev(fn, device, &c);
    if (r) return r;
    FK_NULLCHK(pci);
    fill_pci(c.g, pci);   /* MIG handles report the parent's PCI location */
    FK_RET(NVML_SUCCESS);
}

FK_API nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t device, nvmlPciInfo_t *pci) { return pci_info(__func__, device, pci); }
FK_API nvmlReturn_t nvmlDeviceGetPciInfo_v2(nvmlDevice_t device, nvmlPciInfo_t *pci) { return pci_info(__func__, device, pci); }
FK_API nvmlReturn_t nvmlDeviceGetPciInfo(nvmlDevice_t device, nvmlPciInfo_t *pci) { return pci_info(__func__, device, pci); }

FK_API nvmlReturn_t nvmlDeviceGetNvLinkRemotePciInfo_v2(nvmlDevice_t device, unsigned int link, nvmlPciInfo_t *pci)
{
    FK_DEV_BEGIN(device, c);
    FK_NULLCHK(pci);
    FK_PHYS_ONLY(c);
    if (!c.g->nvlink_links) FK_RET(NVML_ERROR_NOT_SUPPORTED);
    if (link >= c.g->nvlink_links) FK_RET(NVML_ERROR_INVALID_ARGUMENT);
    /* Links go to NVSwitches: six switches, links spread round-robin. */
    memset(pci, 0, sizeof *pci);
    pci->bus = 0xC4 + (link % 6);
    pci->pciDeviceId = 0x1AF110DE;
    pci->pciSubSystemId = 0x161210DE;
    snprintf(pci->busId, sizeof pci->busId, "%08X:%02X:%02X.0", 0u, pci->bus, 0u);
    snprintf(pci->busIdLegacy, sizeof pci->busIdLegacy, "%04X:%02X:%02X.0", 0u, pci->bus, 0u);
    FK_RET(NVML_SUCCESS);
}

FK_API nvmlReturn_t nvmlDeviceGetBrand(nvmlDevice_t device, nvmlBrandType_t *type)
{
    FK_DEV_BEGIN(device, c);
    FK_NULLCHK(type);
    *type = (nvmlBrandType_t)c.g->brand;
    FK_RET(NVML_SUCCESS);
}

FK_API nvmlReturn_t nvmlDeviceGetArchitecture(nvmlDevice_t device, nvmlDeviceArchitecture_t *arch)
{
    FK_DEV_BEGIN(device, c);
    FK_NULLCHK(arch);
    *arch = c.g->arch;
    FK_RET(NVML_SUCCESS);
}

FK_API nvmlReturn_t nvmlDeviceGetCudaComputeCapability(nvmlDevice_t device, int *major, int *minor)
{
    FK_DEV_BEGIN(device, c);
    if (!major || !minor) FK_RET(NVML_ERROR_INVALID_ARGUMENT);
    *major = (int)c.g->cc_major;
    *minor = (int)c.g->cc_minor;
    FK_RET(NVML_SUCCESS);
}

FK_API nvmlReturn_t nvmlDeviceGetVbiosVersion(nvmlDevice_t device, char *version, unsigned int length)
{
    FK_DEV_BEGIN(device, c);
    FK_RET((nvmlReturn_t)fk_copy_str(version, length, c.g->vbios));
}

FK_API nvmlReturn_t nvmlDeviceGetPersistenceMode(nvmlDevice_t device, nvmlEnableState_t *mode)
{
    FK_DEV_BEGIN(device, c);
    FK_NULLCHK(mode);
    FK_PHYS_ONLY(c);
    *mode = c.g->persistence ? NVML_FEATURE_ENABLED : NVML_FEATURE_DISABLED;
    FK_RET(NVML_SUCCESS);
}

FK_API nvmlReturn_t nvmlDeviceGetComputeMode(nvmlDevice_t device, nvmlComputeMode_t *mode)
{
    FK_DEV_BEGIN(device, c);
    FK_NULLCHK(mode);
    /* "If MIG is enabled on a GPU, device must be MIG device handle" */
    if (c.slot < 0 && c.g->mig_current) FK_RET(NVML_ERROR_NOT_SUPPORTED);
    *mode = (nvmlComputeMode_t)c.g->compute_mode;
    FK_RET(NVML_SUCCESS);
}

/* ------------------------------------------------------------------ MIG */

FK_API nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t device, unsigned int *currentMode, unsigned int *pendingMode)
{
    FK_DEV_BEGIN(device, c);
    if (!currentMode || !pendingMode) FK_RET(NVML_ERROR_INVALID_ARGUMENT);
    FK_PHYS_ONLY(c);
    if (!c.g->mig_capable) FK_RET(NVML_ERROR_NOT_SUPPORTED);
    *currentMode = c.g->mig_current ? NVML_DEVICE_MIG_ENABLE : NVML_DEVICE_MIG_DISABLE;
    *pendingMode = c.g->mig_pending ? NVML_DEVICE_MIG_ENABLE : NVML_DEVICE_MIG_DISABLE;
    FK_RET(NVML_SUCCESS);
}

FK_API nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t device, unsigned int *count)
{
    FK_DEV_BEGIN(device, c);
    FK_NULLCHK(count);
    if (c.slot >= 0) FK_RET(NVML_ERROR_INVALID_ARGUMENT);
    *count = (c.g->mig_capable && c.g->mig_current) ? c.g->mig_max : 0;
    FK_RET(NVML_SUCCESS);
}

FK_API nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t device, unsigned int index, nvmlDevice_t *migDevice)
{
    FK_DEV_BEGIN(device, c);
    FK_NULLCHK(migDevice);
    if (c.slot >= 0) FK_RET(NVML_ERROR_INVALID_ARGUMENT);
    if (!c.g->mig_capable) FK_RET(NVML_ERROR_NOT_SUPPORTED);
    if (!c.g->mig_current) FK_RET(NVML_ERROR_INVALID_ARGUMENT);
    if (index >= c.g->mig_max || index >= FK_MAX_MIG) FK_RET(NVML_ERROR_INVALID_ARGUMENT);
    if (!c.g->mig[index].present) FK_RET(NVML_ERROR_NOT_FOUND);
    *migDevice = &fk_migdev[c.gpu][index];
    FK_RET(NVML_SUCCESS);
}

FK_API nvmlReturn_t nvmlDeviceIsMigDeviceHandle(nvmlDevice_t device, unsigned int *isMigDevice)
{
    FK_DEV_BEGIN(device, c);
    FK_NULLCHK(isMigDevice);
    *isMigDevice = c.slot >= 0;
    FK_RET(NVML_SUCCESS);
}

FK_API nvmlReturn_t nvmlDeviceGetGpuInstanceId(nvmlDevice_t device, unsigned int *id)
{
    FK_DEV_BEGIN(device, c);
    FK_NULLCHK(id);
    if (c.slot < 0) FK_RET(NVML_ERROR_NOT_SUPPORTED);
    *id = c.g->mig[c.slot].gi;
    FK_RET(NVML_SUCCESS);
}

FK_API nvmlReturn_t nvmlDeviceGetComputeInstanceId(nvmlDevice_t device, unsigned int *id)
{
    FK_DEV_BEGIN(device, c);
    FK_NULLCHK(id);
    if (c.slot < 0) FK_RET(NVML_ERROR_NOT_SUPPORTED);
    *id = c.g->mig[c.slot].ci;
    FK_RET(NVML_SUCCESS);
}

FK_API nvmlReturn_t nvmlDeviceGetDeviceHandleFromMigDeviceHandle(nvmlDevice_t migDevice, nvmlDevice_t *device)
{
    FK_DEV_BEGIN(migDevice, c);
    FK_NULLCHK(device);
    if (c.slot < 0) FK_RET(NVML_ERROR_INVALID_ARGUMENT);
    *device = &fk_dev[c.gpu];
    FK_RET(NVML_SUCCESS);
}

static nvmlReturn_t attributes(const char *fn, nvmlDevice_t device, nvmlDeviceAttributes_t *a)
{
    fk_ctx c;
    nvmlReturn_t r = fk_enter_dev(fn, device, &c);
    if (r) return r;
    FK_NULLCHK(a);
    /* "currently only supports MIG device handles" */
    if (c.slot < 0) FK_RET(NVML_ERROR_NOT_SUPPORTED);
    const fk_mig *m = &c.g->mig[c.slot];
    memset(a, 0, sizeof *a);
    a->multiprocessorCount = m->sm;
    a->sharedCopyEngineCount = m->ce;
    a->sharedDecoderCount = m->dec;
    a->sharedEncoderCount = m->enc;
    a->sharedJpegCount = m->jpg;
    a->sharedOfaCount = m->ofa;
    a->gpuInstanceSliceCount = m->gi_slices;
    a->computeInstanceSliceCount = m->ci_slices;
    a->memorySizeMB = m->memory_mib;
    FK_RET(NVML_SUCCESS);
}

FK_API nvmlReturn_t nvmlDeviceGetAttributes_v2(nvmlDevice_t device, nvmlDeviceAttributes_t *attributes_)
{
    return attributes(__func__, device, attributes_);
}
FK_API nvmlReturn_t nvmlDeviceGetAttributes(nvmlDevice_t device, nvmlDeviceAttributes_t *attributes_)
{
    return attributes(__func__, device, attributes_);
}

static const fk_profile *profile_by_index(const fk_gpu *g, unsigned int profile)
{
    if (profile >= FK_MAX_PROFILES || !g->profiles[profile].used) return NULL;
    return &g->profiles[profile];
}

FK_API nvmlReturn_t nvmlDeviceGetGpuInstanceProfileInfoV(nvmlDevice_t device, unsigned int profile,
                                                         nvmlGpuInstanceProfileInfo_v2_t *info)
{
    FK_DEV_BEGIN(device, c);
    FK_NULLCHK(info);
    if (c.slot >= 0) FK_RET(NVML_ERROR_INVALID_ARGUMENT);
    if (info->version != nvmlGpuInstanceProfileInfo_v2) FK_RET(NVML_ERROR_ARGUMENT_VERSION_MISMATCH);
    if (!c.g->mig_capable) FK_RET(NVML_ERROR_NOT_SUPPORTED);
    if (profile >= NVML_GPU_INSTANCE_PROFILE_COUNT) FK_RET(NVML_ERROR_INVALID_ARGUMENT);
    const fk_profile *p = profile_by_index(c.g, profile);
    if (!p) FK_RET(NVML_ERROR_NOT_SUPPORTED);
    unsigned int v = info->version;
    memset(info, 0, sizeof *info);
    info->version = v;
    info->id = p->id;
    info->isP2pSupported = 0;
    info->sliceCount = p->slices;
    info->instanceCount = p->instances;
    info->multiprocessorCount = p->sm;
    info->copyEngineCount = p->ce;
    info->decoderCount = p->dec;
    info->encoderCount = p->enc;
    info->jpegCount = p->jpg;
    info->ofaCount = p->ofa;
    info->memorySizeMB = p->memory_mib;
    snprintf(info->name, sizeof info->name, "MIG %s", p->name);
    FK_RET(NVML_SUCCESS);
}

FK_API nvmlReturn_t nvmlDeviceGetGpuInstanceProfileInfo(nvmlDevice_t device, unsigned int profile,
                                                        nvmlGpuInstanceProfileInfo_t *info)
{
    FK_DEV_BEGIN(device, c);
    FK_NULLCHK(info);
    if (c.slot >= 0) FK_RET(NVML_ERROR_INVALID_ARGUMENT);
    if (!c.g->mig_capable) FK_RET(NVML_ERROR_NOT_SUPPORTED);
    if (profile >= NVML_GPU_INSTANCE_PROFILE_COUNT) FK_RET(NVML_ERROR_INVALID_ARGUMENT);
    const fk_profile *p = profile_by_index(c.g, profile);
    if (!p) FK_RET(NVML_ERROR_NOT_SUPPORTED);
    memset(info, 0, sizeof *info);
    info->id = p->id;
    info->sliceCount = p->slices;
    info->instanceCount = p->instances;
    info->multiprocessorCount = p->sm;
    info->copyEngineCount = p->ce;
    info->decoderCount = p->dec;
    info->encoderCount = p->enc;
    info->jpegCount = p->jpg;
    info->ofaCount = p->ofa;
    info->memorySizeMB = p->memory_mib;
    FK_RET(NVML_SUCCESS);
}

FK_API nvmlReturn_t nvmlDeviceGetGpuInstanceById(nvmlDevice_t device, unsigned int id, nvmlGpuInstance_t *gpuInstance)
{
    FK_DEV_BEGIN(device, c);
    FK_NULLCHK(gpuInstance);
    if (c.slot >= 0) FK_RET(NVML_ERROR_INVALID_ARGUMENT);
    if (!c.g->mig_capable) FK_RET(NVML_ERROR_NOT_SUPPORTED);
    if (!c.g->mig_current) FK_RET(NVML_ERROR_INVALID_STATE);
    for (int m = 0; m < FK_MAX_MIG; m++)
        if (c.g->mig[m].present && c.g->mig[m].gi == id) {
            *gpuInstance = &fk_gi[c.gpu][m];
            FK_RET(NVML_SUCCESS);
        }
    FK_RET(NVML_ERROR_NOT_FOUND);
}

FK_API nvmlReturn_t nvmlGpuInstanceGetInfo(nvmlGpuInstance_t gpuInstance, nvmlGpuInstanceInfo_t *info)
{
    uintptr_t p = (uintptr_t)gpuInstance, a = (uintptr_t)&fk_gi[0][0], b = a + sizeof fk_gi;
    if (!gpuInstance || p < a || p >= b || (p - a) % sizeof(struct nvmlGpuInstance_st)) return NVML_ERROR_INVALID_ARGUMENT;
    int gpu = gpuInstance->gpu, slot = gpuInstance->slot;
    fk_ctx c;
    nvmlReturn_t r = fk_enter_dev(__func__, &fk_dev[gpu], &c);
    if (r) return r;
    FK_NULLCHK(info);
    const fk_mig *m = &c.g->mig[slot];
    if (!c.g->mig_current || !m->present) FK_RET(NVML_ERROR_INVALID_ARGUMENT);
    memset(info, 0, sizeof *info);
    info->device = &fk_dev[gpu];
    info->id = m->gi;
    info->profileId = m->profile_id;
    info->placement.start = m->start;
    info->placement.size = m->gi_slices;
    FK_RET(NVML_SUCCESS);
}

/* Display state: a datacenter node has no X server on its GPUs, so no display is initialised
 * (what nvidia-smi shows as "Display Active: Disabled"). */
FK_API nvmlReturn_t nvmlDeviceGetDisplayActive(nvmlDevice_t device, nvmlEnableState_t *isActive)
{
    FK_DEV_BEGIN(device, c);
    FK_NULLCHK(isActive);
    FK_PHYS_ONLY(c);
    *isActive = NVML_FEATURE_DISABLED;
    FK_RET(NVML_SUCCESS);
}

FK_API nvmlReturn_t nvmlDeviceGetDisplayMode(nvmlDevice_t device, nvmlEnableState_t *display)
{
    FK_DEV_BEGIN(device, c);
    FK_NULLCHK(display);
    FK_PHYS_ONLY(c);
    *display = NVML_FEATURE_DISABLED;
    FK_RET(NVML_SUCCESS);
}

/* The driver model (WDDM/TCC/MCDM) exists on Windows only: on Linux the real driver answers
 * NOT_SUPPORTED, after the usual handle checks (an invalid or lost GPU still says so). */
static nvmlReturn_t driver_model(const char *fn, nvmlDevice_t device, nvmlDriverModel_t *current,
                                 nvmlDriverModel_t *pending)
{
    fk_ctx c;
    nvmlReturn_t r = fk_enter_dev(fn, device, &c);
    if (r) return r;
    (void)current;
    (void)pending;
    FK_RET(NVML_ERROR_NOT_SUPPORTED);
}

FK_API nvmlReturn_t nvmlDeviceGetDriverModel_v2(nvmlDevice_t device, nvmlDriverModel_t *current,
                                                nvmlDriverModel_t *pending)
{
    return driver_model(__func__, device, current, pending);
}

FK_API nvmlReturn_t nvmlDeviceGetDriverModel(nvmlDevice_t device, nvmlDriverModel_t *current,
                                             nvmlDriverModel_t *pending)
{
    return driver_model(__func__, device, current, pending);
}

/* blas.c - make OpenBLAS run the kernels this CPU supports, without user action.
 *
 * OpenBLAS built with DYNAMIC_ARCH (as Debian ships it) picks its kernels, a
 * "core", from the CPU's family/model numbers once at load time
 * (driver/others/dynamic.c: gotoblas_dynamic_init -> get_coretype).  A
 * release older than the CPU does not know its model number and falls back to
 * the generic Prescott (SSE3) kernels: Debian 12's OpenBLAS 0.3.21 on a
 * Sapphire/Emerald Rapids class CPU (family 6, model 0xcf here) runs sgemm about 5x and sgemv
 * 1.3-1.5x slower than with the SkylakeX kernels the CPU can run
 * (docs/performance.md).
 *
 * OpenBLAS's own override is the OPENBLAS_CORETYPE environment variable, read
 * by gotoblas_dynamic_init() (names matched case-insensitively against its
 * core table); gotoblas_dynamic_quit() only forgets the current core, and
 * gotoblas_dynamic_init() does nothing while a core is set.  In a DYNAMIC_ARCH
 * build all per-core state (kernel table, blocking parameters sized to the
 * fixed buffer) is set by gotoblas_dynamic_init -> the core's init(); memory.c
 * skips blas_set_parameter() there.  So quit + init with the variable set
 * gives the state OpenBLAS would have started with had the user set it.
 * Once per process (pthread_once), before the library's first BLAS call:
 *   - if the BLAS has no openblas_get_corename (another BLAS, or a static
 *     OpenBLAS whose symbols are not dynamic), nothing happens;
 *   - if the user set OPENBLAS_CORETYPE, the user's choice stands;
 *   - if the core in use targets an older instruction set than the CPU offers
 *     (AVX-512 F/BW/VL/DQ: SkylakeX; AVX2 + FMA: Haswell), set
 *     OPENBLAS_CORETYPE to that core, re-initialise OpenBLAS (quit + init),
 *     and unset the variable again, so the process environment is as before;
 *   - if this OpenBLAS build lacks that core (it reports another name), go
 *     back to the core it chose itself, the same way.
 * The three OpenBLAS functions are looked up with dlsym in the shared object
 * that provides our cblas_sgemm (found with dladdr; RTLD_DEFAULT would miss
 * it when libskipless itself was dlopen'ed RTLD_LOCAL, as Python's ctypes
 * does), so any CBLAS still links and runs: without those symbols nothing
 * happens.  Re-initialising swaps OpenBLAS's kernel table
 * and block sizes: it must not overlap a BLAS call on another thread.  The
 * library's own BLAS calls all need a model, and the fix runs at the start of
 * the first skl_model_load() (or skl_blas_get_info()), before any of them;
 * include/skipless.h tells applications not to run BLAS concurrently with
 * that first call. */
#include "blas.h"
#include "abi.h"

#include <cblas.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Instruction-set level of BLAS kernels / of the CPU (ordered). */
enum { ISA_UNKNOWN = -1, ISA_SSE = 0, ISA_AVX = 1, ISA_AVX2 = 2, ISA_AVX512 = 3 };

static const char *const isa_names[] = {"SSE", "AVX", "AVX2", "AVX-512"};

/* OpenBLAS x86-64 core names (dynamic.c's corename table) -> the ISA its kernels use. */
static const struct {
    const char *name;
    int isa;
} cores[] = {
    {"Katmai", ISA_SSE},      {"Coppermine", ISA_SSE},   {"Northwood", ISA_SSE},    {"Prescott", ISA_SSE},
    {"Banias", ISA_SSE},      {"Atom", ISA_SSE},         {"Core2", ISA_SSE},        {"Penryn", ISA_SSE},
    {"Dunnington", ISA_SSE},  {"Nehalem", ISA_SSE},      {"Athlon", ISA_SSE},       {"Opteron", ISA_SSE},
    {"Opteron_SSE3", ISA_SSE}, {"Barcelona", ISA_SSE},   {"Nano", ISA_SSE},         {"Bobcat", ISA_SSE},
    {"Sandybridge", ISA_AVX}, {"Bulldozer", ISA_AVX},    {"Piledriver", ISA_AVX},   {"Steamroller", ISA_AVX},
    {"Excavator", ISA_AVX},   {"Haswell", ISA_AVX2},     {"Zen", ISA_AVX2},         {"SkylakeX", ISA_AVX512},
    {"Cooperlake", ISA_AVX512}, {"SapphireRapids", ISA_AVX512},
};

static int core_isa(const char *name) {
    for (size_t i = 0; i < sizeof cores / sizeof cores[0]; i++)
        if (!strcasecmp(name, cores[i].name)) return cores[i].isa;
    return ISA_UNKNOWN;
}

/* Best ISA level of this CPU that OpenBLAS has kernels for (libgcc's checks include OS support). */
static int cpu_isa(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        return ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return ISA_AVX2;
    if (__builtin_cpu_supports("avx")) return ISA_AVX;
    return ISA_SSE;
#else
    return ISA_UNKNOWN;
#endif
}

typedef char *(*corename_fn)(void);
typedef void (*void_fn)(void);

static pthread_once_t once = PTHREAD_ONCE_INIT;
/* written once under `once`, read-only afterwards; skl_blas_get_info points into it */
static struct {
    bool openblas, user_coretype, core_changed;
    char detected_core[32], core[32], cpu_isa[16];
} state;
static atomic_bool auto_core = true; /* skl_blas_set_auto_core */
static atomic_bool started;          /* the check has begun: auto_core is fixed */

static void copy_name(char *dst, size_t n, const char *src) {
    size_t len = src ? strlen(src) : 0;
    if (len >= n) len = n - 1;
    if (len) memcpy(dst, src, len);
    dst[len] = '\0';
}

/* Re-initialise OpenBLAS with OPENBLAS_CORETYPE=name, then remove the variable again. */
static int reinit_with(void_fn quit, void_fn init, const char *name) {
    if (setenv("OPENBLAS_CORETYPE", name, 1) != 0) return -1;
    quit();
    init();
    unsetenv("OPENBLAS_CORETYPE");
    return 0;
}

static void setup(void) {
    atomic_store(&started, true);
    int isa = cpu_isa();
    copy_name(state.cpu_isa, sizeof state.cpu_isa, isa >= 0 ? isa_names[isa] : "unknown");
    /* The object that provides cblas_sgemm to us; stays loaded (we link it). */
    Dl_info where;
    void *blas = NULL;
    if (dladdr((void *)cblas_sgemm, &where) && where.dli_fname)
        blas = dlopen(where.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
    /* POSIX guarantees that dlsym's object pointer converts to a function pointer. */
    corename_fn corename = blas ? (corename_fn)dlsym(blas, "openblas_get_corename") : NULL;
    void_fn quit = blas ? (void_fn)dlsym(blas, "gotoblas_dynamic_quit") : NULL;
    void_fn init = blas ? (void_fn)dlsym(blas, "gotoblas_dynamic_init") : NULL;
    if (blas) dlclose(blas); /* drops the reference RTLD_NOLOAD took, not the library */
    if (!corename) {
        skl_log(SKL_LOG_DEBUG, "BLAS: not a dynamically linked OpenBLAS (no openblas_get_corename); core check skipped");
        return;
    }
    state.openblas = true;
    copy_name(state.detected_core, sizeof state.detected_core, corename());
    copy_name(state.core, sizeof state.core, state.detected_core);
    if (!atomic_load(&auto_core)) {
        skl_log(SKL_LOG_DEBUG, "BLAS: core check turned off (skl_blas_set_auto_core); OpenBLAS core %s", state.core);
        return;
    }
    const char *user = getenv("OPENBLAS_CORETYPE");
    if (user) {
        state.user_coretype = true;
        /* Set after OpenBLAS started (e.g. by the host program before its first
         * load): OpenBLAS has not seen it yet, so re-initialise to honour it. */
        if (quit && init && strcasecmp(user, state.core) != 0) {
            quit();
            init();
            copy_name(state.core, sizeof state.core, corename());
        }
        skl_log(SKL_LOG_INFO, "BLAS: OPENBLAS_CORETYPE=%s is set: OpenBLAS core %s", user, state.core);
        return;
    }
    int have = core_isa(state.detected_core);
    if (have == ISA_UNKNOWN || isa <= have) {
        skl_log(SKL_LOG_DEBUG, "BLAS: OpenBLAS core %s kept (CPU: %s)", state.core, state.cpu_isa);
        return;
    }
    const char *want = isa == ISA_AVX512 ? "SkylakeX" : isa == ISA_AVX2 ? "Haswell" : "Sandybridge";
    if (!quit || !init) {
        skl_log(SKL_LOG_WARN, "BLAS: OpenBLAS runs core %s although this CPU supports %s, and it cannot switch "
                "cores (not a DYNAMIC_ARCH build); BLAS calls will be slower than the CPU allows",
                state.core, state.cpu_isa);
        return;
    }
    if (reinit_with(quit, init, want) != 0) {
        skl_log(SKL_LOG_WARN, "BLAS: setenv failed; keeping OpenBLAS core %s", state.core);
        return;
    }
    copy_name(state.core, sizeof state.core, corename());
    if (strcasecmp(state.core, want) != 0) {
        /* This build has no such core: return to the one OpenBLAS chose. */
        char got[sizeof state.core];
        copy_name(got, sizeof got, state.core);
        reinit_with(quit, init, state.detected_core);
        copy_name(state.core, sizeof state.core, corename());
        skl_log(SKL_LOG_WARN, "BLAS: OpenBLAS gave core %s when asked for %s; back to its own choice %s", got, want,
                state.core);
        return;
    }
    state.core_changed = true;
    skl_log(SKL_LOG_INFO, "BLAS: OpenBLAS chose core %s, but this CPU supports %s: re-initialised OpenBLAS with "
            "core %s (set OPENBLAS_CORETYPE to choose a core yourself)", state.detected_core, state.cpu_isa,
            state.core);
}

void skl_blas_setup(void) { pthread_once(&once, setup); }

int skl_blas_get_info(skl_blas_info *out, size_t size) {
    if (!out) return skl_fail(SKL_ERR_INVALID_ARG, "skl_blas_get_info: out is NULL");
    skl_blas_setup();
    skl_blas_info info = {.openblas = state.openblas,
                          .user_coretype = state.user_coretype,
                          .core_changed = state.core_changed,
                          .auto_core = atomic_load(&auto_core),
                          .detected_core = state.detected_core,
                          .core = state.core,
                          .cpu_isa = state.cpu_isa};
    return skl_copy_out(out, size, &info, sizeof info, SKL_SIZE_THROUGH(skl_blas_info, cpu_isa), "skl_blas_get_info");
}

int skl_blas_set_auto_core(bool enable) {
    if (atomic_load(&started))
        return skl_fail(SKL_ERR_INVALID_ARG,
                        "skl_blas_set_auto_core: too late, the BLAS core check ran at the first skl_model_load() or "
                        "skl_blas_get_info(); call it before those");
    atomic_store(&auto_core, enable);
    return SKL_OK;
}

static pthread_mutex_t blas_mutex = PTHREAD_MUTEX_INITIALIZER;
static int blas_saved_threads; /* the count before skl_blas_lock, under blas_mutex */

void skl_blas_lock(int n_threads) {
    pthread_mutex_lock(&blas_mutex);
    blas_saved_threads = openblas_get_num_threads();
    openblas_set_num_threads(n_threads);
}

void skl_blas_unlock(void) {
    openblas_set_num_threads(blas_saved_threads);
    pthread_mutex_unlock(&blas_mutex);
}

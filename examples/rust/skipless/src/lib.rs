//! Safe Rust binding of libskipless.
//!
//! ```no_run
//! use std::ops::ControlFlow;
//! let model = skipless::Model::load("examples/models/kjv-serial")?;
//! let mut ctx = skipless::Context::new(&model, &skipless::ContextParams { n_ctx: 256, ..Default::default() })?;
//! let params = skipless::GenerateParams { max_tokens: 32, seed: 7, ..Default::default() };
//! ctx.generate(&[1, 2, 3], &params, |t| {
//!     print!("{} ", t.id);
//!     ControlFlow::Continue(())
//! })?;
//! ctx.reset()?;
//! for t in ctx.generator(&[1, 2, 3], &params)? {   // the same tokens, pulled
//!     print!("{} ", t?.id);
//! }
//! # Ok::<(), skipless::Error>(())
//! ```
//!
//! Ownership follows the C contract (include/skipless.h): a [`Model`] is immutable and
//! `Send + Sync`; a [`Context`] borrows its model (so it cannot outlive it) and is `Send`
//! but not `Sync` (one thread at a time); a [`Sampler`] likewise.  Every failure is an
//! [`Error`] with the status code and the library's message for it.
//!
//! Thread rules checked by the compiler:
//! ```compile_fail
//! fn sync<T: Sync>() {}
//! sync::<skipless::Context<'static>>();
//! ```
//! ```compile_fail
//! fn sync<T: Sync>() {}
//! sync::<skipless::Sampler>();
//! ```
//! ```compile_fail
//! fn sync<T: Sync>() {}
//! sync::<skipless::Detokenizer<'static>>();
//! ```
//! ```compile_fail
//! fn sync<T: Sync>() {}
//! sync::<skipless::Generator<'static, 'static>>();
//! ```
//! A [`Generator`] borrows its context mutably: no other call on the context meanwhile.
//! ```compile_fail
//! fn f(ctx: &mut skipless::Context<'_>) {
//!     let gen = ctx.generator(&[1], &Default::default()).unwrap();
//!     ctx.eval(&[1]).unwrap();
//!     drop(gen);
//! }
//! ```
use std::ffi::{CStr, CString};
use std::fmt;
use std::marker::PhantomData;
use std::ops::ControlFlow;
use std::os::raw::{c_char, c_int, c_void};
use std::path::Path;
use std::ptr::{self, NonNull};

pub use skipless_sys as sys;

// ------------------------------------------------------------------ errors

macro_rules! error_kinds {
    ((SKL_OK, $ok:literal, $ok_text:literal, Ok), $(($code:ident, $value:literal, $text:literal, $kind:ident)),* $(,)?) => {
        /// What went wrong: one variant per error status of the header's SKL_STATUS_LIST
        /// (generated from it by skipless-sys's build.rs, never listed by hand).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorKind {
            $(#[doc = $text] $kind,)*
            /// A status this binding does not know (a newer library).
            Unknown(i32),
        }

        impl ErrorKind {
            pub fn from_code(code: i32) -> ErrorKind {
                match code {
                    $(sys::$code => ErrorKind::$kind,)*
                    other => ErrorKind::Unknown(other),
                }
            }

            /// The C enumerator name ("SKL_ERR_IO"); None for `Unknown`.
            pub fn c_name(self) -> Option<&'static str> {
                match self {
                    $(ErrorKind::$kind => Some(stringify!($code)),)*
                    ErrorKind::Unknown(_) => None,
                }
            }

            /// Every known kind with its status code.
            pub const ALL: &'static [(ErrorKind, i32)] = &[$((ErrorKind::$kind, sys::$code)),*];
        }
    };
}

sys::skl_status_list!(error_kinds);

/// A failed libskipless call: the `skl_status` code and the message of that failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    code: i32,
    message: String,
}

impl Error {
    pub fn code(&self) -> i32 {
        self.code
    }
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::from_code(self.code)
    }
    pub fn message(&self) -> &str {
        &self.message
    }
    fn new(code: i32, message: String) -> Error {
        Error { code, message }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}, status {})", self.message, strerror(self.code), self.code)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

unsafe fn text(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}


/// Turn a status into a Result, reading skl_last_error() at once: it is per thread
/// and the next failure on this thread overwrites it.
fn check(rc: c_int) -> Result<c_int> {
    if rc >= 0 {
        return Ok(rc);
    }
    let mut message = unsafe { text(sys::skl_last_error()) };
    if message.is_empty() {
        message = strerror(rc);
    }
    Err(Error::new(rc, message))
}

fn invalid(message: String) -> Error {
    Error::new(sys::SKL_ERR_INVALID_ARG, message)
}

fn c_path(path: &Path) -> Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| invalid(format!("{}: path contains a NUL byte", path.display())))
}

fn len_i32(n: usize, what: &str) -> Result<i32> {
    i32::try_from(n).map_err(|_| invalid(format!("{} has {} entries, more than 2^31-1", what, n)))
}

/// A params struct filled by its `skl_*_params_init(&p, sizeof p)`: struct_size tells
/// the library which fields this binding knows, and it defaults the others.
fn params_init<T>(init: unsafe extern "C" fn(*mut T, usize) -> c_int) -> T {
    let mut p = std::mem::MaybeUninit::<T>::zeroed();
    unsafe {
        // Fails only for a size below version 1.0's, i.e. a wrong declaration.
        check(init(p.as_mut_ptr(), std::mem::size_of::<T>())).expect("skl_*_params_init");
        p.assume_init()
    }
}

/// An output struct filled by `f(&out, sizeof out)`: the library writes only the bytes
/// this binding declares.  Every field type of these structs is valid when zeroed.
fn filled<T>(f: impl FnOnce(*mut T, usize) -> c_int) -> Result<T> {
    let mut out = std::mem::MaybeUninit::<T>::zeroed();
    check(f(out.as_mut_ptr(), std::mem::size_of::<T>()))?;
    Ok(unsafe { out.assume_init() })
}

/// Static description of a status code.
pub fn strerror(code: i32) -> String {
    unsafe { text(sys::skl_strerror(code)) }
}

/// Enumerator name of a status code ("SKL_ERR_IO"), from the library; None if unknown.
pub fn status_name(code: i32) -> Option<String> {
    let p = unsafe { sys::skl_status_name(code) };
    if p.is_null() { None } else { Some(unsafe { text(p) }) }
}

/// Version of the loaded library, e.g. "1.0.0".
pub fn version() -> String {
    unsafe { text(sys::skl_version()) }
}

/// The header version this binding was written against: the crate's version, which
/// the drift test holds equal to include/skipless.h's (major, minor).
pub fn binding_version() -> (i32, i32) {
    let parse = |s: &str| s.parse::<i32>().expect("crate version");
    (parse(env!("CARGO_PKG_VERSION_MAJOR")), parse(env!("CARGO_PKG_VERSION_MINOR")))
}

/// Whether a library whose `skl_version_number()` is `number` can serve this binding.
/// The header's rule: a binding written against X.Y works with any library X.Z, Z >= Y;
/// another major, or an older minor, is refused (`ErrorKind::Unsupported`).
pub fn check_version_number(number: i32) -> Result<()> {
    let (major, minor) = binding_version();
    let (lib_major, lib_minor, lib_patch) = (number / 10000, number / 100 % 100, number % 100);
    if lib_major == major && lib_minor >= minor {
        return Ok(());
    }
    let need = format!("needs {}.{} or a later {}.x", major, minor, major);
    let lib = format!("{}.{}.{}", lib_major, lib_minor, lib_patch);
    Err(Error::new(
        sys::SKL_ERR_UNSUPPORTED,
        if lib_major != major {
            format!("libskipless {} has major version {}; this binding was written against the {}.{} header and {}",
                    lib, lib_major, major, minor, need)
        } else {
            format!("libskipless {} is older than the {}.{} header this binding was written against; it {}",
                    lib, major, minor, need)
        },
    ))
}

/// Check the loaded library's version (done by [`Model::load`], [`plan_config`] and
/// [`blas_info`], the calls that come first).
pub fn check_version() -> Result<()> {
    check_version_number(unsafe { sys::skl_version_number() })
}

/// The kernel variant this CPU runs: "avx512", "avx2" or "generic".
pub fn cpu_kernels() -> String {
    unsafe { text(sys::skl_cpu_kernels()) }
}

/// The BLAS in use and what libskipless's OpenBLAS core check did (`skl_blas_info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlasInfo {
    /// The BLAS is a dynamically linked OpenBLAS.
    pub openblas: bool,
    /// `OPENBLAS_CORETYPE` was set: the core was left as chosen.
    pub user_coretype: bool,
    /// libskipless re-initialised OpenBLAS with `core`.
    pub core_changed: bool,
    /// The check was enabled ([`blas_set_auto_core`]).
    pub auto_core: bool,
    /// The core OpenBLAS chose itself ("" if not OpenBLAS).
    pub detected_core: String,
    /// The core in use after the check ("" if not OpenBLAS).
    pub core: String,
    /// Best vector ISA of the CPU: "AVX-512", "AVX2", "AVX" or "SSE".
    pub cpu_isa: String,
}

/// Describe the BLAS in use (`skl_blas_get_info`).  The first call of a process (or the
/// first [`Model::load`]) runs the OpenBLAS core check, which may re-initialise OpenBLAS:
/// no other thread may be in a BLAS call meanwhile.
pub fn blas_info() -> Result<BlasInfo> {
    check_version()?;
    let b: sys::skl_blas_info = filled(|p, n| unsafe { sys::skl_blas_get_info(p, n) })?;
    Ok(BlasInfo {
        openblas: b.openblas,
        user_coretype: b.user_coretype,
        core_changed: b.core_changed,
        auto_core: b.auto_core,
        detected_core: unsafe { text(b.detected_core) },
        core: unsafe { text(b.core) },
        cpu_isa: unsafe { text(b.cpu_isa) },
    })
}

/// `enable = false`: libskipless never touches OpenBLAS's core (`skl_blas_set_auto_core`).
/// Only before the first [`Model::load`] or [`blas_info`]; afterwards `InvalidArg`.
pub fn blas_set_auto_core(enable: bool) -> Result<()> {
    check(unsafe { sys::skl_blas_set_auto_core(enable) }).map(|_| ())
}

// ------------------------------------------------------------------- model

/// Activation of the MLP (`hidden_act`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Silu,
    Gelu,
    GeluTanh,
    Relu,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockType {
    Serial,
    Parallel,
}

/// The model's hyper-parameters (`skl_hparams`, Hugging Face names).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub hidden_size: i32,
    pub num_hidden_layers: i32,
    pub num_attention_heads: i32,
    pub num_key_value_heads: i32,
    pub head_dim: i32,
    pub intermediate_size: i32,
    pub vocab_size: i32,
    pub max_position_embeddings: i32,
    pub rotary_dim: i32,
    pub hidden_act: Activation,
    pub block_type: BlockType,
    pub rope_theta: f32,
    pub partial_rotary_factor: f32,
    pub rms_norm_eps: f32,
    pub use_rope: bool,
    pub tie_word_embeddings: bool,
    pub glu: bool,
    pub final_norm: bool,
}

pub use sys::skl_weight_counts as WeightCounts;

/// Which weights a merge removes (`skl_removal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    Auto,
    Qp,
    Kp,
    Vp,
    Q,
    P,
}

impl Removal {
    fn to_c(self) -> sys::skl_removal {
        match self {
            Removal::Auto => sys::SKL_REMOVE_AUTO,
            Removal::Qp => sys::SKL_REMOVE_QP,
            Removal::Kp => sys::SKL_REMOVE_KP,
            Removal::Vp => sys::SKL_REMOVE_VP,
            Removal::Q => sys::SKL_REMOVE_Q,
            Removal::P => sys::SKL_REMOVE_P,
        }
    }
    fn from_c(r: sys::skl_removal) -> Removal {
        [Removal::Auto, Removal::Qp, Removal::Kp, Removal::Vp, Removal::Q, Removal::P]
            .iter()
            .copied()
            .find(|x| x.to_c() == r)
            .unwrap_or(Removal::Auto)
    }
    /// "auto", "qp", "kp", "vp", "q" or "p".
    pub fn name(self) -> String {
        unsafe { text(sys::skl_removal_name(self.to_c())) }
    }
    pub fn parse(name: &str) -> Result<Removal> {
        let c = CString::new(name).map_err(|_| invalid("removal name contains NUL".into()))?;
        let mut r = 0;
        check(unsafe { sys::skl_removal_parse(c.as_ptr(), &mut r) })?;
        Ok(Removal::from_c(r))
    }
}

/// Storage of the tensors a merge changes (`skl_dtype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum Dtype {
    F32,
    F16,
    Bf16,
    /// Each like the tensor it replaces (a new bias like the embedding).
    Same,
    /// Since 1.2: every linear weight quantized to 8 bits in groups of 32 (llama.cpp's Q8_0).
    Q8_0,
    /// Since 1.2: every linear weight quantized to 4 bits in groups of 32 (llama.cpp's Q4_0).
    Q4_0,
}

impl Dtype {
    const ALL: [(Dtype, sys::skl_dtype, &'static str); 6] = [
        (Dtype::F32, sys::SKL_DTYPE_F32, "f32"),
        (Dtype::F16, sys::SKL_DTYPE_F16, "f16"),
        (Dtype::Bf16, sys::SKL_DTYPE_BF16, "bf16"),
        (Dtype::Same, sys::SKL_DTYPE_SAME, "same"),
        (Dtype::Q8_0, sys::SKL_DTYPE_Q8_0, "q8_0"),
        (Dtype::Q4_0, sys::SKL_DTYPE_Q4_0, "q4_0"),
    ];
    fn to_c(self) -> sys::skl_dtype {
        Dtype::ALL.iter().find(|e| e.0 == self).map(|e| e.1).unwrap_or(sys::SKL_DTYPE_F32)
    }
    /// The value of a C `skl_dtype`, None if this binding does not know it.
    pub fn from_c(d: sys::skl_dtype) -> Option<Dtype> {
        Dtype::ALL.iter().find(|e| e.1 == d).map(|e| e.0)
    }
    /// "f32", "f16", "bf16", "same", "q8_0" or "q4_0" (the CLI's `--dtype` names).
    pub fn name(self) -> &'static str {
        Dtype::ALL.iter().find(|e| e.0 == self).map(|e| e.2).unwrap_or("f32")
    }
    pub fn parse(name: &str) -> Result<Dtype> {
        Dtype::ALL.iter().find(|e| e.2 == name).map(|e| e.0).ok_or_else(|| {
            invalid(format!("merge dtype \"{}\" is not one of f32, f16, bf16, same, q8_0, q4_0", name))
        })
    }
}

/// Options of [`Model::merge`]; `Default` is the library's (`skl_merge_params_init`).
#[derive(Debug, Clone, Copy)]
pub struct MergeParams {
    pub remove: Removal,
    pub verify: bool,
    pub n_probe_tokens: i32,
    pub probe_seed: u64,
    pub max_condition: f64,
    /// Storage of the changed tensors; the merge itself runs in float64.
    pub dtype: Dtype,
}

impl Default for MergeParams {
    fn default() -> Self {
        let p = params_init(sys::skl_merge_params_init);
        MergeParams {
            remove: Removal::from_c(p.remove),
            verify: p.verify,
            n_probe_tokens: p.n_probe_tokens,
            probe_seed: p.probe_seed,
            max_condition: p.max_condition,
            dtype: Dtype::from_c(p.dtype).expect("skl_merge_params_init: unknown dtype"),
        }
    }
}

pub use sys::skl_merge_layer as MergeLayer;

/// What a merge did (`skl_merge_report`).
#[derive(Debug, Clone)]
pub struct MergeReport {
    pub removal: Removal,
    pub layers: Vec<MergeLayer>,
    pub weights_before: u64,
    pub weights_after: u64,
    pub max_condition: f64,
    pub max_residual: f64,
    /// Max relative logit difference on the probe tokens; None if not verified.
    pub verify_error: Option<f64>,
    pub n_probe_tokens: i32,
    pub seconds: f64,
}

/// How [`Model::save`] writes the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveFormat {
    /// A file if the path ends in ".safetensors", else a directory.
    Auto,
    Dir,
    File,
}

/// Options of [`Model::save_with`]; `Default` is the library's (`skl_save_params_init`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaveParams {
    pub format: SaveFormat,
    /// A directory's weights in shards of at most this many bytes (Hugging Face's
    /// layout, with model.safetensors.index.json); `None`: 5 GB.  One model.safetensors
    /// when they fit.
    pub max_shard_size: Option<u64>,
}

impl Default for SaveParams {
    fn default() -> Self {
        SaveParams { format: SaveFormat::Auto, max_shard_size: None }
    }
}

/// One row of a merge plan (`skl_plan_row`).
#[derive(Debug, Clone, PartialEq)]
pub struct PlanRow {
    pub removal: Removal,
    pub applicable: bool,
    pub lossless: bool,
    pub total: u64,
    pub removed: u64,
    pub after: u64,
    pub saving_percent: f64,
    pub speedup_bound: f64,
    pub note: String,
}

/// Weight accounting of every removal (`skl_plan`).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub block_type: BlockType,
    pub total: u64,
    pub rows: Vec<PlanRow>,
}

/// Run `skl_plan_config` / `skl_model_plan`, copy the plan (rows through
/// `skl_plan_row_at`) and free it.
fn plan_from(f: impl FnOnce(*mut *mut sys::skl_plan) -> c_int) -> Result<Plan> {
    let mut p = ptr::null_mut();
    check(f(&mut p))?;
    let p = out_ptr(p, "skl_plan")?;
    let plan = unsafe {
        let pl = &*p.as_ptr();
        let rows = (0..pl.n_rows)
            .filter_map(|i| sys::skl_plan_row_at(pl, i).as_ref())
            .map(|r| PlanRow {
                removal: Removal::from_c(r.removal),
                applicable: r.applicable,
                lossless: r.lossless,
                total: r.total,
                removed: r.removed,
                after: r.after,
                saving_percent: r.saving_percent,
                speedup_bound: r.speedup_bound,
                note: text(r.note),
            })
            .collect();
        Plan { block_type: block_type(pl.block_type), total: pl.total, rows }
    };
    unsafe { sys::skl_plan_free(p.as_ptr()) };
    Ok(plan)
}

fn block_type(b: sys::skl_block_type) -> BlockType {
    if b == sys::SKL_BLOCK_PARALLEL {
        BlockType::Parallel
    } else {
        BlockType::Serial
    }
}

/// Merge plan from a config file alone (`skl_plan_config`).
pub fn plan_config<P: AsRef<Path>>(config_path: P) -> Result<Plan> {
    check_version()?;
    let path = c_path(config_path.as_ref())?;
    plan_from(|out| unsafe { sys::skl_plan_config(path.as_ptr(), out) })
}

/// A loaded model: immutable, shareable between threads (`Send + Sync`).
pub struct Model {
    ptr: NonNull<sys::skl_model>,
}

// The C contract: a model is immutable after loading and may be used from any number of
// threads at once; it is freed by whichever thread drops it last.
unsafe impl Send for Model {}
unsafe impl Sync for Model {}

impl Drop for Model {
    fn drop(&mut self) {
        unsafe { sys::skl_model_free(self.ptr.as_ptr()) }
    }
}

impl fmt::Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Model").field("ptr", &self.ptr).finish()
    }
}

fn out_ptr<T>(p: *mut T, what: &str) -> Result<NonNull<T>> {
    NonNull::new(p).ok_or_else(|| Error::new(sys::SKL_ERR_NOMEM, format!("{}: NULL without an error", what)))
}

impl Model {
    /// Load a model directory (config.json + model.safetensors) or one .safetensors file.
    pub fn load<P: AsRef<Path>>(path: P) -> Result<Model> {
        check_version()?;
        let path = c_path(path.as_ref())?;
        let mut out = ptr::null_mut();
        check(unsafe { sys::skl_model_load(path.as_ptr(), ptr::null(), &mut out) })?;
        Ok(Model { ptr: out_ptr(out, "skl_model_load")? })
    }

    pub fn as_ptr(&self) -> *const sys::skl_model {
        self.ptr.as_ptr()
    }

    pub fn config(&self) -> Config {
        // Cannot fail for a valid model pointer.
        let h: sys::skl_hparams =
            filled(|p, n| unsafe { sys::skl_model_hparams(self.as_ptr(), p, n) }).expect("skl_model_hparams");
        let act = [Activation::Silu, Activation::Gelu, Activation::GeluTanh, Activation::Relu];
        Config {
            hidden_size: h.hidden_size,
            num_hidden_layers: h.num_hidden_layers,
            num_attention_heads: h.num_attention_heads,
            num_key_value_heads: h.num_key_value_heads,
            head_dim: h.head_dim,
            intermediate_size: h.intermediate_size,
            vocab_size: h.vocab_size,
            max_position_embeddings: h.max_position_embeddings,
            rotary_dim: h.rotary_dim,
            hidden_act: act[h.hidden_act as usize],
            block_type: block_type(h.block_type),
            rope_theta: h.rope_theta,
            partial_rotary_factor: h.partial_rotary_factor,
            rms_norm_eps: h.rms_norm_eps,
            use_rope: h.use_rope,
            tie_word_embeddings: h.tie_word_embeddings,
            glu: h.glu,
            final_norm: h.final_norm,
        }
    }

    /// Bytes of weights one decoded token reads (`skl_model_decode_bytes`): every linear
    /// layer and the LM head in their stored dtypes, plus one embedding row.
    pub fn decode_bytes(&self) -> u64 {
        unsafe { sys::skl_model_decode_bytes(self.as_ptr()) }
    }

    /// Bytes of all the weights the model holds (`skl_model_weight_bytes`), in their stored
    /// dtypes, each tensor once (a tied LM head is the embedding).
    pub fn weight_bytes(&self) -> u64 {
        unsafe { sys::skl_model_weight_bytes(self.as_ptr()) }
    }

    /// Bytes of the KV cache a context of `n_ctx` positions allocates (`skl_model_kv_bytes`;
    /// 0: `max_position_embeddings`); `None` when `n_ctx` is out of range.
    pub fn kv_bytes(&self, n_ctx: i32) -> Option<u64> {
        match unsafe { sys::skl_model_kv_bytes(self.as_ptr(), n_ctx) } {
            0 => None,
            n => Some(n),
        }
    }

    /// Where those bytes are (`skl_model_decode_regions`): one slice per tensor a decode
    /// step reads, in evaluation order, then one embedding row; their lengths sum to
    /// [`Model::decode_bytes`].  The memory is the model's, borrowed read-only.
    pub fn decode_regions(&self) -> Result<Vec<&[u8]>> {
        let mut n = 0usize;
        let rc = unsafe { sys::skl_model_decode_regions(self.as_ptr(), ptr::null_mut(), ptr::null_mut(), 0, &mut n) };
        if rc != sys::SKL_ERR_BUFFER_TOO_SMALL {
            check(rc)?;
        }
        let (mut bases, mut sizes) = (vec![ptr::null(); n], vec![0u64; n]);
        check(unsafe {
            sys::skl_model_decode_regions(self.as_ptr(), bases.as_mut_ptr(), sizes.as_mut_ptr(), n, &mut n)
        })?;
        // The model's immutable weights, alive as long as the model (the borrow of self).
        Ok(bases.iter().zip(&sizes).take(n)
            .map(|(&b, &s)| unsafe { std::slice::from_raw_parts(b as *const u8, s as usize) })
            .collect())
    }

    /// Storage dtype of the linear layers and lm_head (`skl_model_weight_dtype`): "F32",
    /// "F16", "BF16", "Q8_0", "Q4_0", or "mixed" (a merge stored its new tensors in another
    /// dtype, or some layers were left unquantized).
    pub fn weight_dtype(&self) -> String {
        unsafe { text(sys::skl_model_weight_dtype(self.as_ptr())) }
    }

    pub fn weight_counts(&self) -> WeightCounts {
        filled(|p, n| unsafe { sys::skl_model_weight_counts(self.as_ptr(), p, n) }).expect("skl_model_weight_counts")
    }

    /// Whether projection 'q', 'k', 'v' or 'o' of `layer` is present.
    pub fn has_proj(&self, layer: i32, which: char) -> Result<bool> {
        if !which.is_ascii() {
            return Err(invalid(format!("projection '{}' is not one of q, k, v, o", which)));
        }
        Ok(check(unsafe { sys::skl_model_has_proj(self.as_ptr(), layer, which as u8 as c_char) })? == 1)
    }

    /// Weight accounting of every removal from the model's shapes (`skl_model_plan`).
    pub fn plan(&self) -> Result<Plan> {
        plan_from(|out| unsafe { sys::skl_model_plan(self.as_ptr(), out) })
    }

    /// Remove weights exactly: a new merged model and the report; `self` is unchanged.
    pub fn merge(&self, params: &MergeParams) -> Result<(Model, MergeReport)> {
        let p = merge_params(params);
        let (mut out, mut rep) = (ptr::null_mut(), ptr::null_mut());
        check(unsafe { sys::skl_model_merge(self.as_ptr(), &p, &mut out, &mut rep) })?;
        let model = Model { ptr: out_ptr(out, "skl_model_merge")? };
        Ok((model, unsafe { merge_report(rep) }))
    }

    /// The streaming merge (`skl_model_merge_to`, since 1.1): merge and save at `path` in
    /// bounded memory, each merged tensor written as soon as it is final; the files are
    /// those of [`Model::merge`] then [`Model::save_with`].  With `verify`, the written
    /// model is run against `self`.  A failure leaves an existing model at `path` untouched.
    pub fn merge_to<P: AsRef<Path>>(&self, path: P, params: &MergeParams, save: &SaveParams) -> Result<MergeReport> {
        let path = c_path(path.as_ref())?;
        let (p, sp) = (merge_params(params), save_params(save)?);
        let mut rep = ptr::null_mut();
        check(unsafe { sys::skl_model_merge_to(self.as_ptr(), path.as_ptr(), &p, &sp, &mut rep) })?;
        Ok(unsafe { merge_report(rep) })
    }

    /// Quantize the linear layers to `dtype` ([`Dtype::Q8_0`] or [`Dtype::Q4_0`]) and save at
    /// `path` (`skl_model_quantize_to`, since 1.2), streaming; `keep` names layers left as
    /// they are ("lm_head", "down_proj", "model.layers.3.mlp.down_proj").  A failure leaves
    /// an existing model at `path` untouched.
    pub fn quantize_to<P: AsRef<Path>>(&self, path: P, dtype: Dtype, keep: &[&str], save: &SaveParams) -> Result<()> {
        let path = c_path(path.as_ref())?;
        let names = keep
            .iter()
            .map(|k| CString::new(*k).map_err(|_| invalid("keep name contains NUL".into())))
            .collect::<Result<Vec<_>>>()?;
        let ptrs: Vec<*const c_char> = names.iter().map(|n| n.as_ptr()).collect();
        let mut p = params_init(sys::skl_quantize_params_init);
        p.dtype = dtype.to_c();
        p.keep = if ptrs.is_empty() { ptr::null() } else { ptrs.as_ptr() };
        p.n_keep = ptrs.len() as i32;
        let sp = save_params(save)?;
        check(unsafe { sys::skl_model_quantize_to(self.as_ptr(), path.as_ptr(), &p, &sp) }).map(|_| ())
    }

    /// The linear layers' weights stored in `dtype` (`skl_model_dtype_weights`, since 1.2).
    pub fn dtype_weights(&self, dtype: Dtype) -> u64 {
        unsafe { sys::skl_model_dtype_weights(self.as_ptr(), dtype.to_c()) }
    }

    /// Whether the model carries a usable (present and supported) tokenizer.
    pub fn has_tokenizer(&self) -> bool {
        unsafe { sys::skl_model_has_tokenizer(self.as_ptr()) }
    }

    /// Token ids the tokenizer knows (vocab + added tokens); 0 without a tokenizer.
    pub fn tokenizer_size(&self) -> i32 {
        unsafe { sys::skl_tokenizer_size(self.as_ptr()) }
    }

    /// The end-of-text token, if the model has one.
    pub fn eos_token(&self) -> Option<i32> {
        let eos = unsafe { sys::skl_token_eos(self.as_ptr()) };
        if eos < 0 { None } else { Some(eos) }
    }

    /// Text -> token ids (no BOS/EOS added); added/special tokens in the text are recognised.
    pub fn tokenize(&self, text: &str) -> Result<Vec<i32>> {
        self.tokenize_flags(text, 0)
    }

    /// Like [`Model::tokenize`], but added/special token text is treated as plain text.
    pub fn tokenize_plain(&self, text: &str) -> Result<Vec<i32>> {
        self.tokenize_flags(text, sys::SKL_TOKENIZE_PLAIN)
    }

    fn tokenize_flags(&self, text: &str, flags: std::os::raw::c_uint) -> Result<Vec<i32>> {
        let ptr = text.as_ptr() as *const c_char;
        let mut n = 0usize;
        let rc = unsafe { sys::skl_tokenize(self.as_ptr(), ptr, text.len(), ptr::null_mut(), 0, &mut n, flags) };
        if rc != sys::SKL_ERR_BUFFER_TOO_SMALL {
            check(rc)?; // the size query: OK (no tokens) or a real error
        }
        let mut ids = vec![0i32; n];
        check(unsafe { sys::skl_tokenize(self.as_ptr(), ptr, text.len(), ids.as_mut_ptr(), n, &mut n, flags) })?;
        ids.truncate(n);
        Ok(ids)
    }

    /// Token ids -> text, as Hugging Face decodes it.
    pub fn detokenize(&self, tokens: &[i32]) -> Result<String> {
        let mut len = 0usize;
        let rc = unsafe { sys::skl_detokenize(self.as_ptr(), tokens.as_ptr(), tokens.len(), ptr::null_mut(), 0, &mut len) };
        if rc != sys::SKL_ERR_BUFFER_TOO_SMALL {
            check(rc)?;
        }
        let mut buf = vec![0u8; len + 1];
        check(unsafe {
            sys::skl_detokenize(self.as_ptr(), tokens.as_ptr(), tokens.len(), buf.as_mut_ptr() as *mut c_char,
                                buf.len(), &mut len)
        })?;
        buf.truncate(len);
        String::from_utf8(buf).map_err(|_| Error::new(sys::SKL_ERR_TOKENIZER, "detokenized text is not UTF-8".into()))
    }

    /// Write the model as safetensors, each tensor in its in-memory dtype (the file's for
    /// loaded tensors, [`MergeParams::dtype`] for merged ones), so that [`Model::load`]
    /// reads it back bit for bit.
    pub fn save<P: AsRef<Path>>(&self, path: P, format: SaveFormat) -> Result<()> {
        self.save_with(path, &SaveParams { format, ..SaveParams::default() })
    }

    /// [`Model::save`] with options: the format and the shard limit of a directory.
    pub fn save_with<P: AsRef<Path>>(&self, path: P, params: &SaveParams) -> Result<()> {
        let path = c_path(path.as_ref())?;
        let p = save_params(params)?;
        check(unsafe { sys::skl_model_save_v2(self.as_ptr(), path.as_ptr(), &p) }).map(|_| ())
    }
}

fn merge_params(params: &MergeParams) -> sys::skl_merge_params {
    let mut p = params_init(sys::skl_merge_params_init);
    p.remove = params.remove.to_c();
    p.verify = params.verify;
    p.n_probe_tokens = params.n_probe_tokens;
    p.probe_seed = params.probe_seed;
    p.max_condition = params.max_condition;
    p.dtype = params.dtype.to_c();
    p
}

/// The report of a merge; frees `rep`.  Safety: `rep` from a successful merge call.
unsafe fn merge_report(rep: *mut sys::skl_merge_report) -> MergeReport {
    let r = &*rep;
    let layers = (0..r.n_layers).filter_map(|i| sys::skl_merge_report_layer(r, i).as_ref().copied()).collect();
    let report = MergeReport {
        removal: Removal::from_c(r.removal),
        layers,
        weights_before: r.weights_before,
        weights_after: r.weights_after,
        max_condition: r.max_condition,
        max_residual: r.max_residual,
        verify_error: if r.verify_error < 0.0 { None } else { Some(r.verify_error) },
        n_probe_tokens: r.n_probe_tokens,
        seconds: r.seconds,
    };
    sys::skl_merge_report_free(rep);
    report
}

fn save_params(params: &SaveParams) -> Result<sys::skl_save_params> {
    let mut p = params_init(sys::skl_save_params_init);
    p.format = match params.format {
        SaveFormat::Auto => sys::SKL_SAVE_AUTO,
        SaveFormat::Dir => sys::SKL_SAVE_DIR,
        SaveFormat::File => sys::SKL_SAVE_FILE,
    };
    if let Some(n) = params.max_shard_size {
        if n == 0 {
            return Err(Error::new(sys::SKL_ERR_INVALID_ARG, "max_shard_size must be > 0".into()));
        }
        p.max_shard_size = n;
    }
    Ok(p)
}

// --------------------------------------------------------------- tokenizer

/// Streaming decoder (`skl_detokenizer`): push ids one at a time, get the text each
/// completes, never part of a UTF-8 character.  Borrows its model; `Send`, not `Sync`.
pub struct Detokenizer<'m> {
    ptr: NonNull<sys::skl_detokenizer>,
    _model: PhantomData<&'m Model>,
}

unsafe impl Send for Detokenizer<'_> {}

impl Drop for Detokenizer<'_> {
    fn drop(&mut self) {
        unsafe { sys::skl_detokenizer_free(self.ptr.as_ptr()) }
    }
}

unsafe fn piece<'a>(p: *const c_char, len: usize) -> Result<&'a str> {
    if len == 0 {
        return Ok("");
    }
    std::str::from_utf8(std::slice::from_raw_parts(p as *const u8, len))
        .map_err(|_| Error::new(sys::SKL_ERR_TOKENIZER, "decoder piece is not UTF-8".into()))
}

impl<'m> Detokenizer<'m> {
    pub fn new(model: &'m Model) -> Result<Detokenizer<'m>> {
        let mut out = ptr::null_mut();
        check(unsafe { sys::skl_detokenizer_create(model.as_ptr(), &mut out) })?;
        Ok(Detokenizer { ptr: out_ptr(out, "skl_detokenizer_create")?, _model: PhantomData })
    }

    /// The text `token` completes ("" while a character is pending).  The slice is the
    /// decoder's own buffer: it lives until the next call (enforced by the borrow).
    pub fn push(&mut self, token: i32) -> Result<&str> {
        let (mut p, mut len) = (ptr::null(), 0usize);
        check(unsafe { sys::skl_detokenizer_push(self.ptr.as_ptr(), token, &mut p, &mut len) })?;
        unsafe { piece(p, len) }
    }

    /// Bytes still held back (as U+FFFD); resets the decoder.
    pub fn flush(&mut self) -> Result<&str> {
        let (mut p, mut len) = (ptr::null(), 0usize);
        check(unsafe { sys::skl_detokenizer_flush(self.ptr.as_ptr(), &mut p, &mut len) })?;
        unsafe { piece(p, len) }
    }
}

// ----------------------------------------------------------------- context

/// Options of [`Context::new`]; `Default` is the library's (`skl_context_params_init`):
/// n_ctx 0 (= max_position_embeddings), 1 thread, n_batch 256, logits of the last token only.
#[derive(Debug, Clone, Copy)]
pub struct ContextParams {
    pub n_ctx: i32,
    pub n_threads: i32,
    pub n_batch: i32,
    pub logits_all: bool,
}

impl Default for ContextParams {
    fn default() -> Self {
        let p = params_init(sys::skl_context_params_init);
        ContextParams { n_ctx: p.n_ctx, n_threads: p.n_threads, n_batch: p.n_batch, logits_all: p.logits_all }
    }
}

/// The KV cache of one sequence.  It borrows its model, is `Send` (it may move to
/// another thread) but not `Sync`: the C library allows one thread at a time.
pub struct Context<'m> {
    ptr: NonNull<sys::skl_context>,
    n_vocab: usize,
    model: &'m Model,
}

// One thread at a time, any thread: Send, and no Sync (the raw pointer keeps it !Sync).
unsafe impl Send for Context<'_> {}

impl Drop for Context<'_> {
    fn drop(&mut self) {
        unsafe { sys::skl_context_free(self.ptr.as_ptr()) }
    }
}

/// One generated token handed to the [`Context::generate`] callback.
#[derive(Debug, Clone, Copy)]
pub struct Token<'a> {
    /// The token id (-1 for the final call that only flushes pending text).
    pub id: i32,
    /// The text this token completes ("" while a multi-byte character is pending),
    /// or None when the model has no tokenizer.  Valid only during the callback.
    pub piece: Option<&'a str>,
}

/// Options of [`Context::generate`]; `Default` is the library's: 128 tokens, temperature
/// 0.8, top_k 40, top_p 0.95, seed 0x5EED, no stop tokens but the model's end-of-text
/// token (`stop_at_eos`, as the CLI).
#[derive(Debug, Clone)]
pub struct GenerateParams {
    pub max_tokens: i32,
    pub temperature: f32,
    pub top_k: i32,
    pub top_p: f32,
    pub seed: u64,
    pub stop_tokens: Vec<i32>,
    /// Also stop at the model's end-of-text token, if it has one.
    pub stop_at_eos: bool,
}

impl Default for GenerateParams {
    fn default() -> Self {
        let p = params_init(sys::skl_generate_params_init);
        // sampling NULL: the sampler's defaults, i.e. skl_sampler_params_init's.
        let s = params_init(sys::skl_sampler_params_init);
        GenerateParams {
            max_tokens: p.max_tokens,
            temperature: s.temperature,
            top_k: s.top_k,
            top_p: s.top_p,
            seed: s.seed,
            stop_tokens: Vec::new(),
            stop_at_eos: true,
        }
    }
}

impl GenerateParams {
    fn sampling(&self) -> sys::skl_sampler_params {
        let mut p = params_init(sys::skl_sampler_params_init);
        p.temperature = self.temperature;
        p.top_k = self.top_k;
        p.top_p = self.top_p;
        p.seed = self.seed;
        p
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    MaxTokens,
    StopToken,
    /// The callback returned `ControlFlow::Break`.
    Callback,
    ContextFull,
    /// Only in results of generation that failed midway (the error is returned instead).
    Error,
}

/// Outcome of [`Context::generate`] or a [`Generator`] (`skl_generate_result`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GenerateResult {
    pub n_generated: i32,
    pub stop_token: Option<i32>,
    pub stop_reason: StopReason,
    pub prompt_seconds: f64,
    pub decode_seconds: f64,
}

impl GenerateResult {
    fn from_c(res: &sys::skl_generate_result) -> GenerateResult {
        GenerateResult {
            n_generated: res.n_generated,
            stop_token: if res.stop_token < 0 { None } else { Some(res.stop_token) },
            stop_reason: match res.stop_reason {
                sys::SKL_STOP_STOP_TOKEN => StopReason::StopToken,
                sys::SKL_STOP_CALLBACK => StopReason::Callback,
                sys::SKL_STOP_CONTEXT_FULL => StopReason::ContextFull,
                sys::SKL_STOP_ERROR => StopReason::Error,
                _ => StopReason::MaxTokens,
            },
            prompt_seconds: res.prompt_seconds,
            decode_seconds: res.decode_seconds,
        }
    }
}

/// One token from a [`Generator`]: like [`Token`], with the text copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedToken {
    /// The token id; -1 for a last item that only brings text still pending at the end.
    pub id: i32,
    /// The text this token completes ("" while a multi-byte character is pending), or
    /// None when the model has no tokenizer.
    pub piece: Option<String>,
}

/// Pull-style generation over an `skl_generator`: an [`Iterator`] of tokens, made by
/// [`Context::generator`].  Each `next()` is one `skl_generator_next` (evaluate the
/// previous token, sample the next).  It borrows the context mutably, so no other call
/// reaches the context while it lives, as the C contract requires; dropping it stops
/// generation, leaving the prompt and every token handed out but the last in the cache.
/// `Send`, not `Sync`.
pub struct Generator<'c, 'm> {
    ptr: NonNull<sys::skl_generator>,
    done: bool,
    _ctx: PhantomData<&'c mut Context<'m>>,
}

unsafe impl Send for Generator<'_, '_> {}

impl Drop for Generator<'_, '_> {
    fn drop(&mut self) {
        unsafe { sys::skl_generator_free(self.ptr.as_ptr()) }
    }
}

impl Generator<'_, '_> {
    /// Counts and timings so far; `stop_reason` is meaningful once `next()` has returned
    /// None (or an error: [`StopReason::Error`]).
    pub fn result(&self) -> GenerateResult {
        let res: sys::skl_generate_result = filled(|p, n| unsafe { sys::skl_generator_result(self.ptr.as_ptr(), p, n) })
            .expect("skl_generator_result");
        GenerateResult::from_c(&res)
    }
}

impl Iterator for Generator<'_, '_> {
    type Item = Result<GeneratedToken>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let (mut id, mut p, mut len) = (-1, ptr::null(), 0usize);
        let rc = unsafe { sys::skl_generator_next(self.ptr.as_ptr(), &mut id, &mut p, &mut len) };
        if let Err(e) = check(rc) {
            self.done = true;
            return Some(Err(e));
        }
        // The piece is the generator's until its next call: copy it.
        let piece = if p.is_null() {
            None
        } else {
            match unsafe { piece(p, len) } {
                Ok(t) => Some(t.to_owned()),
                Err(e) => return Some(Err(e)),
            }
        };
        if id < 0 {
            self.done = true;
            if piece.as_deref().map_or(true, str::is_empty) {
                return None;
            }
        }
        Some(Ok(GeneratedToken { id, piece }))
    }
}

struct CallbackState<F> {
    f: F,
    panic: Option<Box<dyn std::any::Any + Send + 'static>>,
}

unsafe extern "C" fn on_token_trampoline<F>(token: i32, piece: *const c_char, user_data: *mut c_void) -> c_int
where
    F: FnMut(Token<'_>) -> ControlFlow<()>,
{
    let state = &mut *(user_data as *mut CallbackState<F>);
    if state.panic.is_some() {
        return 1;
    }
    let text = if piece.is_null() { None } else { Some(CStr::from_ptr(piece).to_string_lossy()) };
    let f = &mut state.f;
    // A panic must not unwind through C: catch it, stop generation, resume it afterwards.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(Token { id: token, piece: text.as_deref() }))) {
        Ok(ControlFlow::Continue(())) => 0,
        Ok(ControlFlow::Break(())) => 1,
        Err(payload) => {
            state.panic = Some(payload);
            1
        }
    }
}

impl<'m> Context<'m> {
    pub fn new(model: &'m Model, params: &ContextParams) -> Result<Context<'m>> {
        let mut p = params_init(sys::skl_context_params_init);
        p.n_ctx = params.n_ctx;
        p.n_threads = params.n_threads;
        p.n_batch = params.n_batch;
        p.logits_all = params.logits_all;
        let mut out = ptr::null_mut();
        check(unsafe { sys::skl_context_create(model.as_ptr(), &p, &mut out) })?;
        Ok(Context {
            ptr: out_ptr(out, "skl_context_create")?,
            n_vocab: model.config().vocab_size as usize,
            model,
        })
    }

    pub fn as_ptr(&mut self) -> *mut sys::skl_context {
        self.ptr.as_ptr()
    }

    /// Tokens in the KV cache.
    pub fn n_past(&self) -> i32 {
        unsafe { sys::skl_context_n_past(self.ptr.as_ptr()) }
    }

    /// Capacity of the KV cache.
    pub fn n_ctx(&self) -> i32 {
        unsafe { sys::skl_context_n_ctx(self.ptr.as_ptr()) }
    }

    /// Append tokens and run them through the model; on error the context is unchanged.
    pub fn eval(&mut self, tokens: &[i32]) -> Result<()> {
        let n = len_i32(tokens.len(), "tokens")?;
        check(unsafe { sys::skl_eval(self.ptr.as_ptr(), tokens.as_ptr(), n) }).map(|_| ())
    }

    /// Logits of the last eval, `[rows * vocab]` (rows = tokens of that eval with
    /// `logits_all`, else 1); None before any eval.  Borrowed: the next eval needs
    /// `&mut self`, so the slice cannot outlive the data.
    pub fn logits(&self) -> Option<&[f32]> {
        let mut rows = 0;
        let p = unsafe { sys::skl_logits(self.ptr.as_ptr(), &mut rows) };
        if p.is_null() {
            None
        } else {
            Some(unsafe { std::slice::from_raw_parts(p, rows as usize * self.n_vocab) })
        }
    }

    pub fn n_vocab(&self) -> usize {
        self.n_vocab
    }

    /// Keep the first `n_keep` tokens of the cache.
    pub fn truncate(&mut self, n_keep: i32) -> Result<()> {
        check(unsafe { sys::skl_kv_truncate(self.ptr.as_ptr(), n_keep) }).map(|_| ())
    }

    /// Empty the cache.
    pub fn reset(&mut self) -> Result<()> {
        check(unsafe { sys::skl_kv_reset(self.ptr.as_ptr()) }).map(|_| ())
    }

    /// Tokenize `prompt` with the model's tokenizer, then [`Context::generate`].
    pub fn generate_text<F>(&mut self, prompt: &str, params: &GenerateParams, on_token: F) -> Result<GenerateResult>
    where
        F: FnMut(Token<'_>) -> ControlFlow<()>,
    {
        let ids = self.model.tokenize(prompt)?;
        self.generate(&ids, params, on_token)
    }

    /// Call `f` with the C form of `params` (the stop tokens, with the model's
    /// end-of-text token when `stop_at_eos`, and the sampler settings live until it returns).
    fn with_c_params<R>(&self, params: &GenerateParams, f: impl FnOnce(&sys::skl_generate_params) -> R) -> Result<R> {
        let mut stops = params.stop_tokens.clone();
        if let (true, Some(eos)) = (params.stop_at_eos, self.model.eos_token()) {
            stops.push(eos);
        }
        let sampling = params.sampling();
        let mut gp = params_init(sys::skl_generate_params_init);
        gp.sampling = &sampling;
        gp.max_tokens = params.max_tokens;
        gp.stop_tokens = if stops.is_empty() { ptr::null() } else { stops.as_ptr() };
        gp.n_stop_tokens = len_i32(stops.len(), "stop_tokens")?;
        Ok(f(&gp))
    }

    /// `skl_generate`: evaluate the prompt, then sample and hand each token to `on_token`
    /// until max_tokens, a stop token, a full cache, or `ControlFlow::Break`.  With a
    /// tokenizer, `Token::piece` is the text; bytes still pending at the end come in one
    /// last call with id -1 (its return value is ignored).  The last real token handed
    /// over is not evaluated into the cache (include it in the next prompt).  A panic in
    /// `on_token` stops generation and is resumed here.  [`Context::generator`] is the
    /// same as an iterator.
    pub fn generate<F>(&mut self, prompt: &[i32], params: &GenerateParams, on_token: F) -> Result<GenerateResult>
    where
        F: FnMut(Token<'_>) -> ControlFlow<()>,
    {
        let n_prompt = len_i32(prompt.len(), "prompt")?;
        let mut state = CallbackState { f: on_token, panic: None };
        let mut res = sys::skl_generate_result::default();
        let ctx = self.ptr.as_ptr();
        let rc = self.with_c_params(params, |gp| unsafe {
            sys::skl_generate(
                ctx,
                prompt.as_ptr(),
                n_prompt,
                gp,
                Some(on_token_trampoline::<F>),
                &mut state as *mut CallbackState<F> as *mut c_void,
                &mut res,
                std::mem::size_of_val(&res),
            )
        })?;
        if let Some(payload) = state.panic {
            std::panic::resume_unwind(payload);
        }
        check(rc)?;
        Ok(GenerateResult::from_c(&res))
    }

    /// `skl_generator_create`: evaluate the prompt now, and return an iterator that
    /// samples one token per `next()` (see [`Generator`]); the same tokens as
    /// [`Context::generate`] with the same params.
    pub fn generator<'c>(&'c mut self, prompt: &[i32], params: &GenerateParams) -> Result<Generator<'c, 'm>> {
        let n_prompt = len_i32(prompt.len(), "prompt")?;
        let mut out = ptr::null_mut();
        let ctx = self.ptr.as_ptr();
        check(self.with_c_params(params, |gp| unsafe {
            sys::skl_generator_create(ctx, prompt.as_ptr(), n_prompt, gp, &mut out)
        })?)?;
        Ok(Generator { ptr: out_ptr(out, "skl_generator_create")?, done: false, _ctx: PhantomData })
    }

    /// Tokenize `prompt` with the model's tokenizer, then [`Context::generator`].
    pub fn generator_text<'c>(&'c mut self, prompt: &str, params: &GenerateParams) -> Result<Generator<'c, 'm>> {
        let ids = self.model.tokenize(prompt)?;
        self.generator(&ids, params)
    }
}

// ----------------------------------------------------------------- sampler

/// Sampling settings plus RNG state (`skl_sampler`): `Send`, not `Sync`.
pub struct Sampler {
    ptr: NonNull<sys::skl_sampler>,
}

unsafe impl Send for Sampler {}

impl Drop for Sampler {
    fn drop(&mut self) {
        unsafe { sys::skl_sampler_free(self.ptr.as_ptr()) }
    }
}

impl Sampler {
    /// A sampler with the sampling fields of `params` (temperature, top_k, top_p, seed).
    pub fn new(params: &GenerateParams) -> Result<Sampler> {
        let p = params.sampling();
        let mut out = ptr::null_mut();
        check(unsafe { sys::skl_sampler_create(&p, &mut out) })?;
        Ok(Sampler { ptr: out_ptr(out, "skl_sampler_create")? })
    }

    /// A token id from one row of logits.
    pub fn sample(&mut self, logits: &[f32]) -> Result<i32> {
        let n = len_i32(logits.len(), "logits")?;
        let mut tok = 0;
        check(unsafe { sys::skl_sample(self.ptr.as_ptr(), logits.as_ptr(), n, &mut tok) })?;
        Ok(tok)
    }
}

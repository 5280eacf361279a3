//! Raw declarations of `include/skipless.h`, written by hand in the header's order,
//! except the version and the status codes, which build.rs generates from the header.
//!
//! Names and layouts are the C ones; `tests/header.rs` parses the header and these
//! declarations and fails when they drift apart.  Every `skl_*_params` begins with
//! `struct_size`: fill it with its `skl_*_params_init(&mut p, size_of_val(&p))`; output
//! structs are passed with their size.  Enums are `c_int` aliases with one constant per
//! enumerator.  Use the safe `skipless` crate unless you need the raw calls.
#![allow(non_camel_case_types)]

use std::os::raw::{c_char, c_double, c_float, c_int, c_uint, c_void};

// The version and the status list are written once, in the header: build.rs generates
// their constants (SKL_VERSION_*, SKL_OK, SKL_ERR_*) and the X-macro `skl_status_list!`.
include!(concat!(env!("OUT_DIR"), "/header.rs"));

// ------------------------------------------------------------------ status

pub type skl_status = c_int;

// --------------------------------------------------------------------- log

pub type skl_log_level = c_int;
pub const SKL_LOG_ERROR: skl_log_level = 0;
pub const SKL_LOG_WARN: skl_log_level = 1;
pub const SKL_LOG_INFO: skl_log_level = 2;
pub const SKL_LOG_DEBUG: skl_log_level = 3;

pub type skl_log_fn =
    Option<unsafe extern "C" fn(level: skl_log_level, message: *const c_char, user_data: *mut c_void)>;
pub type skl_progress_fn =
    Option<unsafe extern "C" fn(done: u64, total: u64, user_data: *mut c_void) -> c_int>;

// ------------------------------------------------------------------- model

#[repr(C)]
pub struct skl_model {
    _opaque: [u8; 0],
}

pub type skl_dtype = c_int;
pub const SKL_DTYPE_F32: skl_dtype = 0;
pub const SKL_DTYPE_F16: skl_dtype = 1;
pub const SKL_DTYPE_BF16: skl_dtype = 2;
pub const SKL_DTYPE_SAME: skl_dtype = 3;
pub const SKL_DTYPE_Q8_0: skl_dtype = 4;
pub const SKL_DTYPE_Q4_0: skl_dtype = 5;

pub type skl_activation = c_int;
pub const SKL_ACT_SILU: skl_activation = 0;
pub const SKL_ACT_GELU: skl_activation = 1;
pub const SKL_ACT_GELU_TANH: skl_activation = 2;
pub const SKL_ACT_RELU: skl_activation = 3;

pub type skl_block_type = c_int;
pub const SKL_BLOCK_SERIAL: skl_block_type = 0;
pub const SKL_BLOCK_PARALLEL: skl_block_type = 1;

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct skl_hparams {
    pub hidden_size: i32,
    pub num_hidden_layers: i32,
    pub num_attention_heads: i32,
    pub num_key_value_heads: i32,
    pub head_dim: i32,
    pub intermediate_size: i32,
    pub vocab_size: i32,
    pub max_position_embeddings: i32,
    pub rotary_dim: i32,
    pub hidden_act: skl_activation,
    pub block_type: skl_block_type,
    pub rope_theta: c_float,
    pub partial_rotary_factor: c_float,
    pub rms_norm_eps: c_float,
    pub use_rope: bool,
    pub tie_word_embeddings: bool,
    pub glu: bool,
    pub final_norm: bool,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct skl_weight_counts {
    pub embed: u64,
    pub q: u64,
    pub k: u64,
    pub v: u64,
    pub o: u64,
    pub gate: u64,
    pub up: u64,
    pub down: u64,
    pub head: u64,
    pub bias: u64,
    pub norm: u64,
    pub linear_total: u64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct skl_model_params {
    pub struct_size: u32,
    pub progress: skl_progress_fn,
    pub progress_user_data: *mut c_void,
    pub use_mmap: bool,
}

// ----------------------------------------------------------------- context

#[repr(C)]
pub struct skl_context {
    _opaque: [u8; 0],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct skl_context_params {
    pub struct_size: u32,
    pub n_ctx: i32,
    pub n_threads: i32,
    pub n_batch: i32,
    pub logits_all: bool,
}

// ---------------------------------------------------------------- sampling

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct skl_sampler_params {
    pub struct_size: u32,
    pub temperature: c_float,
    pub top_k: i32,
    pub top_p: c_float,
    pub seed: u64,
}

#[repr(C)]
pub struct skl_sampler {
    _opaque: [u8; 0],
}

// --------------------------------------------------------------- tokenizer

pub const SKL_TOKENIZE_PLAIN: c_uint = 1;

#[repr(C)]
pub struct skl_detokenizer {
    _opaque: [u8; 0],
}

#[repr(C)]
pub struct skl_generator {
    _opaque: [u8; 0],
}

// -------------------------------------------------------------- generation

pub type skl_token_fn =
    Option<unsafe extern "C" fn(token: i32, piece: *const c_char, user_data: *mut c_void) -> c_int>;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct skl_generate_params {
    pub struct_size: u32,
    pub sampling: *const skl_sampler_params,
    pub max_tokens: i32,
    pub stop_tokens: *const i32,
    pub n_stop_tokens: i32,
}

pub type skl_stop_reason = c_int;
pub const SKL_STOP_MAX_TOKENS: skl_stop_reason = 0;
pub const SKL_STOP_STOP_TOKEN: skl_stop_reason = 1;
pub const SKL_STOP_CALLBACK: skl_stop_reason = 2;
pub const SKL_STOP_CONTEXT_FULL: skl_stop_reason = 3;
pub const SKL_STOP_ERROR: skl_stop_reason = 4;

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct skl_generate_result {
    pub n_generated: i32,
    pub stop_token: i32,
    pub stop_reason: skl_stop_reason,
    pub prompt_seconds: c_double,
    pub decode_seconds: c_double,
}

// ------------------------------------------------------------------- merge

pub type skl_removal = c_int;
pub const SKL_REMOVE_AUTO: skl_removal = 0;
pub const SKL_REMOVE_QP: skl_removal = 1;
pub const SKL_REMOVE_KP: skl_removal = 2;
pub const SKL_REMOVE_VP: skl_removal = 3;
pub const SKL_REMOVE_Q: skl_removal = 4;
pub const SKL_REMOVE_P: skl_removal = 5;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct skl_merge_params {
    pub struct_size: u32,
    pub remove: skl_removal,
    pub verify: bool,
    pub n_probe_tokens: i32,
    pub probe_seed: u64,
    pub max_condition: c_double,
    pub progress: skl_progress_fn,
    pub progress_user_data: *mut c_void,
    pub dtype: skl_dtype,
    pub keep: *const *const c_char,
    pub n_keep: i32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct skl_merge_layer {
    pub layer: i32,
    pub removed_q: bool,
    pub removed_k: bool,
    pub removed_v: bool,
    pub removed_o: bool,
    pub weights_before: u64,
    pub weights_after: u64,
    pub condition: c_double,
    pub residual: c_double,
}

#[repr(C)]
#[derive(Debug)]
pub struct skl_merge_report {
    pub removal: skl_removal,
    pub n_layers: i32,
    pub weights_before: u64,
    pub weights_after: u64,
    pub max_condition: c_double,
    pub max_residual: c_double,
    pub verify_error: c_double,
    pub n_probe_tokens: i32,
    pub seconds: c_double,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct skl_plan_row {
    pub removal: skl_removal,
    pub applicable: bool,
    pub lossless: bool,
    pub total: u64,
    pub removed: u64,
    pub after: u64,
    pub saving_percent: c_double,
    pub speedup_bound: c_double,
    pub note: *const c_char,
}

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct skl_plan {
    pub block_type: skl_block_type,
    pub hidden_size: i32,
    pub kv_dim: i32,
    pub intermediate_size: i32,
    pub num_hidden_layers: i32,
    pub vocab_size: i32,
    pub glu: bool,
    pub final_norm: bool,
    pub total: u64,
    pub n_rows: i32,
}

// -------------------------------------------------------------------- save

pub type skl_save_format = c_int;
pub const SKL_SAVE_AUTO: skl_save_format = 0;
pub const SKL_SAVE_DIR: skl_save_format = 1;
pub const SKL_SAVE_FILE: skl_save_format = 2;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct skl_save_params {
    pub struct_size: u32,
    pub format: skl_save_format,
    pub max_shard_size: u64,
}

// ---------------------------------------------------------------- quantize

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct skl_quantize_params {
    pub struct_size: u32,
    pub dtype: skl_dtype,
    pub keep: *const *const c_char,
    pub n_keep: i32,
    pub progress: skl_progress_fn,
    pub progress_user_data: *mut c_void,
}

// -------------------------------------------------------------------- BLAS

#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct skl_blas_info {
    pub openblas: bool,
    pub user_coretype: bool,
    pub core_changed: bool,
    pub auto_core: bool,
    pub detected_core: *const c_char,
    pub core: *const c_char,
    pub cpu_isa: *const c_char,
}

extern "C" {
    pub fn skl_strerror(status: c_int) -> *const c_char;
    pub fn skl_status_name(status: c_int) -> *const c_char;
    pub fn skl_last_error() -> *const c_char;
    pub fn skl_version() -> *const c_char;
    pub fn skl_version_number() -> c_int;
    pub fn skl_cpu_kernels() -> *const c_char;
    pub fn skl_log_set(fn_: skl_log_fn, user_data: *mut c_void);

    pub fn skl_dtype_name(dtype: skl_dtype) -> *const c_char;
    pub fn skl_dtype_parse(name: *const c_char, out: *mut skl_dtype) -> c_int;
    pub fn skl_model_params_init(params: *mut skl_model_params, size: usize) -> c_int;
    pub fn skl_model_load(path: *const c_char, params: *const skl_model_params, out: *mut *mut skl_model)
        -> c_int;
    pub fn skl_model_free(model: *mut skl_model);
    pub fn skl_model_hparams(model: *const skl_model, out: *mut skl_hparams, size: usize) -> c_int;
    pub fn skl_model_decode_bytes(model: *const skl_model) -> u64;
    pub fn skl_model_weight_bytes(model: *const skl_model) -> u64;
    pub fn skl_model_decode_regions(
        model: *const skl_model,
        bases: *mut *const c_void,
        sizes: *mut u64,
        n_max: usize,
        n_regions: *mut usize,
    ) -> c_int;
    pub fn skl_model_weight_dtype(model: *const skl_model) -> *const c_char;
    pub fn skl_model_dtype_weights(model: *const skl_model, dtype: skl_dtype) -> u64;
    pub fn skl_model_weight_counts(model: *const skl_model, out: *mut skl_weight_counts, size: usize) -> c_int;
    pub fn skl_model_has_proj(model: *const skl_model, layer: i32, which: c_char) -> c_int;

    pub fn skl_context_params_init(params: *mut skl_context_params, size: usize) -> c_int;
    pub fn skl_context_create(
        model: *const skl_model,
        params: *const skl_context_params,
        out: *mut *mut skl_context,
    ) -> c_int;
    pub fn skl_context_free(ctx: *mut skl_context);
    pub fn skl_eval(ctx: *mut skl_context, tokens: *const i32, n_tokens: i32) -> c_int;
    pub fn skl_logits(ctx: *const skl_context, n_rows: *mut i32) -> *const c_float;
    pub fn skl_context_n_past(ctx: *const skl_context) -> i32;
    pub fn skl_context_n_ctx(ctx: *const skl_context) -> i32;
    pub fn skl_kv_truncate(ctx: *mut skl_context, n_keep: i32) -> c_int;
    pub fn skl_kv_reset(ctx: *mut skl_context) -> c_int;
    pub fn skl_model_kv_bytes(model: *const skl_model, n_ctx: i32) -> u64;

    pub fn skl_sampler_params_init(params: *mut skl_sampler_params, size: usize) -> c_int;
    pub fn skl_sampler_create(params: *const skl_sampler_params, out: *mut *mut skl_sampler) -> c_int;
    pub fn skl_sampler_free(sampler: *mut skl_sampler);
    pub fn skl_sample(sampler: *mut skl_sampler, logits: *const c_float, n_vocab: i32, token: *mut i32)
        -> c_int;

    pub fn skl_model_has_tokenizer(model: *const skl_model) -> bool;
    pub fn skl_tokenizer_size(model: *const skl_model) -> i32;
    pub fn skl_token_eos(model: *const skl_model) -> i32;
    pub fn skl_tokenize(
        model: *const skl_model,
        text: *const c_char,
        text_len: usize,
        tokens: *mut i32,
        n_max: usize,
        n_tokens: *mut usize,
        flags: c_uint,
    ) -> c_int;
    pub fn skl_detokenize(
        model: *const skl_model,
        tokens: *const i32,
        n_tokens: usize,
        text: *mut c_char,
        text_cap: usize,
        text_len: *mut usize,
    ) -> c_int;
    pub fn skl_detokenizer_create(model: *const skl_model, out: *mut *mut skl_detokenizer) -> c_int;
    pub fn skl_detokenizer_push(
        d: *mut skl_detokenizer,
        token: i32,
        piece: *mut *const c_char,
        piece_len: *mut usize,
    ) -> c_int;
    pub fn skl_detokenizer_flush(d: *mut skl_detokenizer, piece: *mut *const c_char, piece_len: *mut usize)
        -> c_int;
    pub fn skl_detokenizer_free(d: *mut skl_detokenizer);

    pub fn skl_generate_params_init(params: *mut skl_generate_params, size: usize) -> c_int;
    pub fn skl_generator_create(
        ctx: *mut skl_context,
        prompt_tokens: *const i32,
        n_prompt: i32,
        params: *const skl_generate_params,
        out: *mut *mut skl_generator,
    ) -> c_int;
    pub fn skl_generator_next(
        gen: *mut skl_generator,
        token: *mut i32,
        piece: *mut *const c_char,
        piece_len: *mut usize,
    ) -> c_int;
    pub fn skl_generator_result(gen: *const skl_generator, out: *mut skl_generate_result, size: usize) -> c_int;
    pub fn skl_generator_free(gen: *mut skl_generator);
    pub fn skl_generate(
        ctx: *mut skl_context,
        prompt_tokens: *const i32,
        n_prompt: i32,
        params: *const skl_generate_params,
        on_token: skl_token_fn,
        user_data: *mut c_void,
        result: *mut skl_generate_result,
        result_size: usize,
    ) -> c_int;

    pub fn skl_removal_name(r: skl_removal) -> *const c_char;
    pub fn skl_removal_parse(name: *const c_char, out: *mut skl_removal) -> c_int;
    pub fn skl_merge_params_init(params: *mut skl_merge_params, size: usize) -> c_int;
    pub fn skl_model_merge(
        model: *const skl_model,
        params: *const skl_merge_params,
        out: *mut *mut skl_model,
        report: *mut *mut skl_merge_report,
    ) -> c_int;
    pub fn skl_merge_report_layer(report: *const skl_merge_report, i: i32) -> *const skl_merge_layer;
    pub fn skl_merge_report_free(report: *mut skl_merge_report);

    pub fn skl_plan_config(config_path: *const c_char, out: *mut *mut skl_plan) -> c_int;
    pub fn skl_model_plan(model: *const skl_model, out: *mut *mut skl_plan) -> c_int;
    pub fn skl_plan_row_at(plan: *const skl_plan, i: i32) -> *const skl_plan_row;
    pub fn skl_plan_free(plan: *mut skl_plan);

    pub fn skl_model_save(model: *const skl_model, path: *const c_char, format: skl_save_format) -> c_int;
    pub fn skl_save_params_init(params: *mut skl_save_params, size: usize) -> c_int;
    pub fn skl_model_save_v2(model: *const skl_model, path: *const c_char, params: *const skl_save_params) -> c_int;
    pub fn skl_model_merge_to(
        model: *const skl_model,
        path: *const c_char,
        params: *const skl_merge_params,
        save: *const skl_save_params,
        report: *mut *mut skl_merge_report,
    ) -> c_int;

    pub fn skl_quantize_params_init(params: *mut skl_quantize_params, size: usize) -> c_int;
    pub fn skl_model_quantize_to(
        model: *const skl_model,
        path: *const c_char,
        params: *const skl_quantize_params,
        save: *const skl_save_params,
    ) -> c_int;

    pub fn skl_blas_get_info(out: *mut skl_blas_info, size: usize) -> c_int;
    pub fn skl_blas_set_auto_core(enable: bool) -> c_int;
}

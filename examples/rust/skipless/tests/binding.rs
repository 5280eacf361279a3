//! The safe binding against the C library, its CLI and the generated test models
//! (the same cases as examples/python/tests).
mod common;

use common::*;
use skipless::{Context, ContextParams, Dtype, ErrorKind, GenerateParams, MergeParams, Model, Removal, SaveFormat,
               SaveParams, StopReason};
use std::ops::ControlFlow;

const SERIAL: &str = "serial_mha_silu_glu";
const PARALLEL: &str = "parallel_gqa_tanh_mlp_rope25_tied_f16";

fn logits_of(model: &Model, tokens: &[i32], all: bool) -> Vec<f32> {
    let mut ctx = Context::new(model, &ContextParams { logits_all: all, ..Default::default() }).unwrap();
    ctx.eval(tokens).unwrap();
    ctx.logits().unwrap().to_vec()
}

fn generate_ids(model: &Model, prompt: &[i32], params: &GenerateParams) -> (Vec<i32>, skipless::GenerateResult) {
    let mut ctx = Context::new(model, &ContextParams::default()).unwrap();
    let mut ids = Vec::new();
    let res = ctx
        .generate(prompt, params, |t| {
            assert!(t.piece.is_none() || t.id >= -1);
            ids.push(t.id);
            ControlFlow::Continue(())
        })
        .unwrap();
    (ids, res)
}

#[test]
fn load_every_valid_model() {
    let m = manifest();
    for e in m.get("models").arr() {
        let model = Model::load(models_dir().join(e.get("path").str())).unwrap();
        let cfg = model.config();
        let block = format!("{:?}", cfg.block_type).to_lowercase();
        assert_eq!(block, e.get("block_type").str());
        assert!(cfg.vocab_size > *e.get("tokens").ints().iter().max().unwrap());
        let w = model.weight_counts();
        assert_eq!(w.linear_total, w.embed + w.q + w.k + w.v + w.o + w.gate + w.up + w.down + w.head);
    }
}

#[test]
fn merge_report_save_and_reload() {
    let (path, tokens) = test_model(SERIAL);
    let model = Model::load(&path).unwrap();
    let before = model.weight_counts().linear_total;
    let (merged, report) = model.merge(&MergeParams::default()).unwrap();
    assert_eq!(report.removal, Removal::Qp);
    assert_eq!(report.weights_before, before);
    assert_eq!(report.weights_after, merged.weight_counts().linear_total);
    assert!(report.weights_after < before);
    assert_eq!(report.layers.len(), model.config().num_hidden_layers as usize);
    assert!(report.layers.iter().all(|l| l.removed_q && l.removed_o));
    assert!(report.verify_error.unwrap() < 1e-4);
    assert!(!merged.has_proj(0, 'q').unwrap());
    assert!(model.has_proj(0, 'q').unwrap());
    let (a, b) = (logits_of(&model, &tokens, false), logits_of(&merged, &tokens, false));
    let scale = a.iter().fold(0f32, |m, x| m.max(x.abs()));
    let diff = a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(diff / scale < 1e-4, "merged logits differ by {}", diff / scale);
    let dir = temp_dir("merge");
    let out = dir.join("merged.safetensors");
    merged.save(&out, SaveFormat::Auto).unwrap();
    let back = Model::load(&out).unwrap();
    assert_eq!(logits_of(&back, &tokens, false), b);
    let err = back.merge(&MergeParams { remove: Removal::Qp, ..Default::default() }).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyMerged);
    std::fs::remove_dir_all(dir).unwrap();

    let parallel = Model::load(test_model(PARALLEL).0).unwrap();
    let (_, rep) = parallel.merge(&MergeParams { verify: false, ..Default::default() }).unwrap();
    assert_eq!(rep.removal, Removal::Q);
    assert_eq!(rep.verify_error, None);
}

/// The streaming merge writes the files of merge + save_with, byte for byte; a refused
/// merge writes nothing.
#[test]
fn merge_to() {
    let model = Model::load(test_model(SERIAL).0).unwrap();
    let dir = temp_dir("merge_to");
    let (a, b) = (dir.join("a"), dir.join("b"));
    let sp = SaveParams { max_shard_size: Some(5000), ..Default::default() };
    let mp = MergeParams { verify: false, ..Default::default() };
    let (merged, rep) = model.merge(&mp).unwrap();
    merged.save_with(&a, &sp).unwrap();
    let streamed = model.merge_to(&b, &MergeParams::default(), &sp).unwrap();
    assert_eq!(streamed.removal, rep.removal);
    assert_eq!(streamed.weights_after, rep.weights_after);
    assert!(streamed.verify_error.unwrap() < 1e-4);
    let mut names: Vec<_> = std::fs::read_dir(&a).unwrap().map(|f| f.unwrap().file_name()).collect();
    names.sort();
    assert!(names.len() > 3, "sharded: {:?}", names);
    for n in &names {
        assert_eq!(std::fs::read(a.join(n)).unwrap(), std::fs::read(b.join(n)).unwrap(), "{:?}", n);
    }
    let back = Model::load(&b).unwrap();
    let err = back.merge_to(dir.join("c"), &MergeParams { remove: rep.removal, ..mp }, &sp).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyMerged);
    assert!(!dir.join("c").exists());
}

/// quantize_to makes the model models.py quantized itself: the same weights per dtype and,
/// as the same tensors, bitwise the same logits; a bad keep name writes nothing.
#[test]
fn quantize_to() {
    let m = manifest();
    let q = m.get("quantized").arr().iter().find(|e| e.get("name").str() == "q4_serial_mha_silu_glu_keep_head").unwrap();
    let model = Model::load(test_model(SERIAL).0).unwrap();
    let dir = temp_dir("quantize_to");
    model.quantize_to(dir.join("q"), Dtype::Q4_0, &["lm_head"], &SaveParams::default()).unwrap();
    let mine = Model::load(dir.join("q")).unwrap();
    let theirs = Model::load(models_dir().join(q.get("path").str())).unwrap();
    assert_eq!(mine.weight_dtype(), "mixed");
    assert_eq!(mine.dtype_weights(Dtype::Q4_0), theirs.dtype_weights(Dtype::Q4_0));
    assert_eq!(mine.dtype_weights(Dtype::F32), theirs.dtype_weights(Dtype::F32));
    assert!(mine.dtype_weights(Dtype::Q4_0) > 0 && mine.dtype_weights(Dtype::Q8_0) == 0);
    let tokens = q.get("tokens").ints();
    assert_eq!(logits_of(&mine, &tokens, true), logits_of(&theirs, &tokens, true));
    let err = model.quantize_to(dir.join("x"), Dtype::Q8_0, &["embed_tokens"], &SaveParams::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArg);
    assert!(!dir.join("x").exists());
}

/// A sharded model (manifest "sharded") loads; saved with its shard limit it gives the
/// same shards and logits, and with the default limit one model.safetensors.
#[test]
fn save_sharded() {
    let m = manifest();
    let e = &m.get("sharded").arr()[0];
    let tokens = e.get("tokens").ints();
    let model = Model::load(models_dir().join(e.get("path").str())).unwrap();
    let want = logits_of(&model, &tokens, false);
    let limit = match e.get("max_shard_size") {
        Json::Num(n) => *n as u64,
        _ => panic!("max_shard_size"),
    };
    let dir = temp_dir("shards");
    let out = dir.join("m");
    model.save_with(&out, &SaveParams { max_shard_size: Some(limit), ..Default::default() }).unwrap();
    let mut shards: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|f| f.unwrap().file_name().into_string().unwrap())
        .filter(|f| f.ends_with(".safetensors"))
        .collect();
    shards.sort();
    let expect: Vec<String> = e.get("shards").arr().iter().map(|s| s.str().to_string()).collect();
    assert_eq!(shards, expect);
    assert!(out.join("model.safetensors.index.json").exists());
    assert_eq!(logits_of(&Model::load(&out).unwrap(), &tokens, false), want);
    model.save_with(&out, &SaveParams::default()).unwrap();
    assert!(out.join("model.safetensors").exists() && !out.join("model.safetensors.index.json").exists());
    assert_eq!(logits_of(&Model::load(&out).unwrap(), &tokens, false), want);
    let err = model.save_with(&out, &SaveParams { max_shard_size: Some(0), ..Default::default() }).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArg);
    std::fs::remove_dir_all(dir).unwrap();
}

fn decode_bytes_of(path: &std::path::Path, model: &Model) -> u64 {
    let cfg = model.config();
    decode_bytes_of_file(path, cfg.vocab_size, cfg.tie_word_embeddings)
}

#[test]
fn decode_bytes_equal_the_file() {
    for e in manifest().get("models").arr() {
        let path = models_dir().join(e.get("path").str());
        let model = Model::load(&path).unwrap();
        assert_eq!(model.decode_bytes(), decode_bytes_of(&path, &model), "{}", e.get("name").str());
    }
}

#[test]
fn weight_bytes_equal_the_file() {
    for e in manifest().get("models").arr() {
        let path = models_dir().join(e.get("path").str());
        let model = Model::load(&path).unwrap();
        let want: u64 = safetensors_tensors(&path).iter().map(|t| t.2).sum();
        assert_eq!(model.weight_bytes(), want, "{}", e.get("name").str());
    }
}

#[test]
fn kv_bytes() {
    for e in manifest().get("models").arr() {
        let model = Model::load(&models_dir().join(e.get("path").str())).unwrap();
        let c = model.config();
        let per_position = 2 * (c.num_hidden_layers * c.num_key_value_heads * c.head_dim) as u64 * 4;
        for n in [1, 5, c.max_position_embeddings] {
            assert_eq!(model.kv_bytes(n), Some(n as u64 * per_position), "{}", e.get("name").str());
        }
        assert_eq!(model.kv_bytes(0), Some(c.max_position_embeddings as u64 * per_position));
        assert_eq!(model.kv_bytes(-1), None);
        assert_eq!(model.kv_bytes(c.max_position_embeddings + 1), None);
    }
}

#[test]
fn weight_dtype_follows_the_file() {
    let mut seen = Vec::new();
    for e in manifest().get("models").arr() {
        let path = models_dir().join(e.get("path").str());
        let want = weight_dtype_of_file(&path);
        assert_eq!(Model::load(&path).unwrap().weight_dtype(), want, "{}", e.get("name").str());
        seen.push(want);
    }
    for d in ["F32", "F16", "BF16"] {
        assert!(seen.iter().any(|s| s == d), "no test model stores its weights as {}", d);
    }
}

extern "C" {
    fn dlsym(handle: *mut std::os::raw::c_void, symbol: *const std::os::raw::c_char) -> *mut std::os::raw::c_void;
}

/// OpenBLAS's own name of the core it runs now (None: no openblas_get_corename in the
/// process, i.e. not a dynamically linked OpenBLAS).
fn openblas_corename() -> Option<String> {
    // RTLD_DEFAULT (NULL on glibc): libopenblas came in with libskipless at start-up.
    let f = unsafe { dlsym(std::ptr::null_mut(), b"openblas_get_corename\0".as_ptr() as *const _) };
    if f.is_null() {
        return None;
    }
    let f: unsafe extern "C" fn() -> *const std::os::raw::c_char = unsafe { std::mem::transmute(f) };
    Some(unsafe { std::ffi::CStr::from_ptr(f()) }.to_string_lossy().into_owned())
}

#[test]
fn blas_info_is_consistent() {
    let b = skipless::blas_info().unwrap();
    assert_eq!(skipless::blas_info().unwrap(), b, "the check runs once per process");
    assert!(b.auto_core);
    assert_eq!(skipless::blas_set_auto_core(false).unwrap_err().kind(), ErrorKind::InvalidArg, "after the check");
    if b.openblas {
        assert!(!b.core.is_empty() && !b.detected_core.is_empty(), "{:?}", b);
        assert_eq!(b.user_coretype, std::env::var_os("OPENBLAS_CORETYPE").is_some(), "{:?}", b);
    } else {
        assert_eq!((b.user_coretype, b.core_changed, b.core.as_str(), b.detected_core.as_str()),
                   (false, false, "", ""));
    }
    if b.core_changed {
        assert_ne!(b.core, b.detected_core);
        assert!(!b.user_coretype, "the user's OPENBLAS_CORETYPE is never overridden");
    } else {
        assert_eq!(b.core, b.detected_core);
    }
    // The core OpenBLAS reports now is the one the check left in place.
    assert_eq!(openblas_corename().as_deref(), if b.openblas { Some(b.core.as_str()) } else { None });
    // The ISA the header documents for this CPU, from /proc/cpuinfo's flags.
    let flags = cpu_flags();
    if !flags.is_empty() {
        let has = |f: &str| flags.iter().any(|x| x == f);
        let want = if ["avx512f", "avx512bw", "avx512vl", "avx512dq"].iter().all(|f| has(f)) {
            "AVX-512"
        } else if has("avx2") && has("fma") {
            "AVX2"
        } else if has("avx") {
            "AVX"
        } else {
            "SSE"
        };
        assert_eq!(b.cpu_isa, want);
    }
}

#[test]
fn cpu_kernels_follow_the_cpu_flags() {
    // The variant the header documents for this CPU, from /proc/cpuinfo's flags.
    let flags = cpu_flags();
    let has = |f: &str| flags.iter().any(|x| x == f);
    let avx2 = has("avx2") && has("fma") && has("f16c");
    let want = if avx2 && has("avx512f") { "avx512" } else if avx2 { "avx2" } else { "generic" };
    assert_eq!(skipless::cpu_kernels(), want);
}

#[test]
fn merge_dtype() {
    assert_eq!(MergeParams::default().dtype, Dtype::F32);
    for d in [Dtype::F32, Dtype::F16, Dtype::Bf16, Dtype::Same] {
        assert_eq!(Dtype::parse(d.name()).unwrap(), d);
    }
    let err = Dtype::parse("f64").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArg);
    assert!(err.message().contains("f64"));

    let (path, tokens) = test_model(PARALLEL); // F16 weights; merge "q" changes k_proj/v_proj
    let model = Model::load(&path).unwrap();
    let reference = logits_of(&model, &tokens, false);
    let scale = reference.iter().fold(0f32, |m, x| m.max(x.abs()));
    let dir = temp_dir("dtype");
    let mut sizes = Vec::new();
    for (dtype, tol, file_dtypes) in [
        (Dtype::F16, 1e-2, &["F16"][..]),
        (Dtype::F32, 1e-2, &["F16", "F32"][..]),
        (Dtype::Bf16, 5e-2, &["BF16", "F16"][..]),
        (Dtype::Same, 1e-2, &["F16"][..]),
    ] {
        let (merged, report) =
            model.merge(&MergeParams { remove: Removal::Q, dtype, ..Default::default() }).unwrap();
        // Rounding the changed weights to 11 (f16) or 8 (bf16) significant bits moves the
        // logits by about that relative amount, not more.
        let err = report.verify_error.expect("verification ran");
        assert!(err.is_finite() && err < tol, "{:?}: verify_error {}", dtype, err);
        let got = logits_of(&merged, &tokens, false);
        let diff = reference.iter().zip(&got).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(((diff / scale) as f64) < tol, "{:?}: logits differ by {}", dtype, diff / scale);
        // The saved file holds each tensor in its in-memory dtype, and the bytes a decoded
        // token reads are those of the file's tensors.
        let out = dir.join(format!("{}.safetensors", dtype.name()));
        merged.save(&out, SaveFormat::Auto).unwrap();
        let mut seen: Vec<String> = safetensors_tensors(&out).into_iter().map(|t| t.1).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen, file_dtypes, "{:?}", dtype);
        assert_eq!(merged.decode_bytes(), decode_bytes_of(&out, &merged), "{:?}", dtype);
        // Only new tensors in another dtype than the file's make the model "mixed".
        assert_eq!(merged.weight_dtype(), weight_dtype_of_file(&out), "{:?}", dtype);
        let want = if matches!(dtype, Dtype::F16 | Dtype::Same) { "F16" } else { "mixed" };
        assert_eq!(merged.weight_dtype(), want, "{:?}", dtype);
        sizes.push(merged.decode_bytes());
    }
    // q_proj is gone: stored in the file's own dtype, the merged model reads less.
    assert!(sizes[0] < model.decode_bytes());
    assert!(sizes[1] > sizes[0]);
    assert_eq!(sizes[2], sizes[0]);
    assert_eq!(sizes[3], sizes[0]);
    std::fs::remove_dir_all(dir).unwrap();

    let serial = Model::load(test_model(SERIAL).0).unwrap(); // F32 weights
    let (qp, _) = serial.merge(&MergeParams { remove: Removal::Qp, ..Default::default() }).unwrap();
    let (qp16, _) =
        serial.merge(&MergeParams { remove: Removal::Qp, dtype: Dtype::F16, ..Default::default() }).unwrap();
    assert_eq!((serial.weight_dtype().as_str(), qp.weight_dtype().as_str()), ("F32", "F32"));
    assert!(qp.decode_bytes() < serial.decode_bytes());
    assert!(qp16.decode_bytes() < qp.decode_bytes());
}

#[test]
fn plan_from_config_and_model_agree() {
    let (path, _) = test_model(SERIAL);
    let from_config = skipless::plan_config(path.join("config.json")).unwrap();
    let model = Model::load(&path).unwrap();
    let from_model = model.plan().unwrap();
    assert_eq!(from_config.total, model.weight_counts().linear_total);
    let key = |p: &skipless::Plan| p.rows.iter().map(|r| (r.removal, r.applicable, r.removed)).collect::<Vec<_>>();
    assert_eq!(key(&from_model), key(&from_config));
    assert_eq!(Removal::parse("qp").unwrap(), Removal::Qp);
    assert_eq!(Removal::Vp.name(), "vp");
    assert_eq!(Removal::parse("nonsense").unwrap_err().kind(), ErrorKind::InvalidArg);
    assert!(from_config.rows.len() >= 3 && from_config.rows.iter().all(|r| !r.note.is_empty()));
    let qp = from_config.rows.iter().find(|r| r.removal == Removal::Qp).unwrap();
    assert!(qp.applicable && qp.after == qp.total - qp.removed);
}

#[test]
fn decode_regions_sum_to_decode_bytes() {
    for e in manifest().get("models").arr() {
        let model = Model::load(models_dir().join(e.get("path").str())).unwrap();
        let regions = model.decode_regions().unwrap();
        assert!(!regions.is_empty() && regions.iter().all(|r| !r.is_empty()));
        assert_eq!(regions.iter().map(|r| r.len() as u64).sum::<u64>(), model.decode_bytes());
        let _touch: u64 = regions.iter().map(|r| r[r.len() - 1] as u64).sum(); // readable
    }
}

#[test]
fn logits_equal_cli() {
    let dir = temp_dir("logits");
    for name in [SERIAL, PARALLEL, "serial_mqa_gelunew_glu_rope50_bias_f16"] {
        let (path, tokens) = test_model(name);
        let list = tokens.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(",");
        let model = Model::load(&path).unwrap();
        let vocab = model.config().vocab_size as usize;
        for decode in [false, true] {
            let out = dir.join(format!("{}-{}.npy", name, decode));
            let mut args = vec!["logits", path.to_str().unwrap(), "--tokens", &list, "--out", out.to_str().unwrap()];
            if decode {
                args.push("--decode");
            }
            run_cli(&args);
            let (shape, want) = read_npy(&out);
            assert_eq!(shape, vec![tokens.len(), vocab]);
            let got = if decode {
                let mut ctx = Context::new(&model, &ContextParams::default()).unwrap();
                let mut rows = Vec::new();
                for t in &tokens {
                    ctx.eval(&[*t]).unwrap();
                    rows.extend_from_slice(ctx.logits().unwrap());
                }
                rows
            } else {
                logits_of(&model, &tokens, true)
            };
            assert_eq!(got, want, "{} decode={}", name, decode);
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn generate_with_seed_reproduces_and_equals_cli() {
    let (path, tokens) = test_model(SERIAL);
    let model = Model::load(&path).unwrap();
    let prompt = &tokens[..4];
    for seed in [7u64, 12345] {
        let params = GenerateParams { max_tokens: 20, seed, ..Default::default() };
        let (a, res) = generate_ids(&model, prompt, &params);
        let (b, _) = generate_ids(&model, prompt, &params);
        assert_eq!(a, b);
        assert_eq!((res.n_generated, res.stop_reason), (20, StopReason::MaxTokens));
        let list = prompt.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(",");
        let out = run_cli(&["generate", path.to_str().unwrap(), "--tokens", &list, "-n", "20", "--seed",
                            &seed.to_string()]);
        let cli: Vec<i32> = out.trim().split(',').map(|t| t.parse().unwrap()).collect();
        assert_eq!(a, cli);
    }
}

#[test]
fn stop_tokens_and_callback_stop() {
    let (path, tokens) = test_model(SERIAL);
    let model = Model::load(&path).unwrap();
    let prompt = &tokens[..3];
    let base = GenerateParams { max_tokens: 12, seed: 3, ..Default::default() };
    let (full, _) = generate_ids(&model, prompt, &base);
    let stop = full[5];
    let (got, res) = generate_ids(&model, prompt, &GenerateParams { stop_tokens: vec![stop], ..base.clone() });
    let first = full.iter().position(|t| *t == stop).unwrap();
    assert_eq!(got, full[..first].to_vec());
    assert_eq!((res.stop_reason, res.stop_token), (StopReason::StopToken, Some(stop)));

    // Breaking out of the closure: the context stays usable and continues the sequence.
    let mut ctx = Context::new(&model, &ContextParams::default()).unwrap();
    let mut taken = Vec::new();
    let res = ctx
        .generate(prompt, &base, |t| {
            taken.push(t.id);
            if taken.len() == 3 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
        })
        .unwrap();
    assert_eq!((res.stop_reason, res.n_generated), (StopReason::Callback, 3));
    assert_eq!(taken, full[..3].to_vec());
    assert_eq!(ctx.n_past(), prompt.len() as i32 + 2);
    ctx.eval(&[taken[2]]).unwrap();
    let cont = ctx.logits().unwrap().to_vec();
    let mut fresh = Context::new(&model, &ContextParams::default()).unwrap();
    fresh.eval(prompt).unwrap();
    for t in &taken {
        fresh.eval(&[*t]).unwrap();
    }
    assert_eq!(fresh.logits().unwrap(), &cont[..]);
}

/// The ids of a Generator run to its end, and its result.
fn generator_ids(model: &Model, prompt: &[i32], params: &GenerateParams) -> (Vec<i32>, skipless::GenerateResult) {
    let mut ctx = Context::new(model, &ContextParams::default()).unwrap();
    let mut gen = ctx.generator(prompt, params).unwrap();
    let ids: Vec<i32> = gen.by_ref().map(|t| t.unwrap()).map(|t| {
        assert!(t.piece.is_none());
        t.id
    }).collect();
    (ids, gen.result())
}

#[test]
fn generator_iterates_the_same_tokens_as_generate() {
    let (path, tokens) = test_model(SERIAL);
    let model = Model::load(&path).unwrap();
    let prompt = &tokens[..3];
    let base = GenerateParams { max_tokens: 12, seed: 3, ..Default::default() };
    let (full, res) = generate_ids(&model, prompt, &base);
    let (got, gres) = generator_ids(&model, prompt, &base);
    assert_eq!(got, full);
    assert_eq!((gres.n_generated, gres.stop_reason), (res.n_generated, StopReason::MaxTokens));
    let stop = full[5];
    let (got, gres) = generator_ids(&model, prompt, &GenerateParams { stop_tokens: vec![stop], ..base.clone() });
    assert_eq!(got, full[..full.iter().position(|t| *t == stop).unwrap()].to_vec());
    assert_eq!((gres.stop_reason, gres.stop_token), (StopReason::StopToken, Some(stop)));

    // take(3) and drop: the cache holds the prompt and the tokens but the last, as with Break.
    let mut ctx = Context::new(&model, &ContextParams::default()).unwrap();
    let taken: Vec<i32> = ctx.generator(prompt, &base).unwrap().take(3).map(|t| t.unwrap().id).collect();
    assert_eq!(taken, full[..3].to_vec());
    assert_eq!(ctx.n_past(), prompt.len() as i32 + 2);

    // Context full, and errors from the create.
    let mut small = Context::new(&model, &ContextParams { n_ctx: 8, ..Default::default() }).unwrap();
    let mut gen = small.generator(&[1, 2, 3], &GenerateParams { max_tokens: 50, temperature: 0.0, ..Default::default() })
        .unwrap();
    assert_eq!(gen.by_ref().count(), 8 - 3 + 1);
    assert_eq!(gen.result().stop_reason, StopReason::ContextFull);
    assert!(gen.next().is_none());
    drop(gen);
    assert_eq!(small.n_past(), 8);
    let mut ctx = Context::new(&model, &ContextParams::default()).unwrap();
    assert_eq!(ctx.generator(&[], &base).err().unwrap().kind(), ErrorKind::InvalidArg);
    let bad = GenerateParams { max_tokens: -1, ..base.clone() };
    assert_eq!(ctx.generator(&[1], &bad).err().unwrap().kind(), ErrorKind::InvalidArg);
}

#[test]
fn panic_in_callback_is_resumed_not_unwound_through_c() {
    let (path, tokens) = test_model(SERIAL);
    let model = Model::load(&path).unwrap();
    let mut ctx = Context::new(&model, &ContextParams::default()).unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ctx.generate(&tokens[..2], &GenerateParams::default(), |_| panic!("from the callback")).unwrap();
    }));
    assert!(r.is_err());
    ctx.eval(&[1]).unwrap(); // still usable
}

#[test]
fn context_full_ends_generation() {
    let model = Model::load(test_model(SERIAL).0).unwrap();
    let mut ctx = Context::new(&model, &ContextParams { n_ctx: 8, ..Default::default() }).unwrap();
    let mut n = 0;
    let params = GenerateParams { max_tokens: 50, temperature: 0.0, ..Default::default() };
    let res = ctx.generate(&[1, 2, 3], &params, |_| {
        n += 1;
        ControlFlow::Continue(())
    }).unwrap();
    assert_eq!((res.stop_reason, n, ctx.n_past()), (StopReason::ContextFull, 8 - 3 + 1, 8));
}

#[test]
fn bad_models_give_the_exact_error() {
    let m = manifest();
    let bad = m.get("bad").arr();
    assert!(bad.len() > 10);
    let code_of = |name: &str| -> i32 {
        // Header names SKL_ERR_X map to kinds through the table the sys crate mirrors.
        let kinds: Vec<(&str, i32)> = vec![
            ("SKL_ERR_INVALID_ARG", skipless::sys::SKL_ERR_INVALID_ARG),
            ("SKL_ERR_IO", skipless::sys::SKL_ERR_IO),
            ("SKL_ERR_TRUNCATED", skipless::sys::SKL_ERR_TRUNCATED),
            ("SKL_ERR_HEADER_SIZE", skipless::sys::SKL_ERR_HEADER_SIZE),
            ("SKL_ERR_JSON", skipless::sys::SKL_ERR_JSON),
            ("SKL_ERR_DUPLICATE_KEY", skipless::sys::SKL_ERR_DUPLICATE_KEY),
            ("SKL_ERR_HEADER", skipless::sys::SKL_ERR_HEADER),
            ("SKL_ERR_DTYPE", skipless::sys::SKL_ERR_DTYPE),
            ("SKL_ERR_TENSOR_SIZE", skipless::sys::SKL_ERR_TENSOR_SIZE),
            ("SKL_ERR_OUT_OF_RANGE", skipless::sys::SKL_ERR_OUT_OF_RANGE),
            ("SKL_ERR_OVERLAP", skipless::sys::SKL_ERR_OVERLAP),
            ("SKL_ERR_GAP", skipless::sys::SKL_ERR_GAP),
            ("SKL_ERR_CONFIG", skipless::sys::SKL_ERR_CONFIG),
            ("SKL_ERR_SHAPE", skipless::sys::SKL_ERR_SHAPE),
            ("SKL_ERR_MISSING_TENSOR", skipless::sys::SKL_ERR_MISSING_TENSOR),
            ("SKL_ERR_UNEXPECTED_TENSOR", skipless::sys::SKL_ERR_UNEXPECTED_TENSOR),
            ("SKL_ERR_UNSUPPORTED", skipless::sys::SKL_ERR_UNSUPPORTED),
            ("SKL_ERR_INDEX", skipless::sys::SKL_ERR_INDEX),
            ("SKL_ERR_SHARD_NAME", skipless::sys::SKL_ERR_SHARD_NAME),
            ("SKL_ERR_SHARD_MISSING", skipless::sys::SKL_ERR_SHARD_MISSING),
            ("SKL_ERR_SHARD_MISMATCH", skipless::sys::SKL_ERR_SHARD_MISMATCH),
            ("SKL_ERR_SHARD_DUPLICATE", skipless::sys::SKL_ERR_SHARD_DUPLICATE),
            ("SKL_ERR_SHARD_UNINDEXED", skipless::sys::SKL_ERR_SHARD_UNINDEXED),
            ("SKL_ERR_QUANT_CONFIG", skipless::sys::SKL_ERR_QUANT_CONFIG),
            ("SKL_ERR_QUANT_GROUP", skipless::sys::SKL_ERR_QUANT_GROUP),
            ("SKL_ERR_QUANT_WEIGHT", skipless::sys::SKL_ERR_QUANT_WEIGHT),
            ("SKL_ERR_QUANT_SCALE", skipless::sys::SKL_ERR_QUANT_SCALE),
            ("SKL_ERR_METADATA", skipless::sys::SKL_ERR_METADATA),
            ("SKL_ERR_JSON_LIMIT", skipless::sys::SKL_ERR_JSON_LIMIT),
        ];
        kinds.iter().find(|(n, _)| *n == name).unwrap_or_else(|| panic!("add {} to the test", name)).1
    };
    for b in bad {
        let err = Model::load(models_dir().join(b.get("path").str())).unwrap_err();
        let want = code_of(b.get("expect").str());
        assert_eq!(err.code(), want, "{}: {}", b.get("name").str(), err);
        assert_eq!(err.kind(), ErrorKind::from_code(want));
        assert!(!matches!(err.kind(), ErrorKind::Unknown(_)));
        assert!(!err.message().is_empty());
    }
    let err = Model::load("/nonexistent/model.safetensors").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert!(err.message().contains("/nonexistent/model.safetensors"));
    assert!(err.to_string().contains("status -3"));
}

#[test]
fn every_status_has_a_kind_and_a_description() {
    for (kind, code) in ErrorKind::ALL {
        assert_eq!(ErrorKind::from_code(*code), *kind);
        assert_ne!(skipless::strerror(*code), "unknown status");
    }
    // ErrorKind is generated from the header's list: the library names the same codes.
    let library: Vec<i32> = (1..).map(|i| -i).take_while(|c| skipless::status_name(*c).is_some()).collect();
    assert_eq!(ErrorKind::ALL.iter().map(|(_, c)| *c).collect::<Vec<_>>(), library);
    for (kind, code) in ErrorKind::ALL {
        assert_eq!(kind.c_name().map(str::to_string), skipless::status_name(*code));
    }
    assert_eq!(ErrorKind::Io.c_name(), Some("SKL_ERR_IO"));
    assert_eq!(skipless::status_name(0).as_deref(), Some("SKL_OK"));
    assert_eq!(ErrorKind::from_code(-1000), ErrorKind::Unknown(-1000));
    assert_eq!(ErrorKind::Unknown(-1000).c_name(), None);
}

#[test]
fn version_rule() {
    // Written against X.Y: a library X.Z with Z >= Y serves, another major or older minor not.
    let (major, minor) = skipless::binding_version();
    let n = |a: i32, b: i32, c: i32| a * 10000 + b * 100 + c;
    assert_eq!(format!("{}.{}", major, minor), skipless::version().rsplitn(2, '.').nth(1).unwrap());
    skipless::check_version().unwrap();
    for ok in [n(major, minor, 0), n(major, minor, 9), n(major, minor + 4, 0)] {
        skipless::check_version_number(ok).unwrap();
    }
    let e = skipless::check_version_number(n(major + 1, 0, 0)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert!(e.message().contains(&format!("has major version {}", major + 1)), "{}", e);
    if minor > 0 {
        let e = skipless::check_version_number(n(major, minor - 1, 0)).unwrap_err();
        assert!(e.message().contains("older"), "{}", e);
    }
    if major > 0 {
        assert!(skipless::check_version_number(n(major - 1, 99, 0)).is_err());
    }
}

#[test]
fn eval_errors_leave_the_context_unchanged() {
    let model = Model::load(test_model(SERIAL).0).unwrap();
    let vocab = model.config().vocab_size;
    let mut ctx = Context::new(&model, &ContextParams { n_ctx: 6, ..Default::default() }).unwrap();
    assert!(ctx.logits().is_none());
    ctx.eval(&[1, 2]).unwrap();
    let before = ctx.logits().unwrap().to_vec();
    let e = ctx.eval(&[3, vocab]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Token);
    assert!(e.message().contains(&vocab.to_string()));
    assert_eq!(ctx.eval(&[1; 5]).unwrap_err().kind(), ErrorKind::ContextFull);
    assert_eq!(ctx.n_past(), 2);
    assert_eq!(ctx.logits().unwrap(), &before[..]);
    let too_long = ContextParams { n_ctx: model.config().max_position_embeddings + 1, ..Default::default() };
    assert_eq!(Context::new(&model, &too_long).err().unwrap().kind(), ErrorKind::InvalidArg);
    let bad = GenerateParams { top_p: 0.0, ..Default::default() };
    assert_eq!(skipless::Sampler::new(&bad).err().unwrap().kind(), ErrorKind::InvalidArg);
}

#[test]
fn threads_share_a_model_each_with_its_own_context() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Model>();
    send::<Context<'static>>();
    send::<skipless::Sampler>();
    let (path, tokens) = test_model(SERIAL);
    let model = Model::load(&path).unwrap();
    let want = logits_of(&model, &tokens, false);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..2).map(|_| s.spawn(|| logits_of(&model, &tokens, false))).collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), want);
        }
    });
    // A context moves to another thread (Send).
    let mut ctx = Context::new(&model, &ContextParams::default()).unwrap();
    std::thread::scope(|s| {
        s.spawn(move || {
            ctx.eval(&tokens).unwrap();
            assert_eq!(ctx.logits().unwrap(), &want[..]);
        });
    });
}

//! Tokenizer calls and text generation against the CLI, on the test models that carry a
//! tokenizer.json (test/tokenizers.py).
mod common;

use common::*;
use skipless::{Context, ContextParams, Detokenizer, ErrorKind, GenerateParams, Model, SaveFormat};
use std::ops::ControlFlow;
use std::path::PathBuf;

const TEXT: &str = "In the beginning God created the heaven and the earth. <sep> naïve café – ünïcödé ✓";

fn tok_models() -> Vec<PathBuf> {
    let text = std::fs::read_to_string(models_dir().join("tokenizers.json")).unwrap();
    parse_json(&text).arr().iter().map(|t| models_dir().join(t.get("model").str())).collect()
}

fn ids_list(ids: &[i32]) -> String {
    ids.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(",")
}

#[test]
fn tokenize_and_detokenize_equal_cli() {
    let models = tok_models();
    assert_eq!(models.len(), 2);
    for path in models {
        let p = path.to_str().unwrap();
        let model = Model::load(&path).unwrap();
        assert!(model.has_tokenizer());
        assert!(model.tokenizer_size() > 256);
        for plain in [false, true] {
            let ids = if plain { model.tokenize_plain(TEXT) } else { model.tokenize(TEXT) }.unwrap();
            let mut args = vec!["tokenize", p, "--text", TEXT];
            if plain {
                args.push("--plain");
            }
            assert_eq!(ids_list(&ids), run_cli(&args).trim());
            let text = model.detokenize(&ids).unwrap();
            assert_eq!(format!("{}\n", text), run_cli(&["detokenize", p, "--tokens", &ids_list(&ids)]));
            if !p.contains("prefix") {
                assert_eq!(text, TEXT); // add_prefix_space would add a leading space
            }
        }
        assert_ne!(model.tokenize("<sep>").unwrap(), model.tokenize_plain("<sep>").unwrap());
        assert_eq!(model.tokenize("").unwrap(), Vec::<i32>::new());
        let e = model.detokenize(&[model.tokenizer_size()]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Token);
    }
}

#[test]
fn streaming_decoder() {
    let model = Model::load(&tok_models()[0]).unwrap();
    let ids = model.tokenize(TEXT).unwrap();
    let mut d = Detokenizer::new(&model).unwrap();
    let mut text = String::new();
    for t in &ids {
        text.push_str(d.push(*t).unwrap());
    }
    text.push_str(d.flush().unwrap());
    assert_eq!(text, TEXT);
    let check = model.tokenize("✓").unwrap(); // one byte-level token per UTF-8 byte
    assert!(check.len() > 1);
    assert_eq!(d.push(check[0]).unwrap(), "");
    assert_eq!(d.flush().unwrap(), "\u{fffd}");
    assert_eq!(d.push(model.tokenizer_size()).unwrap_err().kind(), ErrorKind::Token);
}

#[test]
fn generate_text_equals_cli() {
    for path in tok_models() {
        let p = path.to_str().unwrap();
        let model = Model::load(&path).unwrap();
        let mut ctx = Context::new(&model, &ContextParams::default()).unwrap();
        for (seed, stop_at_eos) in [(7u64, true), (11, false)] {
            ctx.reset().unwrap();
            let params = GenerateParams { max_tokens: 40, seed, stop_at_eos, ..Default::default() };
            let (mut text, mut ids) = (String::new(), Vec::new());
            let res = ctx
                .generate_text("In the beginning", &params, |t| {
                    text.push_str(t.piece.expect("a model with a tokenizer gives text"));
                    if t.id >= 0 {
                        ids.push(t.id);
                    }
                    ControlFlow::Continue(())
                })
                .unwrap();
            let mut args = vec!["generate", p, "--prompt", "In the beginning", "-n", "40"];
            let seed_s = seed.to_string();
            args.extend(["--seed", &seed_s]);
            if !stop_at_eos {
                args.push("--no-eos-stop");
            }
            assert_eq!(format!("{}\n", text), run_cli(&args));
            assert_eq!(text, model.detokenize(&ids).unwrap());
            assert_eq!(res.n_generated as usize, ids.len());
            if res.stop_token.is_some() {
                assert_eq!(res.stop_token, model.eos_token());
            }
            // The iterator gives the same text, with the pending bytes as a last id -1 item.
            ctx.reset().unwrap();
            let mut gen = ctx.generator_text("In the beginning", &params).unwrap();
            let items: Vec<skipless::GeneratedToken> = gen.by_ref().map(|t| t.unwrap()).collect();
            assert!(items.iter().all(|t| t.piece.is_some()));
            assert!(items.iter().rev().skip(1).all(|t| t.id >= 0));
            let text2: String = items.iter().map(|t| t.piece.as_deref().unwrap()).collect();
            assert_eq!(text2, text);
            assert_eq!(gen.result(), skipless::GenerateResult { prompt_seconds: gen.result().prompt_seconds,
                                                                decode_seconds: gen.result().decode_seconds, ..res });
        }
    }
}

#[test]
fn save_keeps_the_tokenizer() {
    let model = Model::load(&tok_models()[0]).unwrap();
    let dir = temp_dir("tok-save");
    for (name, format) in [("dir", SaveFormat::Dir), ("one.safetensors", SaveFormat::File)] {
        model.save(dir.join(name), format).unwrap();
        let back = Model::load(dir.join(name)).unwrap();
        assert_eq!(back.tokenize(TEXT).unwrap(), model.tokenize(TEXT).unwrap());
        assert_eq!(back.eos_token(), model.eos_token());
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn no_tokenizer() {
    let model = Model::load(test_model("serial_mha_silu_glu").0).unwrap();
    assert!(!model.has_tokenizer());
    assert_eq!(model.tokenizer_size(), 0);
    assert_eq!(model.tokenize("text").unwrap_err().kind(), ErrorKind::NoTokenizer);
    let mut ctx = Context::new(&model, &ContextParams::default()).unwrap();
    let e = ctx.generate_text("text", &GenerateParams::default(), |_| ControlFlow::Continue(())).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NoTokenizer);
    assert_eq!(ctx.n_past(), 0);
}

//! Generate from a model:
//! `generate [MODEL] [--prompt TEXT | --tokens 1,2,3] [-n N] [--seed S] [--temp T]`.
//! MODEL defaults to the bundled examples/models/kjv-serial.  With a tokenizer in the
//! model the text streams out; otherwise the token ids do.
use skipless::{Context, ContextParams, GenerateParams, Model};
use std::io::Write;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::exit;

fn default_model() -> PathBuf {
    let here = PathBuf::from("examples/models/kjv-serial");
    if here.exists() {
        return here;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/kjv-serial")
}

fn usage(msg: &str) -> ! {
    eprintln!("generate: {}\nusage: generate [MODEL] [--prompt TEXT | --tokens 1,2,3] [-n N] [--seed S] [--temp T]", msg);
    exit(1)
}

fn value<T: std::str::FromStr>(args: &mut impl Iterator<Item = String>, flag: &str) -> T {
    let v = args.next().unwrap_or_else(|| usage(&format!("{} needs a value", flag)));
    v.parse().unwrap_or_else(|_| usage(&format!("bad value for {}: {}", flag, v)))
}

fn main() {
    let mut model_path = None;
    let mut tokens: Option<Vec<i32>> = None;
    let mut text: Option<String> = None;
    let mut params = GenerateParams { max_tokens: 64, ..Default::default() };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "-n" => params.max_tokens = value(&mut args, "-n"),
            "--seed" => params.seed = value(&mut args, "--seed"),
            "--temp" => params.temperature = value(&mut args, "--temp"),
            "--tokens" => {
                let list: String = value(&mut args, "--tokens");
                tokens = Some(list.split(',').map(|t| t.trim().parse().unwrap_or_else(|_| usage("bad token list"))).collect());
            }
            "--prompt" => text = Some(value(&mut args, "--prompt")),
            "-h" | "--help" => usage("help"),
            _ if model_path.is_none() && !a.starts_with('-') => model_path = Some(PathBuf::from(a)),
            _ => usage(&format!("unknown argument {}", a)),
        }
    }
    let path = model_path.unwrap_or_else(default_model);
    let run = || -> skipless::Result<skipless::GenerateResult> {
        let model = Model::load(&path)?;
        let mut ctx = Context::new(&model, &ContextParams::default())?;
        let prompt = match (&tokens, &text) {
            (Some(ids), _) => ids.clone(),
            (None, Some(t)) => model.tokenize(t)?,
            (None, None) if model.has_tokenizer() => model.tokenize("In the beginning")?,
            (None, None) => vec![1],
        };
        let out = std::io::stdout();
        let mut out = out.lock();
        let res = ctx.generate(&prompt, &params, |t| {
            let ok = match t.piece {
                Some(text) => write!(out, "{}", text),
                None => write!(out, "{} ", t.id),
            };
            // Stop quietly when stdout is closed (e.g. piped into head).
            if ok.and_then(|_| out.flush()).is_ok() { ControlFlow::Continue(()) } else { ControlFlow::Break(()) }
        })?;
        println!();
        Ok(res)
    };
    match run() {
        Ok(res) => eprintln!(
            "{} tokens, {:.1} tok/s, stop: {:?}",
            res.n_generated,
            res.n_generated as f64 / res.decode_seconds.max(1e-9),
            res.stop_reason
        ),
        Err(e) => {
            eprintln!("generate: {}", e);
            exit(2)
        }
    }
}

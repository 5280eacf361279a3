//! Shared by the tests: paths of the tree's test models and CLI, a minimal JSON reader
//! for manifest.json and a .npy reader for the CLI's logits (std only).
#![allow(dead_code)]
use std::collections::BTreeMap;
use std::path::PathBuf;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../..")
}

/// SKL_TEST_MODELS, or build/testmodels of the tree (`make check` writes them).
pub fn models_dir() -> PathBuf {
    std::env::var_os("SKL_TEST_MODELS").map(PathBuf::from).unwrap_or_else(|| repo().join("build/testmodels"))
}

pub fn cli() -> PathBuf {
    std::env::var_os("SKIPLESS_CLI").map(PathBuf::from).unwrap_or_else(|| repo().join("bin/skipless"))
}

#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(BTreeMap<String, Json>),
}

impl Json {
    pub fn get(&self, key: &str) -> &Json {
        match self {
            Json::Obj(m) => m.get(key).unwrap_or_else(|| panic!("no key {}", key)),
            _ => panic!("not an object"),
        }
    }
    pub fn str(&self) -> &str {
        match self {
            Json::Str(s) => s,
            _ => panic!("not a string: {:?}", self),
        }
    }
    pub fn arr(&self) -> &[Json] {
        match self {
            Json::Arr(a) => a,
            _ => panic!("not an array"),
        }
    }
    pub fn ints(&self) -> Vec<i32> {
        self.arr().iter().map(|j| match j {
            Json::Num(n) => *n as i32,
            _ => panic!("not a number"),
        }).collect()
    }
}

pub fn parse_json(text: &str) -> Json {
    let b = text.as_bytes();
    let mut i = 0;
    let v = value(b, &mut i);
    ws(b, &mut i);
    assert_eq!(i, b.len(), "trailing data in JSON");
    v
}

fn ws(b: &[u8], i: &mut usize) {
    while *i < b.len() && b[*i].is_ascii_whitespace() {
        *i += 1;
    }
}

fn value(b: &[u8], i: &mut usize) -> Json {
    ws(b, i);
    match b[*i] {
        b'{' => {
            *i += 1;
            let mut m = BTreeMap::new();
            loop {
                ws(b, i);
                if b[*i] == b'}' {
                    *i += 1;
                    return Json::Obj(m);
                }
                let k = match value(b, i) {
                    Json::Str(s) => s,
                    other => panic!("key {:?}", other),
                };
                ws(b, i);
                assert_eq!(b[*i], b':');
                *i += 1;
                m.insert(k, value(b, i));
                ws(b, i);
                if b[*i] == b',' {
                    *i += 1;
                }
            }
        }
        b'[' => {
            *i += 1;
            let mut a = Vec::new();
            loop {
                ws(b, i);
                if b[*i] == b']' {
                    *i += 1;
                    return Json::Arr(a);
                }
                a.push(value(b, i));
                ws(b, i);
                if b[*i] == b',' {
                    *i += 1;
                }
            }
        }
        b'"' => {
            *i += 1;
            let mut s = String::new();
            while b[*i] != b'"' {
                if b[*i] == b'\\' {
                    *i += 1;
                    match b[*i] {
                        b'n' => s.push('\n'),
                        b't' => s.push('\t'),
                        b'u' => {
                            let hex = std::str::from_utf8(&b[*i + 1..*i + 5]).unwrap();
                            s.push(char::from_u32(u32::from_str_radix(hex, 16).unwrap()).unwrap_or('\u{fffd}'));
                            *i += 4;
                        }
                        c => s.push(c as char),
                    }
                    *i += 1;
                } else {
                    let start = *i;
                    while b[*i] != b'"' && b[*i] != b'\\' {
                        *i += 1;
                    }
                    s.push_str(std::str::from_utf8(&b[start..*i]).unwrap());
                }
            }
            *i += 1;
            Json::Str(s)
        }
        b't' => {
            *i += 4;
            Json::Bool(true)
        }
        b'f' => {
            *i += 5;
            Json::Bool(false)
        }
        b'n' => {
            *i += 4;
            Json::Null
        }
        _ => {
            let start = *i;
            while *i < b.len() && (b[*i] == b'-' || b[*i] == b'+' || b[*i] == b'.' || b[*i] == b'e'
                || b[*i] == b'E' || b[*i].is_ascii_digit())
            {
                *i += 1;
            }
            Json::Num(std::str::from_utf8(&b[start..*i]).unwrap().parse().unwrap())
        }
    }
}

pub fn manifest() -> Json {
    let path = models_dir().join("manifest.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {} (run make check)", path.display(), e));
    parse_json(&text)
}

/// (path, prompt tokens) of a valid test model.
pub fn test_model(name: &str) -> (PathBuf, Vec<i32>) {
    let m = manifest();
    let e = m.get("models").arr().iter().find(|e| e.get("name").str() == name)
        .unwrap_or_else(|| panic!("no test model {}", name));
    (models_dir().join(e.get("path").str()), e.get("tokens").ints())
}

/// Shape and data of a C-order little-endian float32 .npy file.
pub fn read_npy(path: &std::path::Path) -> (Vec<usize>, Vec<f32>) {
    let blob = std::fs::read(path).unwrap();
    assert_eq!(&blob[..6], b"\x93NUMPY", "not a .npy file");
    let (hlen, start) = if blob[6] == 1 {
        (u16::from_le_bytes([blob[8], blob[9]]) as usize, 10)
    } else {
        (u32::from_le_bytes([blob[8], blob[9], blob[10], blob[11]]) as usize, 12)
    };
    let header = std::str::from_utf8(&blob[start..start + hlen]).unwrap();
    assert!(header.contains("'descr': '<f4'") && header.contains("'fortran_order': False"), "{}", header);
    let shape_text = &header[header.find("'shape': (").unwrap() + 10..];
    let shape: Vec<usize> = shape_text[..shape_text.find(')').unwrap()].split(',')
        .map(str::trim).filter(|s| !s.is_empty()).map(|s| s.parse().unwrap()).collect();
    let data: Vec<f32> = blob[start + hlen..].chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    assert_eq!(data.len(), shape.iter().product::<usize>());
    (shape, data)
}

pub fn run_cli(args: &[&str]) -> String {
    let out = std::process::Command::new(cli()).args(args).output().expect("run bin/skipless");
    assert!(out.status.success(), "skipless {:?}: {}", args, String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

pub fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("skipless-rs-{}-{}", tag, std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// (name, dtype, byte size) of every tensor in a model's safetensors header (a directory
/// holds model.safetensors).
pub fn safetensors_tensors(path: &std::path::Path) -> Vec<(String, String, u64)> {
    use std::io::Read;
    let file = if path.extension().map_or(false, |e| e == "safetensors") {
        path.to_path_buf()
    } else {
        path.join("model.safetensors")
    };
    let mut f = std::fs::File::open(&file).unwrap();
    let mut len = [0u8; 8];
    f.read_exact(&mut len).unwrap();
    let mut header = vec![0u8; u64::from_le_bytes(len) as usize];
    f.read_exact(&mut header).unwrap();
    match parse_json(std::str::from_utf8(&header).unwrap()) {
        Json::Obj(m) => m
            .iter()
            .filter(|(k, _)| k.as_str() != "__metadata__")
            .map(|(k, v)| {
                let off = v.get("data_offsets").ints();
                (k.clone(), v.get("dtype").str().to_string(), (off[1] - off[0]) as u64)
            })
            .collect(),
        _ => panic!("{}: header is not an object", file.display()),
    }
}

/// What one decoded token reads, from the file alone: every tensor but the embedding,
/// one embedding row, and the whole embedding again when it is the (tied) LM head.
pub fn decode_bytes_of_file(path: &std::path::Path, vocab_size: i32, tied: bool) -> u64 {
    let tensors = safetensors_tensors(path);
    let embed = tensors.iter().find(|t| t.0 == "model.embed_tokens.weight").expect("no embedding").2;
    let rest: u64 = tensors.iter().filter(|t| t.0 != "model.embed_tokens.weight").map(|t| t.2).sum();
    rest + embed / vocab_size as u64 + if tied { embed } else { 0 }
}

/// What `skl_model_weight_dtype` documents, from the safetensors header alone: the dtype of
/// every q/k/v/o/gate/up/down_proj weight and of lm_head (the embedding when tied), or
/// "mixed" when they differ.
pub fn weight_dtype_of_file(path: &std::path::Path) -> String {
    let tensors = safetensors_tensors(path);
    let head = if tensors.iter().any(|t| t.0 == "lm_head.weight") { "lm_head.weight" } else { "model.embed_tokens.weight" };
    let mut dtypes: Vec<&str> =
        tensors.iter().filter(|t| t.0.ends_with("_proj.weight") || t.0 == head).map(|t| t.1.as_str()).collect();
    dtypes.sort();
    dtypes.dedup();
    if dtypes.len() == 1 { dtypes[0].to_string() } else { "mixed".to_string() }
}

/// /proc/cpuinfo's flags of the first CPU (empty off x86-64).
pub fn cpu_flags() -> Vec<String> {
    if !cfg!(target_arch = "x86_64") {
        return Vec::new();
    }
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    match info.lines().find(|l| l.starts_with("flags")) {
        Some(line) => line.split(':').nth(1).unwrap_or("").split_whitespace().map(String::from).collect(),
        None => Vec::new(),
    }
}

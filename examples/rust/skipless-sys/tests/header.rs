//! The hand-written declarations in src/lib.rs must match include/skipless.h.
//!
//! Both files are parsed as text: every enum constant, #define, struct (field names and
//! types, in order), callback typedef and SKL_API function of the header is translated to
//! the Rust type it needs and compared with the declaration in src/lib.rs, and src/lib.rs
//! may declare nothing the header lacks.  Changing the header without the bindings fails here.
use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

fn read(path: PathBuf) -> String {
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {}", path.display(), e))
}

fn header_path() -> PathBuf {
    match std::env::var_os("SKIPLESS_HEADER") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../include/skipless.h"),
    }
}

fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn nospace(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

fn strip_c_comments(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    loop {
        let block = rest.find("/*");
        let line = rest.find("//");
        match (block, line) {
            (Some(b), l) if l.map_or(true, |l| b < l) => {
                out.push_str(&rest[..b]);
                let end = rest[b..].find("*/").expect("unterminated comment") + b + 2;
                out.push(' ');
                rest = &rest[end..];
            }
            (_, Some(l)) => {
                out.push_str(&rest[..l]);
                rest = &rest[l..];
                rest = &rest[rest.find('\n').unwrap_or(rest.len())..];
            }
            _ => {
                out.push_str(rest);
                return out;
            }
        }
    }
}

/// The text between the first `open` at or after `from` and its matching `close`.
fn balanced(s: &str, from: usize, open: char, close: char) -> (usize, usize) {
    let start = s[from..].find(open).expect("no opening bracket") + from;
    let mut depth = 0;
    for (i, c) in s[start..].char_indices() {
        if c == open {
            depth += 1;
        } else if c == close {
            depth -= 1;
            if depth == 0 {
                return (start + 1, start + i);
            }
        }
    }
    panic!("unbalanced {}", open)
}

#[derive(Default, Debug)]
struct Header {
    enums: BTreeMap<String, Vec<(String, i64)>>,
    structs: BTreeMap<String, Vec<(String, String)>>, // name -> [(field, C type)]
    opaque: Vec<String>,
    callbacks: BTreeMap<String, (String, Vec<String>)>,
    functions: BTreeMap<String, (String, Vec<String>)>,
    macros: BTreeMap<String, String>,
}

/// "const char *path" -> "const char *"; "char note[96]" -> "char[96]"; "void" -> "void".
fn c_param_type(decl: &str) -> String {
    let d = squash(&decl.replace('*', " * "));
    let (d, array) = match d.find('[') {
        Some(i) => (d[..i].trim().to_string(), d[i..].replace(' ', "")),
        None => (d, String::new()),
    };
    let words: Vec<&str> = d.split(' ').collect();
    let last = *words.last().unwrap();
    // The last word names the parameter unless it ends the type ("unsigned int", "char *").
    let is_name = words.len() > 1 && !["*", "int", "char", "long", "short"].contains(&last);
    let ty = if is_name { words[..words.len() - 1].join(" ") } else { d.clone() };
    format!("{}{}", ty, array)
}

fn c_name_of(decl: &str) -> String {
    let d = decl.split('[').next().unwrap();
    d.trim().rsplit(|c: char| c == ' ' || c == '*').next().unwrap().to_string()
}

fn c_params(args: &str) -> Vec<String> {
    let a = squash(args);
    if a.is_empty() || a == "void" {
        return vec![];
    }
    a.split(',').map(c_param_type).collect()
}

fn parse_header(raw: &str) -> Header {
    let mut h = Header::default();
    let mut lines = Vec::new();
    let mut skip_cplusplus = false;
    for line in raw.lines() {
        let t = line.trim();
        if t.starts_with("#ifdef __cplusplus") {
            skip_cplusplus = true;
        } else if skip_cplusplus {
            skip_cplusplus = !t.starts_with("#endif");
        } else if let Some(def) = t.strip_prefix("#define ") {
            let def = strip_c_comments(def);
            let mut it = def.split_whitespace();
            let (name, value) = (it.next().unwrap(), it.next().unwrap_or(""));
            let number = value.trim_end_matches('u');
            if name.starts_with("SKL_") && (number.parse::<i64>().is_ok() || value.starts_with('"')) {
                h.macros.insert(name.to_string(), value.to_string());
            }
        } else if !t.starts_with('#') {
            lines.push(line);
        }
    }
    let text = strip_c_comments(&lines.join("\n"));
    // Split into statements at ';' outside braces.
    let (mut stmts, mut cur, mut depth) = (Vec::new(), String::new(), 0);
    for c in text.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ => {}
        }
        if c == ';' && depth == 0 {
            stmts.push(squash(&cur));
            cur.clear();
        } else {
            cur.push(c);
        }
    }
    for s in stmts {
        if let Some(rest) = s.strip_prefix("typedef enum") {
            let (a, b) = balanced(rest, 0, '{', '}');
            let mut value = -1i64;
            let mut items = Vec::new();
            for item in rest[a..b].split(',').map(str::trim).filter(|i| !i.is_empty()) {
                let mut kv = item.splitn(2, '=');
                let k = kv.next().unwrap().trim().to_string();
                value = match kv.next() {
                    Some(v) => v.trim().parse().unwrap(),
                    None => value + 1,
                };
                items.push((k, value));
            }
            h.enums.insert(rest[b + 1..].trim().to_string(), items);
        } else if let Some(rest) = s.strip_prefix("typedef struct") {
            if !rest.contains('{') {
                let words: Vec<&str> = rest.split_whitespace().collect();
                assert!(words.len() == 2 && words[0] == words[1], "odd typedef: {}", s);
                h.opaque.push(words[0].to_string());
                continue;
            }
            let (a, b) = balanced(rest, 0, '{', '}');
            let mut fields = Vec::new();
            for stmt in rest[a..b].split(';').map(str::trim).filter(|x| !x.is_empty()) {
                let mut parts = stmt.split(',');
                let first = parts.next().unwrap().trim();
                let ty = c_param_type(first);
                fields.push((c_name_of(first), ty.clone()));
                let base = ty.split('[').next().unwrap().trim_end_matches(|c| c == '*' || c == ' ').to_string();
                for more in parts {
                    let full = format!("{} {}", base, more.trim());
                    fields.push((c_name_of(&full), c_param_type(&full)));
                }
            }
            h.structs.insert(rest[b + 1..].trim().to_string(), fields);
        } else if let Some(rest) = s.strip_prefix("typedef") {
            let star = rest.find("(*").unwrap_or_else(|| panic!("unknown typedef: {}", s));
            let ret = rest[..star].trim().to_string();
            let (a, b) = balanced(rest, star, '(', ')');
            let name = rest[a..b].trim_start_matches('*').trim().to_string();
            let (pa, pb) = balanced(rest, b + 1, '(', ')');
            h.callbacks.insert(name, (ret, c_params(&rest[pa..pb])));
        } else if let Some(rest) = s.strip_prefix("SKL_API ") {
            let paren = rest.find('(').unwrap();
            let before = rest[..paren].trim();
            let name = c_name_of(before);
            let ret = before[..before.len() - name.len()].trim().to_string();
            let (a, b) = balanced(rest, paren, '(', ')');
            h.functions.insert(name, (ret, c_params(&rest[a..b])));
        } else if !s.is_empty() {
            panic!("the drift test does not understand this header statement: {}", s);
        }
    }
    h
}

/// The Rust type a C type must be declared as in src/lib.rs.
fn rust_type(h: &Header, c: &str) -> String {
    let c = squash(&c.replace('*', " * "));
    if let Some(i) = c.find('[') {
        let n = c[i + 1..c.len() - 1].trim();
        return format!("[{}; {}]", rust_type(h, &c[..i]), n);
    }
    if let Some(pointee) = c.strip_suffix('*') {
        let pointee = pointee.trim();
        // `const T *`: the pointee is const; `const T **`: a mutable pointer to `const T *`.
        let is_const = !pointee.ends_with('*') && pointee.split(' ').any(|w| w == "const");
        let inner = match pointee.split(' ').filter(|w| *w != "const").collect::<Vec<_>>().join(" ") {
            _ if pointee.ends_with('*') => rust_type(h, pointee),
            v if v == "void" => "c_void".to_string(),
            v => rust_type(h, &v),
        };
        return format!("*{} {}", if is_const { "const" } else { "mut" }, inner);
    }
    let c = c.split(' ').filter(|w| *w != "const").collect::<Vec<_>>().join(" ");
    match c.as_str() {
        "int" => "c_int".into(),
        "unsigned" | "unsigned int" => "c_uint".into(),
        "char" => "c_char".into(),
        "float" => "c_float".into(),
        "double" => "c_double".into(),
        "int32_t" => "i32".into(),
        "uint64_t" => "u64".into(),
        "size_t" => "usize".into(),
        "bool" => "bool".into(),
        name if h.enums.contains_key(name)
            || h.structs.contains_key(name)
            || h.callbacks.contains_key(name)
            || h.opaque.iter().any(|o| o == name) =>
        {
            name.to_string()
        }
        other => panic!("no Rust mapping for C type '{}'", other),
    }
}

fn rust_ret(h: &Header, c: &str) -> String {
    if squash(c) == "void" {
        String::new()
    } else {
        format!("->{}", rust_type(h, c))
    }
}

#[derive(Default, Debug)]
struct RustDecls {
    consts: BTreeMap<String, (String, String)>, // name -> (type, value)
    types: BTreeMap<String, String>,
    structs: BTreeMap<String, Vec<(String, String)>>,
    opaque: Vec<String>,
    functions: BTreeMap<String, (String, Vec<String>)>,
}

/// Types of "a: T, b: U" (names dropped), whitespace removed.
fn rust_params(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|p| !p.is_empty())
        .map(|p| nospace(p.splitn(2, ':').nth(1).expect("parameter without a type"))).collect()
}

fn items<'a>(text: &'a str, prefix: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    text.match_indices(prefix).map(move |(i, _)| {
        let rest = &text[i + prefix.len()..];
        &rest[..rest.find(';').unwrap()]
    })
}

fn parse_rust(raw: &str) -> RustDecls {
    let text: String = raw.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
    let mut r = RustDecls::default();
    for item in items(&text, "pub const ") {
        let (name, rest) = item.split_once(':').unwrap();
        let (ty, value) = rest.split_once('=').unwrap();
        r.consts.insert(name.trim().into(), (nospace(ty), value.trim().into()));
    }
    for item in items(&text, "pub type ") {
        let (name, ty) = item.split_once('=').unwrap();
        r.types.insert(name.trim().into(), squash(ty));
    }
    for (i, _) in text.match_indices("pub struct ") {
        let rest = &text[i + "pub struct ".len()..];
        let name = rest[..rest.find('{').unwrap()].trim().to_string();
        let (a, b) = balanced(rest, 0, '{', '}');
        let fields: Vec<(String, String)> = rest[a..b].split(',').map(str::trim).filter(|f| !f.is_empty())
            .map(|f| {
                let (n, t) = f.split_once(':').unwrap();
                (n.trim().trim_start_matches("pub ").trim().to_string(), nospace(t))
            })
            .collect();
        if fields.len() == 1 && fields[0].0 == "_opaque" {
            r.opaque.push(name);
        } else {
            r.structs.insert(name, fields);
        }
    }
    for item in items(&text, "pub fn ") {
        let name = item[..item.find('(').unwrap()].trim().to_string();
        let (a, b) = balanced(item, 0, '(', ')');
        r.functions.insert(name, (nospace(&item[b + 1..]), rust_params(&item[a..b])));
    }
    r
}

struct Both {
    h: Header,
    r: RustDecls,
}

fn both() -> Both {
    let h = parse_header(&read(header_path()));
    let r = parse_rust(&read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")));
    Both { h, r }
}

#[test]
fn parsers_see_the_declarations() {
    // Guards the parsers: if they found nothing, every comparison below would pass vacuously.
    let b = both();
    assert!(b.h.functions.contains_key("skl_model_load") && b.r.functions.contains_key("skl_model_load"));
    assert!(b.h.structs.contains_key("skl_hparams") && b.r.structs.contains_key("skl_hparams"));
    assert!(b.h.enums["skl_status"].len() > 20);
    assert!(b.h.callbacks.contains_key("skl_token_fn"));
    assert!(b.h.opaque.contains(&"skl_model".to_string()));
    assert!(b.h.functions.len() > 30 && b.h.structs.len() > 10);
}

#[test]
fn enums_and_constants() {
    let b = both();
    let mut expected = BTreeMap::new();
    for (name, items) in &b.h.enums {
        assert_eq!(b.r.types.get(name).map(String::as_str), Some("c_int"), "pub type {} = c_int", name);
        for (k, v) in items {
            expected.insert(k.clone(), (name.clone(), v.to_string()));
        }
    }
    for (name, value) in &b.h.macros {
        let ty = if value.starts_with('"') {
            "&str"
        } else if value.ends_with('u') {
            "c_uint"
        } else {
            "c_int"
        };
        expected.insert(name.clone(), (ty.to_string(), value.trim_end_matches('u').to_string()));
    }
    assert_eq!(b.r.consts, expected);
}

#[test]
fn structs() {
    let b = both();
    let names: Vec<&String> = b.r.structs.keys().collect();
    assert_eq!(names, b.h.structs.keys().collect::<Vec<_>>());
    for (name, fields) in &b.h.structs {
        let want: Vec<(String, String)> =
            fields.iter().map(|(f, t)| (f.clone(), nospace(&rust_type(&b.h, t)))).collect();
        assert_eq!(b.r.structs[name], want, "struct {}", name);
    }
    let mut opaque = b.h.opaque.clone();
    opaque.sort();
    let mut r_opaque = b.r.opaque.clone();
    r_opaque.sort();
    assert_eq!(r_opaque, opaque);
}

#[test]
fn callbacks() {
    let b = both();
    for (name, (ret, params)) in &b.h.callbacks {
        let want = format!(
            "Option<unsafeextern\"C\"fn({}){}>",
            params.iter().map(|p| nospace(&rust_type(&b.h, p))).collect::<Vec<_>>().join(","),
            nospace(&rust_ret(&b.h, ret))
        );
        let got = b.r.types.get(name).unwrap_or_else(|| panic!("missing pub type {}", name));
        // Drop the parameter names of the Rust declaration.
        let (a, z) = balanced(got, 0, '(', ')');
        let got = format!("{}{}{}", nospace(&got[..a]), rust_params(&got[a..z]).join(","), nospace(&got[z..]));
        assert_eq!(got, want, "callback {}", name);
    }
    let aliases: Vec<&String> = b.r.types.keys().filter(|k| !b.h.enums.contains_key(*k)).collect();
    assert_eq!(aliases, b.h.callbacks.keys().collect::<Vec<_>>());
}

#[test]
fn functions() {
    let b = both();
    assert_eq!(b.r.functions.keys().collect::<Vec<_>>(), b.h.functions.keys().collect::<Vec<_>>());
    for (name, (ret, params)) in &b.h.functions {
        let want: Vec<String> = params.iter().map(|p| nospace(&rust_type(&b.h, p))).collect();
        let (r_ret, r_params) = &b.r.functions[name];
        assert_eq!(r_params, &want, "parameters of {}", name);
        assert_eq!(r_ret, &nospace(&rust_ret(&b.h, ret)), "return type of {}", name);
    }
}

//! Link libskipless: from SKIPLESS_LIB_DIR if set (e.g. the tree's lib/), else through
//! `pkg-config --libs skipless` (the skipless.pc that `make install` writes).
use std::env;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=SKIPLESS_LIB_DIR");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    if let Some(dir) = env::var_os("SKIPLESS_LIB_DIR") {
        println!("cargo:rustc-link-search=native={}", dir.to_string_lossy());
        println!("cargo:rustc-link-lib=dylib=skipless");
        return;
    }
    let out = Command::new("pkg-config").args(["--libs", "skipless"]).output();
    let flags = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        Ok(o) => panic!(
            "pkg-config --libs skipless failed ({}); install libskipless (make install) or set \
             SKIPLESS_LIB_DIR to the directory holding libskipless.so",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!("cannot run pkg-config ({}); set SKIPLESS_LIB_DIR instead", e),
    };
    for flag in flags.split_whitespace() {
        if let Some(dir) = flag.strip_prefix("-L") {
            println!("cargo:rustc-link-search=native={}", dir);
        } else if let Some(lib) = flag.strip_prefix("-l") {
            println!("cargo:rustc-link-lib={}", lib);
        }
    }
}

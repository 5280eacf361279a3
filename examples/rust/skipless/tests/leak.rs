//! 1,000 create/free cycles must not grow the process's RSS.  A test binary of its own:
//! the other tests would allocate concurrently in the same process.
mod common;

use common::*;
use skipless::{Context, ContextParams, GenerateParams, MergeParams, Model};

const SERIAL: &str = "serial_mha_silu_glu";

#[test]
fn create_free_cycles_do_not_grow_rss() {
    let (path, tokens) = test_model(SERIAL);
    let cycle = || {
        let model = Model::load(&path).unwrap();
        let mut ctx = Context::new(&model, &ContextParams { n_ctx: 32, ..Default::default() }).unwrap();
        ctx.eval(&tokens[..4]).unwrap();
        let _s = skipless::Sampler::new(&GenerateParams::default()).unwrap();
        let _ = model.merge(&MergeParams { verify: false, ..Default::default() }).unwrap();
    };
    for _ in 0..50 {
        cycle();
    }
    let before = rss_bytes();
    for _ in 0..1000 {
        cycle();
    }
    let grown = rss_bytes() as i64 - before as i64;
    // One leaked model is ~100 KiB of converted weights; 1,000 would be ~100 MiB.
    assert!(grown < 8 << 20, "RSS grew by {} bytes over 1,000 cycles", grown);
}

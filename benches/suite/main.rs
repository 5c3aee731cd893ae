//! The side-by-side benchmark suite: every scenario of `shared/BENCHMARKS.md`, our pool against its
//! peers and against the physical floor of this machine, interleaved over rounds, reported as
//! medians and ratios.
//!
//! ```text
//! cargo bench --bench suite             # full run, writes docs/benchmarks.md and target/bench/report.json
//! cargo bench --bench suite -- --quick  # every scenario at reduced size, under two minutes
//! cargo bench --bench suite -- --only S1,S2
//! ```

mod measure;
mod process;
mod python;
mod report;
mod svg;
mod threads;

use measure::{Config, Scenario};

fn main() {
    // Process-mode workers and the raw-pipe floor's children are this binary, re-executed.
    circuits::init(process::jobs());
    process::serve_floor_child_if_asked();
    threads::serve_memory_child_if_asked();

    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let only: Option<Vec<String>> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.split(',').map(|x| x.trim().to_uppercase()).collect());
    let cfg = Config::new(quick);
    let wanted = |id: &str| only.as_ref().is_none_or(|o| o.iter().any(|x| x == id));

    eprintln!(
        "circuits benchmark suite ({} mode, {} rounds)",
        if quick { "quick" } else { "full" },
        cfg.rounds
    );
    let started = std::time::Instant::now();
    let mut scenarios: Vec<Scenario> = Vec::new();
    let mut run = |id: &str, f: &dyn Fn(&Config) -> Vec<Scenario>| {
        if wanted(id) {
            let t = std::time::Instant::now();
            eprintln!("== {id}");
            let out = f(&cfg);
            for s in &out {
                eprintln!("{}", s.summary());
            }
            eprintln!("   ({:.1} s)", t.elapsed().as_secs_f64());
            scenarios.extend(out);
        }
    };
    run("S1", &threads::s1);
    run("S2", &threads::s2);
    run("S3", &threads::s3);
    run("S4", &threads::s4);
    run("S5", &threads::s5);
    run("S6", &process::s6);
    run("S7", &process::s7);
    run("S7B", &process::s7b);
    run("S8", &process::s8);
    run("S9", &threads::s9);
    let burst = wanted("BURST").then(|| {
        eprintln!("== burst");
        threads::burst(&cfg)
    });
    eprintln!("suite done in {:.1} s", started.elapsed().as_secs_f64());
    report::write(&cfg, &scenarios, burst, only.is_some());
}

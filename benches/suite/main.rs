//! The side-by-side benchmark suite: every scenario of `shared/BENCHMARKS.md`, our pool against its
//! peers and against the physical floor of this machine, interleaved over rounds, reported as
//! medians and ratios.
//!
//! ```text
//! cargo bench -p circuits-bench --bench suite             # full run, writes docs/benchmarks.md and target/bench/report.json
//! cargo bench -p circuits-bench --bench suite -- --quick  # every scenario at reduced size, under two minutes
//! cargo bench -p circuits-bench --bench suite -- --only S1,S2
//! ```
//!
//! Any other flag, or a scenario id that is not one of [`SCENARIOS`] or `burst`, stops the suite
//! with a usage line and exit code 2 before anything runs: a typo would otherwise measure nothing,
//! or everything, for minutes.

mod asyncs;
mod bus;
mod dashboard;
mod jobs;
mod measure;
mod process;
mod python;
mod remote;
mod report;
mod svg;
mod threads;
mod width;

use measure::{Config, Scenario};

/// One scenario's measurement: all of its variants (sizes, strategies, ...) as results.
type Run = fn(&Config) -> Vec<Scenario>;

/// The scenarios in the order they run, by id; `--only` takes these ids (and `burst`, the elastic
/// pool's plot), in any case.
const SCENARIOS: [(&str, Run); 16] = [
    ("S1", threads::s1),
    ("S2", threads::s2),
    ("S3", threads::s3),
    ("S4", threads::s4),
    ("S5", threads::s5),
    ("S6", process::s6),
    ("S7", process::s7),
    ("S7B", process::s7b),
    ("S8", process::s8),
    ("S9", threads::s9),
    ("S10", remote::s10),
    ("S11", asyncs::s11),
    ("S12", width::s12),
    ("B1", bus::b1),
    ("B2", bus::b2),
    ("B3", bus::b3),
];
const BURST: &str = "BURST";
const USAGE: &str =
    "usage: cargo bench -p circuits-bench --bench suite -- [--quick] [--only S1,S2,...]";

/// What the command line asks for.
struct Args {
    quick: bool,
    /// The upper-cased ids given to `--only`; `None` runs everything.
    only: Option<Vec<String>>,
}

/// Reads the suite's flags; the error says which argument is wrong.
fn parse(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        quick: false,
        only: None,
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => parsed.quick = true,
            // Cargo passes `--bench` to every `harness = false` bench it runs.
            "--bench" => {}
            "--only" => {
                let list = args.next().ok_or("--only needs a list of scenario ids")?;
                let ids = parse_ids(&list)?;
                parsed.only.get_or_insert_with(Vec::new).extend(ids);
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(parsed)
}

/// `s1,S7b, burst` into upper-cased ids, each of which must be known.
fn parse_ids(list: &str) -> Result<Vec<String>, String> {
    let known = || SCENARIOS.iter().map(|s| s.0).chain([BURST]);
    list.split(',')
        .map(|x| x.trim().to_uppercase())
        .map(|id| {
            if known().any(|k| k == id) {
                Ok(id)
            } else {
                let known: Vec<&str> = known().collect();
                Err(format!(
                    "unknown scenario `{id}` (known: {})",
                    known.join(", ")
                ))
            }
        })
        .collect()
}

fn main() {
    // Process-mode workers, S10's worker hosts (with `CIRCUITS_NATS_HOST`) and the raw-pipe
    // floor's children are this binary, re-executed.
    circuits::init(jobs::jobs());
    process::serve_floor_child_if_asked();
    threads::serve_memory_child_if_asked();

    let Args { quick, only } = parse(std::env::args().skip(1)).unwrap_or_else(|e| {
        eprintln!("error: {e}\n{USAGE}");
        std::process::exit(2)
    });
    let cfg = Config::new(quick);
    let wanted = |id: &str| only.as_ref().is_none_or(|o| o.iter().any(|x| x == id));

    eprintln!(
        "circuits benchmark suite ({} mode, {} rounds)",
        if quick { "quick" } else { "full" },
        cfg.rounds
    );
    let started = std::time::Instant::now();
    let mut scenarios: Vec<Scenario> = Vec::new();
    for (id, f) in SCENARIOS.iter().filter(|s| wanted(s.0)) {
        let t = std::time::Instant::now();
        eprintln!("== {id}");
        let out = f(&cfg);
        for s in &out {
            eprintln!("{}", s.summary());
        }
        eprintln!("   ({:.1} s)", t.elapsed().as_secs_f64());
        scenarios.extend(out);
    }
    let burst = wanted(BURST).then(|| {
        eprintln!("== burst");
        threads::burst(&cfg)
    });
    eprintln!("suite done in {:.1} s", started.elapsed().as_secs_f64());
    report::write(&cfg, &scenarios, burst, only.is_some());
}

//! The fuzz targets, bounded, in the ordinary test suite: every committed
//! seed (`fuzz/seeds/<target>/`) and every input a fuzzer ever crashed on
//! (`fuzz/regressions/<target>/`) is run through the same entry points
//! libFuzzer runs (`fuzz/src/entries.rs`), then a fixed number of
//! deterministic mutations of them. A panic, a failed invariant or a hang
//! (one input running longer than [`PER_INPUT`], watched from another
//! thread) fails the test. The long coverage-guided runs are `cargo fuzz` (README,
//! Security).

#[path = "../fuzz/src/entries.rs"]
mod entries;

use std::{path::Path, sync::mpsc, time::Duration};

/// Mutations per target on every `cargo test`.
const MUTATIONS: usize = 400;

fn inputs(target: &str) -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut found = Vec::new();
    for folder in ["seeds", "regressions"] {
        let Ok(dir) = std::fs::read_dir(root.join(folder).join(target)) else {
            continue;
        };
        let mut paths: Vec<_> = dir.flatten().map(|e| e.path()).collect();
        paths.sort();
        found.extend(paths.iter().map(|p| std::fs::read(p).unwrap()));
    }
    found
}

/// A small deterministic generator (xorshift), so a failure repeats.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Tokens that matter to the parsers under test.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "\"",
    "\\",
    ":",
    ",",
    "\n",
    "(",
    ")",
    "|",
    ".",
    "'",
    "%",
    "$this",
    "{{ ",
    " }}",
    "{[ ",
    " ]}",
    "{% if ",
    "{% for x in ",
    " %}",
    "where(",
    "resolve()",
    "iif(",
    "0.1",
    "1e999",
    "-0",
    "@2026-",
    "\u{202E}",
    "\u{85}",
    "\u{0}",
    "\u{FFFF}",
    "v1,",
    "whsec_",
    "[providers.x]",
    "= \"",
    "true",
    "null",
];

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(data.len() + 1);
        match rng.below(5) {
            0 if !data.is_empty() => {
                let i = at.min(data.len() - 1);
                data[i] ^= 1 << rng.below(8);
            }
            1 => {
                let token = TOKENS[rng.below(TOKENS.len())].as_bytes();
                data.splice(at..at, token.iter().copied());
            }
            2 => {
                let end = (at + rng.below(16)).min(data.len());
                data.drain(at..end);
            }
            3 => data.truncate(at),
            _ => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len());
                let to = (from + rng.below(64)).min(other.len());
                data.splice(at..at, other[from..to].iter().copied());
            }
        }
    }
    data
}

/// How long one input may run before the run counts as hung: generous,
/// for a debug build on a loaded machine (inputs take milliseconds).
const PER_INPUT: Duration = Duration::from_secs(30);

/// What the thread running the inputs reports to its watchdog.
enum Progress {
    /// It starts on this input.
    Starts(Vec<u8>),
    Finished,
}

/// Run the seeds and the mutations of `target` through `entry` on a thread
/// of their own, watched: a panic fails the test, and so does any one
/// input running longer than [`PER_INPUT`] (the input is shown).
fn run(target: &'static str, entry: fn(&[u8])) {
    let (report, progress) = mpsc::channel();
    let worker = std::thread::spawn(move || run_inputs(target, entry, &report));
    let mut current = Vec::new();
    loop {
        match progress.recv_timeout(PER_INPUT) {
            Ok(Progress::Starts(input)) => current = input,
            Ok(Progress::Finished) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                "{target}: an input ran longer than {PER_INPUT:?} (a hang): {:?}",
                String::from_utf8_lossy(&current)
            ),
            // The worker panicked: fail with its panic.
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    if let Err(panic) = worker.join() {
        std::panic::resume_unwind(panic);
    }
}

fn run_inputs(target: &str, entry: fn(&[u8]), report: &mpsc::Sender<Progress>) {
    let each = |input: &[u8]| {
        report.send(Progress::Starts(input.to_vec())).ok();
        entry(input);
    };
    let seeds = inputs(target);
    assert!(!seeds.is_empty(), "fuzz/seeds/{target} has seeds");
    for seed in &seeds {
        each(seed);
    }
    let mut rng = Rng(0x5157_4e50_4f53_5400 ^ target.len() as u64);
    // `SIGNPOST_FUZZ_SECONDS=600` turns the bounded run into a long one
    // (blind mutation, for where the coverage-guided fuzzer cannot run).
    let budget = std::env::var("SIGNPOST_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs);
    let started = std::time::Instant::now();
    let mut runs = 0usize;
    while match budget {
        Some(budget) => started.elapsed() < budget,
        None => runs < MUTATIONS,
    } {
        each(&mutate(&mut rng, &seeds));
        runs += 1;
    }
    if budget.is_some() {
        eprintln!("{target}: {runs} mutated inputs in {:?}", started.elapsed());
    }
    report.send(Progress::Finished).ok();
}

#[test]
fn fhirpath_seeds_and_mutations() {
    run("fhirpath", entries::fhirpath);
}

#[test]
fn fpml_seeds_and_mutations() {
    run("fpml", entries::fpml);
}

#[test]
fn intake_seeds_and_mutations() {
    run("intake", entries::intake);
}

#[test]
fn webhook_verify_seeds_and_mutations() {
    run("webhook_verify", entries::webhook_verify);
}

#[test]
fn config_seeds_and_mutations() {
    run("config", entries::config);
}

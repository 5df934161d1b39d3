//! A small fuzzer on stable Rust, for `tests/fuzz.rs`: it mutates inputs from a pool
//! (the target's seeds and its corpus in `fuzz/corpus/<target>/`) for a time budget and
//! runs each through the target's check, which panics on a broken invariant.
//!
//! There is no coverage feedback here (cargo-fuzz has it, but wants nightly); what steers
//! instead is each input's *outcome*: the target names what happened (a rejection reason
//! with its particulars blanked, a kind of point, an error of the job file) and an input
//! with an outcome not seen before joins the pool, so later mutations start from it.
//!
//! A run first replays every file of the corpus and every seed as it is, then mutates
//! them (bit flips, boundary numbers, dictionary tokens, pieces of other inputs spliced
//! in) until the budget is spent. Per input it watches:
//! - panics: caught, the input minimized and written to the corpus as `crash-<hash>`,
//!   reported with the message, the place and the file when the test ends — so the next
//!   run replays it first, and fails until it is fixed;
//! - hangs: an input still running after [`HANG`] is written to the corpus as
//!   `hang-<hash>` and aborts the process, naming the file;
//! - allocations: the largest single allocation made on the target's thread must stay
//!   within [`allocation_limit`] of the input's size (a bogus length must not allocate);
//!   an input over it is a failure like a panic.
//!
//! `TSMIG_FUZZ_SECONDS` sets the budget per target (default 10); `TSMIG_FUZZ_SAVE=1`
//! also writes to the corpus, at the end, the smallest input of each outcome that only
//! mutation reached (for a long run, whose additions are then looked over; not in CI);
//! `TSMIG_FUZZ_SEED` fixes the random seed; `TSMIG_FUZZ_OUTCOMES=<file>` writes every
//! outcome seen there (to check that outcomes are classes, not one per input).

#![allow(dead_code)]

pub mod targets;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

/// An input still running after this long is a hang.
pub const HANG: Duration = Duration::from_secs(30);
/// Inputs with new outcomes saved per target and run (`TSMIG_FUZZ_SAVE=1`), at most.
const SAVE_AT_MOST: usize = 64;

/// What the fuzzer runs.
pub struct Target {
    /// Its name: the corpus is `fuzz/corpus/<name>/`.
    pub name: &'static str,
    /// Seeds made by code, besides the corpus.
    pub seeds: Vec<Vec<u8>>,
    /// Tokens worth inserting (keywords, separators, boundary numbers).
    pub dictionary: &'static [&'static [u8]],
    /// Inputs are cut to this many bytes.
    pub max_len: usize,
    /// Runs one input; panics on a broken invariant; returns the input's outcomes.
    pub run: fn(&[u8]) -> Vec<String>,
}

/// What a run did.
#[derive(Debug)]
pub struct Report {
    /// Corpus files replayed before mutating.
    pub replayed: usize,
    /// Inputs run, replayed ones included.
    pub inputs: u64,
    pub elapsed: Duration,
    /// Inputs mutations start from at the end (seeds, corpus, new outcomes).
    pub pool: usize,
    /// Distinct outcomes seen.
    pub outcomes: usize,
    /// Inputs written to the corpus (`TSMIG_FUZZ_SAVE=1`).
    pub saved: usize,
    /// Distinct failures: the panic message and place, and the minimized input.
    pub failures: Vec<String>,
}

/// The budget per target.
pub fn budget() -> Duration {
    let seconds = std::env::var("TSMIG_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(10.0);
    Duration::from_secs_f64(seconds)
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The corpus of `target`: every file in `fuzz/corpus/<target>/`.
pub fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = repo().join("fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
        .into_iter()
        .filter_map(|f| std::fs::read(f).ok())
        .collect()
}

/// A file name for an input: its hash, as libFuzzer names corpus files (not SHA-1, but
/// stable).
pub fn name_of(input: &[u8]) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(input))
}

pub use targets::shape;

// --- Allocations -------------------------------------------------------------------

/// The test binary's allocator: the system's, noting the largest single allocation per
/// thread so a target can be held to [`allocation_limit`].
pub struct Watching;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Watching {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|l| {
        if size > l.get() {
            l.set(size)
        }
    });
}

/// The largest allocation an input of `len` bytes may make on the target's thread: the
/// points or rows it becomes take a few dozen times its text, never more.
pub fn allocation_limit(len: usize) -> usize {
    (4 << 20) + 128 * len
}

// --- Panics ------------------------------------------------------------------------

thread_local! {
    static LAST_PANIC: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// A panic hook that counts and remembers instead of printing (a fuzzer panics on
/// purpose, often); the report prints what matters.
fn quiet_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let place = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let text = format!("{message} (at {place})");
            let fuzzing = LAST_PANIC.with(|p| {
                let mut p = p.borrow_mut();
                let fuzzing = p.is_some();
                if fuzzing {
                    *p = Some(text.clone());
                }
                fuzzing
            });
            if !fuzzing {
                // Not a fuzzing thread: printed; counted for the target if the endpoint's.
                let thread = std::thread::current();
                if thread.name() == Some(targets::ENDPOINT_THREADS) {
                    targets::PANICS_ELSEWHERE.fetch_add(1, Ordering::SeqCst);
                }
                default(info);
            }
        }));
    });
}

// --- Mutation ----------------------------------------------------------------------

const INTERESTING_BYTES: &[u8] = &[0, 1, 0x7f, 0x80, 0xff, b'\n', b' ', b'\\', b'"', b'=', b','];
const INTERESTING_WORDS: &[u32] = &[
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0x8000,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
];

struct Mutator {
    rng: fastrand::Rng,
}

impl Mutator {
    fn mutate(&mut self, input: &mut Vec<u8>, pool: &[Vec<u8>], dictionary: &[&[u8]]) {
        let rounds = 1 + self.rng.usize(..4);
        for _ in 0..rounds {
            self.once(input, pool, dictionary);
        }
    }

    fn once(&mut self, input: &mut Vec<u8>, pool: &[Vec<u8>], dictionary: &[&[u8]]) {
        let r = &mut self.rng;
        let len = input.len();
        let at = |r: &mut fastrand::Rng| r.usize(..=len);
        match r.u8(..13) {
            0 if len > 0 => {
                let i = r.usize(..len);
                input[i] ^= 1 << r.u8(..8);
            }
            1 if len > 0 => {
                let i = r.usize(..len);
                input[i] = r.u8(..);
            }
            2 if len > 0 => {
                let i = r.usize(..len);
                input[i] = INTERESTING_BYTES[r.usize(..INTERESTING_BYTES.len())];
            }
            3 => {
                let i = at(r);
                let n = 1 + r.usize(..4);
                for _ in 0..n {
                    input.insert(i, r.u8(..));
                }
            }
            4 if len > 0 => {
                let start = r.usize(..len);
                let n = 1 + r.usize(..(len - start).min(16));
                input.drain(start..start + n);
            }
            5 if len > 0 => {
                // Repeat a piece (many lines, many columns).
                let start = r.usize(..len);
                let n = 1 + r.usize(..(len - start).min(64));
                let piece = input[start..start + n].to_vec();
                let i = at(r);
                for _ in 0..1 + r.usize(..4) {
                    input.splice(i..i, piece.iter().copied());
                }
            }
            6 | 7 if !dictionary.is_empty() => {
                let token = dictionary[r.usize(..dictionary.len())];
                let i = at(r);
                if r.bool() || len == 0 {
                    input.splice(i..i, token.iter().copied());
                } else {
                    let end = (i + token.len()).min(len);
                    input.splice(i..end, token.iter().copied());
                }
            }
            8 if !pool.is_empty() => {
                // Splice: this input's head, another's tail.
                let other = &pool[r.usize(..pool.len())];
                if !other.is_empty() {
                    let cut = at(r);
                    let from = r.usize(..other.len());
                    input.truncate(cut);
                    input.extend_from_slice(&other[from..]);
                }
            }
            9 if !pool.is_empty() => {
                // Insert a piece of another input.
                let other = &pool[r.usize(..pool.len())];
                if !other.is_empty() {
                    let from = r.usize(..other.len());
                    let n = 1 + r.usize(..(other.len() - from).min(64));
                    let i = at(r);
                    input.splice(i..i, other[from..from + n].iter().copied());
                }
            }
            10 if len >= 2 => {
                // A boundary number, little- or big-endian, 1 to 4 bytes wide.
                let width = [1, 2, 4][r.usize(..3)].min(len);
                let i = r.usize(..=len - width);
                let word = INTERESTING_WORDS[r.usize(..INTERESTING_WORDS.len())];
                let bytes = if r.bool() {
                    word.to_le_bytes()
                } else {
                    word.to_be_bytes()
                };
                let bytes = if r.bool() {
                    &bytes[..width]
                } else {
                    &bytes[4 - width..]
                };
                input[i..i + width].copy_from_slice(bytes);
            }
            11 if len > 0 => {
                // Add to a byte (a length, a count, a digit).
                let i = r.usize(..len);
                input[i] = input[i].wrapping_add(r.u8(..8)).wrapping_sub(4);
            }
            12 if len > 1 => {
                // Swap two pieces.
                let a = r.usize(..len);
                let b = r.usize(..len);
                input.swap(a, b);
            }
            _ => {
                let i = at(r);
                input.insert(i, INTERESTING_BYTES[r.usize(..INTERESTING_BYTES.len())]);
            }
        }
    }
}

// --- The loop ----------------------------------------------------------------------

/// One input's run: its outcomes, or the panic it caused, or a too large allocation.
fn run_one(target: &Target, input: &[u8]) -> Result<Vec<String>, String> {
    LARGEST.with(|l| l.set(0));
    LAST_PANIC.with(|p| *p.borrow_mut() = Some(String::new()));
    let result = catch_unwind(AssertUnwindSafe(|| (target.run)(input)));
    let panic = LAST_PANIC.with(|p| p.borrow_mut().take());
    let largest = LARGEST.with(|l| l.get());
    match result {
        Ok(outcomes) => {
            if largest > allocation_limit(input.len()) {
                Err(format!(
                    "allocated {largest} bytes at once for a {}-byte input",
                    input.len()
                ))
            } else {
                Ok(outcomes)
            }
        }
        Err(_) => Err(panic.unwrap_or_default()),
    }
}

/// Where a failure happened (its message's `at file:line`), to tell failures apart.
fn failure_key(failure: &str) -> String {
    match failure.rfind(" (at ") {
        Some(i) => failure[i..].to_string(),
        None => shape(failure),
    }
}

/// The smallest input found (by cutting pieces out) that fails at the same place.
fn minimize(target: &Target, input: &[u8], failure: &str) -> Vec<u8> {
    let key = failure_key(failure);
    let fails =
        |candidate: &[u8]| run_one(target, candidate).is_err_and(|f| failure_key(&f) == key);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut best = input.to_vec();
    let mut chunk = best.len().div_ceil(2).max(1);
    while chunk >= 1 && Instant::now() < deadline {
        let mut i = 0;
        let mut cut_any = false;
        while i < best.len() && Instant::now() < deadline {
            let end = (i + chunk).min(best.len());
            let mut candidate = best[..i].to_vec();
            candidate.extend_from_slice(&best[end..]);
            if fails(&candidate) {
                best = candidate;
                cut_any = true;
            } else {
                i += chunk;
            }
        }
        if chunk == 1 && !cut_any {
            break;
        }
        chunk = (chunk / 2).max(1);
        if chunk == 1 && !cut_any && best.len() > 4096 {
            break;
        }
    }
    best
}

/// An input as Rust byte-string text, for a report or a regression test.
pub fn escaped(input: &[u8]) -> String {
    let mut out = String::from("b\"");
    for &b in input {
        out.extend(std::ascii::escape_default(b).map(char::from));
    }
    out.push('"');
    out
}

/// Fuzzes `target` for [`budget`].
pub fn fuzz(target: Target) -> Report {
    fuzz_for(target, budget())
}

/// Fuzzes `target` for `budget`.
pub fn fuzz_for(target: Target, budget: Duration) -> Report {
    quiet_panics();
    let seed = std::env::var("TSMIG_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    let mut mutator = Mutator {
        rng: fastrand::Rng::with_seed(seed),
    };
    let save = std::env::var("TSMIG_FUZZ_SAVE").is_ok_and(|v| v == "1");
    let corpus_dir = repo().join("fuzz/corpus").join(target.name);

    // The watchdog: the input now running and since when.
    let current: Arc<Mutex<(Instant, Vec<u8>, bool)>> =
        Arc::new(Mutex::new((Instant::now(), Vec::new(), false)));
    let watched = current.clone();
    let name = target.name;
    let hangs = corpus_dir.clone();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let finished = done.clone();
    let watchdog = std::thread::spawn(move || {
        while !finished.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(500));
            let (since, input, running) = &*watched.lock().unwrap();
            if *running && since.elapsed() > HANG {
                let file = hangs.join(format!("hang-{}", name_of(input)));
                let saved =
                    std::fs::create_dir_all(&hangs).and_then(|_| std::fs::write(&file, input));
                eprintln!(
                    "fuzz {name}: an input has run for over {} s (a hang), {}: {}",
                    HANG.as_secs(),
                    match saved {
                        Ok(()) => format!("saved as {}", file.display()),
                        Err(e) => format!("not saved ({e})"),
                    },
                    escaped(input)
                );
                std::process::abort();
            }
        }
    });

    // The corpus first, every file as it is (whatever its length), then the seeds.
    let mut pool: Vec<Vec<u8>> = corpus(target.name);
    let replayed = pool.len();
    pool.extend(target.seeds.iter().cloned());
    // Every outcome seen, with the smallest mutated input that gave it (`None` if a corpus
    // file or seed gave it): what `TSMIG_FUZZ_SAVE=1` writes to the corpus.
    let mut seen: HashMap<String, Option<Vec<u8>>> = HashMap::new();
    let mut failures: Vec<(String, Vec<u8>)> = Vec::new();
    let mut failure_keys: HashSet<String> = HashSet::new();
    let mut inputs = 0u64;
    let start = Instant::now();

    let mut check = |input: Vec<u8>,
                     pool: &mut Vec<Vec<u8>>,
                     seen: &mut HashMap<String, Option<Vec<u8>>>,
                     from_pool: bool| {
        {
            let mut c = current.lock().unwrap();
            c.0 = Instant::now();
            c.1.clear();
            c.1.extend_from_slice(&input);
            c.2 = true;
        }
        let result = run_one(&target, &input);
        current.lock().unwrap().2 = false;
        match result {
            Ok(outcomes) => {
                let mut new = false;
                for o in outcomes {
                    match seen.get_mut(&o) {
                        None => {
                            new = true;
                            seen.insert(o, (!from_pool).then(|| input.clone()));
                        }
                        Some(Some(smallest)) if input.len() < smallest.len() => {
                            *smallest = input.clone();
                        }
                        Some(_) => {}
                    }
                }
                if new && !from_pool {
                    pool.push(input);
                }
            }
            Err(failure) => {
                let key = failure_key(&failure);
                if failure_keys.insert(key) {
                    let small = minimize(&target, &input, &failure);
                    let file = corpus_dir.join(format!("crash-{}", name_of(&small)));
                    let saved = std::fs::create_dir_all(&corpus_dir)
                        .and_then(|_| std::fs::write(&file, &small))
                        .map_or_else(
                            |e| format!("not saved ({e})"),
                            |_| format!("saved as {}", file.display()),
                        );
                    eprintln!(
                        "fuzz {}: {failure}\n  input ({} bytes, minimized from {}): {}\n  {saved}",
                        target.name,
                        small.len(),
                        input.len(),
                        escaped(&small),
                    );
                    failures.push((format!("{failure}; {saved}"), small));
                }
            }
        }
    };

    // Every corpus file and seed once, unmutated.
    for input in pool.clone() {
        check(input, &mut pool, &mut seen, true);
        inputs += 1;
    }
    pool.retain(|s| s.len() <= target.max_len);
    if pool.is_empty() {
        pool.push(Vec::new());
    }
    while start.elapsed() < budget {
        for _ in 0..64 {
            let mut input = pool[mutator.rng.usize(..pool.len())].clone();
            mutator.mutate(&mut input, &pool, target.dictionary);
            input.truncate(target.max_len);
            check(input, &mut pool, &mut seen, false);
            inputs += 1;
        }
    }
    done.store(true, Ordering::Relaxed);
    let _ = watchdog.join();
    if let Ok(path) = std::env::var("TSMIG_FUZZ_OUTCOMES") {
        let mut outcomes: Vec<&str> = seen.keys().map(String::as_str).collect();
        outcomes.sort_unstable();
        let _ = std::fs::write(path, outcomes.join("\n"));
    }
    let saved = if save {
        save_new_outcomes(&corpus_dir, &seen)
    } else {
        0
    };
    let report = Report {
        replayed,
        inputs,
        elapsed: start.elapsed(),
        pool: pool.len(),
        outcomes: seen.len(),
        saved,
        failures: failures
            .iter()
            .map(|(f, input)| format!("{f}\n    input: {}", escaped(input)))
            .collect(),
    };
    eprintln!(
        "fuzz {}: {} corpus files replayed, {} inputs in {:.1} s ({:.0}/s), seed {seed}, {} distinct outcomes, pool {}, {} saved to the corpus, {} failures",
        target.name,
        report.replayed,
        report.inputs,
        report.elapsed.as_secs_f64(),
        report.inputs as f64 / report.elapsed.as_secs_f64(),
        report.outcomes,
        report.pool,
        report.saved,
        report.failures.len()
    );
    report
}

/// Writes to the corpus the smallest input of each outcome only mutation reached, at
/// most [`SAVE_AT_MOST`] of them (the smallest first) and none over 4 KiB; returns how
/// many it wrote.
fn save_new_outcomes(
    corpus_dir: &std::path::Path,
    seen: &HashMap<String, Option<Vec<u8>>>,
) -> usize {
    let mut inputs: Vec<&Vec<u8>> = seen
        .values()
        .flatten()
        .filter(|i| i.len() <= 4096)
        .collect();
    inputs.sort_by_key(|i| (i.len(), *i));
    inputs.dedup();
    let _ = std::fs::create_dir_all(corpus_dir);
    inputs
        .into_iter()
        .take(SAVE_AT_MOST)
        .filter(|input| std::fs::write(corpus_dir.join(name_of(input)), input).is_ok())
        .count()
}

/// Fails the test with every failure of `report`.
pub fn assert_clean(name: &str, report: &Report) {
    assert!(
        report.failures.is_empty(),
        "fuzz {name}: {} failures:\n  {}",
        report.failures.len(),
        report.failures.join("\n  ")
    );
}

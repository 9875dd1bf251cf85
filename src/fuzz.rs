//! A small mutational fuzzer for Arno's parsers of untrusted bytes, on stable Rust and inside the
//! ordinary test binary (no nightly, no instrumentation, no extra dependency).
//!
//! Each target (`fuzz_*` tests beside the parser: `specs::fuzz`, `workflow::fuzz`,
//! `auth::scim::fuzz`) gives seeds, a dictionary of tokens its format is made of, optionally a
//! structure-aware mutator, and a function that runs one input and asserts the parser's
//! properties (no panic, round trips, bounds). The engine starts from the seeds and from
//! `tests/fuzz/corpus/<target>/` (inputs worth keeping: earlier findings, real files), mutates
//! them (bit flips, interesting numbers and varints, dictionary tokens, block copies and
//! deletions, splices of two inputs) and keeps a mutant in its pool when it reaches an outcome no
//! input reached before — the shape the target reports (which error, which branch, how many
//! blocks): feedback without coverage instrumentation.
//!
//! A finding (a panic, a failed property, or an input that takes longer than `ARNO_FUZZ_SLOW_MS`,
//! default 2,000 ms, which is how quadratic behaviour shows) is written to
//! `$TMPDIR/arno-fuzz/<target>/` and fails the test with its path. Put it in the corpus folder
//! once fixed, and it is replayed by every run from then on.
//!
//! In the test suite each target runs the corpus and `ARNO_FUZZ_RUNS` mutants (default 2,000);
//! `scripts/fuzz <target> <seconds>` sets `ARNO_FUZZ_SECONDS` for a timed run in an optimized
//! build, `ARNO_FUZZ_SEED` replays a run, `ARNO_FUZZ_SAVE=<dir>` writes every input that reached
//! a new outcome there (to grow the corpus) and `ARNO_FUZZ_VERBOSE=1` prints each new outcome.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A deterministic generator (xorshift64*): a seed reproduces a run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// A structure-aware mutator: a new input made from one.
pub type Mutator = fn(&mut Rng, &[u8]) -> Vec<u8>;

/// One fuzz target.
pub struct Target {
    pub name: &'static str,
    /// Inputs to start from (besides the corpus folder).
    pub seeds: fn() -> Vec<Vec<u8>>,
    /// Tokens of the format, inserted and overwritten by the byte mutator.
    pub dictionary: &'static [&'static [u8]],
    /// A structure-aware mutator (e.g. of a JSON tree), used for half of the mutants.
    pub mutate: Option<Mutator>,
    /// Longest input generated.
    pub max_len: usize,
    /// Run one input: panic on a broken property; return the outcome's shape (feedback).
    pub run: fn(&[u8]) -> String,
}

thread_local! {
    /// Set while this thread runs a fuzz input: its panics are findings, reported by the engine.
    static FUZZING: Cell<bool> = const { Cell::new(false) };
    /// Where the last such panic happened.
    static PANIC_AT: RefCell<String> = const { RefCell::new(String::new()) };
}

/// A panic hook that keeps fuzzing threads quiet (thousands of expected-to-be-caught panics would
/// flood the output) but remembers where they panicked; other threads' panics print as usual.
fn install_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if FUZZING.with(Cell::get) {
                let at = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
                PANIC_AT.with(|p| *p.borrow_mut() = at);
            } else {
                default(info);
            }
        }));
    });
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn digest(bytes: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

fn corpus(name: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus").join(name);
    let mut files: Vec<_> =
        std::fs::read_dir(&dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    files.sort();
    files.into_iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

/// Run a target as the environment asks; panics (failing the test) on the first finding.
pub fn run(target: &Target) {
    let runs = env_u64("ARNO_FUZZ_RUNS").unwrap_or(2_000);
    let seconds = env_u64("ARNO_FUZZ_SECONDS");
    let slow = Duration::from_millis(env_u64("ARNO_FUZZ_SLOW_MS").unwrap_or(2_000));
    let seed = env_u64("ARNO_FUZZ_SEED").unwrap_or_else(|| {
        if seconds.is_some() {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
        } else {
            1
        }
    });
    let verbose = std::env::var_os("ARNO_FUZZ_VERBOSE").is_some();
    let save = std::env::var_os("ARNO_FUZZ_SAVE").map(|d| PathBuf::from(d).join(target.name));
    let findings = std::env::temp_dir().join("arno-fuzz").join(target.name);
    // The input being run, on disk: if the process dies (out of memory, stack overflow, abort)
    // scripts/fuzz shows it.
    let in_flight = seconds.map(|_| {
        let _ = std::fs::create_dir_all(&findings);
        findings.join("in-flight")
    });
    let mut in_flight_file = in_flight.as_ref().and_then(|p| std::fs::File::create(p).ok());

    let mut pool: Vec<Vec<u8>> = corpus(target.name);
    let from_corpus = pool.len();
    pool.extend((target.seeds)());
    assert!(!pool.is_empty(), "fuzz target {} has no seeds and no corpus", target.name);
    let mut seen_inputs: HashSet<u64> = HashSet::new();
    let mut shapes: HashSet<u64> = HashSet::new();
    let mut rng = Rng::new(seed);
    let started = Instant::now();
    let deadline = seconds.map(|s| started + Duration::from_secs(s));
    let (mut executed, mut slowest) = (0u64, Duration::ZERO);

    install_hook();
    eprintln!("fuzz {}: seed {seed} (ARNO_FUZZ_SEED={seed} replays this run)", target.name);
    // What the engine remembers is bounded: a long run must not run out of memory itself.
    const MAX_SEEN: usize = 2_000_000;
    const MAX_POOL_BYTES: usize = 256 << 20;
    let mut pool_bytes: usize = pool.iter().map(Vec::len).sum();
    let mut exec = |input: &[u8], executed: &mut u64| -> Result<Option<String>, String> {
        if seen_inputs.len() >= MAX_SEEN {
            seen_inputs.clear();
        }
        if !seen_inputs.insert(digest(input)) {
            return Ok(None);
        }
        if let Some(f) = in_flight_file.as_mut() {
            use std::io::Seek;
            let _ = f.set_len(0).and_then(|_| f.rewind()).and_then(|_| f.write_all(input));
        }
        let t = Instant::now();
        FUZZING.with(|f| f.set(true));
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| (target.run)(input)));
        FUZZING.with(|f| f.set(false));
        let took = t.elapsed();
        *executed += 1;
        slowest = slowest.max(took);
        match outcome {
            Err(e) => {
                let message = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "a panic".into());
                let at = PANIC_AT.with(|p| p.borrow().clone());
                Err(format!("panicked at {at}: {message}"))
            }
            Ok(_) if took > slow => Err(format!("took {} ms (limit {} ms)", took.as_millis(), slow.as_millis())),
            Ok(shape) => Ok(Some(shape)),
        }
    };
    let mut finding: Option<(Vec<u8>, String)> = None;
    // The corpus and the seeds first, then mutants.
    let initial = pool.clone();
    for input in &initial {
        match exec(input, &mut executed) {
            Err(why) => {
                finding = Some((input.clone(), why));
                break;
            }
            Ok(Some(shape)) => {
                shapes.insert(digest(shape.as_bytes()));
            }
            Ok(None) => {}
        }
    }
    let mut mutants = 0u64;
    let mut attempts = 0u64;
    while finding.is_none() {
        match deadline {
            Some(d) if Instant::now() >= d => break,
            // Mutants that repeat an input already run are not counted (up to a bound).
            None if mutants >= runs || attempts >= runs * 20 => break,
            _ => {}
        }
        attempts += 1;
        // Recent finds are mutated more often: they are where new outcomes were last reached.
        let parent = if pool.len() > 8 && rng.chance(30) {
            &pool[pool.len() - 1 - rng.below(8)]
        } else {
            &pool[rng.below(pool.len())]
        };
        let mut input = match target.mutate {
            Some(m) if rng.chance(50) => m(&mut rng, parent),
            _ => parent.clone(),
        };
        let other = pool[rng.below(pool.len())].clone();
        for _ in 0..1 + rng.below(6) {
            mutate_bytes(&mut rng, &mut input, &other, target.dictionary, target.max_len);
        }
        input.truncate(target.max_len);
        let before = executed;
        let result = exec(&input, &mut executed);
        mutants += executed - before;
        match result {
            Err(why) => finding = Some((input, why)),
            Ok(Some(shape)) => {
                if shapes.insert(digest(shape.as_bytes())) {
                    if verbose {
                        eprintln!("new outcome: {}", shape.chars().take(200).collect::<String>());
                    }
                    if let Some(dir) = &save {
                        let _ = std::fs::create_dir_all(dir);
                        let _ = std::fs::write(dir.join(format!("{:016x}", digest(&input))), &input);
                    }
                    if pool_bytes + input.len() <= MAX_POOL_BYTES {
                        pool_bytes += input.len();
                        pool.push(input);
                    }
                }
            }
            Ok(None) => {}
        }
    }
    if let Some(p) = &in_flight {
        let _ = std::fs::remove_file(p);
    }
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!(
        "fuzz {}: seed {seed}, {executed} inputs ({from_corpus} from the corpus, {mutants} mutants) in {elapsed:.1} s \
         ({:.0}/s), {} outcomes, slowest {} ms",
        target.name,
        executed as f64 / elapsed.max(1e-9),
        shapes.len(),
        slowest.as_millis()
    );
    if let Some((input, why)) = finding {
        let _ = std::fs::create_dir_all(&findings);
        let path = findings.join(format!("{:016x}", digest(&input)));
        let _ = std::fs::write(&path, &input);
        let shown: String = String::from_utf8_lossy(&input[..input.len().min(300)]).into_owned();
        panic!(
            "fuzz target {} (seed {seed}) found an input that {why}\n  saved to {}\n  starts {shown:?}",
            target.name,
            path.display()
        );
    }
}

/// Numbers at the edges of what parsers count with.
const INTERESTING: &[u64] = &[
    0,
    1,
    2,
    7,
    8,
    127,
    128,
    255,
    256,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    1 << 53,
    (1 << 53) - 1,
    u64::MAX >> 1,
    u64::MAX,
];

/// A LEB128 unsigned varint, as lib0 (Yjs) writes numbers.
pub fn varint(mut n: u64, out: &mut Vec<u8>) {
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// One random change of the bytes (`other`: a second input, for splices).
pub fn mutate_bytes(rng: &mut Rng, input: &mut Vec<u8>, other: &[u8], dictionary: &[&[u8]], max_len: usize) {
    let at = |rng: &mut Rng, len: usize| rng.below(len + 1);
    match rng.below(11) {
        0 if !input.is_empty() => {
            let i = rng.below(input.len());
            input[i] ^= 1 << rng.below(8);
        }
        1 if !input.is_empty() => {
            let i = rng.below(input.len());
            input[i] = *rng.pick(&[0u8, 1, 0x7f, 0x80, 0xff, b'\n', b'|', b'"', b'\\', b'-', b'{', b'[']);
        }
        2 => {
            let mut v = vec![];
            varint(*rng.pick(INTERESTING), &mut v);
            let i = at(rng, input.len());
            if rng.chance(50) && i + v.len() <= input.len() {
                input[i..i + v.len()].copy_from_slice(&v);
            } else {
                input.splice(i..i, v);
            }
        }
        3 | 4 if !dictionary.is_empty() => {
            let token = *rng.pick(dictionary);
            let i = at(rng, input.len());
            input.splice(i..i, token.iter().copied());
        }
        5 if !input.is_empty() => {
            // Delete a block.
            let i = rng.below(input.len());
            let n = 1 + rng.below((input.len() - i).min(64));
            input.drain(i..i + n);
        }
        6 if !input.is_empty() => {
            // Copy a block elsewhere, sometimes many times (repetition is where quadratic
            // behaviour and counters hide).
            let i = rng.below(input.len());
            let n = 1 + rng.below((input.len() - i).min(256));
            let block = input[i..i + n].to_vec();
            let room = max_len.saturating_sub(input.len()) / block.len();
            let times = if rng.chance(10) { 1 + rng.below(2000) } else { 1 }.min(room.max(1));
            let j = at(rng, input.len());
            let repeated: Vec<u8> = block.iter().copied().cycle().take(block.len() * times).collect();
            input.splice(j..j, repeated);
        }
        7 if !other.is_empty() => {
            // Splice: our head, the other's tail.
            let i = at(rng, input.len());
            let j = rng.below(other.len());
            input.truncate(i);
            input.extend_from_slice(&other[j..]);
        }
        8 if !input.is_empty() => {
            let i = rng.below(input.len());
            input.truncate(i);
        }
        9 if input.len() >= 2 => {
            let i = rng.below(input.len());
            let j = rng.below(input.len());
            input.swap(i, j);
        }
        _ => {
            let i = at(rng, input.len());
            input.insert(i, rng.next() as u8);
        }
    }
}

/// A structure-aware mutator for JSON inputs: parse, change one node, write back. Inputs that
/// are not JSON are returned as they are (the byte mutator works on them).
pub fn mutate_json(rng: &mut Rng, input: &[u8], keys: &[&str], strings: &[&str]) -> Vec<u8> {
    use serde_json::Value;
    let Ok(mut doc) = serde_json::from_slice::<Value>(input) else { return input.to_vec() };
    fn random_value(rng: &mut Rng, keys: &[&str], strings: &[&str], depth: usize) -> Value {
        match rng.below(if depth > 3 { 5 } else { 7 }) {
            0 => Value::Null,
            1 => Value::Bool(rng.chance(50)),
            2 => match rng.below(3) {
                0 => serde_json::json!(*rng.pick(INTERESTING)),
                1 => serde_json::json!(-(*rng.pick(INTERESTING) as i64)),
                _ => serde_json::json!(*rng.pick(INTERESTING) as f64 * -1.5),
            },
            3 | 4 => Value::String(if rng.chance(80) {
                (*rng.pick(strings)).to_owned()
            } else {
                "x".repeat(rng.below(5000))
            }),
            5 => Value::Array((0..rng.below(4)).map(|_| random_value(rng, keys, strings, depth + 1)).collect()),
            _ => Value::Object(
                (0..rng.below(4))
                    .map(|_| ((*rng.pick(keys)).to_owned(), random_value(rng, keys, strings, depth + 1)))
                    .collect(),
            ),
        }
    }
    // Pick a random node (as a JSON pointer), then change it.
    let mut pointer = String::new();
    {
        let mut at = &doc;
        for _ in 0..rng.below(6) {
            let (key, next) = match at {
                Value::Array(a) if !a.is_empty() => {
                    let i = rng.below(a.len());
                    (i.to_string(), &a[i])
                }
                Value::Object(o) if !o.is_empty() => {
                    let (k, v) = o.iter().nth(rng.below(o.len())).expect("in range");
                    (k.replace('~', "~0").replace('/', "~1"), v)
                }
                _ => break,
            };
            pointer.push('/');
            pointer.push_str(&key);
            at = next;
        }
    }
    let Some(node) = doc.pointer_mut(&pointer) else { return input.to_vec() };
    match node {
        Value::Object(o) if rng.chance(50) => {
            if !o.is_empty() && rng.chance(30) {
                let k = o.keys().nth(rng.below(o.len())).cloned().unwrap_or_default();
                o.remove(&k);
            } else {
                o.insert((*rng.pick(keys)).to_owned(), random_value(rng, keys, strings, 0));
            }
        }
        Value::Array(a) if rng.chance(50) => {
            if !a.is_empty() && rng.chance(30) {
                let i = rng.below(a.len());
                let dup = a[i].clone();
                a.push(dup);
            } else {
                a.push(random_value(rng, keys, strings, 0));
            }
        }
        _ => *node = random_value(rng, keys, strings, 0),
    }
    serde_json::to_vec(&doc).unwrap_or_else(|_| input.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finds(input: &[u8]) -> String {
        if input.windows(4).any(|w| w == b"BOOM") {
            panic!("found it");
        }
        String::new()
    }

    /// The engine itself: a target that panics on a dictionary token is caught, and the finding
    /// names the input.
    #[test]
    fn the_engine_finds_a_planted_panic() {
        let target = Target {
            name: "engine-self-test",
            seeds: || vec![b"hello".to_vec()],
            dictionary: &[b"BOOM"],
            mutate: None,
            max_len: 64,
            run: finds,
        };
        let caught = panic::catch_unwind(AssertUnwindSafe(|| run(&target)));
        let message = caught.expect_err("the planted panic is found");
        let message = message.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(message.contains("panicked at src/fuzz.rs:") && message.contains("found it"), "{message}");
        assert!(message.contains("saved to"), "{message}");
    }

    #[test]
    fn varints_are_lib0s() {
        let mut v = vec![];
        varint(300, &mut v);
        assert_eq!(v, [0xac, 0x02]);
    }
}

//! Repeated refusals become one record with a count.
//!
//! Every refusal is audited, but a caller that is refused again and again (a script with a bad
//! token, junk back-channel logout tokens, a forged form posted in a loop, a throttled sign-in
//! retried every second) must not turn into a stream of writes under the chain's head lock.
//! So a refusal is recorded in full the first time its *kind* is seen from a *source* within a
//! window; identical refusals after it are only counted, and when the window ends one record
//! says how many there were (`"repeated": n`, with the first and last time). Nothing is lost:
//! the first record of each kind keeps every detail, and the count covers the rest.
//!
//! The kind is (action, reason, project, target); the source is the signed-in actor, or the
//! client address for an unauthenticated caller. Memory and writes are bounded whatever the
//! caller sends: at most [`MAX_SLOTS`] kinds are tracked, and at most [`MAX_FIRSTS`] first
//! records are written per window; past either limit refusals are counted under one overflow
//! slot per action (source and reason `*`). So a flood from any number of addresses writes at
//! most about `2 × MAX_FIRSTS + actions` records per window.
//!
//! The state is per process: with several replicas each one bounds its own writes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Actor, Event, Origin, Outcome};

/// How long identical refusals are folded into one record.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Kinds tracked at once.
pub const MAX_SLOTS: usize = 4096;
/// First records written per window, across all sources.
pub const MAX_FIRSTS: usize = 600;
/// Longest reason kept in a key or an aggregate record.
const MAX_REASON_CHARS: usize = 200;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Source {
    User(String),
    Token(String),
    Address(String),
    /// Unauthenticated without a known address, or the overflow slot.
    Anyone,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    action: String,
    reason: String,
    source: Source,
    project: Option<String>,
    target: Option<(String, String)>,
}

struct Slot {
    started: Instant,
    repeated: u64,
    first_ms: i64,
    last_ms: i64,
}

struct Inner {
    slots: HashMap<Key, Slot>,
    window_started: Instant,
    firsts: usize,
}

/// What was folded away: written as one record when its window ends.
#[derive(Debug, Clone)]
pub struct Aggregate {
    action: String,
    reason: String,
    source: Source,
    project: Option<String>,
    target: Option<(String, String)>,
    repeated: u64,
    first_ms: i64,
    last_ms: i64,
}

impl Aggregate {
    fn new(key: Key, slot: &Slot) -> Aggregate {
        Aggregate {
            action: key.action,
            reason: key.reason,
            source: key.source,
            project: key.project,
            target: key.target,
            repeated: slot.repeated,
            first_ms: slot.first_ms,
            last_ms: slot.last_ms,
        }
    }

    /// How many refusals this record stands for.
    pub fn repeated(&self) -> u64 {
        self.repeated
    }

    /// The origin the record carries: the address for an unauthenticated source.
    pub fn origin(&self) -> Origin {
        match &self.source {
            Source::Address(ip) => Origin { ip: Some(ip.clone()), ..Origin::default() },
            _ => Origin::default(),
        }
    }

    /// The record; `origin` is [`Aggregate::origin`], kept by the caller for the borrow.
    pub fn event<'a>(&'a self, origin: &'a Origin) -> Event<'a> {
        let actor = match &self.source {
            Source::User(id) => Actor::User(id),
            Source::Token(id) => Actor::Token(id),
            Source::Address(_) | Source::Anyone => Actor::Anonymous,
        };
        let mut event = Event::new(&self.action, Outcome::Denied, actor, origin).intent(serde_json::json!({
            "reason": self.reason,
            "repeated": self.repeated,
            "first_at_ms": self.first_ms,
            "last_at_ms": self.last_ms,
        }));
        if let Some(project) = &self.project {
            event = event.project(project);
        }
        if let Some((kind, id)) = &self.target {
            event = event.target(kind, id);
        }
        event
    }
}

/// What to write for one refusal.
#[derive(Debug)]
pub struct Admission {
    /// Write the refusal itself (the first of its kind in this window).
    pub record: bool,
    /// Counts of ended windows for the same kind (or its overflow slot), to write first.
    pub aggregates: Vec<Aggregate>,
}

pub struct Damper {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Damper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Damper")
    }
}

impl Default for Damper {
    fn default() -> Self {
        Damper::new()
    }
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

impl Damper {
    pub fn new() -> Damper {
        Damper { inner: Mutex::new(Inner { slots: HashMap::new(), window_started: Instant::now(), firsts: 0 }) }
    }

    fn key(event: &Event<'_>) -> Key {
        let reason = match event.intent.get("reason") {
            Some(serde_json::Value::String(s)) => truncate(s, MAX_REASON_CHARS),
            Some(other) => truncate(&other.to_string(), MAX_REASON_CHARS),
            None => String::new(),
        };
        let source = match event.actor {
            Actor::User(id) => Source::User(id.to_owned()),
            Actor::Token(id) => Source::Token(id.to_owned()),
            Actor::System | Actor::Anonymous => match event.origin.ip.as_deref() {
                Some(ip) if !ip.is_empty() => Source::Address(ip.to_owned()),
                _ => Source::Anyone,
            },
        };
        Key {
            action: event.action.to_owned(),
            reason,
            source,
            project: event.project_id.map(str::to_owned),
            target: event.target.map(|(k, i)| (k.to_owned(), i.to_owned())),
        }
    }

    fn overflow(action: &str) -> Key {
        Key { action: action.to_owned(), reason: "*".into(), source: Source::Anyone, project: None, target: None }
    }

    /// Decide what to write for a refusal seen now. Allowed decisions always pass.
    pub fn admit(&self, event: &Event<'_>, now_ms: i64) -> Admission {
        if event.outcome != Outcome::Denied {
            return Admission { record: true, aggregates: Vec::new() };
        }
        let now = Instant::now();
        let mut key = Damper::key(event);
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if now.duration_since(inner.window_started) >= WINDOW {
            inner.window_started = now;
            inner.firsts = 0;
        }
        let mut aggregates = Vec::new();
        let mut take_ended = |inner: &mut Inner, key: &Key| -> bool {
            match inner.slots.get_mut(key) {
                Some(slot) if now.duration_since(slot.started) < WINDOW => {
                    slot.repeated += 1;
                    slot.last_ms = now_ms;
                    true
                }
                Some(_) => {
                    let slot = inner.slots.remove(key).expect("present");
                    if slot.repeated > 0 {
                        aggregates.push(Aggregate::new(key.clone(), &slot));
                    }
                    false
                }
                None => false,
            }
        };
        if take_ended(&mut inner, &key) {
            return Admission { record: false, aggregates };
        }
        if inner.slots.len() >= MAX_SLOTS || inner.firsts >= MAX_FIRSTS {
            // Counted under the action's overflow slot, which records its own first refusal
            // once per window like any other kind.
            key = Damper::overflow(event.action);
            if take_ended(&mut inner, &key) {
                return Admission { record: false, aggregates };
            }
        }
        inner.firsts += 1;
        inner.slots.insert(key, Slot { started: now, repeated: 0, first_ms: now_ms, last_ms: now_ms });
        Admission { record: true, aggregates }
    }

    /// Take the counts whose window has ended (all of them when `all`, at shutdown), forgetting
    /// those kinds; kinds with nothing folded are simply forgotten.
    pub fn drain(&self, all: bool) -> Vec<Aggregate> {
        let now = Instant::now();
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let ended: Vec<Key> = inner
            .slots
            .iter()
            .filter(|(_, slot)| all || now.duration_since(slot.started) >= WINDOW)
            .map(|(key, _)| key.clone())
            .collect();
        let mut out = Vec::new();
        for key in ended {
            if let Some(slot) = inner.slots.remove(&key)
                && slot.repeated > 0
            {
                out.push(Aggregate::new(key, &slot));
            }
        }
        out
    }

    /// Kinds tracked now (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied<'a>(origin: &'a Origin, reason: &str) -> Event<'a> {
        Event::new("auth.login", Outcome::Denied, Actor::Anonymous, origin)
            .intent(serde_json::json!({"reason": reason}))
    }

    fn from(ip: &str) -> Origin {
        Origin { ip: Some(ip.into()), ..Origin::default() }
    }

    #[test]
    fn the_first_refusal_is_written_and_repeats_are_counted() {
        let d = Damper::new();
        let a = from("10.0.0.1");
        assert!(d.admit(&denied(&a, "throttled"), 1).record);
        for i in 0..99 {
            let admission = d.admit(&denied(&a, "throttled"), 2 + i);
            assert!(!admission.record && admission.aggregates.is_empty());
        }
        // Another reason, another address: their own first records.
        assert!(d.admit(&denied(&a, "bad_credentials"), 3).record);
        assert!(d.admit(&denied(&from("10.0.0.2"), "throttled"), 3).record);
        let drained = d.drain(true);
        assert_eq!(drained.len(), 1, "only the kind with repeats has something to say");
        assert_eq!(drained[0].repeated(), 99);
        assert_eq!(drained[0].origin().ip.as_deref(), Some("10.0.0.1"));
        let origin = drained[0].origin();
        let event = drained[0].event(&origin);
        assert_eq!(event.intent["repeated"], 99);
        assert_eq!(event.intent["first_at_ms"], 1);
        assert_eq!(event.intent["last_at_ms"], 100);
        assert_eq!(d.tracked(), 0);
    }

    #[test]
    fn allowed_decisions_always_pass() {
        let d = Damper::new();
        let a = from("10.0.0.1");
        for _ in 0..10 {
            let e = Event::new("auth.login", Outcome::Allowed, Actor::Anonymous, &a);
            assert!(d.admit(&e, 1).record);
        }
        assert_eq!(d.tracked(), 0);
    }

    #[test]
    fn many_sources_are_bounded_by_the_overflow_slot() {
        let d = Damper::new();
        let mut written = 0;
        for i in 0..(MAX_FIRSTS * 5) {
            let origin = from(&format!("2001:db8::{i:x}"));
            let e = Event::new("scim.request", Outcome::Denied, Actor::Anonymous, &origin)
                .intent(serde_json::json!({"reason": format!("junk {i}")}));
            let admission = d.admit(&e, i as i64);
            written += usize::from(admission.record) + admission.aggregates.len();
        }
        assert_eq!(written, MAX_FIRSTS + 1, "the first records, then one for the overflow slot");
        assert!(d.tracked() <= MAX_FIRSTS + 1);
        let drained = d.drain(true);
        let overflow: u64 = drained.iter().map(Aggregate::repeated).sum();
        assert_eq!(overflow as usize, MAX_FIRSTS * 5 - MAX_FIRSTS - 1, "every refusal is counted somewhere");
    }

    #[test]
    fn reasons_are_truncated_in_keys() {
        let d = Damper::new();
        let a = from("10.0.0.1");
        let long = "x".repeat(10_000);
        assert!(d.admit(&denied(&a, &long), 1).record);
        assert!(!d.admit(&denied(&a, &format!("{long}y")), 2).record, "same first 200 characters, same kind");
        let drained = d.drain(true);
        assert_eq!(drained[0].reason.chars().count(), MAX_REASON_CHARS);
    }
}

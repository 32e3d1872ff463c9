//! `--report FILE`: one run as a self-contained HTML page. One lane per host (the users, the
//! balancer, each instance, Redis, the store, the Bot API, the providers), every update, call and
//! command in time order with its outcome, the faults drawn over the lanes, and each violation
//! with the checker's words and links to the events it names.
//!
//! What the page shows comes from two places: the run's history (what users did, the faults) and
//! the events the hosts emitted while the run was captured (`capture`): the bot's own log lines
//! on the instances, and on the simulated hosts what they served (`history::REPORT_TARGET`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;

use crate::faults::{RunResult, instance_name};
use crate::history::{Event, FaultEvent, JourneyEnd, REPORT_TARGET};
use crate::scenario::{Mode, Scenario};

/// The page: its style and its drawing code, with the run's data put in place of `__DATA__`.
const PAGE: &str = include_str!("report.html");

/// One event a host emitted during the run.
#[derive(Clone, Debug)]
pub struct Line {
    pub at: Duration,
    pub host: String,
    pub level: tracing::Level,
    /// Emitted by a simulated host about what it served (not by the bot).
    pub served: bool,
    pub text: String,
}

/// Collects the events of the current thread's run, each with the host (turmoil's `node` span)
/// it happened on, or the service that served it (`bot::hosts::serving`'s `service` span).
struct Capture(Arc<Mutex<Vec<Line>>>);

/// What a span's fields said, kept on the span.
struct Fields(String);

#[derive(Default)]
struct Words {
    message: String,
    fields: String,
}

impl Visit for Words {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.fields.push_str(&format!(" {}={value:?}", field.name()));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        } else {
            self.fields.push_str(&format!(" {}={value}", field.name()));
        }
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &tracing::span::Attributes<'_>, id: &tracing::span::Id, ctx: Context<'_, S>) {
        let mut words = Words::default();
        attrs.record(&mut words);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Fields(words.fields.trim().to_owned()));
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let mut words = Words::default();
        event.record(&mut words);
        let (mut host, mut within) = (String::new(), Vec::new());
        for span in ctx.event_scope(event).into_iter().flat_map(|scope| scope.from_root()) {
            let extensions = span.extensions();
            let fields = extensions.get::<Fields>().map_or("", |f| f.0.as_str());
            // The host, or the service on it that served the request (a host may serve several).
            if span.name() == "node" || span.name() == "service" {
                host = fields.trim_start_matches("name=").trim_matches('"').to_owned();
            } else {
                within.push(format!("{}{{{fields}}}", span.name()));
            }
        }
        let served = event.metadata().target() == REPORT_TARGET;
        let mut text = words.message;
        if !served {
            text = format!("{}: {text}", event.metadata().target().trim_start_matches("atlas::"));
        }
        text.push_str(&words.fields);
        if !within.is_empty() {
            text.push_str(&format!("  [{}]", within.join(" ")));
        }
        let at = turmoil::sim_elapsed().unwrap_or_default();
        let line = Line { at, host, level: *event.metadata().level(), served, text };
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(line);
    }
}

/// Runs `run` with its events captured: the bot's at debug, and what the simulated hosts served.
pub fn capture<T>(run: impl FnOnce() -> T) -> (T, Vec<Line>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    // The bot's events at debug, the hosts' report events, and turmoil's `node` spans (the host
    // an event happened on); nothing else.
    let wanted = tracing_subscriber::filter::filter_fn(|meta| {
        let target = meta.target();
        if meta.is_span() {
            return meta.name() == "node" || target.starts_with("atlas");
        }
        (target == REPORT_TARGET || target == "atlas" || target.starts_with("atlas::"))
            && *meta.level() <= tracing::Level::DEBUG
    });
    let subscriber = tracing_subscriber::registry().with(Capture(lines.clone()).with_filter(wanted));
    let out = tracing::subscriber::with_default(subscriber, || crate::history::while_capturing(run));
    let lines = std::mem::take(&mut *lines.lock().unwrap_or_else(|p| p.into_inner()));
    (out, lines)
}

#[derive(Serialize)]
struct PageEvent {
    /// Milliseconds of simulated time.
    t: u64,
    lane: String,
    /// ok | warn | bad | info
    tone: &'static str,
    text: String,
}

#[derive(Serialize)]
struct Band {
    lanes: Vec<String>,
    from: u64,
    to: u64,
    label: String,
}

#[derive(Serialize)]
struct Violation {
    invariant: String,
    why: String,
    /// Indexes of the events the checker's words name.
    events: Vec<usize>,
}

#[derive(Serialize)]
struct Data {
    title: String,
    summary: String,
    verdict: String,
    held: Vec<String>,
    lanes: Vec<String>,
    end: u64,
    events: Vec<PageEvent>,
    bands: Vec<Band>,
    violations: Vec<Violation>,
}

fn ms(at: Duration) -> u64 {
    at.as_millis() as u64
}

/// The lane of a history event: the instance it names, or the users'.
fn lane_of(event: &Event) -> String {
    let instance = match event {
        Event::HandlerStart { instance, .. }
        | Event::HandlerEnd { instance, .. }
        | Event::Rate { instance, .. }
        | Event::Effect { instance, .. }
        | Event::KeyCreated { instance, .. }
        | Event::KeyRevoked { instance, .. }
        | Event::KeyClaim { instance, .. }
        | Event::KeyClaimed { instance, .. }
        | Event::KeyInstall { instance, .. }
        | Event::Purchase { instance, .. }
        | Event::Reissue { instance, .. }
        | Event::Sent { instance, .. } => Some(*instance),
        _ => None,
    };
    instance.map_or_else(|| "users".to_owned(), instance_name)
}

fn tone_of(event: &Event) -> &'static str {
    match event {
        Event::Journey { end: JourneyEnd::Done, .. } => "ok",
        Event::Journey { end: JourneyEnd::Refused(_), .. } => "warn",
        Event::Journey { .. } => "bad",
        Event::HandlerEnd { outcome, .. } if outcome.wants_redelivery() => "warn",
        _ => "info",
    }
}

fn tone_of_line(line: &Line) -> &'static str {
    let failed = line.text.contains("ERROR") || line.text.contains("status=5") || line.text.contains("status=4");
    if line.level == tracing::Level::ERROR || failed {
        "bad"
    } else if line.level == tracing::Level::WARN {
        "warn"
    } else if line.text.contains("outcome=\"committed\"") || line.text.contains("status=200") {
        "ok"
    } else {
        "info"
    }
}

/// Fault bands: from a fault to its end on the lanes it hit (a Redis restart is an instant on
/// Redis's lane).
fn bands(result: &RunResult, end: u64) -> Vec<Band> {
    let mut open: Vec<(usize, u64, String)> = Vec::new();
    let mut bands = Vec::new();
    // An end closes the first open band of its own kind on its instance (faults may overlap).
    let close = |i: usize, at: u64, kinds: &[&str], bands: &mut Vec<Band>, open: &mut Vec<(usize, u64, String)>| {
        if let Some(k) = open.iter().position(|(j, _, label)| *j == i && kinds.contains(&label.as_str())) {
            let (_, from, label) = open.remove(k);
            bands.push(Band { lanes: vec![instance_name(i)], from, to: at, label });
        }
    };
    for record in &result.history.records {
        let Event::Fault(fault) = &record.event else { continue };
        let at = ms(record.at);
        match fault {
            FaultEvent::Crashed(i) => open.push((*i, at, "crashed".into())),
            FaultEvent::LeaderCrashed(i) => open.push((*i, at, "leader crashed".into())),
            FaultEvent::Stopped(i) => open.push((*i, at, "SIGTERM".into())),
            FaultEvent::Partitioned(i) => open.push((*i, at, "cut off from Redis".into())),
            FaultEvent::Held(i) => open.push((*i, at, "Redis link held".into())),
            FaultEvent::Restarted(i) => close(*i, at, &["crashed", "leader crashed", "SIGTERM"], &mut bands, &mut open),
            FaultEvent::Reconnected(i) => close(*i, at, &["cut off from Redis"], &mut bands, &mut open),
            FaultEvent::Released(i) => close(*i, at, &["Redis link held"], &mut bands, &mut open),
            FaultEvent::Frozen { instance, for_ms } => bands.push(Band {
                lanes: vec![instance_name(*instance)],
                from: at,
                to: at + for_ms,
                label: "frozen".into(),
            }),
            FaultEvent::RedisRestarted { lose_data } => bands.push(Band {
                lanes: vec!["redis".into()],
                from: at,
                to: at + 200,
                label: if *lose_data { "restarted, data lost".into() } else { "restarted".into() },
            }),
            FaultEvent::Leads { .. }
            | FaultEvent::SentStoreCall { .. }
            | FaultEvent::NoLeaderToCrash
            | FaultEvent::NoLeaderToFreeze => {}
        }
    }
    for (i, from, label) in open {
        bands.push(Band { lanes: vec![instance_name(i)], from, to: end, label: format!("{label} (to the end)") });
    }
    bands
}

/// The ids a checker's words name: numbers (users, updates, invoices) and quoted ids (`q12`).
fn named_ids(why: &str) -> Vec<String> {
    let mut ids: Vec<String> = why
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| {
            let digits = w.chars().filter(char::is_ascii_digit).count();
            // Ids, not times or counts: a query id (q12), a charge (charge-3), a number of three
            // digits or more (users, updates, invoices; "9.060s" splits into "9" and "060s").
            (w.starts_with('q') && digits + 1 == w.len() && digits > 0)
                || w.starts_with("charge-")
                || (digits == w.len() && digits >= 3)
        })
        .map(str::to_owned)
        .collect();
    ids.sort();
    ids.dedup();
    // A query or a charge names the very update; a user's id names all they did.
    let specific: Vec<String> = ids.iter().filter(|w| !w.chars().all(|c| c.is_ascii_digit())).cloned().collect();
    if specific.is_empty() { ids } else { specific }
}

/// Whether `text` mentions `id` as a whole word.
fn mentions(text: &str, id: &str) -> bool {
    text.match_indices(id).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + id.len()..].chars().next();
        let apart = |c: Option<char>| c.is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '-'));
        apart(before) && apart(after)
    })
}

/// Events the page links to a violation at most.
const LINKED_MAX: usize = 200;

/// The page of one run.
pub fn page(scenario: &Scenario, result: &RunResult, lines: &[Line]) -> String {
    let end = ms(result.simulated);
    let mut events: Vec<PageEvent> = Vec::new();
    for record in &result.history.records {
        // The fakes' calls are in the captured lines, at the time they were made.
        if matches!(record.event, Event::Fault(_) | Event::Call { .. }) {
            continue;
        }
        let text = format!("{:?}", record.event);
        events.push(PageEvent { t: ms(record.at), lane: lane_of(&record.event), tone: tone_of(&record.event), text });
    }
    for record in &result.history.records {
        if let Event::Fault(fault) = &record.event {
            events.push(PageEvent { t: ms(record.at), lane: "faults".into(), tone: "bad", text: format!("{fault:?}") });
        }
    }
    for line in lines.iter().filter(|l| !l.host.is_empty()) {
        events.push(PageEvent {
            t: ms(line.at),
            lane: line.host.clone(),
            tone: tone_of_line(line),
            text: line.text.clone(),
        });
    }
    events.sort_by_key(|e| e.t);

    let mut lanes: Vec<String> = vec!["faults".into(), "users".into()];
    let mut hosts: Vec<String> = events.iter().map(|e| e.lane.clone()).filter(|l| !lanes.contains(l)).collect();
    hosts.sort();
    hosts.dedup();
    // Instances first, then the shared servers, then the outside world.
    let rank = |h: &String| match h.as_str() {
        "balancer" => 0,
        h if h.starts_with("atlas-") => 1,
        "redis" => 2,
        "postgres" => 3,
        _ => 4,
    };
    hosts.sort_by_key(|h| (rank(h), h.clone()));
    lanes.extend(hosts);

    let violations = result
        .violations
        .iter()
        .map(|(invariant, why)| {
            let ids = named_ids(why);
            let linked = events
                .iter()
                .enumerate()
                .filter(|(_, e)| ids.iter().any(|id| mentions(&e.text, id)))
                .map(|(i, _)| i)
                .take(LINKED_MAX)
                .collect();
            Violation { invariant: invariant.name().into(), why: why.clone(), events: linked }
        })
        .collect::<Vec<_>>();
    let verdict = if violations.is_empty() {
        "every invariant held".to_owned()
    } else {
        format!("{} violated", violations.iter().map(|v| v.invariant.as_str()).collect::<Vec<_>>().join(", "))
    };
    let data = Data {
        title: format!(
            "{} — seed {} — {} design",
            scenario.name,
            result.seed,
            if result.mode == Mode::Redis { "Redis" } else { "legacy" }
        ),
        summary: scenario.summary.clone(),
        verdict,
        held: scenario.invariants.iter().map(|i| i.name().to_owned()).collect(),
        lanes,
        end,
        bands: bands(result, end),
        events,
        violations,
    };
    let json = serde_json::to_string(&data).expect("the page's data serializes");
    // Inside <script>: a "</" in the data must not close the element.
    PAGE.replace("__DATA__", &json.replace("</", "<\\/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ids_a_checker_names_are_found_as_whole_words() {
        let why = "query q16 (user 101 pressed \"Telegram Stars\") answered at 9.060s and again at 9.120s";
        assert_eq!(named_ids(why), ["q16"], "the query, not everything the user did");
        assert_eq!(named_ids("user 103: 12 promo codes checked within 55 s from 1.100s"), ["103"]);
        assert!(mentions("Pressed { user: 101, query: \"q16\" }", "q16"));
        assert!(!mentions("q160", "q16"));
        assert!(!mentions("user 1010", "101"));
    }
}

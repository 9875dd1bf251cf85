//! Prometheus metrics, in a registry owned by the app (not a global), served on the metrics
//! listener only. HTTP metrics are keyed by route template, never by raw path or user.

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub http_requests_total: IntCounterVec,
    pub http_request_duration_seconds: HistogramVec,
    pub login_failures_total: IntCounterVec,
    pub sessions_active: IntGauge,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let http_requests_total = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests served, by route template, method and status class"),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let http_request_duration_seconds = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency, by route template and method")
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["route", "method"],
        )
        .expect("valid metric");
        let login_failures_total = IntCounterVec::new(
            Opts::new("arno_login_failures_total", "Failed sign-in attempts, by reason"),
            &["reason"],
        )
        .expect("valid metric");
        let sessions_active =
            IntGauge::new("arno_sessions_active", "Browser sessions not yet expired (sampled)").expect("valid metric");
        let build_info = IntGauge::with_opts(
            Opts::new("arno_build_info", "Build information").const_label("version", env!("CARGO_PKG_VERSION")),
        )
        .expect("valid metric");
        build_info.set(1);
        for c in [
            Box::new(http_requests_total.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(http_request_duration_seconds.clone()),
            Box::new(login_failures_total.clone()),
            Box::new(sessions_active.clone()),
            Box::new(build_info),
            Box::new(crate::audit::RECORDS_TOTAL.clone()),
            Box::new(crate::audit::DAMPED_TOTAL.clone()),
            Box::new(crate::projects::specs_api::SAVE_TOTAL.clone()),
            Box::new(crate::projects::writeback::PUSH_TOTAL.clone()),
            Box::new(crate::workflow::ROOMS_ACTIVE.clone()),
            Box::new(crate::workflow::CONNECTIONS.clone()),
            Box::new(crate::workflow::UPDATES_TOTAL.clone()),
            Box::new(crate::workflow::APPLY_SECONDS.clone()),
            Box::new(crate::workflow::ROOM_BYTES.clone()),
            Box::new(crate::projects::specs_api::SAVE_DURATION.clone()),
            Box::new(crate::audit::stream::LAG_SECONDS.clone()),
            Box::new(crate::git::github::client::REQUESTS_TOTAL.clone()),
            Box::new(crate::git::github::client::RATE_LIMIT_REMAINING.clone()),
        ] {
            registry.register(c).expect("metric registered once");
        }
        Metrics { registry, http_requests_total, http_request_duration_seconds, login_failures_total, sessions_active }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// "2xx", "4xx", …
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

//! Printing: one table per backend (each figure with its ratio to the
//! references measured in the same run) and the PostgreSQL ÷ SQLite comparison.

use crate::figures::Report;
use crate::measure::Timings;
use credence_store::Backend;
use std::time::Duration;

const LABEL: usize = 54;

fn name(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "SQLite",
        Backend::Postgres => "PostgreSQL",
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// `n`, with `*` when the time limit cut the run short.
fn count(timings: &Timings) -> String {
    format!(
        "{}{}",
        timings.count(),
        if timings.truncated { "*" } else { "" }
    )
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "-".into()
    }
}

/// The goal for a figure (issue 12), by the figure's label.
enum Goal {
    /// p99 at most this many ms.
    P99(f64),
    /// p50 at most this many times `GET /healthz`'s p50.
    TimesHealthz(f64),
    /// At least this many per second, with p99 at most this many ms.
    Rate(f64, f64),
}

fn goal_of(label: &str) -> Option<Goal> {
    [
        ("token check", Goal::TimesHealthz(2.0)),
        ("list-sent", Goal::P99(5.0)),
        ("detail", Goal::P99(2.0)),
        ("create", Goal::Rate(1000.0, 20.0)),
    ]
    .into_iter()
    .find(|(prefix, _)| label.starts_with(prefix))
    .map(|(_, goal)| goal)
}

/// The goal of `label` and whether `timings` meet it (`healthz`: its p50 in ms).
fn goal_column(label: &str, timings: &Timings, healthz: f64) -> String {
    let met = |ok: bool| if ok { "met" } else { "NOT met" };
    match goal_of(label) {
        None => String::new(),
        Some(Goal::P99(limit)) => format!(
            "p99 ≤ {limit} ms: {}",
            met(ms(timings.percentile(99.0)) <= limit)
        ),
        Some(Goal::TimesHealthz(times)) => format!(
            "p50 ≤ {times} × healthz: {}",
            met(ms(timings.percentile(50.0)) <= times * healthz)
        ),
        Some(Goal::Rate(rate, limit)) => format!(
            "≥ {rate}/s, p99 ≤ {limit} ms: {}",
            met(timings.throughput() >= rate && ms(timings.percentile(99.0)) <= limit)
        ),
    }
}

/// The figures of one backend.
pub fn print_backend(report: &Report, read_workers: usize, create_workers: usize) {
    let seeding = report.seeding.as_secs_f64();
    println!();
    let statistics = match (report.backend, report.settling) {
        (Backend::Sqlite, Some(took)) => {
            format!(
                ", then its write-ahead log checkpointed in {:.1} s",
                took.as_secs_f64()
            )
        }
        (Backend::Sqlite, None) => String::new(),
        (Backend::Postgres, Some(took)) => {
            format!(", then VACUUM ANALYZE in {:.1} s", took.as_secs_f64())
        }
        (Backend::Postgres, None) => {
            ", no VACUUM ANALYZE (no planner statistics, no visibility map)".into()
        }
    };
    println!(
        "== {}: {} requests over {} teams, seeded in {seeding:.1} s ({:.0} requests/s){statistics} ==",
        name(report.backend),
        report.requests,
        report.teams,
        report.requests as f64 / seeding.max(f64::EPSILON),
    );
    println!();
    println!(
        "{:<LABEL$} {:>6} {:>9} {:>9} {:>9} {:>11} {:>11}  goal (issue 12)",
        format!("latency ({read_workers} concurrent)"),
        "n",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "÷ healthz",
        "÷ SELECT 1"
    );
    let healthz = ms(report.healthz.percentile(50.0));
    let select_one = ms(report.select_one.percentile(50.0));
    let references = [
        ("reference    GET /healthz (no database)", &report.healthz),
        (
            "reference    SELECT 1 through the store",
            &report.select_one,
        ),
    ];
    let rows = references
        .into_iter()
        .chain(report.latencies.iter().map(|(label, t)| (*label, t)));
    for (label, timings) in rows {
        let p50 = ms(timings.percentile(50.0));
        println!(
            "{label:<LABEL$} {:>6} {p50:>9.3} {:>9.3} {:>9.3} {:>11} {:>11}  {}",
            count(timings),
            ms(timings.percentile(95.0)),
            ms(timings.percentile(99.0)),
            ratio(p50, healthz),
            ratio(p50, select_one),
            goal_column(label, timings, healthz),
        );
    }
    println!();
    println!(
        "{:<LABEL$} {:>6} {:>9} {:>9} {:>9} {:>11}  goal (issue 12)",
        format!("throughput ({create_workers} concurrent)"),
        "n",
        "per s",
        "p50 ms",
        "p99 ms",
        "÷ healthz"
    );
    let reference = report.healthz_rate.throughput();
    let mut rates = vec![
        ("reference    GET /healthz", &report.healthz_rate),
        ("create       POST …/requests/v2 (1 app)", &report.create),
        (
            "  the service's create in-process (no HTTP)",
            &report.create_service,
        ),
    ];
    if let Some(no_fsync) = &report.create_service_no_fsync {
        rates.push((
            "  the same, synchronous_commit=off (no fsync wait)",
            no_fsync,
        ));
    }
    for (label, timings) in rates {
        println!(
            "{label:<LABEL$} {:>6} {:>9.0} {:>9.3} {:>9.3} {:>11}  {}",
            count(timings),
            timings.throughput(),
            ms(timings.percentile(50.0)),
            ms(timings.percentile(99.0)),
            ratio(timings.throughput(), reference),
            goal_column(label, timings, healthz),
        );
    }
    print_create_shares(report);
    print_list_breakdown(report, healthz);
    let fixed = [
        &report.healthz,
        &report.select_one,
        &report.healthz_rate,
        &report.create,
        &report.create_service,
    ];
    let mut all = fixed
        .into_iter()
        .chain(report.create_service_no_fsync.iter())
        .chain(report.latencies.iter().map(|(_, t)| t))
        .chain(report.list.store_calls.iter().map(|(_, t)| t));
    if all.any(|t| t.truncated) {
        println!("* stopped by the time limit before the planned count");
    }
}

/// What HTTP adds to a create, and on PostgreSQL what waiting for the WAL's
/// fsync costs, from the creates' rates and means.
fn print_create_shares(report: &Report) {
    let (over_http, in_service) = report.create_statements;
    println!(
        "create, SQL statements of one (BEGIN and COMMIT aside): {over_http} over HTTP, {in_service} in the service"
    );
    let http = ms(report.create.mean());
    let service = ms(report.create_service.mean());
    println!(
        "create, mean: {http:.2} ms over HTTP, {service:.2} ms in the service ({:.0} % of it)",
        100.0 * service / http.max(f64::EPSILON)
    );
    if let Some(no_fsync) = &report.create_service_no_fsync {
        let without = ms(no_fsync.mean());
        println!(
            "create in the service, mean: {without:.2} ms without waiting for the fsync: the fsync wait is {:.2} ms ({:.0} % of the service's create)",
            service - without,
            100.0 * (service - without) / service.max(f64::EPSILON)
        );
    }
}

/// The list Sent page's GET beside the sum of the store calls its handler
/// makes, each timed alone in the same run: what is left is outside the
/// store (the HTTP round trip, the token check, the JSON of the answer).
fn print_list_breakdown(report: &Report, healthz: f64) {
    let list = &report.list;
    println!();
    println!(
        "list Sent, where the time goes: an answer of {} bytes of JSON (a detail's: {})",
        list.bytes, list.detail_bytes
    );
    println!(
        "{:<LABEL$} {:>9} {:>9} {:>9}",
        "each store call timed alone, same run", "p50 ms", "p99 ms", "mean ms"
    );
    let row = |label: &str, timings: &Timings| {
        println!(
            "{label:<LABEL$} {:>9.3} {:>9.3} {:>9.3}",
            ms(timings.percentile(50.0)),
            ms(timings.percentile(99.0)),
            ms(timings.mean()),
        );
    };
    row("the GET", &list.get);
    for (label, timings) in &list.store_calls {
        row(&format!("  store: {label}"), timings);
    }
    let (p50, mean) = list
        .store_calls
        .iter()
        .fold((0.0, 0.0), |(p50, mean), (_, t)| {
            (p50 + ms(t.percentile(50.0)), mean + ms(t.mean()))
        });
    let (get_p50, get_mean) = (ms(list.get.percentile(50.0)), ms(list.get.mean()));
    println!(
        "{:<LABEL$} {p50:>9.3} {:>9} {mean:>9.3}  ({:.0} % of the GET's mean)",
        "  the store calls, summed",
        "",
        100.0 * mean / get_mean.max(f64::EPSILON)
    );
    let token = ms(list.token_check.mean());
    println!(
        "{:<LABEL$} {:>9.3} {:>9} {:>9.3}  ({:.0} %)",
        "  outside the store",
        get_p50 - p50,
        "",
        get_mean - mean,
        100.0 * (get_mean - mean) / get_mean.max(f64::EPSILON)
    );
    println!(
        "{:<LABEL$} {:>9.3} {:>9} {token:>9.3}  (healthz p50: {healthz:.3})",
        "    of it, a token check's whole GET",
        ms(list.token_check.percentile(50.0)),
        "",
    );
    println!(
        "{:<LABEL$} {:>9.3} {:>9} {:>9.3}",
        "    the rest: the page's JSON, built, sent and read",
        get_p50 - p50 - ms(list.token_check.percentile(50.0)),
        "",
        get_mean - mean - token,
    );
}

/// PostgreSQL ÷ SQLite, figure by figure (above 1: PostgreSQL takes longer,
/// or for throughput, does more).
pub fn print_comparison(sqlite: &Report, postgres: &Report) {
    println!();
    println!("== PostgreSQL ÷ SQLite (same machine, same run) ==");
    println!();
    println!("{:<LABEL$} {:>9} {:>9}", "latency", "p50", "p99");
    let references = [
        (
            "reference    GET /healthz (no database)",
            &sqlite.healthz,
            &postgres.healthz,
        ),
        (
            "reference    SELECT 1 through the store",
            &sqlite.select_one,
            &postgres.select_one,
        ),
    ];
    let rows = references.into_iter().chain(
        sqlite
            .latencies
            .iter()
            .zip(&postgres.latencies)
            .map(|((label, s), (_, p))| (*label, s, p)),
    );
    for (label, s, p) in rows {
        println!(
            "{label:<LABEL$} {:>9} {:>9}",
            ratio(ms(p.percentile(50.0)), ms(s.percentile(50.0))),
            ratio(ms(p.percentile(99.0)), ms(s.percentile(99.0))),
        );
    }
    println!();
    println!("{:<LABEL$} {:>9}", "time or rate", "ratio");
    println!(
        "{:<LABEL$} {:>9}",
        "seeding time",
        ratio(postgres.seeding.as_secs_f64(), sqlite.seeding.as_secs_f64())
    );
    println!(
        "{:<LABEL$} {:>9}",
        "create throughput (per s)",
        ratio(postgres.create.throughput(), sqlite.create.throughput())
    );
}

/// The background jobs' figures of one backend.
pub fn print_jobs(report: &crate::jobs::JobsReport) {
    println!();
    println!("== {}: background jobs ==", name(report.backend));
    println!();
    println!(
        "{:<LABEL$} {:>12}",
        format!("notifications delivered ({} each)", report.notifications),
        "per second"
    );
    println!(
        "{:<LABEL$} {:>12.0}",
        "email to a local SMTP sink (rendered, sent, marked)", report.smtp_per_second
    );
    println!(
        "{:<LABEL$} {:>12.0}",
        "webhook to a local sink (signed, POSTed, recorded)", report.webhooks_per_second
    );
    println!();
    println!(
        "{:<LABEL$} {:>6} {:>9} {:>9} {:>9}",
        format!(
            "reminder due-scan over {} requests ({} due found)",
            report.scan_requests, report.scan_due
        ),
        "n",
        "p50 ms",
        "p95 ms",
        "max ms"
    );
    for (label, timings) in [
        (
            "due nudges (requests_due_for_nudge, batch 200)",
            &report.nudge_scan,
        ),
        (
            "SLA deadlines (requests_due_for_sla, batch 200)",
            &report.sla_scan,
        ),
    ] {
        println!(
            "{label:<LABEL$} {:>6} {:>9.2} {:>9.2} {:>9.2}",
            count(timings),
            ms(timings.percentile(50.0)),
            ms(timings.percentile(95.0)),
            ms(timings.percentile(100.0)),
        );
    }
    println!("plan of the nudge query: {}", report.nudge_plan.join(" | "));
    println!("plan of the SLA query:   {}", report.sla_plan.join(" | "));
}

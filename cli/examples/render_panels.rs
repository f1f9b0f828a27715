//! Renders the main panels of the Grafana dashboard (`deploy/grafana/dashboards/permakey-rl.json`)
//! as PNG plots, straight from Prometheus, with no Grafana: each panel's PromQL targets go to
//! `/api/v1/query_range` over a time range and are drawn with the project's own canvas
//! (`trainer::plot::series_plot`), one PNG per panel.
//!
//! ```sh
//! cargo run --release -p permakey-rl --example render_panels -- \
//!     --prometheus http://127.0.0.1:9090 --start <unix> --end <unix> --out docs/dashboards
//! ```
//!
//! Options: `--prometheus URL` (default `http://127.0.0.1:9090`), `--start`/`--end` (unix seconds;
//! default the last 30 minutes), `--out DIR` (default `docs/dashboards`), `--dashboard FILE`
//! (default `deploy/grafana/dashboards/permakey-rl.json`), `--scrape-interval S` (the
//! Prometheus scrape interval, default 5: sizes `$__rate_interval` as Grafana does),
//! `--rate-interval S` (override `$__rate_interval`, e.g. 15 for a 1 s scrape: process CPU is
//! sampled every 5 s), `--panel TITLE` (repeatable; default the main panels, [`MAIN_PANELS`]),
//! `--all` (every panel).
//!
//! Grafana's variables are replaced as Grafana would for the range: `$__interval` = the query step
//! (range / 240, at least the scrape interval), `$__rate_interval` = max(step + scrape interval,
//! 4 x scrape interval), `$__range` = the range, and the dashboard's template variables (`$actor_id`)
//! = all values (`.*`). `cli/tests/dashboards.rs` uses the same functions (and renders into a
//! temporary folder), so this program is checked against a live cluster by `cargo test`.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// Panels rendered by default (dashboard titles).
pub const MAIN_PANELS: &[&str] = &[
    "Agent steps/s",
    "Learner updates/s",
    "Mean episode return",
    "Evaluation return",
    "TD loss",
    "Keypoint request latency (server)",
    "Replay size",
    "Process CPU",
];

/// One PromQL query of a panel.
#[derive(Debug, Clone)]
pub struct Target {
    pub expr: String,
    /// Grafana's legend format (`{{label}}` placeholders).
    pub legend: String,
}

/// A dashboard panel with queries (rows themselves are not panels here).
#[derive(Debug, Clone)]
pub struct Panel {
    pub title: String,
    pub description: String,
    pub unit: String,
    /// Title of the row it sits in.
    pub row: String,
    pub targets: Vec<Target>,
}

impl Panel {
    /// GPU panels: empty on machines without an NVIDIA driver (marked in their description).
    pub fn is_gpu(&self) -> bool {
        self.description.contains("GPU")
    }
}

/// Every panel with targets, in dashboard order, including the panels of collapsed rows (nested
/// in the row's `panels`).
pub fn panels(dashboard: &Value) -> Vec<Panel> {
    fn walk(list: &[Value], row: &mut String, out: &mut Vec<Panel>) {
        for panel in list {
            let title = panel["title"].as_str().unwrap_or_default().to_string();
            if panel["type"] == "row" {
                *row = title;
                if let Some(nested) = panel["panels"].as_array() {
                    walk(nested, row, out);
                }
                continue;
            }
            let targets: Vec<Target> = panel["targets"]
                .as_array()
                .map(|targets| {
                    targets
                        .iter()
                        .filter_map(|t| Some(Target { expr: t["expr"].as_str()?.to_string(), legend: t["legendFormat"].as_str().unwrap_or_default().to_string() }))
                        .collect()
                })
                .unwrap_or_default();
            if !targets.is_empty() {
                out.push(Panel {
                    title,
                    description: panel["description"].as_str().unwrap_or_default().to_string(),
                    unit: panel["fieldConfig"]["defaults"]["unit"].as_str().unwrap_or_default().to_string(),
                    row: row.clone(),
                    targets,
                });
            }
            if let Some(nested) = panel["panels"].as_array() {
                walk(nested, row, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dashboard["panels"].as_array().map(Vec::as_slice).unwrap_or_default(), &mut String::new(), &mut out);
    out
}

/// Names of the dashboard's template variables.
pub fn template_variables(dashboard: &Value) -> Vec<String> {
    dashboard["templating"]["list"].as_array().map(|list| list.iter().filter_map(|v| v["name"].as_str().map(String::from)).collect()).unwrap_or_default()
}

/// `expr` with Grafana's variables replaced: `$__rate_interval`, `$__interval`, `$__range` by the
/// given durations (e.g. `10s`), and each template variable (`$name`, `${name}`, `${name:fmt}`,
/// `[[name]]`) by `all` (e.g. `.*`).
pub fn substitute(expr: &str, rate_interval: &str, interval: &str, range: &str, variables: &[String], all: &str) -> String {
    let mut out = expr
        .replace("${__rate_interval}", rate_interval)
        .replace("$__rate_interval", rate_interval)
        .replace("${__interval}", interval)
        .replace("$__interval", interval)
        .replace("${__range}", range)
        .replace("$__range", range);
    let mut names: Vec<&String> = variables.iter().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for name in names {
        out = out.replace(&format!("[[{name}]]"), all);
        while let Some(start) = out.find(&format!("${{{name}")) {
            let Some(end) = out[start..].find('}') else { break };
            out.replace_range(start..start + end + 1, all);
        }
        out = out.replace(&format!("${name}"), all);
    }
    out
}

/// Percent-encodes everything but unreserved characters (for query strings).
pub fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A plain HTTP/1.0 GET of `path` (with its query string) from `base` (`http://host:port`):
/// the status code and the body.
pub fn http_get(base: &str, path: &str) -> Result<(u16, String)> {
    let host = base.trim_start_matches("http://").trim_end_matches('/');
    if base.starts_with("https://") {
        bail!("{base}: only http:// is supported");
    }
    let mut stream = TcpStream::connect(host).with_context(|| format!("connecting to {base}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\nAccept: application/json\r\n\r\n")?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).with_context(|| format!("reading {base}{path}"))?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n").with_context(|| format!("{base}{path}: not an HTTP response"))?;
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).with_context(|| format!("{base}{path}: bad status line {head:?}"))?;
    Ok((status, body.to_string()))
}

/// Calls a Prometheus API endpoint (`/api/v1/query?...`) and returns its `data`, or the error
/// Prometheus gave.
pub fn api(prometheus: &str, path: &str) -> Result<Value> {
    let (status, body) = http_get(prometheus, path)?;
    let json: Value = serde_json::from_str(&body).with_context(|| format!("HTTP {status} from {path}: {body}"))?;
    if json["status"] != "success" {
        bail!("{}: {}", json["errorType"].as_str().unwrap_or("error"), json["error"].as_str().unwrap_or(&body));
    }
    Ok(json["data"].clone())
}

/// An instant query: the result vector (or scalar) as JSON.
pub fn query(prometheus: &str, expr: &str) -> Result<Value> {
    api(prometheus, &format!("/api/v1/query?query={}", url_encode(expr)))
}

/// A range query: one `(labels, [(unix seconds, value)])` per series.
pub fn query_range(prometheus: &str, expr: &str, start: f64, end: f64, step: f64) -> Result<Vec<(serde_json::Map<String, Value>, Vec<(f64, f64)>)>> {
    let data = api(prometheus, &format!("/api/v1/query_range?query={}&start={start}&end={end}&step={step}", url_encode(expr)))?;
    let result = data["result"].as_array().cloned().unwrap_or_default();
    Ok(result
        .into_iter()
        .map(|series| {
            let labels = series["metric"].as_object().cloned().unwrap_or_default();
            let points = series["values"]
                .as_array()
                .map(|values| {
                    values
                        .iter()
                        .filter_map(|p| Some((p[0].as_f64()?, p[1].as_str()?.parse::<f64>().unwrap_or(f64::NAN))))
                        .collect()
                })
                .unwrap_or_default();
            (labels, points)
        })
        .collect())
}

/// Grafana's legend: `{{label}}` placeholders filled from the series' labels.
pub fn legend(format: &str, labels: &serde_json::Map<String, Value>) -> String {
    let mut out = String::new();
    let mut rest = format;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find("}}") else { break };
        let name = rest[start + 2..start + end].trim();
        out.push_str(labels.get(name).and_then(Value::as_str).unwrap_or_default());
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    let out = out.split_whitespace().collect::<Vec<_>>().join(" ");
    if out.is_empty() {
        labels.iter().filter(|(k, _)| *k != "__name__").map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(",")
    } else {
        out
    }
}

/// A file name for a panel title: `Agent steps/s` -> `agent-steps-s.png`.
pub fn file_name(title: &str) -> String {
    let slug: String = title.to_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let slug = slug.split('-').filter(|s| !s.is_empty()).collect::<Vec<_>>().join("-");
    format!("{slug}.png")
}

/// The query step and Grafana's interval variables for a range: `(step, $__interval,
/// $__rate_interval, $__range)` in seconds.
pub fn intervals(start: f64, end: f64, scrape_interval: f64) -> (f64, f64, f64, f64) {
    let range = (end - start).max(1.0);
    let step = (range / 240.0).ceil().max(scrape_interval).max(1.0);
    let rate = (step + scrape_interval).max(4.0 * scrape_interval);
    (step, step, rate, range)
}

/// Where and how [`render`] queries.
#[derive(Debug, Clone)]
pub struct Range {
    /// Unix seconds.
    pub start: f64,
    pub end: f64,
    /// The Prometheus scrape interval in seconds (sizes the step and `$__rate_interval`).
    pub scrape_interval: f64,
    /// `$__rate_interval` in seconds instead of Grafana's rule.
    pub rate_interval: Option<f64>,
}

/// Renders the panels titled `titles` (all panels for `None`) over `range` into `out`, one PNG
/// each; returns the files written. A panel title not in the dashboard is an error.
pub fn render(prometheus: &str, dashboard: &Value, range: &Range, titles: Option<&[String]>, out: &Path) -> Result<Vec<PathBuf>> {
    let Range { start, end, scrape_interval, .. } = *range;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let all = panels(dashboard);
    let chosen: Vec<&Panel> = match titles {
        None => all.iter().collect(),
        Some(titles) => titles
            .iter()
            .map(|t| all.iter().find(|p| &p.title == t).with_context(|| format!("no panel titled {t:?} in the dashboard")))
            .collect::<Result<_>>()?,
    };
    let variables = template_variables(dashboard);
    let (step, interval, rate, span) = intervals(start, end, scrape_interval);
    let rate = range.rate_interval.unwrap_or(rate);
    let secs = |s: f64| format!("{}s", s.round() as u64);
    let mut written = Vec::new();
    for panel in chosen {
        let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
        for target in &panel.targets {
            let expr = substitute(&target.expr, &secs(rate), &secs(interval), &secs(span), &variables, ".*");
            let result = query_range(prometheus, &expr, start, end, step).with_context(|| format!("panel {:?}: {expr}", panel.title))?;
            for (labels, points) in result {
                series.push((legend(&target.legend, &labels), points.into_iter().map(|(t, v)| (t - start, v)).collect()));
            }
        }
        let named: Vec<(&str, Vec<(f64, f64)>)> = series.iter().map(|(name, points)| (name.as_str(), points.clone())).collect();
        let unit = match panel.unit.as_str() {
            "" | "short" => String::new(),
            "percentunit" => " (1 = 100%)".into(),
            "s" => " (seconds)".into(),
            other => format!(" ({})", other.trim_start_matches("suffix:").trim()),
        };
        let path = out.join(file_name(&panel.title));
        trainer::plot::series_plot(&path, &named, &format!("{}{unit}", panel.title), "seconds since start")?;
        written.push(path);
    }
    Ok(written)
}

fn main() -> Result<()> {
    let mut prometheus = "http://127.0.0.1:9090".to_string();
    let (mut start, mut end) = (None, None);
    let mut out = PathBuf::from("docs/dashboards");
    let mut dashboard = PathBuf::from("deploy/grafana/dashboards/permakey-rl.json");
    let mut scrape_interval = 5.0;
    let mut rate_interval = None;
    let mut titles: Vec<String> = Vec::new();
    let mut every = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--prometheus" => prometheus = value()?,
            "--start" => start = Some(value()?.parse::<f64>().context("--start: unix seconds")?),
            "--end" => end = Some(value()?.parse::<f64>().context("--end: unix seconds")?),
            "--out" => out = value()?.into(),
            "--dashboard" => dashboard = value()?.into(),
            "--scrape-interval" => scrape_interval = value()?.parse().context("--scrape-interval: seconds")?,
            "--rate-interval" => rate_interval = Some(value()?.parse().context("--rate-interval: seconds")?),
            "--panel" => titles.push(value()?),
            "--all" => every = true,
            "-h" | "--help" => {
                println!("render_panels [--prometheus URL] [--start UNIX] [--end UNIX] [--out DIR] [--dashboard FILE] [--scrape-interval S] [--rate-interval S] [--panel TITLE]... [--all]");
                return Ok(());
            }
            other => bail!("unknown argument {other:?} (see --help)"),
        }
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs_f64();
    let end = end.unwrap_or(now);
    let start = start.unwrap_or(end - 1800.0);
    if start >= end {
        bail!("--start {start} is not before --end {end}");
    }
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&dashboard).with_context(|| format!("reading {}", dashboard.display()))?)
        .with_context(|| format!("parsing {}", dashboard.display()))?;
    if titles.is_empty() {
        titles = MAIN_PANELS.iter().map(|t| t.to_string()).collect();
    }
    let range = Range { start, end, scrape_interval, rate_interval };
    let written = render(&prometheus, &json, &range, (!every).then_some(titles.as_slice()), &out)?;
    for path in &written {
        println!("{}", path.display());
    }
    Ok(())
}

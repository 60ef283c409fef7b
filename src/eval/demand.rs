//! `shopmind eval --task demand`: the demand forecaster on a simulated shop's daily demand.
//!
//! Protocol: simulate a shop (seeded; twice, see [`SCENARIOS`]), take each item's daily units from its `order_placed`
//! events (the feature store's day bucketing), hold out the last four weeks, train on the
//! rest (every training target lies before the held-out weeks), then forecast 14 days from
//! three origins inside the held-out weeks (28, 21 and 14 days before the end). Each
//! forecast is scored by MASE (scaled by the in-sample seasonal-naive error up to its origin)
//! next to the seasonal-naive (last week repeated) and 28-day-mean forecasts; the interval's
//! coverage is the share of actual days inside it. When ONNX Runtime is available the exported
//! graph forecasts the same windows and is compared with the Rust reference.

use anyhow::Context as _;
use serde::Serialize;
use shopmind_domain::{Event, ValidationPolicy};
use shopmind_evaluation::demand_backtest::{BacktestReport, backtest};
use shopmind_proto::v1 as pb;
use shopmind_serving::{DemandForecaster, PoolOptions};
use shopmind_simulator::{SimConfig, Simulator};
use shopmind_training::demand::{self, DemandConfig, DemandData, HistoryWindow};

use super::EvalArgs;
use super::chart::{COLOURS, Chart, escape, svg_document};
use crate::common::{counter_bar, spinner};

pub const USERS: usize = 3000;
pub const ITEMS: usize = 200;
pub const CATEGORIES: usize = 10;
pub const DAYS: u32 = 182;
/// Days held out at the end.
pub const TEST_DAYS: i64 = 28;

#[derive(Debug, Serialize)]
pub struct DemandReport {
    pub scenario: String,
    /// Mean initial stock per item (and mean restock quantity).
    pub mean_initial_stock: u32,
    pub seed: u64,
    pub users: usize,
    pub items: usize,
    pub days: u32,
    pub orders: usize,
    pub series: usize,
    pub history_days: usize,
    pub horizon: usize,
    pub training_windows: u64,
    pub backtest: BacktestReport,
    /// Largest |ONNX - Rust| over all forecast values; absent without ONNX Runtime.
    pub onnx_max_abs_diff: Option<f32>,
}

fn simulated_orders(cfg: SimConfig) -> anyhow::Result<Vec<Event>> {
    let policy = ValidationPolicy::stored();
    let bar = spinner("simulating");
    let mut orders = Vec::new();
    for wire in Simulator::new(cfg)? {
        bar.inc(1);
        if matches!(wire.payload, Some(pb::event::Payload::OrderPlaced(_))) {
            orders.push(
                Event::from_proto(&wire, None, &policy)
                    .map_err(|v| anyhow::anyhow!("simulated event: {v}"))?,
            );
        }
    }
    bar.finish_and_clear();
    Ok(orders)
}

/// The two shops evaluated: the simulator's default stock (popular items sell out and wait
/// days for a restock, so their orders are censored demand), and stock so ample that nothing
/// sells out (orders are demand).
pub const SCENARIOS: [(&str, u32); 2] =
    [("default stock (items sell out)", 40), ("ample stock (orders = demand)", 1_000_000)];

async fn evaluate(seed: u64, scenario: &str, stock: u32) -> anyhow::Result<DemandReport> {
    let sim = SimConfig {
        seed,
        users: USERS,
        items: ITEMS,
        categories: CATEGORIES,
        days: DAYS,
        mean_initial_stock: stock,
        ..SimConfig::default()
    };
    let (first_day, end_day) = (demand::day_of(sim.start_ms), demand::day_of(sim.end_ms()));
    let orders = simulated_orders(sim)?;
    let mut data = demand::demand_from_events(&orders);
    // The observed period is the simulation's, also where its first or last days had no order.
    data.first_day = first_day;
    data.end_day = end_day;

    let test_start = end_day - TEST_DAYS;
    let cfg = DemandConfig::default();
    let train_data = DemandData { end_day: test_start, ..data.clone() };
    let bar = counter_bar(1, "training");
    let model = demand::train(&train_data, &cfg).context("training the demand model")?;
    bar.finish_and_clear();
    let origins: Vec<i64> = (0..=TEST_DAYS - cfg.horizon as i64).step_by(7).map(|k| test_start + k).collect();
    let backtest = backtest(&model, &data, &origins, 4);

    let onnx_max_abs_diff = match shopmind_serving::default_library_path() {
        Some(lib) if shopmind_serving::init_runtime(&lib).is_ok() => {
            let bytes = model.to_onnx(&model.manifest("eval", "sim", 0));
            let forecaster = DemandForecaster::load(&bytes, &PoolOptions::default())?;
            let mut max = 0f32;
            for &o in &origins {
                let windows: Vec<HistoryWindow> = data
                    .series
                    .iter()
                    .map(|s| HistoryWindow::from_demand(&s.days, o, model.history_days))
                    .collect();
                for (w, got) in windows.iter().zip(forecaster.forecast(&windows).await?) {
                    let want = model.forecast_reference(&w.history, w.first_weekday);
                    for (g, r) in got
                        .forecast
                        .iter()
                        .chain(&got.lower)
                        .chain(&got.upper)
                        .zip(want.forecast.iter().chain(&want.lower).chain(&want.upper))
                    {
                        max = max.max((g - r).abs());
                    }
                }
            }
            Some(max)
        }
        _ => None,
    };

    Ok(DemandReport {
        scenario: scenario.into(),
        mean_initial_stock: stock,
        seed,
        users: USERS,
        items: ITEMS,
        days: DAYS,
        orders: orders.len(),
        series: data.series.len(),
        history_days: model.history_days,
        horizon: model.horizon,
        training_windows: model.stats.interactions,
        backtest,
        onnx_max_abs_diff,
    })
}

pub async fn run(args: &EvalArgs) -> anyhow::Result<()> {
    let dataset = args.dataset.as_deref().unwrap_or("simulated");
    anyhow::ensure!(
        dataset == "simulated",
        "`--task demand` evaluates on `--dataset simulated` only, not `{dataset}`"
    );
    let mut reports = Vec::new();
    for (scenario, stock) in SCENARIOS {
        reports.push(evaluate(args.seed, scenario, stock).await?);
    }
    if let (Some(path), Some(first)) = (&args.plot, reports.first()) {
        std::fs::write(path, forecast_svg(first)).with_context(|| format!("writing {}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
        return Ok(());
    }
    for (k, report) in reports.iter().enumerate() {
        if k > 0 {
            println!();
        }
        print_report(report);
    }
    if let Some(path) = &args.plot {
        println!("\nforecasts of the busiest items ({}) written to {}", SCENARIOS[0].0, path.display());
    }
    Ok(())
}

fn print_report(report: &DemandReport) {
    let b = &report.backtest;
    println!("== {} ==", report.scenario);
    println!(
        "simulated shop: seed {}, {} users, {} items, {} days, mean stock {}; {} orders, {} item series",
        report.seed,
        report.users,
        report.items,
        report.days,
        report.mean_initial_stock,
        report.orders,
        report.series
    );
    println!(
        "model: {} days of history -> {} days; {} training windows; test: {} origins in the last {} days, {} windows ({} with a MASE scale)",
        report.history_days,
        report.horizon,
        report.training_windows,
        b.origins.len(),
        TEST_DAYS,
        b.windows,
        b.scored
    );
    println!("{:<36} {:>8} {:>18}", "forecast", "MASE", "vs seasonal naive");
    let rows = [
        ("global ridge (this model)", b.mase_model),
        ("seasonal naive (last week)", b.mase_seasonal_naive),
        ("mean of the last 28 days", b.mase_moving_average),
    ];
    for (name, m) in rows {
        println!("{name:<36} {m:>8.4} {:>18.3}", m / b.mase_seasonal_naive);
    }
    println!(
        "interval: {:.1}% of actual days inside (nominal {:.0}%), mean width {:.2} units",
        100.0 * b.coverage,
        100.0 * b.nominal_coverage,
        b.mean_interval_width
    );
    println!("units over the test windows: actual {:.0}, forecast {:.0}", b.total_actual, b.total_forecast);
    let steps: Vec<String> = b.mase_model_by_step.iter().map(|m| format!("{m:.2}")).collect();
    println!("model MASE by step 1..{}: {}", b.horizon, steps.join(" "));
    match report.onnx_max_abs_diff {
        Some(d) => println!("ONNX Runtime vs Rust reference on the test windows: max |diff| = {d:.2e} units"),
        None => println!("ONNX Runtime not found: the exported graph was not run"),
    }
}

/// One panel per example item: the last 28 days of history and the actual days after the
/// origin (black), the forecast (blue) with its interval (band), seasonal naive (dashed red).
fn forecast_svg(report: &DemandReport) -> String {
    let (w, h) = (620.0, 300.0);
    let examples = &report.backtest.examples;
    let mut body = String::new();
    for (k, ex) in examples.iter().enumerate() {
        let past = ex.history.len().min(28);
        let hist = &ex.history[ex.history.len() - past..];
        let steps = ex.actual.len();
        let xs_hist: Vec<f64> = (0..past).map(|i| i as f64 - past as f64).collect();
        let xs_fut: Vec<f64> = (0..steps).map(|i| i as f64).collect();
        let max = hist
            .iter()
            .chain(&ex.actual)
            .chain(&ex.upper)
            .chain(&ex.seasonal_naive)
            .fold(1f32, |m, v| m.max(*v));
        let mut chart = Chart::new(w, h, (-(past as f64), steps as f64), (0.0, f64::from(max) * 1.1));
        chart.axes(
            &format!("{}: daily units, forecast from day {} (0 = origin)", ex.item, ex.origin),
            "days from the forecast origin",
            "units",
            7,
        );
        let lower: Vec<f64> = ex.lower.iter().map(|v| f64::from(*v)).collect();
        let upper: Vec<f64> = ex.upper.iter().map(|v| f64::from(*v)).collect();
        chart.band(&xs_fut, &lower, &upper, COLOURS[0]);
        let actual: Vec<(f64, f64)> = xs_hist
            .iter()
            .zip(hist)
            .chain(xs_fut.iter().zip(&ex.actual))
            .map(|(x, y)| (*x, f64::from(*y)))
            .collect();
        chart.line(&actual, "#222", 1.5, false);
        let pts = |v: &[f32]| -> Vec<(f64, f64)> {
            xs_fut.iter().zip(v).map(|(x, y)| (*x, f64::from(*y))).collect()
        };
        chart.line(&pts(&ex.forecast), COLOURS[0], 2.0, false);
        chart.line(&pts(&ex.seasonal_naive), COLOURS[1], 1.5, true);
        let (lx, ly) = (chart.margin + 10.0, chart.margin + 14.0);
        let band = format!("{:.0}% interval", 100.0 * report.backtest.nominal_coverage);
        chart.legend(
            &[
                ("actual", "#222"),
                ("forecast", COLOURS[0]),
                (&band, "#aec7e8"),
                ("seasonal naive", COLOURS[1]),
            ],
            lx,
            ly,
        );
        body.push_str(&chart.group(0.0, k as f64 * h));
    }
    if examples.is_empty() {
        body.push_str(&format!(r#"<text x="20" y="40">{}</text>"#, escape("no items to plot")));
    }
    svg_document(w, h * examples.len().max(1) as f64, &body)
}

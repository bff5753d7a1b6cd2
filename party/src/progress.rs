//! Progress of `party run`: preparation, the upload to each server (bytes), the servers' status
//! while they work (the step of the secure computation), and the download of the results.
//!
//! On a terminal (stderr is a TTY) each server gets a progress bar (indicatif) and messages
//! print above the bars; otherwise every step is one plain log line (tracing), with byte
//! counts thinned to quarters. The library reports through [`PartyProgress`] and knows nothing
//! of terminals.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use ppea::net::progress::{PartyEvent, PartyProgress};
use ppea::net::registry::{Phase, Status};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Progress bars (stderr is a terminal).
    Bars,
    /// Plain log lines.
    Lines,
}

impl Mode {
    /// Bars if stderr is a terminal, else lines.
    pub fn detect() -> Mode {
        if std::io::stderr().is_terminal() {
            Mode::Bars
        } else {
            Mode::Lines
        }
    }
}

/// Per server: its bar (bars mode), the last quarter of a transfer logged and the last status
/// (lines mode).
#[derive(Default)]
struct Server {
    bar: Option<ProgressBar>,
    quarter: Option<(bool, u64)>,
    status: Option<String>,
}

/// Log-line time stamps: seconds since the start, as `[   1.53s]`.
struct Elapsed(std::time::Instant);

impl tracing_subscriber::fmt::time::FormatTime for Elapsed {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        write!(w, "[{:7.2}s]", self.0.elapsed().as_secs_f64())
    }
}

/// The progress display of one `party run`.
pub struct Progress {
    mode: Mode,
    multi: MultiProgress,
    servers: Mutex<BTreeMap<String, Server>>,
    spinner: Mutex<Option<ProgressBar>>,
}

/// Writes log lines above the bars (suspending them while it writes).
#[derive(Clone)]
pub struct AboveBars(MultiProgress);

impl Write for AboveBars {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.suspend(|| std::io::stderr().write_all(buf))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl Progress {
    /// A display in `mode`. In bars mode, bars draw on stderr.
    pub fn new(mode: Mode) -> Progress {
        let target = match mode {
            Mode::Bars => ProgressDrawTarget::stderr(),
            Mode::Lines => ProgressDrawTarget::hidden(),
        };
        Progress {
            mode,
            multi: MultiProgress::with_draw_target(target),
            servers: Mutex::new(BTreeMap::new()),
            spinner: Mutex::new(None),
        }
    }

    /// Sends tracing's log lines (to stderr, with the time since start) through this display,
    /// so that they print above the bars. Call once, before the first line.
    pub fn install_logging(&self) {
        let writer = AboveBars(self.multi.clone());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
            )
            .with_target(false)
            .with_timer(Elapsed(std::time::Instant::now()))
            .with_ansi(self.mode == Mode::Bars)
            .with_writer(move || writer.clone())
            .try_init();
    }

    /// A step of this party's own work (loading, preparing, writing): one log line.
    pub fn step(&self, msg: &str) {
        tracing::info!("{msg}");
    }

    /// A long local step starts: a spinner on a terminal, a log line otherwise. It ends at the
    /// next [`Progress::done`].
    pub fn begin(&self, msg: &str) {
        tracing::info!("{msg} ...");
        if self.mode == Mode::Bars {
            let s = ProgressBar::new_spinner()
                .with_style(spinner_style())
                .with_prefix("party")
                .with_message(msg.to_string());
            let s = self.multi.add(s);
            s.enable_steady_tick(Duration::from_millis(120));
            *self.spinner.lock().unwrap() = Some(s);
        }
    }

    /// The long local step ended (`msg`: what it produced).
    pub fn done(&self, msg: &str) {
        if let Some(s) = self.spinner.lock().unwrap().take() {
            s.finish_and_clear();
        }
        tracing::info!("{msg}");
    }

    /// While waiting (called every few seconds): in lines mode, repeats what each server last
    /// said, so a log shows the party is alive; bars show it already.
    pub fn remind(&self) {
        if self.mode == Mode::Bars {
            return;
        }
        let servers = self.servers.lock().unwrap();
        if servers.is_empty() {
            tracing::info!("waiting for the servers to answer ...");
        }
        for (name, s) in servers.iter() {
            if let Some(st) = &s.status {
                tracing::info!("still waiting: {name}: {st}");
            }
        }
    }

    /// Removes the bars (before the final lines).
    pub fn finish(&self) {
        for s in self.servers.lock().unwrap().values_mut() {
            if let Some(b) = s.bar.take() {
                b.finish_and_clear();
            }
        }
        let _ = self.multi.clear();
    }

    fn bar(&self, servers: &mut BTreeMap<String, Server>, name: &str) -> ProgressBar {
        let s = servers.entry(name.to_string()).or_default();
        s.bar
            .get_or_insert_with(|| {
                let b = ProgressBar::new(0)
                    .with_style(spinner_style())
                    .with_prefix(name.to_string())
                    .with_message("connecting");
                self.multi.add(b)
            })
            .clone()
    }

    fn lines(&self, servers: &mut BTreeMap<String, Server>, e: &PartyEvent<'_>) {
        let s = servers.entry(e.server().to_string()).or_default();
        match *e {
            PartyEvent::Uploading {
                server,
                sent,
                total,
            }
            | PartyEvent::Downloading {
                server,
                received: sent,
                total,
            } => {
                let up = matches!(e, PartyEvent::Uploading { .. });
                let q = (4 * sent).checked_div(total).unwrap_or(4);
                if s.quarter.is_some_and(|(u, last)| u == up && last >= q) {
                    return;
                }
                s.quarter = Some((up, q));
                let what = if up {
                    "uploading to"
                } else {
                    "receiving results from"
                };
                tracing::info!(
                    "{what} {server}: {} of {} ({}%)",
                    indicatif::DecimalBytes(sent),
                    indicatif::DecimalBytes(total),
                    100 * sent / total.max(1)
                );
            }
            PartyEvent::Status { status, .. } => {
                s.status = Some(status.to_string());
                tracing::info!("{e}");
            }
            _ => tracing::info!("{e}"),
        }
    }
}

fn bytes_style(what: &str) -> ProgressStyle {
    ProgressStyle::with_template(&format!(
        "{{prefix:>9.bold}} {what:<9} [{{bar:32.cyan/blue}}] {{decimal_bytes:>9}} / {{decimal_total_bytes:<9}} \
         {{decimal_bytes_per_sec}}"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ")
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:>9.bold} {spinner} {msg} ({elapsed})")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

/// A server's status in a few words, for its bar.
pub fn short(st: &Status) -> String {
    let who = st.waiting_for.join(", ");
    match st.phase {
        Phase::Waiting => format!("waiting for {who} to upload"),
        Phase::Starting => format!("checking that {who} still answer"),
        Phase::Linking => format!("linking to {who}"),
        Phase::Computing => match &st.step {
            Some(step) => format!("computing on shares: {step} done"),
            None => "computing on shares".into(),
        },
        Phase::Delivering => "sending the results".into(),
        Phase::Serving => "serving".into(),
    }
}

impl PartyProgress for Progress {
    fn event(&self, e: &PartyEvent<'_>) {
        let mut servers = self.servers.lock().unwrap();
        if self.mode == Mode::Lines {
            return self.lines(&mut servers, e);
        }
        let bar = self.bar(&mut servers, e.server());
        match *e {
            PartyEvent::Uploading { sent, total, .. } => {
                if bar.length() != Some(total) {
                    bar.set_style(bytes_style("upload"));
                    bar.set_length(total);
                }
                bar.set_position(sent);
            }
            PartyEvent::Uploaded { .. } => {
                bar.set_style(spinner_style());
                bar.set_message("uploaded; waiting for the server");
                bar.enable_steady_tick(Duration::from_millis(120));
            }
            PartyEvent::Status { status, .. } => {
                servers
                    .get_mut(e.server())
                    .expect("the bar made the entry")
                    .status = Some(status.to_string());
                bar.set_message(short(status));
            }
            PartyEvent::Downloading {
                received, total, ..
            } => {
                if bar.length() != Some(total) {
                    bar.disable_steady_tick();
                    bar.set_style(bytes_style("results"));
                    bar.set_length(total);
                }
                bar.set_position(received);
            }
            PartyEvent::Received { .. } => {
                bar.set_style(
                    ProgressStyle::with_template("{prefix:>9.bold} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                bar.finish_with_message(format!(
                    "results received ({})",
                    indicatif::DecimalBytes(bar.length().unwrap_or(0))
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Collects log lines.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn without_a_terminal_every_step_is_one_plain_line() {
        let sink = Sink::default();
        let w = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .with_target(false)
            .with_writer(move || w.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let p = Progress::new(Mode::Lines);
            p.begin("preparing 952 rows");
            p.done("prepared 952 rows");
            for sent in [0, 100, 200, 300, 499, 500, 900, 1000] {
                p.event(&PartyEvent::Uploading {
                    server: "server-0",
                    sent,
                    total: 1000,
                });
            }
            p.event(&PartyEvent::Uploaded {
                server: "server-0",
                addr: "127.0.0.1:4433",
            });
            let st = Status {
                job: "j".into(),
                phase: Phase::Computing,
                waiting_for: vec![],
                step: Some("scores".into()),
            };
            p.event(&PartyEvent::Status {
                server: "server-0",
                status: &st,
            });
            p.remind();
            p.event(&PartyEvent::Downloading {
                server: "server-0",
                received: 4000,
                total: 8000,
            });
            p.event(&PartyEvent::Received { server: "server-0" });
        });
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        let expect = [
            "INFO preparing 952 rows ...",
            "INFO prepared 952 rows",
            "INFO uploading to server-0: 0 B of 1.00 kB (0%)",
            "INFO uploading to server-0: 300 B of 1.00 kB (30%)",
            "INFO uploading to server-0: 500 B of 1.00 kB (50%)",
            "INFO uploading to server-0: 900 B of 1.00 kB (90%)",
            "INFO uploading to server-0: 1.00 kB of 1.00 kB (100%)",
            "INFO uploaded to server-0 (127.0.0.1:4433)",
            "INFO server-0: computing job \"j\" (step done: scores)",
            "INFO still waiting: server-0: computing job \"j\" (step done: scores)",
            "INFO receiving results from server-0: 4.00 kB of 8.00 kB (50%)",
            "INFO results received from server-0",
        ];
        assert_eq!(lines, expect, "{text}");
        assert!(!text.contains('\u{1b}'), "no terminal escapes: {text:?}");
    }

    #[test]
    fn short_status_names_the_step() {
        let st = Status {
            job: "j".into(),
            phase: Phase::Waiting,
            waiting_for: vec!["party-b".into()],
            step: None,
        };
        assert_eq!(short(&st), "waiting for party-b to upload");
    }
}

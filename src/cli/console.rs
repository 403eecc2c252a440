//! What a command says on standard error besides its result: progress, notes, warnings.
//!
//! Each command makes one [`Console`] from the global `-q`/`-v` and its own `--json`
//! ([`super::Cli::console`]). The console picks where progress goes ([`Meter`]: a bar on a
//! terminal, JSON status lines, or nowhere) and how notes and problems are written: as text,
//! or with `--json` as one JSON object a line, so every line on stderr parses. Results stay on
//! standard output (`outln!`); an error that ends a command is `main`'s to print.
//!
//! Nothing here fails a command: a closed standard error loses the words, never the work.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How much a command says besides its result and errors (`-q`, none, `-v`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verbosity {
    /// No progress and no notes; results, warnings and errors only.
    Quiet,
    Normal,
    /// Lists in full what is otherwise cut short, and a command's extra details.
    Verbose,
}

/// A list of problems longer than this is cut short unless `-v` (or `--json`) asks for all.
const PROBLEMS_SHOWN: usize = 10;

/// How often a JSON status line is written while an operation runs.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);

/// Where one command's words on standard error go.
#[derive(Clone, Copy, Debug)]
pub struct Console {
    verbosity: Verbosity,
    json: bool,
}

impl Console {
    pub fn new(verbosity: Verbosity, json: bool) -> Console {
        Console { verbosity, json }
    }

    pub fn is_verbose(&self) -> bool {
        self.verbosity == Verbosity::Verbose
    }

    /// The progress of a long operation (`verb` names it on the bar): nothing with `-q`,
    /// JSON status lines with `--json`, else a bar on a terminal.
    pub fn progress(&self, verb: &str) -> Meter {
        match (self.verbosity, self.json) {
            (Verbosity::Quiet, _) => Meter::Silent,
            (_, true) => Meter::Json(JsonStatus::start()),
            (_, false) => Meter::Bar(Bar::new(verb)),
        }
    }

    /// Something worth knowing that is neither a result nor a problem; not said with `-q`.
    pub fn note(&self, text: &str) {
        if self.verbosity != Verbosity::Quiet {
            self.say("note", "", text);
        }
    }

    /// A problem the user should know of (said even with `-q`): `label: text`.
    pub fn problem(&self, label: &str, text: &str) {
        self.say(label, &format!("{label}: "), text);
    }

    /// A warning: `warning: text`.
    pub fn warn(&self, text: &str) {
        self.problem("warning", text);
    }

    /// Each problem as [`Console::problem`] says it; a long list is cut short in text unless
    /// `-v`, with a line telling how many more there are.
    pub fn problems(&self, label: &str, texts: &[String]) {
        let shown = self.problems_shown(texts.len());
        for text in &texts[..shown] {
            self.problem(label, text);
        }
        if shown < texts.len() {
            let more = texts.len() - shown;
            self.problem(label, &format!("and {more} more (-v lists them all)"));
        }
    }

    /// How many of `listed` problems are said one by one.
    fn problems_shown(&self, listed: usize) -> usize {
        if self.json || self.is_verbose() {
            listed
        } else {
            listed.min(PROBLEMS_SHOWN)
        }
    }

    /// One line as text (`prefix` then `text`) or as a JSON object of `message_type`.
    fn say(&self, message_type: &str, prefix: &str, text: &str) {
        if self.json {
            let line = serde_json::json!({ "message_type": message_type, "message": text });
            write_stderr_line(&line.to_string());
        } else {
            write_stderr_line(&format!("{prefix}{text}"));
        }
    }
}

/// Writes one line to standard error; a failure is ignored (see the module doc).
fn write_stderr_line(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

/// Where a long operation's progress goes; made by [`Console::progress`].
pub enum Meter {
    Bar(Bar),
    Json(JsonStatus),
    Silent,
}

impl Meter {
    /// The operation has ended; `done` if it succeeded (a JSON status then says 100 %).
    pub fn finish(self, done: bool) {
        match self {
            Meter::Bar(bar) => bar.finish(),
            Meter::Json(status) => status.finish(done),
            Meter::Silent => {}
        }
    }

    fn as_progress(&self) -> &dyn synvault::Progress {
        match self {
            Meter::Bar(bar) => bar,
            Meter::Json(status) => status,
            Meter::Silent => &synvault::NoProgress,
        }
    }
}

impl synvault::Progress for Meter {
    fn set_total(&self, bytes: u64) {
        self.as_progress().set_total(bytes);
    }
    fn shows_total(&self) -> bool {
        self.as_progress().shows_total()
    }
    fn add_bytes(&self, n: u64) {
        self.as_progress().add_bytes(n);
    }
    fn add_file(&self) {
        self.as_progress().add_file();
    }
}

/// A byte progress bar on stderr when it is a terminal; hidden otherwise.
pub struct Bar(ProgressBar);

impl Bar {
    fn new(verb: &str) -> Bar {
        let bar = if std::io::stderr().is_terminal() {
            ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr())
        } else {
            ProgressBar::hidden()
        };
        let template = format!(
            "{verb} {{bar:30}} {{bytes}}/{{total_bytes}} {{binary_bytes_per_sec}} eta {{eta}}"
        );
        if let Ok(style) = ProgressStyle::with_template(&template) {
            bar.set_style(style);
        }
        Bar(bar)
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl synvault::Progress for Bar {
    fn set_total(&self, bytes: u64) {
        self.0.set_length(bytes);
    }
    fn shows_total(&self) -> bool {
        !self.0.is_hidden()
    }
    fn add_bytes(&self, n: u64) {
        self.0.inc(n);
    }
}

/// Progress as JSON lines on stderr, as restic prints them: a `status` object about every
/// second while the operation runs, and one when it ends.
pub struct JsonStatus {
    counts: Arc<Counts>,
    ticker: Option<Ticker>,
}

/// The thread that writes a status line every [`STATUS_INTERVAL`]; it stops when `stop` is
/// dropped.
struct Ticker {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

/// What the operation has reported so far; updated from many threads.
struct Counts {
    started: Instant,
    /// [`Counts::UNKNOWN`] until the operation tells its total.
    total_bytes: AtomicU64,
    bytes_done: AtomicU64,
    files_done: AtomicU64,
    /// Whether the operation counts files at all (a restore counts only bytes).
    counts_files: AtomicBool,
}

impl Counts {
    const UNKNOWN: u64 = u64::MAX;

    /// The status now; `done` once the operation has succeeded.
    fn status(&self, done: bool) -> Status {
        let total = self.total_bytes.load(Ordering::Relaxed);
        let total = (total != Counts::UNKNOWN).then_some(total);
        let files_done = self
            .counts_files
            .load(Ordering::Relaxed)
            .then(|| self.files_done.load(Ordering::Relaxed));
        Status::new(
            self.started.elapsed(),
            self.bytes_done.load(Ordering::Relaxed),
            total,
            files_done,
            done,
        )
    }
}

/// One `status` line.
#[derive(Debug, serde::Serialize)]
struct Status {
    message_type: &'static str,
    seconds_elapsed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    seconds_remaining: Option<u64>,
    /// 0 to 1: the bytes done of the total (0 while the total is unknown), 1 once done.
    percent_done: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    total_bytes: Option<u64>,
    bytes_done: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    files_done: Option<u64>,
}

impl Status {
    fn new(
        elapsed: Duration,
        bytes_done: u64,
        total_bytes: Option<u64>,
        files_done: Option<u64>,
        done: bool,
    ) -> Status {
        let fraction = match total_bytes {
            Some(total) if total > 0 => (bytes_done as f64 / total as f64).min(1.0),
            _ => 0.0,
        };
        // An estimate only once some bytes are done: before that the rate is unknown.
        let seconds_remaining = match total_bytes {
            Some(total) if !done && bytes_done > 0 && fraction < 1.0 => {
                let per_byte = elapsed.as_secs_f64() / bytes_done as f64;
                Some((total.saturating_sub(bytes_done) as f64 * per_byte).ceil() as u64)
            }
            _ => None,
        };
        Status {
            message_type: "status",
            seconds_elapsed: elapsed.as_secs(),
            seconds_remaining,
            percent_done: if done { 1.0 } else { fraction },
            total_bytes,
            bytes_done,
            files_done,
        }
    }

    fn write(&self) {
        if let Ok(line) = serde_json::to_string(self) {
            write_stderr_line(&line);
        }
    }
}

impl JsonStatus {
    fn start() -> JsonStatus {
        let counts = Arc::new(Counts {
            started: Instant::now(),
            total_bytes: AtomicU64::new(Counts::UNKNOWN),
            bytes_done: AtomicU64::new(0),
            files_done: AtomicU64::new(0),
            counts_files: AtomicBool::new(false),
        });
        let (stop, stopped) = mpsc::channel::<()>();
        let shared = counts.clone();
        // Without the thread only the last line is written: progress is worth no failure.
        let ticker = std::thread::Builder::new()
            .name("json status".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(STATUS_INTERVAL)
                {
                    shared.status(false).write();
                }
            })
            .ok()
            .map(|thread| Ticker { stop, thread });
        JsonStatus { counts, ticker }
    }

    fn finish(mut self, done: bool) {
        self.stop_ticker();
        self.counts.status(done).write();
    }

    fn stop_ticker(&mut self) {
        if let Some(Ticker { stop, thread }) = self.ticker.take() {
            drop(stop);
            let _ = thread.join();
        }
    }
}

impl Drop for JsonStatus {
    /// A command that returns early with an error stops the status lines too.
    fn drop(&mut self) {
        self.stop_ticker();
    }
}

impl synvault::Progress for JsonStatus {
    fn set_total(&self, bytes: u64) {
        self.counts.total_bytes.store(bytes, Ordering::Relaxed);
    }
    /// Status lines tell a percentage, which needs the total.
    fn shows_total(&self) -> bool {
        true
    }
    fn add_bytes(&self, n: u64) {
        self.counts.bytes_done.fetch_add(n, Ordering::Relaxed);
    }
    fn add_file(&self) {
        self.counts.counts_files.store(true, Ordering::Relaxed);
        self.counts.files_done.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(bytes_done: u64, total: Option<u64>, done: bool) -> Status {
        Status::new(Duration::from_secs(10), bytes_done, total, None, done)
    }

    #[test]
    fn a_long_list_of_problems_is_cut_short_unless_asked_for_all() {
        let normal = Console::new(Verbosity::Normal, false);
        assert_eq!(normal.problems_shown(3), 3);
        assert_eq!(normal.problems_shown(25), PROBLEMS_SHOWN);
        assert_eq!(
            Console::new(Verbosity::Quiet, false).problems_shown(25),
            PROBLEMS_SHOWN
        );
        assert_eq!(
            Console::new(Verbosity::Verbose, false).problems_shown(25),
            25
        );
        // A program reading JSON gets every one.
        assert_eq!(Console::new(Verbosity::Normal, true).problems_shown(25), 25);
    }

    #[test]
    fn percent_done_is_the_share_of_the_total_and_one_when_done() {
        assert_eq!(status(0, None, false).percent_done, 0.0);
        assert_eq!(status(25, Some(100), false).percent_done, 0.25);
        assert_eq!(status(0, Some(0), false).percent_done, 0.0);
        // Files may grow while a backup reads them: never past 1.
        assert_eq!(status(150, Some(100), false).percent_done, 1.0);
        assert_eq!(status(25, Some(100), true).percent_done, 1.0);
        assert_eq!(status(0, None, true).percent_done, 1.0);
    }

    #[test]
    fn seconds_remaining_follows_the_rate_so_far() {
        assert_eq!(status(25, Some(100), false).seconds_remaining, Some(30));
        assert_eq!(status(0, Some(100), false).seconds_remaining, None);
        assert_eq!(status(25, None, false).seconds_remaining, None);
        assert_eq!(status(25, Some(100), true).seconds_remaining, None);
    }

    #[test]
    fn a_status_line_leaves_out_what_is_unknown() {
        let line = serde_json::to_value(status(5, None, false)).unwrap();
        assert_eq!(line["message_type"], "status");
        assert_eq!(line["bytes_done"], 5);
        assert!(line.get("total_bytes").is_none(), "{line}");
        assert!(line.get("files_done").is_none(), "{line}");
    }

    #[test]
    fn files_are_told_only_by_operations_that_count_them() {
        let meter = JsonStatus::start();
        assert!(meter.counts.status(false).files_done.is_none());
        synvault::Progress::add_file(&meter);
        synvault::Progress::add_bytes(&meter, 7);
        let now = meter.counts.status(false);
        assert_eq!((now.files_done, now.bytes_done), (Some(1), 7));
    }
}

//! A server's book of jobs: the jobs it holds (with their state, age and what each waits for),
//! the job ids that already ran (so a job id cannot run twice; remembered for
//! `remember_jobs_secs`), and counters for operators.
//!
//! Sans-IO: every method takes the current time; the daemon owns the clock and the tasks.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Holding uploads, waiting for the rest.
    Waiting,
    /// Both uploads in: checking that both parties still answer.
    Starting,
    /// Both uploads in; linking to the other servers and the dealer.
    Linking,
    /// The secure computation runs.
    Computing,
    /// Sending results to the parties.
    Delivering,
    /// A dealer job: serving correlated randomness.
    Serving,
}

/// A job's state as a server reports it (to the parties on their streams, and to operators).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The job id.
    pub job: String,
    /// Where the job is.
    pub phase: Phase,
    /// Who the job waits for (party or server identities, or `dealer`); empty if none.
    pub waiting_for: Vec<String>,
    /// While computing: the last step of the secure computation that finished (one of a fixed,
    /// public list of names, such as `scores` or `matching`); `None` otherwise.
    pub step: Option<String>,
}

impl Status {
    /// The status with every text field made safe for display ([`crate::error::peer_text`]):
    /// a party shows what a server sent.
    pub fn sanitized(mut self) -> Status {
        use crate::error::peer_text;
        self.job = peer_text(&self.job);
        self.waiting_for = self.waiting_for.iter().map(|w| peer_text(w)).collect();
        self.step = self.step.as_deref().map(peer_text);
        self
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let who = self.waiting_for.join(", ");
        match self.phase {
            Phase::Waiting => write!(
                f,
                "holding this party's upload of job {:?}, waiting for {who} to upload the same \
                 job id",
                self.job
            ),
            Phase::Starting => write!(
                f,
                "both uploads of job {:?} in, checking that {who} still answer",
                self.job
            ),
            Phase::Linking => write!(f, "both uploads of job {:?} in, linking to {who}", self.job),
            Phase::Computing => match &self.step {
                Some(step) => write!(f, "computing job {:?} (step done: {step})", self.job),
                None => write!(f, "computing job {:?}", self.job),
            },
            Phase::Delivering => write!(f, "sending the results of job {:?}", self.job),
            Phase::Serving => write!(f, "serving job {:?}", self.job),
        }
    }
}

/// One held job, as `server status` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldJob {
    /// State and what it waits for.
    #[serde(flatten)]
    pub status: Status,
    /// Seconds since the job was created on this server.
    pub age_secs: u64,
    /// Seconds since it entered its current phase.
    pub phase_secs: u64,
}

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Results delivered.
    Done,
    /// Failed after it started.
    Failed,
    /// Ended before it started (uploads dropped or timed out); its id may be used again.
    Dropped,
}

/// Counters for operators (Prometheus text format via [`Registry::metrics`]).
#[derive(Debug, Clone, Default)]
struct Counters {
    done: u64,
    failed: u64,
    dropped: u64,
    refused: u64,
    upload_bytes: u64,
    sent_bytes: u64,
    /// Seconds spent per phase, and how many phases ended, by phase.
    phase_secs: HashMap<&'static str, (f64, u64)>,
}

struct Held<E> {
    tx: mpsc::UnboundedSender<E>,
    since: Instant,
    phase_since: Instant,
    status: Status,
    started: bool,
    /// The server (or worker) identity whose link created the job, while no party has
    /// uploaded to it: such jobs do not count against `max_jobs`, but each identity may hold
    /// at most `max_jobs` of them.
    linked_by: Option<String>,
}

/// What to do with an event for a job.
pub(crate) enum Admit<E> {
    /// The job is held: send the event to its task.
    Held(mpsc::UnboundedSender<E>),
    /// New job: the caller starts its task and calls [`Registry::insert`].
    New,
    /// Refused, with the reason.
    Refused(String),
}

/// Why [`Registry::reserve_party`] refused an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The party already holds its limit of uploads here.
    PartyLimit,
    /// The upload's estimated memory, or its spilled share's disk, does not fit that budget
    /// beside what is booked.
    Over {
        what: Resource,
        needed: u64,
        budget: u64,
        booked: u64,
    },
}

/// What an upload books beside its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resource {
    Memory,
    Disk,
}

/// Why [`Registry::reserve_memory`] refused a job: its estimated memory does not fit the
/// budget beside what is booked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OverBudget {
    pub(crate) needed: u64,
    pub(crate) budget: u64,
    pub(crate) booked: u64,
}

/// Most job ids remembered as having run (within `remember_jobs_secs`); past it the oldest is
/// forgotten first. Ids are at most 128 bytes, so about 20 MB.
pub(crate) const MAX_REMEMBERED: usize = 100_000;

/// A server's jobs. `E` is the event type delivered to a job's task.
pub(crate) struct Registry<E> {
    held: HashMap<String, Held<E>>,
    ran: HashMap<String, (Instant, Ended)>,
    remember: Duration,
    /// At most this many ids in `ran` ([`MAX_REMEMBERED`]).
    max_remembered: usize,
    max_jobs: usize,
    counters: Counters,
    /// Uploads each party identity has on this server (being read or held by a job), and
    /// what they booked.
    party_uploads: HashMap<String, (usize, Booking)>,
    max_per_party: usize,
    /// Estimated peak memory booked by the uploads held, and the budget for it.
    memory_booked: u64,
    memory_budget: u64,
    /// Disk booked by the uploads' spilled shares, and the budget for it.
    disk_booked: u64,
    disk_budget: u64,
}

/// What one upload books on a server: estimated peak memory, and the disk its share takes
/// when it is spilled ([`crate::mpc::row_share`]; 0 when it is not).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Booking {
    pub(crate) memory: u64,
    pub(crate) disk: u64,
}

impl Booking {
    fn add(self, o: Booking) -> Booking {
        Booking {
            memory: self.memory.saturating_add(o.memory),
            disk: self.disk.saturating_add(o.disk),
        }
    }

    fn sub(self, o: Booking) -> Booking {
        Booking {
            memory: self.memory.saturating_sub(o.memory),
            disk: self.disk.saturating_sub(o.disk),
        }
    }
}

impl<E> Registry<E> {
    /// An empty registry holding at most `max_jobs` jobs and remembering finished ids for
    /// `remember`.
    pub(crate) fn new(max_jobs: usize, remember: Duration) -> Self {
        Registry {
            held: HashMap::new(),
            ran: HashMap::new(),
            remember,
            max_remembered: MAX_REMEMBERED,
            max_jobs,
            counters: Counters::default(),
            party_uploads: HashMap::new(),
            max_per_party: usize::MAX,
            memory_booked: 0,
            memory_budget: u64::MAX,
            disk_booked: 0,
            disk_budget: u64::MAX,
        }
    }

    /// Sets the disk the held uploads' spilled shares may take at once, in bytes.
    pub(crate) fn with_disk_budget(mut self, bytes: u64) -> Self {
        self.disk_budget = bytes;
        self
    }

    /// Sets the memory the held uploads' jobs may need at once (estimated), in bytes.
    pub(crate) fn with_memory_budget(mut self, bytes: u64) -> Self {
        self.memory_budget = bytes;
        self
    }

    /// Caps the uploads one party identity may have on this server at once.
    pub(crate) fn with_party_limit(mut self, max_per_party: usize) -> Self {
        self.max_per_party = max_per_party;
        self
    }

    /// Reserves one upload slot for `party`, its estimated memory and its spilled share's
    /// disk, before anything of its upload is read; says why not when the party already has
    /// its limit of uploads here, when the memory or the disk would exceed its budget, or when
    /// the party would hold more than half of either (a job's two sides share the budgets, so
    /// one party cannot hold all of them).
    pub(crate) fn reserve_party(&mut self, party: &str, b: Booking) -> Result<(), Refusal> {
        let (held, own) = self.party_uploads.get(party).copied().unwrap_or_default();
        if held >= self.max_per_party {
            return Err(Refusal::PartyLimit);
        }
        let base = crate::model::footprint::BASE_BYTES;
        let room = self.memory_budget.saturating_sub(base);
        if self.memory_booked.saturating_add(b.memory) > room
            || own.memory.saturating_add(b.memory) > room / 2
        {
            return Err(Refusal::Over {
                what: Resource::Memory,
                needed: b.memory,
                budget: self.memory_budget,
                booked: self.memory_booked,
            });
        }
        let disk = self.disk_budget;
        if b.disk > 0
            && (self.disk_booked.saturating_add(b.disk) > disk
                || own.disk.saturating_add(b.disk) > disk / 2)
        {
            return Err(Refusal::Over {
                what: Resource::Disk,
                needed: b.disk,
                budget: disk,
                booked: self.disk_booked,
            });
        }
        let e = self.party_uploads.entry(party.to_string()).or_default();
        e.0 += 1;
        e.1 = e.1.add(b);
        self.memory_booked += b.memory;
        self.disk_booked += b.disk;
        Ok(())
    }

    /// Reserves `bytes` of estimated memory for a whole job (a dealer job, booked when its
    /// first link arrives), or says why not: when it would exceed the budget beside what is
    /// booked.
    pub(crate) fn reserve_memory(&mut self, bytes: u64) -> Result<(), OverBudget> {
        let room = self
            .memory_budget
            .saturating_sub(crate::model::footprint::BASE_BYTES);
        if self.memory_booked.saturating_add(bytes) > room {
            return Err(OverBudget {
                needed: bytes,
                budget: self.memory_budget,
                booked: self.memory_booked,
            });
        }
        self.memory_booked += bytes;
        Ok(())
    }

    /// Gives back memory taken by [`Registry::reserve_memory`].
    pub(crate) fn release_memory(&mut self, bytes: u64) {
        self.memory_booked = self.memory_booked.saturating_sub(bytes);
    }

    /// Gives back a slot, memory and disk taken by [`Registry::reserve_party`].
    pub(crate) fn release_party(&mut self, party: &str, b: Booking) {
        self.memory_booked = self.memory_booked.saturating_sub(b.memory);
        self.disk_booked = self.disk_booked.saturating_sub(b.disk);
        if let Some((n, own)) = self.party_uploads.get_mut(party) {
            *n = n.saturating_sub(1);
            *own = own.sub(b);
            if *n == 0 {
                self.party_uploads.remove(party);
            }
        }
    }

    fn prune(&mut self, now: Instant) {
        let remember = self.remember;
        self.ran
            .retain(|_, (at, _)| now.saturating_duration_since(*at) < remember);
    }

    /// Why `job` cannot run again, if its id already ran or failed here: checked before an
    /// upload is read, so a replay costs the server nothing.
    pub(crate) fn replayed(&mut self, job: &str, now: Instant) -> Option<String> {
        self.prune(now);
        self.ran.get(job).map(|(_, how)| {
            format!(
                "job {job:?} already {} on this server; a job id runs once (use a new job id)",
                if *how == Ended::Done { "ran" } else { "failed" }
            )
        })
    }

    /// Jobs counted against `max_jobs`: all but those only links have created.
    fn counted(&self) -> usize {
        self.held.values().filter(|h| h.linked_by.is_none()).count()
    }

    fn full(&self) -> String {
        format!(
            "this server already holds {} jobs; try again later",
            self.max_jobs
        )
    }

    /// Routes an event for `job` (a party's upload, or on the dealer a server's link): to its
    /// task, to a new task, or refused (a job id that already ran, or no room). A job only
    /// links had created counts from its first upload on.
    pub(crate) fn admit(&mut self, job: &str, now: Instant) -> Admit<E> {
        self.prune(now);
        let counted = self.counted();
        if let Some(h) = self.held.get_mut(job) {
            if h.linked_by.is_some() {
                if counted >= self.max_jobs {
                    let why = self.full();
                    return self.refusal(why);
                }
                h.linked_by = None;
            }
            return Admit::Held(h.tx.clone());
        }
        let why = if let Some(why) = self.replayed(job, now) {
            why
        } else if counted >= self.max_jobs {
            self.full()
        } else {
            return Admit::New;
        };
        self.refusal(why)
    }

    /// Routes a link's event for `job` on a compute server (another server's link, or one of
    /// this server's workers'): a new job it creates waits for the parties' uploads without
    /// counting against `max_jobs` (so links alone cannot fill the server and refuse every
    /// party), but `peer` may have at most `max_jobs` such jobs at once. The caller passes
    /// `Some(peer)` to [`Registry::insert`].
    pub(crate) fn admit_link(&mut self, job: &str, now: Instant, peer: &str) -> Admit<E> {
        self.prune(now);
        if let Some(h) = self.held.get(job) {
            return Admit::Held(h.tx.clone());
        }
        let by_peer = (self.held.values())
            .filter(|h| h.linked_by.as_deref() == Some(peer))
            .count();
        let why = if let Some(why) = self.replayed(job, now) {
            why
        } else if by_peer >= self.max_jobs {
            format!(
                "{peer} already opened {by_peer} jobs here that no party has uploaded to; try \
                 again later"
            )
        } else {
            return Admit::New;
        };
        self.refusal(why)
    }

    fn refusal(&mut self, why: String) -> Admit<E> {
        self.counters.refused += 1;
        Admit::Refused(why)
    }

    /// Records a new job's task. `started` jobs are remembered when they end, whatever the
    /// outcome (a dealer job starts with its first link).
    pub(crate) fn insert(
        &mut self,
        job: &str,
        tx: mpsc::UnboundedSender<E>,
        phase: Phase,
        started: bool,
        linked_by: Option<&str>,
        now: Instant,
    ) {
        let status = Status {
            job: job.to_string(),
            phase,
            waiting_for: Vec::new(),
            step: None,
        };
        self.held.insert(
            job.to_string(),
            Held {
                tx,
                since: now,
                phase_since: now,
                status,
                started,
                linked_by: linked_by.map(str::to_string),
            },
        );
    }

    /// A job's new state; linking marks it started (its id is then remembered).
    pub(crate) fn set_status(&mut self, status: Status, now: Instant) {
        let counters = &mut self.counters;
        if let Some(h) = self.held.get_mut(&status.job) {
            if h.status.phase != status.phase {
                let t = counters
                    .phase_secs
                    .entry(phase_name(h.status.phase))
                    .or_default();
                t.0 += now.saturating_duration_since(h.phase_since).as_secs_f64();
                t.1 += 1;
                h.phase_since = now;
            }
            h.started |= !matches!(status.phase, Phase::Waiting | Phase::Starting);
            h.status = status;
        }
    }

    /// Bytes received in uploads and sent to other servers, for the counters.
    pub(crate) fn count_bytes(&mut self, uploaded: u64, sent: u64) {
        self.counters.upload_bytes += uploaded;
        self.counters.sent_bytes += sent;
    }

    /// A job's task ended. A started job's id is remembered, so it cannot run again; a job that
    /// never started is forgotten.
    pub(crate) fn end(&mut self, job: &str, how: Ended, now: Instant) {
        let Some(h) = self.held.remove(job) else {
            return;
        };
        let t = self
            .counters
            .phase_secs
            .entry(phase_name(h.status.phase))
            .or_default();
        t.0 += now.saturating_duration_since(h.phase_since).as_secs_f64();
        t.1 += 1;
        let how = match how {
            Ended::Dropped if h.started => Ended::Failed,
            how => how,
        };
        match how {
            Ended::Done => self.counters.done += 1,
            Ended::Failed => self.counters.failed += 1,
            Ended::Dropped => self.counters.dropped += 1,
        }
        if how != Ended::Dropped {
            self.prune(now);
            if self.ran.len() >= self.max_remembered {
                // The oldest id goes first: memory stays bounded whatever peers send (a dealer
                // remembers every job a link started, refused or not).
                let oldest = self.ran.iter().min_by_key(|(_, (at, _))| *at);
                if let Some(id) = oldest.map(|(id, _)| id.clone()) {
                    self.ran.remove(&id);
                }
            }
            self.ran.insert(job.to_string(), (now, how));
        }
    }

    /// The held jobs, oldest first.
    pub(crate) fn held(&self, now: Instant) -> Vec<HeldJob> {
        let mut v: Vec<(Instant, HeldJob)> = self
            .held
            .values()
            .map(|h| {
                (
                    h.since,
                    HeldJob {
                        status: h.status.clone(),
                        age_secs: now.saturating_duration_since(h.since).as_secs(),
                        phase_secs: now.saturating_duration_since(h.phase_since).as_secs(),
                    },
                )
            })
            .collect();
        v.sort_by_key(|x| x.0);
        v.into_iter().map(|x| x.1).collect()
    }

    /// Job ids remembered as having run.
    pub(crate) fn remembered(&self) -> usize {
        self.ran.len()
    }

    /// Counters in the Prometheus text exposition format.
    pub(crate) fn metrics(&self, name: &str) -> String {
        let c = &self.counters;
        let mut by_phase: Vec<_> = c.phase_secs.iter().collect();
        by_phase.sort_by_key(|x| *x.0);
        let mut m = String::new();
        let mut line = |help: &str, kind: &str, metric: &str, rows: Vec<(String, String)>| {
            m.push_str(&format!("# HELP {metric} {help}\n# TYPE {metric} {kind}\n"));
            for (labels, v) in rows {
                m.push_str(&format!("{metric}{{server=\"{name}\"{labels}}} {v}\n"));
            }
        };
        line(
            "Jobs held now.",
            "gauge",
            "ppea_jobs_held",
            vec![(String::new(), self.held.len().to_string())],
        );
        line(
            "Jobs ended, by outcome (dropped: ended before starting; refused: replayed id or no room).",
            "counter",
            "ppea_jobs_total",
            [
                ("done", c.done),
                ("failed", c.failed),
                ("dropped", c.dropped),
                ("refused", c.refused),
            ]
            .iter()
            .map(|(o, v)| (format!(",outcome=\"{o}\""), v.to_string()))
            .collect(),
        );
        line(
            "Bytes of party uploads accepted (shares as held, seeds expanded; tokens).",
            "counter",
            "ppea_upload_bytes_total",
            vec![(String::new(), c.upload_bytes.to_string())],
        );
        line(
            "Bytes sent to the other servers in secure computations.",
            "counter",
            "ppea_sent_bytes_total",
            vec![(String::new(), c.sent_bytes.to_string())],
        );
        line(
            "Seconds jobs spent per phase.",
            "counter",
            "ppea_phase_seconds_sum",
            by_phase
                .iter()
                .map(|(p, t)| (format!(",phase=\"{p}\""), format!("{:.3}", t.0)))
                .collect(),
        );
        line(
            "Phases ended, by phase.",
            "counter",
            "ppea_phase_seconds_count",
            by_phase
                .iter()
                .map(|(p, t)| (format!(",phase=\"{p}\""), t.1.to_string()))
                .collect(),
        );
        m
    }
}

fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Waiting => "waiting",
        Phase::Starting => "starting",
        Phase::Linking => "linking",
        Phase::Computing => "computing",
        Phase::Delivering => "delivering",
        Phase::Serving => "serving",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg() -> (Registry<()>, Instant) {
        (Registry::new(2, Duration::from_secs(100)), Instant::now())
    }

    fn mem(memory: u64) -> Booking {
        Booking { memory, disk: 0 }
    }

    #[test]
    fn disk_for_spilled_shares_is_booked_per_upload_and_given_back() {
        let mut r: Registry<()> = Registry::new(8, Duration::from_secs(100))
            .with_party_limit(4)
            .with_disk_budget(100);
        let disk = |disk: u64| Booking { memory: 1, disk };
        // One party holds at most half of the disk; shares that are not spilled book none.
        assert!(matches!(
            r.reserve_party("a", disk(51)),
            Err(Refusal::Over {
                what: Resource::Disk,
                ..
            })
        ));
        assert_eq!(r.reserve_party("a", disk(50)), Ok(()));
        assert_eq!(r.reserve_party("a", disk(0)), Ok(()));
        assert_eq!(r.reserve_party("b", disk(40)), Ok(()));
        // Two uploads that fit one by one do not fit together.
        assert_eq!(
            r.reserve_party("c", disk(11)),
            Err(Refusal::Over {
                what: Resource::Disk,
                needed: 11,
                budget: 100,
                booked: 90
            })
        );
        r.release_party("a", disk(50));
        assert_eq!(r.reserve_party("c", disk(11)), Ok(()));
        r.release_party("b", disk(40));
        r.release_party("c", disk(11));
        r.release_party("a", disk(0));
        assert_eq!(r.reserve_party("d", disk(50)), Ok(()));
    }

    #[test]
    fn memory_is_booked_per_upload_and_given_back() {
        let base = crate::model::footprint::BASE_BYTES;
        let mut r: Registry<()> = Registry::new(4, Duration::from_secs(100))
            .with_party_limit(3)
            .with_memory_budget(base + 100);
        // One party holds at most half of the budget.
        assert!(matches!(
            r.reserve_party("a", mem(51)),
            Err(Refusal::Over {
                what: Resource::Memory,
                ..
            })
        ));
        assert_eq!(r.reserve_party("a", mem(30)), Ok(()));
        assert!(matches!(
            r.reserve_party("a", mem(21)),
            Err(Refusal::Over {
                what: Resource::Memory,
                ..
            })
        ));
        assert_eq!(r.reserve_party("a", mem(20)), Ok(()));
        assert_eq!(r.reserve_party("b", mem(40)), Ok(()));
        assert_eq!(
            r.reserve_party("c", mem(11)),
            Err(Refusal::Over {
                what: Resource::Memory,
                needed: 11,
                budget: base + 100,
                booked: 90
            })
        );
        r.release_party("a", mem(30));
        assert_eq!(r.reserve_party("b", mem(10)), Ok(()));
        assert_eq!(r.reserve_party("b", mem(0)), Ok(()));
        assert_eq!(r.reserve_party("b", mem(0)), Err(Refusal::PartyLimit));
        r.release_party("a", mem(20));
        assert_eq!(r.reserve_party("c", mem(40)), Ok(()));
    }

    #[test]
    fn memory_is_booked_per_job_and_given_back() {
        let base = crate::model::footprint::BASE_BYTES;
        let mut r: Registry<()> =
            Registry::new(4, Duration::from_secs(100)).with_memory_budget(base + 100);
        // Fits.
        assert_eq!(r.reserve_memory(60), Ok(()));
        // Does not fit beside the first.
        assert_eq!(
            r.reserve_memory(41),
            Err(OverBudget {
                needed: 41,
                budget: base + 100,
                booked: 60
            })
        );
        assert_eq!(r.reserve_memory(40), Ok(()));
        assert!(r.reserve_memory(1).is_err());
        // Given back, it fits again; more than the whole room never fits.
        r.release_memory(60);
        assert_eq!(r.reserve_memory(41), Ok(()));
        r.release_memory(41);
        r.release_memory(40);
        assert!(r.reserve_memory(101).is_err());
        assert_eq!(r.reserve_memory(100), Ok(()));
        // Shared with uploads on the same budget.
        assert!(matches!(
            r.reserve_party("a", mem(1)),
            Err(Refusal::Over {
                what: Resource::Memory,
                booked: 100,
                ..
            })
        ));
    }

    fn add(r: &mut Registry<()>, job: &str, now: Instant) {
        assert!(matches!(r.admit(job, now), Admit::New));
        let (tx, _rx) = mpsc::unbounded_channel();
        r.insert(job, tx, Phase::Waiting, false, None, now);
    }

    fn status(job: &str, phase: Phase) -> Status {
        Status {
            job: job.into(),
            phase,
            waiting_for: vec![],
            step: None,
        }
    }

    #[test]
    fn a_job_that_ran_or_failed_is_refused_for_the_remembered_window() {
        let (mut r, t0) = reg();
        for (job, how) in [("ok", Ended::Done), ("bad", Ended::Failed)] {
            add(&mut r, job, t0);
            r.set_status(status(job, Phase::Computing), t0);
            r.end(job, how, t0);
            match r.admit(job, t0 + Duration::from_secs(99)) {
                Admit::Refused(why) => assert!(why.contains("use a new job id"), "{why}"),
                _ => panic!("{job} must be refused"),
            }
        }
        assert_eq!(r.remembered(), 2);
        assert!(matches!(
            r.admit("ok", t0 + Duration::from_secs(100)),
            Admit::New
        ));
        assert_eq!(r.remembered(), 0, "forgotten after the window");
        assert!(
            r.metrics("s")
                .contains("ppea_jobs_total{server=\"s\",outcome=\"refused\"} 2")
        );
    }

    /// Jobs that only a server's links created do not count against `max_jobs` (before, a
    /// configured server could fill the table with links and every party was refused), but a
    /// server may hold at most `max_jobs` of them; a party's upload makes one count.
    #[test]
    fn jobs_only_links_created_neither_fill_the_server_nor_grow_without_bound() {
        let (mut r, t0) = reg();
        let link = |r: &mut Registry<()>, job: &str, peer: &str| match r.admit_link(job, t0, peer) {
            Admit::New => {
                let (tx, _rx) = mpsc::unbounded_channel();
                r.insert(job, tx, Phase::Waiting, false, Some(peer), t0);
                Ok(())
            }
            Admit::Held(_) => Ok(()),
            Admit::Refused(why) => Err(why),
        };
        link(&mut r, "l1", "server-1").unwrap();
        link(&mut r, "l2", "server-1").unwrap();
        let why = link(&mut r, "l3", "server-1").unwrap_err();
        assert!(why.contains("server-1 already opened 2 jobs"), "{why}");
        // Another server's links, and parties' uploads, still have room.
        link(&mut r, "m1", "server-2").unwrap();
        add(&mut r, "u1", t0);
        // An upload to a job a link created makes it count: the table (2) is then full.
        assert!(matches!(r.admit("l1", t0), Admit::Held(_)));
        assert!(
            matches!(r.admit("l2", t0), Admit::Refused(_)),
            "u1 and l1 count"
        );
        assert!(matches!(r.admit("u2", t0), Admit::Refused(_)));
        // And server-1 may open a link-only job again.
        link(&mut r, "l3", "server-1").unwrap();
    }

    #[test]
    fn the_remembered_ids_are_bounded_oldest_forgotten_first() {
        let (mut r, t0) = reg();
        r.max_remembered = 10;
        for i in 0..=10 {
            let job = format!("j{i}");
            let at = t0 + Duration::from_millis(i);
            add(&mut r, &job, at);
            r.set_status(status(&job, Phase::Computing), at);
            r.end(&job, Ended::Done, at);
        }
        assert_eq!(r.remembered(), 10);
        let later = t0 + Duration::from_secs(1);
        assert!(
            matches!(r.admit("j0", later), Admit::New),
            "the oldest is forgotten"
        );
        for i in 1..=10 {
            assert!(matches!(
                r.admit(&format!("j{i}"), later),
                Admit::Refused(_)
            ));
        }
    }

    #[test]
    fn a_job_dropped_before_it_started_can_be_submitted_again() {
        let (mut r, t0) = reg();
        add(&mut r, "j", t0);
        r.end("j", Ended::Dropped, t0);
        assert!(matches!(r.admit("j", t0), Admit::New));
        // Dropped after starting counts as failed, and is remembered.
        add(&mut r, "k", t0);
        r.set_status(status("k", Phase::Linking), t0);
        r.end("k", Ended::Dropped, t0);
        assert!(matches!(r.admit("k", t0), Admit::Refused(_)));
    }

    #[test]
    fn held_jobs_list_state_age_and_waiting_for_and_capacity_is_enforced() {
        let (mut r, t0) = reg();
        add(&mut r, "a", t0);
        add(&mut r, "b", t0 + Duration::from_secs(5));
        assert!(matches!(r.admit("c", t0), Admit::Refused(w) if w.contains("2 jobs")));
        assert!(matches!(r.admit("a", t0), Admit::Held(_)));
        let mut s = status("b", Phase::Waiting);
        s.waiting_for = vec!["party-b".into()];
        r.set_status(s.clone(), t0 + Duration::from_secs(6));
        let held = r.held(t0 + Duration::from_secs(10));
        assert_eq!(held.len(), 2);
        assert_eq!((held[0].status.job.as_str(), held[0].age_secs), ("a", 10));
        assert_eq!(held[1].status, s);
        assert_eq!(held[1].age_secs, 5);
        assert!(s.to_string().contains("waiting for party-b"), "{s}");
    }
}

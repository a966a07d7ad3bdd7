//! The CronJob controller: Kubernetes' `cronjob-controller` (`cronjob_controllerv2.go` and its
//! `utils.go`, as of 1.34), run by the Raft leader.
//!
//! Every decision is one pure function, [`next_action`]: the CronJob, the Jobs it controls and
//! "now" in; the Jobs to delete, the Job to create, the new status, the events and when to look
//! again out. The driver ([`run`]) carries it out through the API. Times come from a [`Clock`],
//! so tests move time instead of waiting for it.
//!
//! - **Schedule.** Standard five-field cron (`*/5 * * * *`, ranges, lists, steps, month and
//!   weekday names) and the macros `@yearly` / `@annually`, `@monthly`, `@weekly`, `@daily` /
//!   `@midnight`, `@hourly`, plus `@every <duration>` (Go duration syntax), parsed by croner.
//!   `spec.timeZone` (an IANA name) is where the schedule is read; without one, UTC. An unknown
//!   zone, or a schedule that does not parse, is reported with a warning event
//!   (`UnknownTimeZone`, `UnparseableSchedule`) and nothing is scheduled.
//! - **When.** The most recent start time due since `status.lastScheduleTime` (or the CronJob's
//!   creation), and since `now - startingDeadlineSeconds` when that is set: missed times
//!   outside the deadline are skipped. When more than 100 start times were missed, the CronJob
//!   is stopped as Kubernetes documents it: no Job is started and a `FailedNeedsStart` warning
//!   says why ("Cannot determine if job needs to be started: too many missed start times
//!   (> 100). Set or decrease .spec.startingDeadlineSeconds or check clock skew"). Setting
//!   `startingDeadlineSeconds` (so fewer times fall in the window) lets it run again. (Kubernetes'
//!   v2 controller only warns and runs the latest time; the documented rule is kept here.)
//! - **Concurrency.** `Allow` starts the Job anyway; `Forbid` skips the run while a Job is active
//!   (event `JobAlreadyActive`; the missed time is run once the active Job finishes, if still
//!   within the deadline); `Replace` deletes the active Jobs, then starts the new one.
//! - **The Job** is named `<cronjob>-<scheduled time in minutes since the epoch>` (so a time is
//!   never started twice: a second create is `AlreadyExists`), carries the template's labels and
//!   annotations plus `batch.kubernetes.io/cronjob-scheduled-timestamp` (RFC 3339 in the
//!   CronJob's zone) and the controller ownerReference.
//! - **Status.** `active` lists the Jobs started and not finished (a finished one is dropped
//!   with `SawCompletedJob`, a vanished one with `MissingJob`); `lastScheduleTime` the last time
//!   started; `lastSuccessfulTime` the latest `completionTime` of a completed Job.
//! - **History.** Beyond `successfulJobsHistoryLimit` (default 3) completed and
//!   `failedJobsHistoryLimit` (default 1) failed Jobs, the oldest (by `status.startTime`) are
//!   deleted with Background propagation.
//! - `suspend: true` starts nothing (missed times are then run as above on resume); a CronJob
//!   being deleted only has its status kept.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{Datelike, Timelike};
use corral_api::{ApiError, object};
use corral_client::events::EventRecorder;
use corral_client::informer::{Informer, index_by_owner_uid};
use corral_client::{Change, Client, DeleteOptions, PropagationPolicy};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::job::{controller_ref, finished_condition, is_controlled_by};
pub use crate::node_lifecycle::{Clock, SystemClock};
use crate::node_lifecycle::{format_time, parse_time};

/// The annotation on every Job a CronJob starts: its scheduled time, RFC 3339 in the CronJob's
/// time zone.
pub const SCHEDULED_TIMESTAMP_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// More missed start times than this stop the CronJob with a `FailedNeedsStart` warning.
pub const MAX_MISSED_START_TIMES: i64 = 100;
/// The warning's message, as Kubernetes words it.
pub const MESSAGE_TOO_MANY_MISSED: &str = "Cannot determine if job needs to be started: too many missed start times (> 100). Set or decrease .spec.startingDeadlineSeconds or check clock skew";
/// The CronJob is looked at again this long after its next start time (Kubernetes'
/// `nextScheduleDelta`), so clocks a little apart do not miss it.
const NEXT_SCHEDULE_DELTA: Duration = Duration::from_millis(100);

/// Event source, as Kubernetes names it.
const COMPONENT: &str = "cronjob-controller";
/// The Job informer's index: Jobs by owner uid.
const OWNER_INDEX: &str = "ownerUid";
/// Delay before a sync that failed is tried again.
const RETRY_AFTER: Duration = Duration::from_millis(500);

/// Timings of the CronJob controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronJobOptions {
    /// Every CronJob is looked at at least this often (default 10 s, as Kubernetes' controller
    /// checks). The controller also wakes for each CronJob's next start time.
    pub resync_period: Duration,
    /// Changes arriving within this long of each other are folded into one pass (default
    /// 100 ms).
    pub batch_period: Duration,
}

impl Default for CronJobOptions {
    fn default() -> Self {
        Self {
            resync_period: Duration::from_secs(10),
            batch_period: Duration::from_millis(100),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Time zones for croner
// ---------------------------------------------------------------------------------------------

/// A jiff time zone as chrono's `TimeZone`, which croner searches in (it resolves DST gaps and
/// folds through it).
#[derive(Debug, Clone)]
struct Zone(TimeZone);

#[derive(Debug, Clone)]
struct ZoneOffset {
    zone: TimeZone,
    fixed: chrono::FixedOffset,
}

impl chrono::Offset for ZoneOffset {
    fn fix(&self) -> chrono::FixedOffset {
        self.fixed
    }
}

impl Zone {
    fn offset(&self, offset: jiff::tz::Offset) -> ZoneOffset {
        let fixed = chrono::FixedOffset::east_opt(offset.seconds())
            .unwrap_or_else(|| chrono::Offset::fix(&chrono::Utc));
        ZoneOffset {
            zone: self.0.clone(),
            fixed,
        }
    }
}

impl chrono::TimeZone for Zone {
    type Offset = ZoneOffset;

    fn from_offset(offset: &ZoneOffset) -> Self {
        Zone(offset.zone.clone())
    }

    fn offset_from_local_date(
        &self,
        local: &chrono::NaiveDate,
    ) -> chrono::MappedLocalTime<ZoneOffset> {
        self.offset_from_local_datetime(&local.and_time(chrono::NaiveTime::MIN))
    }

    fn offset_from_local_datetime(
        &self,
        local: &chrono::NaiveDateTime,
    ) -> chrono::MappedLocalTime<ZoneOffset> {
        let civil = (|| {
            jiff::civil::DateTime::new(
                i16::try_from(local.year()).ok()?,
                i8::try_from(local.month()).ok()?,
                i8::try_from(local.day()).ok()?,
                i8::try_from(local.hour()).ok()?,
                i8::try_from(local.minute()).ok()?,
                i8::try_from(local.second()).ok()?,
                0,
            )
            .ok()
        })();
        let Some(civil) = civil else {
            return chrono::MappedLocalTime::None;
        };
        match self.0.to_ambiguous_timestamp(civil).offset() {
            AmbiguousOffset::Unambiguous { offset } => {
                chrono::MappedLocalTime::Single(self.offset(offset))
            }
            AmbiguousOffset::Gap { .. } => chrono::MappedLocalTime::None,
            // `before` is the offset in force before the transition: the earlier instant.
            AmbiguousOffset::Fold { before, after } => {
                chrono::MappedLocalTime::Ambiguous(self.offset(before), self.offset(after))
            }
        }
    }

    fn offset_from_utc_date(&self, utc: &chrono::NaiveDate) -> ZoneOffset {
        self.offset_from_utc_datetime(&utc.and_time(chrono::NaiveTime::MIN))
    }

    fn offset_from_utc_datetime(&self, utc: &chrono::NaiveDateTime) -> ZoneOffset {
        let ts = Timestamp::from_second(utc.and_utc().timestamp()).unwrap_or(Timestamp::UNIX_EPOCH);
        self.offset(self.0.to_offset(ts))
    }
}

// ---------------------------------------------------------------------------------------------
// Schedules
// ---------------------------------------------------------------------------------------------

/// A parsed `spec.schedule` in its time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    kind: ScheduleKind,
    zone: TimeZone,
}

#[derive(Debug, Clone)]
enum ScheduleKind {
    Cron(Box<Cron>),
    /// `@every <duration>`: whole seconds, at least one.
    Every(i64),
}

/// Parses a Go duration (`1h30m`, `90s`, `1.5h`, `500ms`) into nanoseconds.
fn parse_go_duration(text: &str) -> Result<i128, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let (negative, mut rest) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(0);
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("missing unit in duration {text:?}"))?;
        let (number, tail) = rest.split_at(digits);
        if number.is_empty() || number == "." {
            return Err(format!("invalid duration {text:?}"));
        }
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale: i128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(format!("unknown unit {unit:?} in duration {text:?}")),
        };
        let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
        let whole: i128 = if whole.is_empty() {
            0
        } else {
            whole
                .parse()
                .map_err(|_| format!("invalid duration {text:?}"))?
        };
        let mut value = whole
            .checked_mul(scale)
            .ok_or_else(|| format!("duration {text:?} is too long"))?;
        let mut place = scale;
        for d in frac.chars() {
            place /= 10;
            let digit = i128::from(d.to_digit(10).unwrap_or(0));
            value += digit * place;
        }
        total = total
            .checked_add(value)
            .ok_or_else(|| format!("duration {text:?} is too long"))?;
        rest = tail;
    }
    Ok(if negative { -total } else { total })
}

impl Schedule {
    /// Parses a schedule as Kubernetes' controller does (robfig/cron's `ParseStandard`): five
    /// fields or a macro, no seconds, no `TZ=` prefix (that is `spec.timeZone`'s job).
    pub fn parse(schedule: &str, zone: TimeZone) -> Result<Schedule, String> {
        let s = schedule.trim();
        if s.starts_with("TZ=") || s.starts_with("CRON_TZ=") {
            return Err("cannot use TZ or CRON_TZ in schedule, use timeZone field instead".into());
        }
        let lower = s.to_ascii_lowercase();
        if let Some(duration) = lower.strip_prefix("@every ") {
            let nanos = parse_go_duration(duration)?;
            if nanos < 0 {
                return Err(format!("negative duration in {s:?}"));
            }
            // robfig: at least one second, whole seconds.
            let seconds = i64::try_from(nanos / 1_000_000_000)
                .map_err(|_| format!("duration in {s:?} is too long"))?
                .max(1);
            return Ok(Schedule {
                kind: ScheduleKind::Every(seconds),
                zone,
            });
        }
        let pattern = if lower == "@midnight" { "@daily" } else { s };
        let parser = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build();
        let cron = parser.parse(pattern).map_err(|e| e.to_string())?;
        Ok(Schedule {
            kind: ScheduleKind::Cron(Box::new(cron)),
            zone,
        })
    }

    /// The first start time strictly after `t` (at whole seconds), or `None` when there is none
    /// (a schedule no date matches).
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let second = t.as_second();
        match &self.kind {
            ScheduleKind::Every(every) => Timestamp::from_second(second.checked_add(*every)?).ok(),
            ScheduleKind::Cron(cron) => {
                let start = chrono::TimeZone::timestamp_opt(&Zone(self.zone.clone()), second, 0)
                    .single()?;
                let next = cron.find_next_occurrence(&start, false).ok()?;
                Timestamp::from_second(next.timestamp()).ok()
            }
        }
    }
}

/// The time zone a CronJob's schedule is read in: `spec.timeZone`, or UTC.
pub fn time_zone(cronjob: &Value) -> Result<TimeZone, String> {
    match cronjob
        .pointer("/spec/timeZone")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        None => Ok(TimeZone::UTC),
        Some(name) => TimeZone::get(name).map_err(|e| e.to_string()),
    }
}

/// How many start times were missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missed {
    None,
    Few,
    /// More than [`MAX_MISSED_START_TIMES`].
    Many,
}

/// Kubernetes' `mostRecentScheduleTime`: the time counted from (last schedule or creation, and
/// with `deadline` not before `now - deadline`), the most recent start time at or before `now`
/// after it (if any), and how many were missed. Errors for a schedule whose times are less than
/// a second apart or that no date matches.
pub fn most_recent_schedule_time(
    created: Timestamp,
    last_schedule: Option<Timestamp>,
    starting_deadline_seconds: Option<i64>,
    now: Timestamp,
    schedule: &Schedule,
) -> Result<(Timestamp, Option<Timestamp>, Missed), String> {
    let mut earliest = last_schedule.unwrap_or(created);
    if let Some(deadline) = starting_deadline_seconds {
        let not_before = now
            .checked_sub(SignedDuration::from_secs(deadline))
            .unwrap_or(Timestamp::MIN);
        if not_before > earliest {
            earliest = not_before;
        }
    }
    let t1 = schedule
        .next_after(earliest)
        .ok_or_else(|| "no time matches the schedule".to_string())?;
    if now < t1 {
        return Ok((earliest, None, Missed::None));
    }
    let Some(t2) = schedule.next_after(t1) else {
        return Ok((earliest, Some(t1), Missed::None));
    };
    if now < t2 {
        return Ok((earliest, Some(t1), Missed::None));
    }
    let between = (t2.duration_since(t1).as_millis() + 500) / 1000;
    if between < 1 {
        return Err("time difference between two schedules is less than 1 second".into());
    }
    let between = i64::try_from(between).unwrap_or(i64::MAX);
    let elapsed = now.duration_since(t1).as_secs();
    let missed = elapsed / between + 1;
    // Count back from an estimate, so irregular schedules come out right too.
    let back = SignedDuration::from_secs((missed - 2).saturating_mul(between));
    let potential_earliest = t1.checked_add(back).unwrap_or(t1);
    let mut most_recent = None;
    let mut t = schedule.next_after(potential_earliest);
    let mut steps = 0;
    while let Some(at) = t {
        if at > now || steps > 10_000 {
            break;
        }
        most_recent = Some(at);
        t = schedule.next_after(at);
        steps += 1;
    }
    let missed = if missed > MAX_MISSED_START_TIMES {
        Missed::Many
    } else if missed > 0 {
        Missed::Few
    } else {
        Missed::None
    };
    Ok((earliest, most_recent, missed))
}

/// When to look at the CronJob again (Kubernetes' `nextScheduleTimeDuration`): the start time
/// after the most recent one due (deadline not counted), plus a small delta.
pub fn next_wake(
    created: Timestamp,
    last_schedule: Option<Timestamp>,
    now: Timestamp,
    schedule: &Schedule,
) -> Option<Timestamp> {
    let from = match most_recent_schedule_time(created, last_schedule, None, now, schedule) {
        Err(_) => now,
        Ok((_, Some(t), _)) => t,
        Ok((earliest, None, Missed::None)) => earliest,
        Ok((_, None, _)) => now,
    };
    let next = schedule.next_after(from)?;
    let delta = SignedDuration::try_from(NEXT_SCHEDULE_DELTA).unwrap_or(SignedDuration::ZERO);
    next.checked_add(delta).ok()
}

/// The name of the Job for this start time: `<cronjob>-<minutes since the epoch>`.
pub fn job_name(cronjob_name: &str, scheduled: Timestamp) -> String {
    format!("{cronjob_name}-{}", scheduled.as_second().div_euclid(60))
}

/// RFC 3339 in the zone, as Go formats it (`Z` for a zero offset).
fn rfc3339_in(t: Timestamp, zone: &TimeZone) -> String {
    let offset = zone.to_offset(t);
    let civil = offset.to_datetime(t);
    let seconds = offset.seconds();
    let suffix = if seconds == 0 {
        "Z".to_string()
    } else {
        let sign = if seconds < 0 { '-' } else { '+' };
        let abs = seconds.unsigned_abs();
        format!("{sign}{:02}:{:02}", abs / 3600, (abs % 3600) / 60)
    };
    format!("{}{suffix}", civil.strftime("%Y-%m-%dT%H:%M:%S"))
}

/// The Job a CronJob starts for `scheduled` (Kubernetes' `getJobFromTemplate2`).
pub fn job_from_template(cronjob: &Value, scheduled: Timestamp, zone: &TimeZone) -> Value {
    let template = cronjob.pointer("/spec/jobTemplate").unwrap_or(&Value::Null);
    let template_meta = template.get("metadata").unwrap_or(&Value::Null);
    let mut meta = Map::new();
    meta.insert(
        "name".into(),
        json!(job_name(object::name(cronjob), scheduled)),
    );
    meta.insert("namespace".into(), json!(object::namespace(cronjob)));
    if let Some(labels) = template_meta
        .get("labels")
        .and_then(Value::as_object)
        .filter(|l| !l.is_empty())
    {
        meta.insert("labels".into(), Value::Object(labels.clone()));
    }
    let mut annotations = template_meta
        .get("annotations")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    annotations.insert(
        SCHEDULED_TIMESTAMP_ANNOTATION.into(),
        json!(rfc3339_in(scheduled, zone)),
    );
    meta.insert("annotations".into(), Value::Object(annotations));
    meta.insert(
        "ownerReferences".into(),
        json!([{
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "name": object::name(cronjob),
            "uid": object::uid(cronjob),
            "controller": true,
            "blockOwnerDeletion": true,
        }]),
    );
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": template.get("spec").cloned().unwrap_or_else(|| json!({})),
    })
}

/// A reference to a Job for `status.active`.
pub fn job_reference(job: &Value) -> Value {
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": object::name(job),
        "namespace": object::namespace(job),
        "uid": object::uid(job),
        "resourceVersion": job.pointer("/metadata/resourceVersion").cloned().unwrap_or(json!("")),
    })
}

/// The CronJob status with a just-created Job: added to `active`, and `lastScheduleTime` set
/// to its scheduled time.
pub fn record_created(status: &mut Value, job: &Value, scheduled: Timestamp) {
    if !status.is_object() {
        *status = json!({});
    }
    let Some(map) = status.as_object_mut() else {
        return;
    };
    let active = map.entry("active").or_insert_with(|| json!([]));
    if !active.is_array() {
        *active = json!([]);
    }
    if let Some(list) = active.as_array_mut()
        && !list.iter().any(|r| r["uid"] == job["metadata"]["uid"])
    {
        list.push(job_reference(job));
    }
    map.insert("lastScheduleTime".into(), json!(format_time(scheduled)));
}

// ---------------------------------------------------------------------------------------------
// The decision
// ---------------------------------------------------------------------------------------------

/// Why a Job is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// `concurrencyPolicy: Replace`: the new Job must not start unless this one is gone.
    Replaced,
    /// Beyond the history limit.
    History,
}

/// A Job to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRemoval {
    pub name: String,
    pub uid: String,
    pub why: Removal,
}

/// An event about the CronJob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronEvent {
    /// `Normal` or `Warning`.
    pub type_: &'static str,
    pub reason: &'static str,
    pub message: String,
}

fn event(type_: &'static str, reason: &'static str, message: impl Into<String>) -> CronEvent {
    CronEvent {
        type_,
        reason,
        message: message.into(),
    }
}

/// A Job to start.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub job: Value,
    pub scheduled: Timestamp,
}

/// What the controller does about one CronJob: delete Jobs (a failed `Replaced` deletion stops
/// the rest), create the Job, write the status (with the created Job added through
/// [`record_created`]), record the events, look again at `wake_at`.
#[derive(Debug, Clone, PartialEq)]
pub struct CronAction {
    /// The status after this pass, not counting the Job about to be created.
    pub status: Value,
    /// Whether `status` differs from the CronJob's.
    pub status_changed: bool,
    pub delete: Vec<JobRemoval>,
    pub create: Option<NewJob>,
    pub events: Vec<CronEvent>,
    pub wake_at: Option<Timestamp>,
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// What to do about `cronjob` given the Jobs it controls (others in `jobs` are ignored) at
/// `now`. The caller includes every Job `status.active` names that still exists (the
/// controller reads one its cache lacks from the API first), so a Job missing from `jobs` is
/// gone. Pure.
pub fn next_action(cronjob: &Value, jobs: &[&Value], now: Timestamp) -> CronAction {
    let uid = object::uid(cronjob);
    let jobs: Vec<&Value> = jobs
        .iter()
        .copied()
        .filter(|j| is_controlled_by(j, uid))
        .collect();
    let spec = cronjob.get("spec").unwrap_or(&Value::Null);
    let mut status = cronjob
        .get("status")
        .filter(|s| s.is_object())
        .cloned()
        .unwrap_or_else(|| json!({}));
    let mut active: Vec<Value> = status
        .get("active")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut changed = false;
    let mut events = Vec::new();
    let mut delete = Vec::new();
    let in_active = |active: &[Value], uid: &str| active.iter().any(|r| str_at(r, "/uid") == uid);
    let remove_active = |active: &mut Vec<Value>, uid: &str| -> bool {
        let before = active.len();
        active.retain(|r| str_at(r, "/uid") != uid);
        active.len() != before
    };

    // History: the oldest finished Jobs beyond the limits go.
    for (kind, limit_key) in [
        ("Complete", "successfulJobsHistoryLimit"),
        ("Failed", "failedJobsHistoryLimit"),
    ] {
        let Some(limit) = spec.get(limit_key).and_then(Value::as_i64) else {
            continue;
        };
        let mut finished: Vec<&Value> = jobs
            .iter()
            .copied()
            .filter(|j| finished_condition(j) == Some(kind))
            .collect();
        let excess = finished
            .len()
            .saturating_sub(usize::try_from(limit.max(0)).unwrap_or(0));
        if excess == 0 {
            continue;
        }
        // Oldest start first; Jobs that never started last; then by name.
        finished.sort_by_key(|j| {
            (
                parse_time(j.pointer("/status/startTime")).map_or((1, Timestamp::MIN), |t| (0, t)),
                object::name(j).to_string(),
            )
        });
        for j in finished.into_iter().take(excess) {
            delete.push(JobRemoval {
                name: object::name(j).to_string(),
                uid: object::uid(j).to_string(),
                why: Removal::History,
            });
            changed |= remove_active(&mut active, object::uid(j));
        }
    }

    // What the Jobs say.
    let mut last_successful = parse_time(status.get("lastSuccessfulTime"));
    for j in &jobs {
        let found = in_active(&active, object::uid(j));
        match (found, finished_condition(j)) {
            (false, None) => events.push(event(
                "Warning",
                "UnexpectedJob",
                format!(
                    "Saw a job that the controller did not create or forgot: {}",
                    object::name(j)
                ),
            )),
            (true, Some(condition)) => {
                remove_active(&mut active, object::uid(j));
                changed = true;
                events.push(event(
                    "Normal",
                    "SawCompletedJob",
                    format!(
                        "Saw completed job: {}, condition: {condition}",
                        object::name(j)
                    ),
                ));
            }
            (false, Some("Complete")) => {
                if let Some(done) = parse_time(j.pointer("/status/completionTime"))
                    && last_successful.is_none_or(|l| done > l)
                {
                    last_successful = Some(done);
                    status["lastSuccessfulTime"] = json!(format_time(done));
                    changed = true;
                }
            }
            _ => {}
        }
    }
    for r in active.clone() {
        let ref_uid = str_at(&r, "/uid");
        if !jobs.iter().any(|j| object::uid(j) == ref_uid) {
            events.push(event(
                "Normal",
                "MissingJob",
                format!("Active job went missing: {}", str_at(&r, "/name")),
            ));
            remove_active(&mut active, ref_uid);
            changed = true;
        }
    }

    let mut action = CronAction {
        status: json!({}),
        status_changed: false,
        delete,
        create: None,
        events,
        wake_at: None,
    };
    let finish = |mut action: CronAction, status: Value, active: Vec<Value>, changed: bool| {
        let mut status = status;
        if let Some(map) = status.as_object_mut() {
            if active.is_empty() {
                map.remove("active");
            } else {
                map.insert("active".into(), Value::Array(active));
            }
        }
        action.status_changed = changed;
        action.status = status;
        action
    };

    if object::deletion_timestamp(cronjob).is_some() {
        return finish(action, status, active, changed);
    }
    let zone = match time_zone(cronjob) {
        Ok(zone) => zone,
        Err(e) => {
            action.events.push(event(
                "Warning",
                "UnknownTimeZone",
                format!(
                    "invalid timeZone: {:?}: {e}",
                    str_at(cronjob, "/spec/timeZone")
                ),
            ));
            return finish(action, status, active, changed);
        }
    };
    if spec.get("suspend").and_then(Value::as_bool) == Some(true) {
        return finish(action, status, active, changed);
    }
    let schedule_text = str_at(spec, "/schedule");
    let schedule = match Schedule::parse(schedule_text, zone.clone()) {
        Ok(s) => s,
        Err(e) => {
            action.events.push(event(
                "Warning",
                "UnparseableSchedule",
                format!("unparseable schedule: {schedule_text:?} : {e}"),
            ));
            return finish(action, status, active, changed);
        }
    };
    let created = parse_time(cronjob.pointer("/metadata/creationTimestamp")).unwrap_or(now);
    let last_schedule = parse_time(status.get("lastScheduleTime"));
    let deadline = spec.get("startingDeadlineSeconds").and_then(Value::as_i64);
    let scheduled =
        match most_recent_schedule_time(created, last_schedule, deadline, now, &schedule) {
            Err(e) => {
                action.events.push(event(
                    "Warning",
                    "InvalidSchedule",
                    format!("invalid schedule: {schedule_text} : {e}"),
                ));
                return finish(action, status, active, changed);
            }
            Ok((_, None, _)) => None,
            Ok((_, Some(t), _)) if t > now => None,
            Ok((_, Some(_), Missed::Many)) => {
                action.events.push(event(
                    "Warning",
                    "FailedNeedsStart",
                    MESSAGE_TOO_MANY_MISSED,
                ));
                None
            }
            Ok((_, Some(t), _)) => Some(t),
        };
    action.wake_at = next_wake(created, last_schedule, now, &schedule);
    let Some(scheduled) = scheduled else {
        return finish(action, status, active, changed);
    };
    if let Some(deadline) = deadline
        && scheduled
            .checked_add(SignedDuration::from_secs(deadline))
            .is_ok_and(|late| late < now)
    {
        action.events.push(event(
            "Warning",
            "MissSchedule",
            format!(
                "Missed scheduled time to start a job: {}",
                scheduled.strftime("%a, %d %b %Y %H:%M:%S +0000")
            ),
        ));
        return finish(action, status, active, changed);
    }
    let name = job_name(object::name(cronjob), scheduled);
    if active.iter().any(|r| str_at(r, "/name") == name) || last_schedule == Some(scheduled) {
        return finish(action, status, active, changed);
    }
    match str_at(spec, "/concurrencyPolicy") {
        "Forbid" if !active.is_empty() => {
            action.events.push(event(
                "Normal",
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid",
            ));
            return finish(action, status, active, changed);
        }
        "Replace" => {
            for r in std::mem::take(&mut active) {
                action.delete.push(JobRemoval {
                    name: str_at(&r, "/name").to_string(),
                    uid: str_at(&r, "/uid").to_string(),
                    why: Removal::Replaced,
                });
                changed = true;
            }
        }
        _ => {}
    }
    action.create = Some(NewJob {
        job: job_from_template(cronjob, scheduled, &zone),
        scheduled,
    });
    action.wake_at = next_wake(created, Some(scheduled), now, &schedule);
    finish(action, status, active, changed)
}

// ---------------------------------------------------------------------------------------------
// The controller
// ---------------------------------------------------------------------------------------------

/// Runs the CronJob controller until `cancel` fires, with the system clock.
pub async fn run(client: Client, opts: CronJobOptions, cancel: CancellationToken) {
    run_with_clock(client, opts, Arc::new(SystemClock), cancel).await;
}

type Key = (String, String);

/// [`run`] with the time read from `clock`.
pub async fn run_with_clock(
    client: Client,
    opts: CronJobOptions,
    clock: Arc<dyn Clock>,
    cancel: CancellationToken,
) {
    let cronjobs = Informer::builder(client.clone(), "CronJob").start(cancel.clone());
    let jobs = Informer::builder(client.clone(), "Job")
        .index(OWNER_INDEX, index_by_owner_uid)
        .start(cancel.clone());
    let mut cronjob_changes = cronjobs.subscribe();
    let mut job_changes = jobs.subscribe();
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = async { cronjobs.wait_synced().await; jobs.wait_synced().await } => {}
    }
    tracing::info!("cronjob controller: caches synced");
    let mut c = Controller {
        events: EventRecorder::new(client.clone(), COMPONENT, ""),
        client,
        cronjobs,
        jobs,
        written: HashMap::new(),
        wake: HashMap::new(),
        dirty: BTreeSet::new(),
        warned: HashSet::new(),
    };
    c.resync_all();
    let mut next_resync = Instant::now() + opts.resync_period;
    loop {
        let now = clock.now();
        let keys = std::mem::take(&mut c.dirty);
        for key in keys {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = c.sync(&key, now) => {}
            }
        }
        let mut until = next_resync;
        let now = clock.now();
        for t in c.wake.values() {
            let d = Duration::try_from(t.duration_since(now)).unwrap_or(Duration::ZERO);
            until = until.min(Instant::now() + d);
        }
        if !c.dirty.is_empty() {
            until = Instant::now() + opts.batch_period;
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep_until(until) => {}
            change = cronjob_changes.recv() => match change {
                Some(change) => c.cronjob_changed(change),
                None => break,
            },
            change = job_changes.recv() => match change {
                Some(change) => c.job_changed(change),
                None => break,
            },
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(opts.batch_period) => {}
        }
        drain(&mut cronjob_changes, |ch| c.cronjob_changed(ch));
        drain(&mut job_changes, |ch| c.job_changed(ch));
        let now = clock.now();
        let due: Vec<Key> = c
            .wake
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            c.wake.remove(&key);
            c.dirty.insert(key);
        }
        if Instant::now() >= next_resync {
            c.resync_all();
            next_resync = Instant::now() + opts.resync_period;
        }
    }
    tracing::info!("cronjob controller: stopped");
}

fn drain(rx: &mut UnboundedReceiver<Change>, mut f: impl FnMut(Change)) {
    while let Ok(change) = rx.try_recv() {
        f(change);
    }
}

struct Controller {
    client: Client,
    cronjobs: Informer,
    jobs: Informer,
    events: EventRecorder,
    /// The controller's latest status writes, used until the cache catches up.
    written: HashMap<Key, Arc<Value>>,
    wake: HashMap<Key, Timestamp>,
    dirty: BTreeSet<Key>,
    /// `UnexpectedJob` warnings given (CronJob uid, Job uid): once each.
    warned: HashSet<(String, String)>,
}

fn key_of(obj: &Value) -> Key {
    (
        object::namespace(obj).to_string(),
        object::name(obj).to_string(),
    )
}

fn rv(obj: &Value) -> u64 {
    object::resource_version(obj).unwrap_or(0)
}

impl Controller {
    fn resync_all(&mut self) {
        for cj in self.cronjobs.list() {
            self.dirty.insert(key_of(&cj));
        }
    }

    fn cronjob_changed(&mut self, change: Change) {
        match change {
            Change::Added(cj) | Change::Modified { new: cj, .. } => {
                self.dirty.insert(key_of(&cj));
            }
            Change::Deleted(cj) => {
                let key = key_of(&cj);
                self.written.remove(&key);
                self.wake.remove(&key);
                self.warned.retain(|(u, _)| u != object::uid(&cj));
            }
            Change::Relisted => self.resync_all(),
        }
    }

    fn job_changed(&mut self, change: Change) {
        let job = match change {
            Change::Added(j) | Change::Modified { new: j, .. } | Change::Deleted(j) => j,
            Change::Relisted => return self.resync_all(),
        };
        if let Some(r) = controller_ref(&job).filter(|r| str_at(r, "/kind") == "CronJob") {
            self.dirty.insert((
                object::namespace(&job).to_string(),
                str_at(r, "/name").to_string(),
            ));
        }
    }

    fn retry(&mut self, key: &Key, now: Timestamp) {
        let at = SignedDuration::try_from(RETRY_AFTER)
            .ok()
            .and_then(|d| now.checked_add(d).ok())
            .unwrap_or(now);
        let t = self.wake.entry(key.clone()).or_insert(at);
        *t = (*t).min(at);
    }

    fn record(&self, cronjob: &Value, e: &CronEvent) {
        self.events
            .event(cronjob, e.type_, e.reason, e.message.clone());
    }

    async fn sync(&mut self, key: &Key, now: Timestamp) {
        let Some(cached) = self.cronjobs.get(&key.0, &key.1) else {
            self.written.remove(key);
            self.wake.remove(key);
            return;
        };
        let cronjob = match self.written.get(key) {
            Some(w) if object::uid(w) == object::uid(&cached) && rv(w) > rv(&cached) => {
                Arc::clone(w)
            }
            _ => {
                self.written.remove(key);
                cached
            }
        };
        let uid = object::uid(&cronjob).to_string();
        let name = format!("{}/{}", key.0, key.1);
        let mut jobs: Vec<Arc<Value>> = self
            .jobs
            .by_index(OWNER_INDEX, &uid)
            .into_iter()
            .filter(|j| is_controlled_by(j, &uid))
            .collect();
        // An active Job the cache does not have yet (or any more) is read from the API, so a
        // lagging cache does not make it "missing".
        let refs: Vec<Value> = cronjob
            .pointer("/status/active")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for r in refs {
            let ref_uid = str_at(&r, "/uid");
            if jobs.iter().any(|j| object::uid(j) == ref_uid) {
                continue;
            }
            match self.client.get("Job", &key.0, str_at(&r, "/name")).await {
                Ok(j) if object::uid(&j) == ref_uid => jobs.push(Arc::new(j)),
                Ok(_) | Err(ApiError::NotFound { .. }) => {}
                Err(e) => {
                    tracing::warn!(cronjob = %name, error = %e, "cronjob controller: could not read an active job");
                    self.retry(key, now);
                    return;
                }
            }
        }
        let refs: Vec<&Value> = jobs.iter().map(|j| j.as_ref()).collect();
        let action = next_action(&cronjob, &refs, now);
        match action.wake_at {
            Some(t) => {
                self.wake.insert(key.clone(), t);
            }
            None => {
                self.wake.remove(key);
            }
        }
        for e in &action.events {
            if e.reason == "UnexpectedJob" && !self.warned.insert((uid.clone(), e.message.clone()))
            {
                continue;
            }
            self.record(&cronjob, e);
        }

        let mut replace_failed = false;
        for removal in &action.delete {
            let options = DeleteOptions {
                propagation_policy: Some(PropagationPolicy::Background),
                uid: Some(removal.uid.clone()).filter(|u| !u.is_empty()),
                ..DeleteOptions::default()
            };
            match self
                .client
                .delete("Job", &key.0, &removal.name, &options)
                .await
            {
                Ok(_) | Err(ApiError::NotFound { .. }) => self.record(
                    &cronjob,
                    &event(
                        "Normal",
                        "SuccessfulDelete",
                        format!("Deleted job {}", removal.name),
                    ),
                ),
                Err(e) => {
                    self.record(
                        &cronjob,
                        &event("Warning", "FailedDelete", format!("Deleted job: {e}")),
                    );
                    if removal.why == Removal::Replaced {
                        replace_failed = true;
                    }
                }
            }
        }
        if replace_failed {
            // The active Jobs stay in the status; the new one waits until they are gone.
            self.retry(key, now);
            return;
        }

        let mut status = action.status.clone();
        let mut changed = action.status_changed;
        if let Some(new_job) = &action.create {
            let job_name = object::name(&new_job.job).to_string();
            match self.client.create(&new_job.job).await {
                Ok(created) => {
                    tracing::info!(cronjob = %name, job = %job_name, "cronjob controller: started a job");
                    self.record(
                        &cronjob,
                        &event(
                            "Normal",
                            "SuccessfulCreate",
                            format!("Created job {job_name}"),
                        ),
                    );
                    record_created(&mut status, &created, new_job.scheduled);
                    changed = true;
                }
                Err(ApiError::AlreadyExists { .. }) => {
                    // Started before (the status write was lost): adopt it into the status if
                    // it is ours.
                    match self.client.get("Job", &key.0, &job_name).await {
                        Ok(existing) if is_controlled_by(&existing, &uid) => {
                            let listed = status
                                .get("active")
                                .and_then(Value::as_array)
                                .is_some_and(|a| {
                                    a.iter().any(|r| r["uid"] == existing["metadata"]["uid"])
                                });
                            if !listed {
                                record_created(&mut status, &existing, new_job.scheduled);
                                changed = true;
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(cronjob = %name, error = %e, "cronjob controller: could not read the existing job");
                            self.retry(key, now);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(cronjob = %name, job = %job_name, error = %e, "cronjob controller: could not start a job");
                    self.record(
                        &cronjob,
                        &event(
                            "Warning",
                            "FailedCreate",
                            format!("Error creating job: {e}"),
                        ),
                    );
                    self.retry(key, now);
                }
            }
        }
        if changed {
            let mut next = (*cronjob).clone();
            next["status"] = status;
            match self.client.update_status(&next).await {
                Ok(written) => {
                    self.written.insert(key.clone(), Arc::new(written));
                }
                Err(e) => {
                    if !matches!(e, ApiError::Conflict { .. } | ApiError::NotFound { .. }) {
                        tracing::warn!(cronjob = %name, error = %e, "cronjob controller: could not write the status");
                    }
                    self.retry(key, now);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "cj-uid";

    fn t(s: &str) -> Timestamp {
        s.parse().expect("a test timestamp")
    }

    /// 2026-01-01T00:00:00Z plus `secs`.
    fn at(secs: i64) -> Timestamp {
        t("2026-01-01T00:00:00Z")
            .checked_add(SignedDuration::from_secs(secs))
            .expect("in range")
    }

    fn minute(m: i64) -> Timestamp {
        at(m * 60)
    }

    fn cronjob(spec: Value, status: Value) -> Value {
        let mut cj = json!({
            "apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "hello", "namespace": "default", "uid": UID,
                         "resourceVersion": "7", "creationTimestamp": format_time(at(30))},
            "spec": {
                "schedule": "*/1 * * * *", "concurrencyPolicy": "Allow", "suspend": false,
                "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1,
                "jobTemplate": {"metadata": {"labels": {"app": "hello"}},
                                "spec": {"template": {"spec": {"restartPolicy": "OnFailure",
                                    "containers": [{"name": "hello", "image": "busybox"}]}}}},
            },
            "status": status,
        });
        if let (Some(s), Some(extra)) = (cj["spec"].as_object_mut(), spec.as_object()) {
            for (k, v) in extra {
                s.insert(k.clone(), v.clone());
            }
        }
        cj
    }

    /// A Job of the CronJob, started at `start` (minutes), finished with `condition` at
    /// `done` (minutes) when given.
    fn job(minute_scheduled: i64, condition: Option<(&str, i64)>) -> Value {
        let name = job_name("hello", minute(minute_scheduled));
        let mut j = json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{minute_scheduled}"),
                         "resourceVersion": "3",
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "hello",
                                              "uid": UID, "controller": true, "blockOwnerDeletion": true}]},
            "spec": {},
            "status": {"startTime": format_time(minute(minute_scheduled))},
        });
        if let Some((cond, done)) = condition {
            j["status"]["conditions"] = json!([{"type": cond, "status": "True", "lastTransitionTime": format_time(minute(done))}]);
            if cond == "Complete" {
                j["status"]["completionTime"] = json!(format_time(minute(done)));
            }
        }
        j
    }

    fn active(jobs: &[&Value]) -> Value {
        Value::Array(jobs.iter().map(|j| job_reference(j)).collect())
    }

    fn act(cj: &Value, jobs: &[Value], now: Timestamp) -> CronAction {
        let refs: Vec<&Value> = jobs.iter().collect();
        next_action(cj, &refs, now)
    }

    fn created(a: &CronAction) -> Option<(String, Timestamp)> {
        a.create
            .as_ref()
            .map(|n| (object::name(&n.job).to_string(), n.scheduled))
    }

    fn reasons(a: &CronAction) -> Vec<&str> {
        a.events.iter().map(|e| e.reason).collect()
    }

    fn deletions(a: &CronAction) -> Vec<(String, Removal)> {
        a.delete.iter().map(|d| (d.name.clone(), d.why)).collect()
    }

    fn name(m: i64) -> String {
        job_name("hello", minute(m))
    }

    #[test]
    fn schedules_and_macros_give_kubernetes_next_times() {
        let utc = TimeZone::UTC;
        let next = |s: &str, from: &str| {
            Schedule::parse(s, utc.clone())
                .expect("parses")
                .next_after(t(from))
                .map(|t| t.to_string())
        };
        let table = [
            (
                "*/1 * * * *",
                "2026-01-01T00:00:30Z",
                "2026-01-01T00:01:00Z",
            ),
            (
                "*/5 * * * *",
                "2026-01-01T00:05:00Z",
                "2026-01-01T00:10:00Z",
            ),
            (
                "30 6-16/4 * * 1-5",
                "2026-01-02T07:00:00Z",
                "2026-01-02T10:30:00Z",
            ),
            (
                "0 0 * * SUN",
                "2026-01-01T00:00:00Z",
                "2026-01-04T00:00:00Z",
            ),
            (
                "0 9 1 JAN *",
                "2026-01-01T10:00:00Z",
                "2027-01-01T09:00:00Z",
            ),
            ("@hourly", "2026-01-01T00:30:00Z", "2026-01-01T01:00:00Z"),
            ("@daily", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"),
            ("@midnight", "2026-01-01T12:00:00Z", "2026-01-02T00:00:00Z"),
            ("@weekly", "2026-01-01T00:00:00Z", "2026-01-04T00:00:00Z"),
            ("@monthly", "2026-01-15T00:00:00Z", "2026-02-01T00:00:00Z"),
            ("@yearly", "2026-01-15T00:00:00Z", "2027-01-01T00:00:00Z"),
            ("@annually", "2026-01-15T00:00:00Z", "2027-01-01T00:00:00Z"),
            (
                "@every 90m",
                "2026-01-01T00:00:00.5Z",
                "2026-01-01T01:30:00Z",
            ),
            (
                "@every 1h30m10s",
                "2026-01-01T00:00:00Z",
                "2026-01-01T01:30:10Z",
            ),
        ];
        for (schedule, from, want) in table {
            assert_eq!(
                next(schedule, from).as_deref(),
                Some(want),
                "{schedule} after {from}"
            );
        }
        for bad in [
            "every minute",
            "* * * *",
            "0 * * * * *",
            "61 * * * *",
            "TZ=UTC * * * * *",
            "@every 5x",
        ] {
            assert!(
                Schedule::parse(bad, utc.clone()).is_err(),
                "{bad} must not parse"
            );
        }
    }

    #[test]
    fn schedules_are_read_in_their_time_zone() {
        let paris = TimeZone::get("Europe/Paris").expect("the tz database has Paris");
        let s = Schedule::parse("0 9 * * *", paris).expect("parses");
        // 09:00 in Paris is 08:00Z in winter, 07:00Z in summer.
        assert_eq!(
            s.next_after(t("2026-01-01T00:00:00Z")),
            Some(t("2026-01-01T08:00:00Z"))
        );
        assert_eq!(
            s.next_after(t("2026-07-01T00:00:00Z")),
            Some(t("2026-07-01T07:00:00Z"))
        );
        // Across the spring-forward gap (02:00 → 03:00 on 2026-03-29): 02:30 runs at 03:00.
        let paris = TimeZone::get("Europe/Paris").expect("Paris");
        let s = Schedule::parse("30 2 * * *", paris).expect("parses");
        assert_eq!(
            s.next_after(t("2026-03-28T12:00:00Z")),
            Some(t("2026-03-29T01:00:00Z"))
        );

        let cj = cronjob(
            json!({"schedule": "0 9 * * *", "timeZone": "Europe/Paris"}),
            json!({}),
        );
        let a = act(&cj, &[], t("2026-01-01T08:00:30Z"));
        let new_job = a.create.expect("the 09:00 Paris run");
        assert_eq!(new_job.scheduled, t("2026-01-01T08:00:00Z"));
        assert_eq!(
            new_job.job["metadata"]["annotations"][SCHEDULED_TIMESTAMP_ANNOTATION],
            "2026-01-01T09:00:00+01:00"
        );
        assert_eq!(a.wake_at, Some(t("2026-01-02T08:00:00.1Z")));

        let unknown = cronjob(json!({"timeZone": "Mars/Olympus_Mons"}), json!({}));
        let a = act(&unknown, &[], minute(5));
        assert!(a.create.is_none());
        assert_eq!(reasons(&a), vec!["UnknownTimeZone"]);
    }

    #[test]
    fn the_job_is_named_after_its_minute_and_points_at_its_cronjob() {
        let cj = cronjob(json!({}), json!({}));
        let a = act(&cj, &[], at(70));
        let new_job = a.create.expect("a job at 00:01");
        let j = &new_job.job;
        assert_eq!(new_job.scheduled, minute(1));
        assert_eq!(
            j["metadata"]["name"],
            format!("hello-{}", minute(1).as_second() / 60)
        );
        assert_eq!(j["metadata"]["namespace"], "default");
        assert_eq!(j["metadata"]["labels"], json!({"app": "hello"}));
        assert_eq!(
            j["metadata"]["annotations"][SCHEDULED_TIMESTAMP_ANNOTATION],
            "2026-01-01T00:01:00Z"
        );
        assert_eq!(
            j["metadata"]["ownerReferences"],
            json!([{"apiVersion": "batch/v1", "kind": "CronJob", "name": "hello", "uid": UID,
                    "controller": true, "blockOwnerDeletion": true}])
        );
        assert_eq!(j["spec"]["template"]["spec"]["restartPolicy"], "OnFailure");
        assert_eq!(a.wake_at, Some(t("2026-01-01T00:02:00.1Z")));

        // The driver records it in the status.
        let mut status = a.status.clone();
        let mut written = j.clone();
        written["metadata"]["uid"] = json!("uid-1");
        record_created(&mut status, &written, minute(1));
        assert_eq!(status["lastScheduleTime"], "2026-01-01T00:01:00Z");
        assert_eq!(status["active"][0]["name"], j["metadata"]["name"]);
        assert_eq!(status["active"][0]["kind"], "Job");
    }

    /// (what, spec, status, jobs, now, job created (minute), deletions, events).
    #[test]
    fn when_jobs_start() {
        let running1 = job(1, None);
        let done1 = job(1, Some(("Complete", 2)));
        type Row = (
            &'static str,
            Value,
            Value,
            Vec<Value>,
            Timestamp,
            Option<i64>,
            Vec<(String, Removal)>,
            Vec<&'static str>,
        );
        let table: Vec<Row> = vec![
            (
                "nothing due before the first minute",
                json!({}),
                json!({}),
                vec![],
                at(50),
                None,
                vec![],
                vec![],
            ),
            (
                "the first minute",
                json!({}),
                json!({}),
                vec![],
                at(60),
                Some(1),
                vec![],
                vec![],
            ),
            (
                "a time already started is not started again",
                json!({}),
                json!({"lastScheduleTime": format_time(minute(1)), "active": active(&[&running1])}),
                vec![running1.clone()],
                at(100),
                None,
                vec![],
                vec![],
            ),
            (
                "Allow: runs alongside the active job",
                json!({}),
                json!({"lastScheduleTime": format_time(minute(1)), "active": active(&[&running1])}),
                vec![running1.clone()],
                at(125),
                Some(2),
                vec![],
                vec![],
            ),
            (
                "Forbid: skipped while a job is active",
                json!({"concurrencyPolicy": "Forbid"}),
                json!({"lastScheduleTime": format_time(minute(1)), "active": active(&[&running1])}),
                vec![running1.clone()],
                at(125),
                None,
                vec![],
                vec!["JobAlreadyActive"],
            ),
            (
                "Forbid: once the active job finished, the missed time runs",
                json!({"concurrencyPolicy": "Forbid"}),
                json!({"lastScheduleTime": format_time(minute(1)), "active": active(&[&done1])}),
                vec![done1.clone()],
                at(150),
                Some(2),
                vec![],
                vec!["SawCompletedJob"],
            ),
            (
                "Replace: the active job is deleted and the new one started",
                json!({"concurrencyPolicy": "Replace"}),
                json!({"lastScheduleTime": format_time(minute(1)), "active": active(&[&running1])}),
                vec![running1.clone()],
                at(125),
                Some(2),
                vec![(name(1), Removal::Replaced)],
                vec![],
            ),
            (
                "missed times: only the most recent runs",
                json!({}),
                json!({"lastScheduleTime": format_time(minute(1))}),
                vec![],
                at(5 * 60 + 30),
                Some(5),
                vec![],
                vec![],
            ),
            (
                "a deadline longer than the delay: runs",
                json!({"startingDeadlineSeconds": 200}),
                json!({"lastScheduleTime": format_time(minute(1))}),
                vec![],
                at(5 * 60 + 30),
                Some(5),
                vec![],
                vec![],
            ),
            (
                "a deadline shorter than the delay: skipped",
                json!({"startingDeadlineSeconds": 20}),
                json!({"lastScheduleTime": format_time(minute(1))}),
                vec![],
                at(5 * 60 + 30),
                None,
                vec![],
                vec![],
            ),
            (
                "more than 100 missed: stopped with a warning, nothing runs",
                json!({}),
                json!({"lastScheduleTime": format_time(minute(1))}),
                vec![],
                at(180 * 60 + 5),
                None,
                vec![],
                vec!["FailedNeedsStart"],
            ),
            (
                "more than 100 missed but a deadline: only the deadline's window counts",
                json!({"startingDeadlineSeconds": 200}),
                json!({"lastScheduleTime": format_time(minute(1))}),
                vec![],
                at(180 * 60 + 5),
                Some(180),
                vec![],
                vec![],
            ),
            (
                "exactly 100 missed: no warning",
                json!({}),
                json!({"lastScheduleTime": format_time(minute(1))}),
                vec![],
                at(101 * 60),
                Some(101),
                vec![],
                vec![],
            ),
            (
                "suspended: nothing starts",
                json!({"suspend": true}),
                json!({"lastScheduleTime": format_time(minute(1))}),
                vec![],
                at(125),
                None,
                vec![],
                vec![],
            ),
            (
                "an unparseable schedule: a warning",
                json!({"schedule": "every minute"}),
                json!({}),
                vec![],
                at(125),
                None,
                vec![],
                vec!["UnparseableSchedule"],
            ),
            (
                "a vanished active job leaves the status",
                json!({"concurrencyPolicy": "Forbid"}),
                json!({"lastScheduleTime": format_time(minute(1)), "active": active(&[&running1])}),
                vec![],
                at(125),
                Some(2),
                vec![],
                vec!["MissingJob"],
            ),
            (
                "a job of ours not in the status is reported",
                json!({}),
                json!({"lastScheduleTime": format_time(minute(2))}),
                vec![running1.clone()],
                at(130),
                None,
                vec![],
                vec!["UnexpectedJob"],
            ),
        ];
        for (what, spec, status, jobs, now, want_job, want_deletions, want_events) in table {
            let cj = cronjob(spec, status);
            let a = act(&cj, &jobs, now);
            assert_eq!(
                created(&a),
                want_job.map(|m| (name(m), minute(m))),
                "{what}: created"
            );
            assert_eq!(deletions(&a), want_deletions, "{what}: deleted");
            assert_eq!(reasons(&a), want_events, "{what}: events");
        }
    }

    #[test]
    fn the_status_follows_the_jobs() {
        // A finished active job leaves `active`; a completed one not active sets the last
        // successful time.
        let done1 = job(1, Some(("Complete", 2)));
        let failed2 = job(2, Some(("Failed", 3)));
        let running3 = job(3, None);
        let cj = cronjob(
            json!({"concurrencyPolicy": "Forbid"}),
            json!({"lastScheduleTime": format_time(minute(3)),
                   "active": active(&[&failed2, &running3])}),
        );
        let a = act(
            &cj,
            &[done1.clone(), failed2, running3.clone()],
            at(3 * 60 + 30),
        );
        assert!(a.status_changed);
        assert_eq!(a.status["active"], active(&[&running3]));
        assert_eq!(a.status["lastSuccessfulTime"], format_time(minute(2)));
        assert_eq!(reasons(&a), vec!["SawCompletedJob"]);
        assert_eq!(
            a.events[0].message,
            format!("Saw completed job: {}, condition: Failed", name(2))
        );
        assert_eq!(a.wake_at, Some(t("2026-01-01T00:04:00.1Z")));
        // Nothing changed: nothing to write.
        let cj = cronjob(json!({}), a.status.clone());
        let a = act(&cj, &[done1, running3], at(3 * 60 + 40));
        assert!(!a.status_changed);
        assert!(a.events.is_empty() && a.create.is_none());
        // The last active job finished: `active` goes away.
        let cj = cronjob(
            json!({}),
            json!({"lastScheduleTime": format_time(minute(3)),
                                           "active": active(&[&job(3, None)])}),
        );
        let a = act(&cj, &[job(3, Some(("Complete", 4)))], at(3 * 60 + 50));
        assert!(a.status.get("active").is_none(), "{}", a.status);
    }

    #[test]
    fn old_finished_jobs_beyond_the_history_limits_are_deleted() {
        let mut jobs: Vec<Value> = (1..=5).map(|m| job(m, Some(("Complete", m + 1)))).collect();
        jobs.extend((6..=7).map(|m| job(m, Some(("Failed", m + 1)))));
        jobs.push(job(8, None));
        let cj = cronjob(
            json!({}),
            json!({"lastScheduleTime": format_time(minute(8)), "active": active(&[&jobs[7]])}),
        );
        let a = act(&cj, &jobs, at(8 * 60 + 10));
        assert_eq!(
            deletions(&a),
            vec![
                (name(1), Removal::History),
                (name(2), Removal::History),
                (name(6), Removal::History),
            ]
        );
        // Limits of zero keep nothing; no limits keep everything.
        let cj = cronjob(
            json!({"successfulJobsHistoryLimit": 0, "failedJobsHistoryLimit": null}),
            json!({"lastScheduleTime": format_time(minute(8)), "active": active(&[&jobs[7]])}),
        );
        let a = act(&cj, &jobs, at(8 * 60 + 10));
        assert_eq!(a.delete.len(), 5);
        assert!(
            a.delete
                .iter()
                .all(|d| d.name != name(6) && d.name != name(7))
        );
    }

    #[test]
    fn most_recent_schedule_time_counts_missed_times() {
        let s = Schedule::parse("*/1 * * * *", TimeZone::UTC).expect("parses");
        let created = at(30);
        assert_eq!(
            most_recent_schedule_time(created, None, None, at(59), &s),
            Ok((created, None, Missed::None))
        );
        assert_eq!(
            most_recent_schedule_time(created, None, None, at(61), &s),
            Ok((created, Some(minute(1)), Missed::None))
        );
        assert_eq!(
            most_recent_schedule_time(created, None, None, at(10 * 60), &s),
            Ok((created, Some(minute(10)), Missed::Few))
        );
        assert_eq!(
            most_recent_schedule_time(created, None, None, at(102 * 60), &s),
            Ok((created, Some(minute(102)), Missed::Many))
        );
        // Irregular schedules: the most recent time, not an estimate.
        let s = Schedule::parse("30 6-16/4 * * 1-5", TimeZone::UTC).expect("parses");
        let (_, recent, _) = most_recent_schedule_time(
            t("2026-01-01T00:00:00Z"),
            None,
            None,
            t("2026-01-09T12:00:00Z"),
            &s,
        )
        .expect("valid");
        assert_eq!(recent, Some(t("2026-01-09T10:30:00Z")));
    }

    #[test]
    fn go_durations_parse() {
        let table = [
            ("90m", 90 * 60 * 1_000_000_000i128),
            ("1h30m", 90 * 60 * 1_000_000_000),
            ("1.5h", 90 * 60 * 1_000_000_000),
            ("500ms", 500_000_000),
            ("10s", 10_000_000_000),
            ("0", 0),
        ];
        for (text, nanos) in table {
            assert_eq!(parse_go_duration(text), Ok(nanos), "{text}");
        }
        for bad in ["", "10", "5x", "h", "1h30"] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
        let every = Schedule::parse("@every 500ms", TimeZone::UTC).expect("parses");
        assert_eq!(every.next_after(at(0)), Some(at(1)), "at least one second");
    }
}

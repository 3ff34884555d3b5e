//! Incidents as the store keeps them: one row each, an append-only list of
//! events, the notifications delivered and the repairs run.

use rusqlite::{OptionalExtension, params};
use vigie_core::{Severity, Timestamp};

use crate::{Result, Store};

/// An incident as stored.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Incident {
    pub id: i64,
    pub check: String,
    pub severity: String,
    /// open, suppressed, repairing, notified, escalated, acknowledged, resolved
    pub state: String,
    pub suppressed_by: Option<String>,
    pub opened: Timestamp,
    pub resolved: Option<Timestamp>,
    /// recovered, repaired, check removed
    pub resolution: Option<String>,
    pub acked: Option<Timestamp>,
    pub ack_note: Option<String>,
    pub last_error: String,
}

/// One notification attempt, as recorded.
#[derive(Clone, Copy, Debug)]
pub struct DeliveryRecord<'a> {
    pub step: &'a str,
    pub notifier: &'a str,
    pub at: Timestamp,
    pub attempts: u32,
    /// `None` when delivered.
    pub error: Option<&'a str>,
}

/// One thing that happened in an incident.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Event {
    pub at: Timestamp,
    pub kind: EventKind,
    pub detail: String,
}

/// The kind of an incident event. The store keeps it as text (the
/// `incident_events.kind` column): [`EventKind::as_str`] and
/// [`EventKind::parse`] are the one mapping, so that a restart reads back
/// exactly the kinds it wrote. A text no variant knows (a store written
/// by a later vigie) reads as `Other`, never a panic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    Opened,
    Resolved,
    Acknowledged,
    /// A step of the check's actions finished; the detail is its key
    /// `INDEX:ACTION`, which a restart skips.
    Step,
    Repair,
    NotRepaired,
    RestartLimit,
    Held,
    Released,
    Notified,
    Escalated,
    EscalationSkipped,
    NotifySkipped,
    /// A plugin's `ready` waited (a quorum) before acting.
    Quorum,
    /// A plugin step ran; the detail is `TARGET: what it said`.
    Failover,
    FailoverFailed,
    FailoverCalledOff,
    /// The step's target is switched; the detail is the target, which
    /// the failback after recovery undoes.
    FailedOver,
    Failback,
    FailbackHeld,
    FailbackFailed,
    FailedBack,
    /// Someone wrote a public note (status pages show it); the detail is
    /// `AUTHOR: TEXT`.
    PublicNote,
    /// Stored text no variant knows.
    Other(String),
}

impl EventKind {
    /// Every known kind (not `Other`).
    pub const KNOWN: [EventKind; 23] = [
        EventKind::Opened,
        EventKind::Resolved,
        EventKind::Acknowledged,
        EventKind::Step,
        EventKind::Repair,
        EventKind::NotRepaired,
        EventKind::RestartLimit,
        EventKind::Held,
        EventKind::Released,
        EventKind::Notified,
        EventKind::Escalated,
        EventKind::EscalationSkipped,
        EventKind::NotifySkipped,
        EventKind::Quorum,
        EventKind::Failover,
        EventKind::FailoverFailed,
        EventKind::FailoverCalledOff,
        EventKind::FailedOver,
        EventKind::Failback,
        EventKind::FailbackHeld,
        EventKind::FailbackFailed,
        EventKind::FailedBack,
        EventKind::PublicNote,
    ];

    /// The stored text.
    pub fn as_str(&self) -> &str {
        match self {
            EventKind::Opened => "opened",
            EventKind::Resolved => "resolved",
            EventKind::Acknowledged => "acknowledged",
            EventKind::Step => "step",
            EventKind::Repair => "repair",
            EventKind::NotRepaired => "not repaired",
            EventKind::RestartLimit => "restart limit",
            EventKind::Held => "held",
            EventKind::Released => "released",
            EventKind::Notified => "notified",
            EventKind::Escalated => "escalated",
            EventKind::EscalationSkipped => "escalation skipped",
            EventKind::NotifySkipped => "notify skipped",
            EventKind::Quorum => "quorum",
            EventKind::Failover => "failover",
            EventKind::FailoverFailed => "failover failed",
            EventKind::FailoverCalledOff => "failover called off",
            EventKind::FailedOver => "failed over",
            EventKind::Failback => "failback",
            EventKind::FailbackHeld => "failback held",
            EventKind::FailbackFailed => "failback failed",
            EventKind::FailedBack => "failed back",
            EventKind::PublicNote => "public note",
            EventKind::Other(s) => s,
        }
    }

    /// The kind of a stored text.
    pub fn parse(s: &str) -> EventKind {
        Self::KNOWN
            .into_iter()
            .find(|k| k.as_str() == s)
            .unwrap_or_else(|| EventKind::Other(s.to_owned()))
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for EventKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The `error` of a delivery being attempted.
const IN_FLIGHT: &str = "in flight";

const COLUMNS: &str = "id, check_name, severity, state, suppressed_by, opened_ms, resolved_ms, resolution, acked_ms, ack_note, last_error";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Incident> {
    Ok(Incident {
        id: r.get(0)?,
        check: r.get(1)?,
        severity: r.get(2)?,
        state: r.get(3)?,
        suppressed_by: r.get(4)?,
        opened: Timestamp(r.get(5)?),
        resolved: r.get::<_, Option<i64>>(6)?.map(Timestamp),
        resolution: r.get(7)?,
        acked: r.get::<_, Option<i64>>(8)?.map(Timestamp),
        ack_note: r.get(9)?,
        last_error: r.get(10)?,
    })
}

/// Append an event to an incident's list (within the caller's
/// transaction where the event goes with a change of the incident).
fn insert_event(
    conn: &rusqlite::Connection,
    id: i64,
    at: Timestamp,
    kind: &EventKind,
    detail: &str,
) -> Result<()> {
    conn.execute(
        "INSERT INTO incident_events (incident_id, at_ms, kind, detail) VALUES (?1, ?2, ?3, ?4)",
        params![id, at.millis(), kind.as_str(), detail],
    )?;
    Ok(())
}

impl Store {
    /// Open an incident; returns its id.
    pub fn open_incident(
        &mut self,
        check: &str,
        severity: Severity,
        state: &str,
        suppressed_by: Option<&str>,
        at: Timestamp,
        error: &str,
    ) -> Result<i64> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO incidents (check_name, severity, state, suppressed_by, opened_ms, last_error) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![check, severity.as_str(), state, suppressed_by, at.millis(), error],
        )?;
        let id = tx.last_insert_rowid();
        insert_event(&tx, id, at, &EventKind::Opened, error)?;
        tx.commit()?;
        Ok(id)
    }

    /// Change an incident's state, with the event that says why.
    pub fn set_incident_state(
        &mut self,
        id: i64,
        state: &str,
        suppressed_by: Option<&str>,
        at: Timestamp,
        kind: &EventKind,
        detail: &str,
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE incidents SET state = ?2, suppressed_by = ?3 WHERE id = ?1",
            params![id, state, suppressed_by],
        )?;
        insert_event(&tx, id, at, kind, detail)?;
        tx.commit()?;
        Ok(())
    }

    /// Record an event without changing the state.
    pub fn incident_event(
        &mut self,
        id: i64,
        at: Timestamp,
        kind: &EventKind,
        detail: &str,
    ) -> Result<()> {
        insert_event(&self.conn, id, at, kind, detail)
    }

    pub fn resolve_incident(&mut self, id: i64, at: Timestamp, resolution: &str) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute(
            // A repaired incident paged nobody: it stays on record at the
            // information level.
            "UPDATE incidents SET state = 'resolved', resolved_ms = ?2, resolution = ?3,
                    severity = CASE WHEN ?3 = 'repaired' THEN 'information' ELSE severity END
             WHERE id = ?1 AND resolved_ms IS NULL",
            params![id, at.millis(), resolution],
        )?;
        insert_event(&tx, id, at, &EventKind::Resolved, resolution)?;
        tx.commit()?;
        Ok(())
    }

    pub fn incident(&self, id: i64) -> Result<Option<Incident>> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM incidents WHERE id = ?1"),
                [id],
                row,
            )
            .optional()?)
    }

    /// Incidents not yet resolved, oldest first.
    pub fn open_incidents(&self) -> Result<Vec<Incident>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {COLUMNS} FROM incidents WHERE resolved_ms IS NULL ORDER BY id"
        ))?;
        let rows = stmt.query_map([], row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The most recent incidents, newest first.
    pub fn recent_incidents(&self, limit: usize) -> Result<Vec<Incident>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {COLUMNS} FROM incidents ORDER BY id DESC LIMIT ?1"
        ))?;
        let rows = stmt.query_map([limit as i64], row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn incident_events(&self, id: i64) -> Result<Vec<Event>> {
        let mut stmt = self.conn.prepare(
            "SELECT at_ms, kind, detail FROM incident_events WHERE incident_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([id], |r| {
            Ok(Event {
                at: Timestamp(r.get(0)?),
                kind: EventKind::parse(&r.get::<_, String>(1)?),
                detail: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Note a delivery before it is attempted. A daemon killed while the
    /// message is on the wire does not know whether it arrived; it counts
    /// as sent, so a restart never pages twice (and the incident's later
    /// steps still run). Returns the row to finish.
    pub fn begin_delivery(
        &mut self,
        id: i64,
        step: &str,
        notifier: &str,
        at: Timestamp,
    ) -> Result<i64> {
        self.conn.execute(
            "INSERT INTO deliveries (incident_id, step, notifier, at_ms, ok, attempts, error) VALUES (?1, ?2, ?3, ?4, 0, 0, ?5)",
            params![id, step, notifier, at.millis(), IN_FLIGHT],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Record how a delivery begun with [`Store::begin_delivery`] went.
    pub fn finish_delivery(&mut self, row: i64, d: &DeliveryRecord<'_>) -> Result<()> {
        self.conn.execute(
            "UPDATE deliveries SET at_ms = ?2, ok = ?3, attempts = ?4, error = ?5 WHERE id = ?1",
            params![row, d.at.millis(), d.error.is_none(), d.attempts, d.error],
        )?;
        Ok(())
    }

    /// Whether `notifier` already got `step` of incident `id`.
    pub fn delivered(&self, id: i64, step: &str, notifier: &str) -> Result<bool> {
        Ok(self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM deliveries WHERE incident_id = ?1 AND step = ?2 AND notifier = ?3 AND (ok OR error = ?4))",
            params![id, step, notifier, IN_FLIGHT],
            |r| r.get(0),
        )?)
    }

    /// Notifiers that delivered any step of incident `id`.
    pub fn notified(&self, id: i64) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT DISTINCT notifier FROM deliveries WHERE incident_id = ?1 AND (ok OR error = 'in flight') AND step != 'resolved' ORDER BY notifier")?;
        let rows = stmt.query_map([id], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Record a repair run.
    pub fn record_repair(
        &mut self,
        id: i64,
        action: &str,
        check: &str,
        at: Timestamp,
        ok: bool,
        detail: &str,
    ) -> Result<()> {
        self.conn.execute(
            "INSERT INTO repairs (incident_id, action, check_name, at_ms, ok, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![id, action, check, at.millis(), ok, detail],
        )?;
        Ok(())
    }

    /// How many times `action` repaired `check` since `since`.
    pub fn repairs_since(&self, action: &str, check: &str, since: Timestamp) -> Result<u32> {
        Ok(self.conn.query_row(
            "SELECT count(*) FROM repairs WHERE action = ?1 AND check_name = ?2 AND at_ms >= ?3",
            params![action, check, since.millis()],
            |r| r.get(0),
        )?)
    }
}

/// What acknowledging an incident did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ack {
    Acknowledged,
    AlreadyAcknowledged,
    AlreadyResolved,
    NotFound,
}

impl Store {
    /// Acknowledge incident `id`: escalation stops, the incident stays open
    /// until its check recovers.
    pub fn ack_incident(&mut self, id: i64, at: Timestamp, note: &str) -> Result<Ack> {
        let Some(inc) = self.incident(id)? else {
            return Ok(Ack::NotFound);
        };
        if inc.resolved.is_some() {
            return Ok(Ack::AlreadyResolved);
        }
        if inc.acked.is_some() {
            return Ok(Ack::AlreadyAcknowledged);
        }
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE incidents SET state = 'acknowledged', acked_ms = ?2, ack_note = ?3 WHERE id = ?1",
            params![id, at.millis(), note],
        )?;
        insert_event(&tx, id, at, &EventKind::Acknowledged, note)?;
        tx.commit()?;
        Ok(Ack::Acknowledged)
    }
}

/// A public note on an incident: what people outside are told.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Note {
    pub at: Timestamp,
    pub author: String,
    pub text: String,
}

/// What adding a note did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Noted {
    Added,
    NotFound,
    /// Not added: the incident is resolved (its notes are no longer
    /// shown on the status pages).
    Resolved,
    /// Not added: the incident has its most notes already.
    Full,
}

impl Store {
    /// Add a public note to open incident `id`, with an event in its
    /// timeline, in one transaction; refused on a resolved incident or
    /// one with `max` notes already.
    pub fn add_note(
        &mut self,
        id: i64,
        at: Timestamp,
        author: &str,
        text: &str,
        max: usize,
    ) -> Result<Noted> {
        let tx = self.conn.transaction()?;
        let resolved: Option<Option<i64>> = tx
            .query_row(
                "SELECT resolved_ms FROM incidents WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()?;
        match resolved {
            None => return Ok(Noted::NotFound),
            Some(Some(_)) => return Ok(Noted::Resolved),
            Some(None) => {}
        }
        let count: i64 = tx.query_row(
            "SELECT count(*) FROM incident_notes WHERE incident_id = ?1",
            [id],
            |r| r.get(0),
        )?;
        if usize::try_from(count).unwrap_or(usize::MAX) >= max {
            return Ok(Noted::Full);
        }
        tx.execute(
            "INSERT INTO incident_notes (incident_id, at_ms, author, body) VALUES (?1, ?2, ?3, ?4)",
            params![id, at.millis(), author, text],
        )?;
        insert_event(
            &tx,
            id,
            at,
            &EventKind::PublicNote,
            &format!("{author}: {text}"),
        )?;
        tx.commit()?;
        Ok(Noted::Added)
    }

    /// Incident `id`'s newest `n` public notes, oldest first.
    pub fn newest_notes(&self, id: i64, n: usize) -> Result<Vec<Note>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT at_ms, author, body FROM incident_notes WHERE incident_id = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![id, i64::try_from(n).unwrap_or(i64::MAX)], |r| {
            Ok(Note {
                at: Timestamp(r.get(0)?),
                author: r.get(1)?,
                text: r.get(2)?,
            })
        })?;
        let mut notes = rows.collect::<Result<Vec<_>, _>>()?;
        notes.reverse();
        Ok(notes)
    }

    /// Incident `id`'s public notes, oldest first.
    pub fn notes(&self, id: i64) -> Result<Vec<Note>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT at_ms, author, body FROM incident_notes WHERE incident_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([id], |r| {
            Ok(Note {
                at: Timestamp(r.get(0)?),
                author: r.get(1)?,
                text: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The open incidents of `checks`, oldest first, each with its
    /// newest `notes` notes (oldest first).
    pub fn open_incidents_of(
        &self,
        checks: &[&str],
        notes: usize,
    ) -> Result<Vec<(Incident, Vec<Note>)>> {
        let mut out = Vec::new();
        for i in self.open_incidents()? {
            if checks.contains(&i.check.as_str()) {
                let notes = self.newest_notes(i.id, notes)?;
                out.push((i, notes));
            }
        }
        Ok(out)
    }
}

/// The last delivery of a notifier, for `vigie status`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct NotifierHealth {
    pub notifier: String,
    pub last: Timestamp,
    pub ok: bool,
    pub error: Option<String>,
    pub failures_total: u64,
}

impl Store {
    /// Each notifier's last delivery and how many failed.
    pub fn notifier_health(&self) -> Result<Vec<NotifierHealth>> {
        let mut stmt = self.conn.prepare(
            "SELECT d.notifier, d.at_ms, d.ok, d.error,
                    (SELECT count(*) FROM deliveries f WHERE f.notifier = d.notifier AND NOT f.ok)
             FROM deliveries d
             WHERE d.id = (SELECT max(id) FROM deliveries m WHERE m.notifier = d.notifier AND coalesce(m.error, '') != 'in flight')
             ORDER BY d.notifier",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(NotifierHealth {
                notifier: r.get(0)?,
                last: Timestamp(r.get(1)?),
                ok: r.get(2)?,
                error: r.get(3)?,
                failures_total: r.get::<_, i64>(4)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    /// An open incident of check `web`.
    fn open_web(s: &mut Store) -> i64 {
        s.open_incident(
            "web",
            Severity::default(),
            "open",
            None,
            Timestamp(1),
            "down",
        )
        .unwrap()
    }

    #[test]
    fn every_event_kind_round_trips_through_the_store() {
        let (_dir, mut s) = store();
        let id = open_web(&mut s);
        let mut kinds: Vec<EventKind> = EventKind::KNOWN.to_vec();
        kinds.push(EventKind::Other("from a later vigie".into()));
        for k in &kinds {
            assert_eq!(&EventKind::parse(k.as_str()), k, "{k}");
            s.incident_event(id, Timestamp(2), k, "d").unwrap();
        }
        let read: Vec<EventKind> = s
            .incident_events(id)
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(read[0], EventKind::Opened);
        assert_eq!(read[1..], kinds[..]);
        // Distinct texts: no two kinds share one.
        let mut texts: Vec<&str> = EventKind::KNOWN.iter().map(EventKind::as_str).collect();
        texts.sort_unstable();
        texts.dedup();
        assert_eq!(texts.len(), EventKind::KNOWN.len());
    }

    /// No wildcard: a new variant does not compile until it has a place
    /// in `KNOWN`, which the test below checks.
    fn index(k: &EventKind) -> Option<usize> {
        Some(match k {
            EventKind::Opened => 0,
            EventKind::Resolved => 1,
            EventKind::Acknowledged => 2,
            EventKind::Step => 3,
            EventKind::Repair => 4,
            EventKind::NotRepaired => 5,
            EventKind::RestartLimit => 6,
            EventKind::Held => 7,
            EventKind::Released => 8,
            EventKind::Notified => 9,
            EventKind::Escalated => 10,
            EventKind::EscalationSkipped => 11,
            EventKind::NotifySkipped => 12,
            EventKind::Quorum => 13,
            EventKind::Failover => 14,
            EventKind::FailoverFailed => 15,
            EventKind::FailoverCalledOff => 16,
            EventKind::FailedOver => 17,
            EventKind::Failback => 18,
            EventKind::FailbackHeld => 19,
            EventKind::FailbackFailed => 20,
            EventKind::FailedBack => 21,
            EventKind::PublicNote => 22,
            EventKind::Other(_) => return None,
        })
    }

    #[test]
    fn every_variant_is_known() {
        for (i, k) in EventKind::KNOWN.iter().enumerate() {
            assert_eq!(index(k), Some(i), "{k}");
        }
    }

    #[test]
    fn an_unknown_stored_kind_reads_as_other() {
        let (_dir, mut s) = store();
        let id = open_web(&mut s);
        s.conn
            .execute(
                "INSERT INTO incident_events (incident_id, at_ms, kind, detail) VALUES (?1, 2, 'stepp', '0:x')",
                [id],
            )
            .unwrap();
        let events = s.incident_events(id).unwrap();
        assert_eq!(events[1].kind, EventKind::Other("stepp".into()));
        assert_ne!(events[1].kind, EventKind::Step);
    }
}

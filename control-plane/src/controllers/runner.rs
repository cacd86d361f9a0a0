//! Running controllers: one thread each, woken by watch events, by their
//! own deadlines (a token expiring) or by a periodic resync, stopped by
//! SIGTERM/SIGINT.
//!
//! [`Events`] is the one rendezvous: watch threads bump a counter per
//! resource, controllers sleep on a condition variable until a counter
//! they care about moves, their deadline passes or stop is requested. A
//! controller pass always reads the complete current state, so coalescing
//! many events into one pass is correct.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use super::api::{ApiError, ClusterApi, Watched};

/// Upper bound between two passes of a controller even without events.
pub const RESYNC_PERIOD: Duration = Duration::from_secs(10);
/// Wait after a failed pass before the next one.
const ERROR_RETRY: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
struct EventState {
    stopped: bool,
    generations: HashMap<Watched, u64>,
}

/// Stop flag and per-resource change counters, shared by all threads.
#[derive(Debug, Default)]
pub struct Events {
    state: Mutex<EventState>,
    changed: Condvar,
}

impl Events {
    fn lock(&self) -> MutexGuard<'_, EventState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks every thread to finish.
    pub fn stop(&self) {
        self.lock().stopped = true;
        self.changed.notify_all();
    }

    pub fn is_stopped(&self) -> bool {
        self.lock().stopped
    }

    /// Records a change of `watched`.
    pub fn notify(&self, watched: Watched) {
        *self.lock().generations.entry(watched).or_default() += 1;
        self.changed.notify_all();
    }

    fn generations(&self, watched: &[Watched]) -> Vec<u64> {
        let state = self.lock();
        watched
            .iter()
            .map(|w| state.generations.get(w).copied().unwrap_or(0))
            .collect()
    }

    /// Sleeps up to `timeout`; returns early (true) when stop is requested.
    pub fn sleep(&self, timeout: Duration) -> bool {
        self.wait_for(&[], &mut Vec::new(), timeout)
    }

    /// Waits until one of `watched` changed since `seen` (which is
    /// updated), `timeout` passed, or stop; returns whether stop was
    /// requested.
    pub fn wait_for(&self, watched: &[Watched], seen: &mut Vec<u64>, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        loop {
            if state.stopped {
                return true;
            }
            let current: Vec<u64> = watched
                .iter()
                .map(|w| state.generations.get(w).copied().unwrap_or(0))
                .collect();
            if current != *seen {
                *seen = current;
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// One controller's reconcile pass.
pub trait Controller: Send {
    fn name(&self) -> &'static str;
    /// The resources whose changes should trigger a pass.
    fn watches(&self) -> &'static [Watched];
    /// Reconciles everything once. `Ok(Some(t))` asks for another pass at
    /// `t` even if nothing changes (e.g. a token expiring then).
    fn sync(
        &mut self,
        api: &dyn ClusterApi,
        now: OffsetDateTime,
    ) -> Result<Option<OffsetDateTime>, ApiError>;
}

/// How long to sleep until `wake` (plus a little so the deadline has
/// really passed), bounded by the resync period.
fn wait_until(wake: Option<OffsetDateTime>, now: OffsetDateTime) -> Duration {
    match wake {
        Some(at) if at > now => {
            let until = Duration::try_from(at - now).unwrap_or(RESYNC_PERIOD);
            (until + Duration::from_millis(200)).min(RESYNC_PERIOD)
        }
        Some(_) => Duration::from_millis(200),
        None => RESYNC_PERIOD,
    }
}

/// Runs `controller` on its own thread until stop.
pub fn spawn_controller(
    mut controller: Box<dyn Controller>,
    api: Arc<dyn ClusterApi>,
    events: Arc<Events>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(controller.name().to_owned())
        .spawn(move || {
            let watched = controller.watches();
            let mut seen = events.generations(watched);
            let mut last_error = None::<String>;
            tracing::info!(controller = controller.name(), "started");
            while !events.is_stopped() {
                let now = OffsetDateTime::now_utc();
                let timeout = match controller.sync(api.as_ref(), now) {
                    Ok(wake) => {
                        if last_error.take().is_some() {
                            tracing::info!(controller = controller.name(), "recovered");
                        }
                        wait_until(wake, now)
                    }
                    Err(e) => {
                        let message = e.to_string();
                        if last_error.as_deref() != Some(message.as_str()) {
                            tracing::warn!(
                                controller = controller.name(),
                                "pass failed: {message}"
                            );
                            last_error = Some(message);
                        }
                        ERROR_RETRY
                    }
                };
                if events.wait_for(watched, &mut seen, timeout) {
                    break;
                }
            }
            tracing::info!(controller = controller.name(), "stopped");
        })
}

/// Requests stop on SIGTERM (what node-agent's supervisor sends) or
/// SIGINT. The handlers are installed before this returns, so a signal
/// arriving during startup is not lost.
pub fn spawn_signal_listener(events: Arc<Events>) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let (mut terminate, mut interrupt) = {
        let _context = runtime.enter();
        (
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        )
    };
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let name = runtime.block_on(async {
                tokio::select! {
                    _ = terminate.recv() => "SIGTERM",
                    _ = interrupt.recv() => "SIGINT",
                }
            });
            tracing::info!("{name} received, stopping");
            events.stop();
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_returns_on_change_timeout_and_stop() {
        let events = Arc::new(Events::default());
        let watched = [Watched::CertificateSigningRequests];
        let mut seen = events.generations(&watched);
        let started = Instant::now();
        assert!(!events.wait_for(&watched, &mut seen, Duration::from_millis(50)));
        assert!(started.elapsed() >= Duration::from_millis(50));

        events.notify(Watched::SystemSecrets);
        events.notify(Watched::CertificateSigningRequests);
        let started = Instant::now();
        assert!(!events.wait_for(&watched, &mut seen, Duration::from_secs(30)));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "woken by the change"
        );

        let stopper = Arc::clone(&events);
        let thread = std::thread::spawn(move || stopper.stop());
        assert!(events.wait_for(&watched, &mut seen, Duration::from_secs(30)));
        thread.join().expect("join");
    }

    #[test]
    fn deadlines_are_bounded_by_the_resync_period() {
        let now = OffsetDateTime::now_utc();
        assert_eq!(wait_until(None, now), RESYNC_PERIOD);
        assert_eq!(
            wait_until(Some(now + time::Duration::seconds(1)), now),
            Duration::from_millis(1200)
        );
        assert_eq!(
            wait_until(Some(now + time::Duration::hours(1)), now),
            RESYNC_PERIOD
        );
        assert_eq!(
            wait_until(Some(now - time::Duration::seconds(1)), now),
            Duration::from_millis(200)
        );
    }
}

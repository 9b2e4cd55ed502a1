//! Roles as lists of components (GreptimeDB's `App` pattern): `serve` and
//! `serve --demo` start their components in order; on SIGINT/SIGTERM one
//! cancellation token tells all of them to stop at once, and they are
//! awaited in reverse order, so what a component feeds on outlives it
//! (the fleet and rules threads end after the broker drops their queues;
//! the telemetry store's last flush comes after everything that writes).
//!
//! What it is not: it knows no component; the binary assembles its roles
//! from [`Task`]s and [`Threads`] (or its own [`Component`]s).

use std::future::Future;
use std::pin::Pin;

use tokio_util::sync::CancellationToken;

/// A running part of a role.
pub trait Component: Send {
    fn name(&self) -> &'static str;
    /// Waits for the component to end; the role's token is cancelled.
    fn stop(self: Box<Self>) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// A task that ends when the role's token is cancelled.
pub struct Task<E>(pub &'static str, pub tokio::task::JoinHandle<Result<(), E>>);

impl<E: std::fmt::Display + Send + 'static> Component for Task<E> {
    fn name(&self) -> &'static str {
        self.0
    }

    fn stop(self: Box<Self>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let name = self.0;
        Box::pin(async move {
            match self.1.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(component = name, error = %e, "failed"),
                Err(e) => tracing::error!(component = name, error = %e, "task failed"),
            }
        })
    }
}

/// Threads ended by `join` (which drops what feeds them first), run on the
/// blocking pool.
pub struct Threads(pub &'static str, pub Box<dyn FnOnce() + Send>);

impl Component for Threads {
    fn name(&self) -> &'static str {
        self.0
    }

    fn stop(self: Box<Self>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            let _ = tokio::task::spawn_blocking(self.1).await;
        })
    }
}

/// A role: its components and the token that stops them.
pub struct Role {
    name: &'static str,
    stop: CancellationToken,
    components: Vec<Box<dyn Component>>,
}

impl Role {
    pub fn new(name: &'static str) -> Role {
        Role {
            name,
            stop: CancellationToken::new(),
            components: Vec::new(),
        }
    }

    /// Cancelled when the role stops.
    pub fn token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Adds a started component (stopped before those added earlier).
    pub fn add(&mut self, c: impl Component + 'static) {
        self.components.push(Box::new(c));
    }

    /// Runs until SIGINT or SIGTERM, then stops every component.
    pub async fn run(self) {
        tokio::select! {
            _ = shutdown_signal() => {}
            _ = self.stop.cancelled() => {}
        }
        tracing::info!(role = self.name, "stopping");
        self.stop.cancel();
        for c in self.components.into_iter().rev() {
            let name = c.name();
            c.stop().await;
            tracing::debug!(component = name, "stopped");
        }
    }
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    struct Probe(&'static str, Arc<Mutex<Vec<&'static str>>>);

    impl Component for Probe {
        fn name(&self) -> &'static str {
            self.0
        }

        fn stop(self: Box<Self>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
            Box::pin(async move { self.1.lock().unwrap().push(self.0) })
        }
    }

    #[tokio::test]
    async fn components_stop_in_reverse_order_once_the_token_is_cancelled() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut role = Role::new("test");
        let token = role.token();
        // A task that ends only when told to.
        let t = token.clone();
        let task = tokio::spawn(async move {
            t.cancelled().await;
            Err::<(), String>("ended with an error, logged".into())
        });
        role.add(Probe("store", log.clone()));
        role.add(Task("listener", task));
        let l = log.clone();
        role.add(Threads(
            "workers",
            Box::new(move || l.lock().unwrap().push("workers")),
        ));
        role.add(Probe("demo", log.clone()));
        token.cancel();
        role.run().await;
        assert_eq!(*log.lock().unwrap(), ["demo", "workers", "store"]);
    }
}

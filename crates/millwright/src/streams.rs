//! The API's live streams over the broker's stream taps.

/// Live streams for `GET /api/stream`, fed by the broker.
pub struct BrokerStreams(pub broker_net::ServerHandle);

/// Ends the forwarding task (and with it the broker subscription).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl api::StreamSource for BrokerStreams {
    fn subscribe(&self, filters: Vec<String>, sink: api::StreamSink) -> api::StreamGuard {
        let mut sub = self.0.subscribe_stream(filters, 1024);
        let task = tokio::spawn(async move {
            while let Some((topic, payload)) = sub.rx.recv().await {
                if !sink.offer(&topic, payload) {
                    break;
                }
            }
        });
        Box::new(AbortOnDrop(task))
    }
}

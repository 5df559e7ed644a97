//! The dead-letter parker: drains every dead-letter queue into the store
//! ([`DeadLetterParking`]), so that operators browse, group, redrive and purge parked
//! copies, and looking at a dead letter changes nothing on the transport. (On SQS the
//! only way to see a message is to receive it, which counts toward its receives and
//! hides it from everyone else for its visibility timeout.)
//!
//! Each message is parked, then deleted from its dead-letter queue. A crash between the
//! two leaves it in the queue, to be received and parked again, which changes nothing:
//! parking is idempotent by (queue, message id). A message the store refuses stays in
//! the queue and comes back after its visibility timeout.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use shared::ports::{
    attempts_in, DeadLetterParking, DedupId, MessageId, NewParked, QueueName, ReceiveOptions, ReceivedMessage,
    Transport, DEAD_LETTER_ATTEMPTS, DEAD_LETTER_REASON,
};
use shared::topology::Topology;
use shared::{EventEnvelope, Timestamp};

/// How long a received dead letter stays hidden while it is parked.
const PARKING_VISIBILITY: Duration = Duration::from_secs(60);

/// Drains the dead-letter queues of a topology into the store.
pub struct Parker {
    transport: Arc<dyn Transport>,
    parking: Arc<dyn DeadLetterParking>,
    /// (source queue, its dead-letter queue)
    queues: Vec<(QueueName, String)>,
    /// The long poll of each receive.
    pub wait: Duration,
}

impl Parker {
    pub fn new(transport: Arc<dyn Transport>, parking: Arc<dyn DeadLetterParking>, topology: &Topology) -> Self {
        let queues = topology.queues.iter().map(|q| (QueueName::new(q.name.clone()), q.dlq_name.clone())).collect();
        Self { transport, parking, queues, wait: Duration::from_secs(20) }
    }

    /// Drains every dead-letter queue until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let this = Arc::new(self);
        let mut drains = tokio::task::JoinSet::new();
        for (source, dlq) in this.queues.clone() {
            let (parker, shutdown) = (this.clone(), shutdown.clone());
            drains.spawn(async move { parker.drain(&source, &dlq, &shutdown).await });
        }
        while drains.join_next().await.is_some() {}
    }

    async fn drain(&self, source: &QueueName, dlq: &str, shutdown: &CancellationToken) {
        let mut failures = 0u32;
        while !shutdown.is_cancelled() {
            let parked = tokio::select! {
                () = shutdown.cancelled() => return,
                parked = self.park_some(source, dlq) => parked,
            };
            match parked {
                Ok(_) => failures = 0,
                Err(error) => {
                    failures += 1;
                    let wait = Duration::from_secs(1 << failures.min(5));
                    tracing::warn!(dlq, %error, retry_in_s = wait.as_secs(), "could not park dead letters yet");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }

    /// One receive from `dlq`: parks what it got, deletes what was parked; how many.
    pub async fn park_some(&self, source: &QueueName, dlq: &str) -> Result<usize, shared::ports::BoxError> {
        let options =
            ReceiveOptions { max_messages: 10, wait: self.wait, visibility_timeout: Some(PARKING_VISIBILITY) };
        let messages = self.transport.receive(dlq, options).await?;
        let mut parked = Vec::with_capacity(messages.len());
        let mut refused = None;
        for message in &messages {
            match self.parking.park(&Self::parked(source, message)).await {
                Ok(new) => {
                    if new {
                        tracing::info!(
                            queue = source.as_str(),
                            message_id = message.message_id.as_str(),
                            "parked a dead letter"
                        );
                    }
                    parked.push(message.receipt.clone());
                }
                // Left in the queue: it comes back after its visibility timeout.
                Err(error) => refused = Some(error),
            }
        }
        if !parked.is_empty() {
            self.transport.ack(dlq, &parked).await?;
        }
        match refused {
            Some(error) => Err(error.into()),
            None => Ok(parked.len()),
        }
    }

    /// What is parked of `message`, received from the dead-letter queue of `source`.
    pub fn parked(source: &QueueName, message: &ReceivedMessage) -> NewParked {
        let envelope = EventEnvelope::from_json(&message.body).ok();
        let attempts = attempts_in(&message.attributes);
        let error = match message.attributes.get(DEAD_LETTER_REASON) {
            Some(reason) => reason.clone(),
            None => "moved by the queue's receive limit: its handler never finished (the process died or \
                     timed out each time)"
                .to_owned(),
        };
        let mut attributes = message.attributes.clone();
        attributes.remove(DEAD_LETTER_REASON);
        attributes.remove(DEAD_LETTER_ATTEMPTS);
        NewParked {
            queue: source.clone(),
            message_id: MessageId::new(message.message_id.clone()),
            group_id: message.group_id.clone(),
            dedup_id: DedupId::new(message.dedup_id.clone()),
            body: message.body.clone(),
            attributes,
            tenant: envelope.as_ref().map(|e| e.tenant_id),
            event_id: envelope.as_ref().map(|e| e.id),
            event_type: envelope.as_ref().map(|e| e.event_type.clone()),
            dead_lettered_at: attempts.last().map_or_else(Timestamp::now, |a| a.at),
            error,
            attempts,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use shared::ports::{QueueName, Receipt, ReceivedMessage, DEAD_LETTER_ATTEMPTS, DEAD_LETTER_REASON};

    use super::Parker;

    fn received(body: &str, attributes: BTreeMap<String, String>) -> ReceivedMessage {
        ReceivedMessage {
            message_id: "m-1".into(),
            receipt: Receipt("r".into()),
            group_id: "ten_x:k".into(),
            dedup_id: "d-1".into(),
            body: body.into(),
            attributes,
            receive_count: 1,
            sent_at: shared::Timestamp::now(),
        }
    }

    /// A body that is no envelope, moved by the queue's receive limit (no reason, no
    /// attempts), is parked as it is, for nobody's tenant, with an error saying so.
    #[test]
    fn a_message_that_is_no_envelope_and_has_no_verdict_is_parked_as_it_is() {
        let attributes = BTreeMap::from([("event_type".to_owned(), "feedback.submitted".to_owned())]);
        let parked =
            Parker::parked(&QueueName::new("q.fifo"), &received("{\"not\": \"an envelope\"", attributes.clone()));
        assert_eq!((parked.tenant, parked.event_id, parked.event_type), (None, None, None));
        assert_eq!(parked.body, "{\"not\": \"an envelope\"");
        assert!(parked.error.contains("receive limit"), "{}", parked.error);
        assert!(parked.attempts.is_empty());
        assert_eq!(parked.attributes, attributes, "the message's own attributes, for a redrive");

        // Unreadable attempts are none, and the dead-letter attributes are not kept.
        let mut marked = attributes.clone();
        marked.insert(DEAD_LETTER_REASON.to_owned(), "boom (after 3 attempts)".to_owned());
        marked.insert(DEAD_LETTER_ATTEMPTS.to_owned(), "[{\"at\": 12".to_owned());
        let parked = Parker::parked(&QueueName::new("q.fifo"), &received("x", marked));
        assert_eq!(parked.error, "boom (after 3 attempts)");
        assert!(parked.attempts.is_empty());
        assert_eq!(parked.attributes, attributes);
    }
}

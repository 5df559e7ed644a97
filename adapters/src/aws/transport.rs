//! The transport port on SNS FIFO + SQS FIFO.
//!
//! Publishing: PublishBatch to the service's topic, group = tenant, dedup id = event
//! id, String attributes only (binary attributes break raw delivery on some servers).
//! Entries are validated locally first, so the service never rejects one entry of a
//! group while accepting a later one; if it rejects an entry anyway, the group's later
//! entries in the batch are reported as rejected too (the port's contract).
//! Consuming: ReceiveMessage long polling, DeleteMessageBatch, ChangeMessageVisibility.
//! Dead letters: listed with a zero visibility timeout, redriven by moving messages
//! (receive, send with their group and dedup ids, delete) — the FIFO-safe way, which
//! also works where StartMessageMoveTask does not.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_sns::types::{MessageAttributeValue as SnsAttribute, PublishBatchRequestEntry};
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, Message, MessageAttributeValue as SqsAttribute, MessageSystemAttributeName,
    QueueAttributeName, SendMessageBatchRequestEntry,
};

use shared::ports::{
    check_batch, dead_letter_attributes, DeadLetter, OutgoingMessage, QueueStats, Receipt, ReceiveOptions,
    ReceivedMessage, Transport, TransportError, DEAD_LETTER_ATTEMPTS, DEAD_LETTER_REASON, MAX_BATCH,
};
use shared::topology::Topology;

use super::{classify, describe, ApiCallCounter, Failure};

pub struct AwsTransport {
    sns: aws_sdk_sns::Client,
    sqs: aws_sdk_sqs::Client,
    /// dead-letter queue name → the queue its messages came from.
    redrive_targets: HashMap<String, String>,
    /// queue name → its dead-letter queue.
    dead_letter_queues: HashMap<String, String>,
    topic_arns: Mutex<HashMap<String, String>>,
    queue_urls: Mutex<HashMap<String, String>>,
    /// SQS FIFO drops a message whose dedup id it saw in this window, so redrive keeps
    /// younger messages (by their original send time) in the DLQ rather than lose them.
    dedup_window: Duration,
}

/// SQS FIFO's deduplication interval.
pub const DEDUP_WINDOW: Duration = Duration::from_secs(5 * 60);

fn error_for<E>(
    error: aws_sdk_sqs::error::SdkError<E, aws_sdk_sqs::config::http::HttpResponse>,
    missing: TransportError,
) -> TransportError
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match classify(&error) {
        Failure::Throttled => TransportError::Throttled,
        Failure::Unavailable => TransportError::Unavailable(describe(&error).into()),
        Failure::Missing => missing,
        Failure::Rejected => TransportError::Other(describe(&error).into()),
    }
}

fn seconds(duration: Duration) -> i32 {
    i32::try_from(duration.as_secs()).unwrap_or(i32::MAX)
}

fn attributes_of(message: &Message) -> BTreeMap<String, String> {
    message
        .message_attributes()
        .map(|attributes| {
            attributes.iter().filter_map(|(k, v)| v.string_value().map(|s| (k.clone(), s.to_owned()))).collect()
        })
        .unwrap_or_default()
}

fn system(message: &Message, name: MessageSystemAttributeName) -> String {
    message.attributes().and_then(|a| a.get(&name)).cloned().unwrap_or_default()
}

fn sqs_attributes(attributes: &BTreeMap<String, String>) -> Result<HashMap<String, SqsAttribute>, TransportError> {
    attributes
        .iter()
        .map(|(k, v)| {
            SqsAttribute::builder()
                .data_type("String")
                .string_value(v)
                .build()
                .map(|value| (k.clone(), value))
                .map_err(|e| TransportError::Invalid(e.to_string()))
        })
        .collect()
}

/// A batch entry the service refused: the caller's fault, or the service's.
fn entry_error(sender_fault: bool, code: &str, message: Option<&str>) -> TransportError {
    let text = format!("{code}: {}", message.unwrap_or_default());
    if sender_fault {
        TransportError::Invalid(text)
    } else {
        TransportError::Unavailable(text.into())
    }
}

/// The answers of a batch call, keeping the contract even if the service accepted an
/// entry after rejecting an earlier one of its group: the later one is reported
/// rejected (its dedup id drops the copy when it is sent again).
fn settle(
    batch: &[OutgoingMessage],
    results: Vec<Option<Result<(), TransportError>>>,
) -> Vec<Result<(), TransportError>> {
    let mut failed_groups: Vec<&str> = Vec::new();
    let mut answers = Vec::with_capacity(batch.len());
    for (message, result) in batch.iter().zip(results) {
        let result = result.unwrap_or_else(|| Err(TransportError::Unavailable("no result for this entry".into())));
        if failed_groups.contains(&message.group_id.as_str()) {
            answers.push(Err(TransportError::Invalid(format!(
                "an earlier message of group `{}` in this batch was rejected",
                message.group_id
            ))));
            continue;
        }
        if result.is_err() {
            failed_groups.push(&message.group_id);
        }
        answers.push(result);
    }
    answers
}

impl AwsTransport {
    pub fn new(config: &SdkConfig, topology: &Topology) -> Self {
        Self::build(config, topology, None)
    }

    /// Like `new`, counting every API call in `counter`.
    pub fn counted(config: &SdkConfig, topology: &Topology, counter: &ApiCallCounter) -> Self {
        Self::build(config, topology, Some(counter))
    }

    fn build(config: &SdkConfig, topology: &Topology, counter: Option<&ApiCallCounter>) -> Self {
        let mut sns = aws_sdk_sns::config::Builder::from(config);
        let mut sqs = aws_sdk_sqs::config::Builder::from(config);
        if let Some(counter) = counter {
            sns = sns.interceptor(counter.clone());
            sqs = sqs.interceptor(counter.clone());
        }
        Self {
            sns: aws_sdk_sns::Client::from_conf(sns.build()),
            sqs: aws_sdk_sqs::Client::from_conf(sqs.build()),
            redrive_targets: topology.queues.iter().map(|q| (q.dlq_name.clone(), q.name.clone())).collect(),
            dead_letter_queues: topology.queues.iter().map(|q| (q.name.clone(), q.dlq_name.clone())).collect(),
            topic_arns: Mutex::default(),
            queue_urls: Mutex::default(),
            dedup_window: DEDUP_WINDOW,
        }
    }

    /// Overrides the dedup window redrive respects (servers that forget dedup ids of
    /// deleted messages, like the test server, need none).
    #[must_use]
    pub fn with_dedup_window(mut self, window: Duration) -> Self {
        self.dedup_window = window;
        self
    }

    /// The topic's ARN, found with ListTopics (the service never needs CreateTopic).
    async fn topic_arn(&self, name: &str) -> Result<String, TransportError> {
        if let Some(arn) = self.topic_arns.lock().ok().and_then(|m| m.get(name).cloned()) {
            return Ok(arn);
        }
        let suffix = format!(":{name}");
        let mut pages = self.sns.list_topics().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| error_for(e, TransportError::UnknownTopic(name.to_owned())))?;
            if let Some(arn) = page.topics().iter().filter_map(|t| t.topic_arn()).find(|arn| arn.ends_with(&suffix)) {
                if let Ok(mut cache) = self.topic_arns.lock() {
                    cache.insert(name.to_owned(), arn.to_owned());
                }
                return Ok(arn.to_owned());
            }
        }
        Err(TransportError::UnknownTopic(name.to_owned()))
    }

    async fn queue_url(&self, name: &str) -> Result<String, TransportError> {
        if let Some(url) = self.queue_urls.lock().ok().and_then(|m| m.get(name).cloned()) {
            return Ok(url);
        }
        let output = self
            .sqs
            .get_queue_url()
            .queue_name(name)
            .send()
            .await
            .map_err(|e| error_for(e, TransportError::UnknownQueue(name.to_owned())))?;
        let url = output.queue_url().ok_or_else(|| TransportError::UnknownQueue(name.to_owned()))?.to_owned();
        if let Ok(mut cache) = self.queue_urls.lock() {
            cache.insert(name.to_owned(), url.clone());
        }
        Ok(url)
    }

    async fn receive_raw(
        &self,
        url: &str,
        name: &str,
        max: u32,
        wait: Duration,
        visibility: Option<Duration>,
    ) -> Result<Vec<Message>, TransportError> {
        let output = self
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(i32::try_from(max).unwrap_or(10))
            .wait_time_seconds(seconds(wait.min(Duration::from_secs(20))))
            .set_visibility_timeout(visibility.map(seconds))
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| error_for(e, TransportError::UnknownQueue(name.to_owned())))?;
        Ok(output.messages().to_vec())
    }

    async fn delete(&self, url: &str, name: &str, receipts: &[&str]) -> Result<(), TransportError> {
        if receipts.is_empty() {
            return Ok(());
        }
        let entries = receipts
            .iter()
            .enumerate()
            .map(|(i, receipt)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(*receipt)
                    .build()
                    .map_err(|e| TransportError::Invalid(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let output = self
            .sqs
            .delete_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| error_for(e, TransportError::UnknownQueue(name.to_owned())))?;
        // A receipt that is no longer valid means the message was already deleted or
        // received again: deleting is idempotent from the caller's point of view.
        for failed in output.failed() {
            if failed.code() != "ReceiptHandleIsInvalid" {
                tracing::warn!(
                    queue = name,
                    code = failed.code(),
                    message = failed.message().unwrap_or_default(),
                    "delete failed"
                );
            }
        }
        Ok(())
    }

    async fn count(&self, url: &str, name: &str, attribute: QueueAttributeName) -> Result<u64, TransportError> {
        let output = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(attribute.clone())
            .send()
            .await
            .map_err(|e| error_for(e, TransportError::UnknownQueue(name.to_owned())))?;
        Ok(output.attributes().and_then(|a| a.get(&attribute)).and_then(|v| v.parse().ok()).unwrap_or(0))
    }
}

#[async_trait]
impl Transport for AwsTransport {
    async fn publish(
        &self,
        topic: &str,
        batch: &[OutgoingMessage],
    ) -> Result<Vec<Result<(), TransportError>>, TransportError> {
        let checks = check_batch(batch, MAX_BATCH)?;
        let arn = self.topic_arn(topic).await?;
        let mut results: Vec<Option<Result<(), TransportError>>> = (0..batch.len()).map(|_| None).collect();
        let mut entries = Vec::new();
        for (i, (message, check)) in batch.iter().zip(checks).enumerate() {
            if let Err(error) = check {
                results[i] = Some(Err(error));
                continue;
            }
            let attributes = message
                .attributes
                .iter()
                .map(|(k, v)| {
                    SnsAttribute::builder()
                        .data_type("String")
                        .string_value(v)
                        .build()
                        .map(|value| (k.clone(), value))
                        .map_err(|e| TransportError::Invalid(e.to_string()))
                })
                .collect::<Result<HashMap<_, _>, _>>()?;
            let entry = PublishBatchRequestEntry::builder()
                .id(i.to_string())
                .message(&message.body)
                .message_group_id(&message.group_id)
                .message_deduplication_id(&message.dedup_id)
                .set_message_attributes(Some(attributes))
                .build()
                .map_err(|e| TransportError::Invalid(e.to_string()))?;
            entries.push(entry);
        }
        if !entries.is_empty() {
            let output = self
                .sns
                .publish_batch()
                .topic_arn(&arn)
                .set_publish_batch_request_entries(Some(entries))
                .send()
                .await
                .map_err(|e| error_for(e, TransportError::UnknownTopic(topic.to_owned())))?;
            for ok in output.successful() {
                if let Some(i) = ok.id().and_then(|id| id.parse::<usize>().ok()) {
                    results[i] = Some(Ok(()));
                }
            }
            for failed in output.failed() {
                if let Ok(i) = failed.id().parse::<usize>() {
                    results[i] = Some(Err(entry_error(failed.sender_fault(), failed.code(), failed.message())));
                }
            }
        }
        Ok(settle(batch, results))
    }

    async fn send(
        &self,
        queue: &str,
        batch: &[OutgoingMessage],
    ) -> Result<Vec<Result<(), TransportError>>, TransportError> {
        let checks = check_batch(batch, MAX_BATCH)?;
        let url = self.queue_url(queue).await?;
        let mut results: Vec<Option<Result<(), TransportError>>> = (0..batch.len()).map(|_| None).collect();
        let mut entries = Vec::new();
        for (i, (message, check)) in batch.iter().zip(checks).enumerate() {
            if let Err(error) = check {
                results[i] = Some(Err(error));
                continue;
            }
            let entry = SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(&message.body)
                .message_group_id(&message.group_id)
                .message_deduplication_id(&message.dedup_id)
                .set_message_attributes(Some(sqs_attributes(&message.attributes)?))
                .build()
                .map_err(|e| TransportError::Invalid(e.to_string()))?;
            entries.push(entry);
        }
        if !entries.is_empty() {
            let output = self
                .sqs
                .send_message_batch()
                .queue_url(&url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| error_for(e, TransportError::UnknownQueue(queue.to_owned())))?;
            for ok in output.successful() {
                if let Ok(i) = ok.id().parse::<usize>() {
                    results[i] = Some(Ok(()));
                }
            }
            for failed in output.failed() {
                if let Ok(i) = failed.id().parse::<usize>() {
                    results[i] = Some(Err(entry_error(failed.sender_fault(), failed.code(), failed.message())));
                }
            }
        }
        Ok(settle(batch, results))
    }

    async fn receive(&self, queue: &str, options: ReceiveOptions) -> Result<Vec<ReceivedMessage>, TransportError> {
        if !(1..=10).contains(&options.max_messages) {
            return Err(TransportError::Invalid(format!(
                "max_messages must be 1 to 10 (got {})",
                options.max_messages
            )));
        }
        let url = self.queue_url(queue).await?;
        let messages =
            self.receive_raw(&url, queue, options.max_messages, options.wait, options.visibility_timeout).await?;
        Ok(messages
            .iter()
            .map(|m| ReceivedMessage {
                message_id: m.message_id().unwrap_or_default().to_owned(),
                receipt: Receipt(m.receipt_handle().unwrap_or_default().to_owned()),
                group_id: system(m, MessageSystemAttributeName::MessageGroupId),
                dedup_id: system(m, MessageSystemAttributeName::MessageDeduplicationId),
                body: m.body().unwrap_or_default().to_owned(),
                attributes: attributes_of(m),
                receive_count: system(m, MessageSystemAttributeName::ApproximateReceiveCount).parse().unwrap_or(1),
                sent_at: system(m, MessageSystemAttributeName::SentTimestamp)
                    .parse()
                    .map_or_else(|_| shared::Timestamp::now(), shared::Timestamp::from_millis),
            })
            .collect())
    }

    async fn ack(&self, queue: &str, receipts: &[Receipt]) -> Result<(), TransportError> {
        if receipts.len() > MAX_BATCH {
            return Err(TransportError::Invalid(format!("at most {MAX_BATCH} receipts per call")));
        }
        let url = self.queue_url(queue).await?;
        let handles: Vec<&str> = receipts.iter().map(|r| r.0.as_str()).collect();
        self.delete(&url, queue, &handles).await
    }

    async fn change_visibility(&self, queue: &str, receipt: &Receipt, timeout: Duration) -> Result<(), TransportError> {
        let url = self.queue_url(queue).await?;
        self.sqs
            .change_message_visibility()
            .queue_url(url)
            .receipt_handle(&receipt.0)
            .visibility_timeout(seconds(timeout))
            .send()
            .await
            .map_err(|error| match classify(&error) {
                Failure::Rejected => TransportError::StaleReceipt,
                _ => error_for(error, TransportError::UnknownQueue(queue.to_owned())),
            })?;
        Ok(())
    }

    async fn dead_letter(
        &self,
        queue: &str,
        message: &ReceivedMessage,
        failure: &shared::ports::Failure,
    ) -> Result<(), TransportError> {
        let dlq = self
            .dead_letter_queues
            .get(queue)
            .ok_or_else(|| TransportError::Invalid(format!("`{queue}` has no dead-letter queue in this topology")))?;
        let dlq_url = self.queue_url(dlq).await?;
        // Proves the receipt is still current (SQS deletes with a stale one silently)
        // and keeps the message ours while it is copied.
        self.change_visibility(queue, &message.receipt, Duration::from_secs(30)).await?;
        let url = self.queue_url(queue).await?;
        let attributes = dead_letter_attributes(&message.body, &message.attributes, failure);
        self.sqs
            .send_message()
            .queue_url(dlq_url)
            .message_body(&message.body)
            .message_group_id(&message.group_id)
            .message_deduplication_id(&message.dedup_id)
            .set_message_attributes(Some(sqs_attributes(&attributes)?))
            .send()
            .await
            .map_err(|e| error_for(e, TransportError::UnknownQueue(dlq.clone())))?;
        self.delete(&url, queue, &[message.receipt.0.as_str()]).await
    }

    async fn dead_letters(&self, dlq: &str, max: u32) -> Result<Vec<DeadLetter>, TransportError> {
        let url = self.queue_url(dlq).await?;
        // Zero visibility: listing leaves every message where it was.
        let messages = self.receive_raw(&url, dlq, max.clamp(1, 10), Duration::ZERO, Some(Duration::ZERO)).await?;
        Ok(messages
            .iter()
            .map(|m| DeadLetter {
                message_id: m.message_id().unwrap_or_default().to_owned(),
                group_id: system(m, MessageSystemAttributeName::MessageGroupId),
                dedup_id: system(m, MessageSystemAttributeName::MessageDeduplicationId),
                body: m.body().unwrap_or_default().to_owned(),
                attributes: attributes_of(m),
            })
            .collect())
    }

    async fn redrive(&self, dlq: &str) -> Result<u64, TransportError> {
        let source =
            self.redrive_targets.get(dlq).cloned().ok_or_else(|| {
                TransportError::Invalid(format!("`{dlq}` is not a dead-letter queue of this topology"))
            })?;
        let (dlq_url, source_url) = (self.queue_url(dlq).await?, self.queue_url(&source).await?);
        let now_ms = shared::Timestamp::now().as_millis();
        let window_ms = i64::try_from(self.dedup_window.as_millis()).unwrap_or(i64::MAX);
        let mut moved = 0u64;
        let mut held: Vec<String> = Vec::new();
        let mut held_groups: Vec<String> = Vec::new();
        let outcome = loop {
            // FIFO receives hand out each group's messages in order; sending them in
            // that order keeps every group's old messages together and in order. Held
            // messages stay invisible until the end, so each is seen once per run.
            let received =
                self.receive_raw(&dlq_url, dlq, 10, Duration::from_secs(1), Some(Duration::from_secs(60))).await?;
            if received.is_empty() {
                break Ok(moved);
            }
            let mut messages = Vec::new();
            for m in received {
                let group = system(&m, MessageSystemAttributeName::MessageGroupId);
                let sent: i64 = system(&m, MessageSystemAttributeName::SentTimestamp).parse().unwrap_or(now_ms);
                if held_groups.contains(&group) || now_ms.saturating_sub(sent) < window_ms {
                    held_groups.push(group);
                    held.push(m.receipt_handle().unwrap_or_default().to_owned());
                } else {
                    messages.push(m);
                }
            }
            if messages.is_empty() {
                continue;
            }
            let entries = messages
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(m.body().unwrap_or_default())
                        .message_group_id(system(m, MessageSystemAttributeName::MessageGroupId))
                        .message_deduplication_id(system(m, MessageSystemAttributeName::MessageDeduplicationId))
                        .set_message_attributes(Some(sqs_attributes(
                            &attributes_of(m)
                                .into_iter()
                                .filter(|(k, _)| k != DEAD_LETTER_REASON && k != DEAD_LETTER_ATTEMPTS)
                                .collect(),
                        )?))
                        .build()
                        .map_err(|e| TransportError::Invalid(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let output = self
                .sqs
                .send_message_batch()
                .queue_url(&source_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| error_for(e, TransportError::UnknownQueue(source.clone())))?;
            // Only what reached the source queue leaves the DLQ.
            let sent: Vec<&str> = output
                .successful()
                .iter()
                .filter_map(|ok| ok.id().parse::<usize>().ok())
                .filter_map(|i| messages.get(i).and_then(|m| m.receipt_handle()))
                .collect();
            self.delete(&dlq_url, dlq, &sent).await?;
            moved += sent.len() as u64;
            if let Some(failed) = output.failed().first() {
                break Err(TransportError::Other(
                    format!("redrive stopped: {}: {}", failed.code(), failed.message().unwrap_or_default()).into(),
                ));
            }
        };
        if !held.is_empty() {
            tracing::warn!(
                dlq,
                held = held.len(),
                "kept messages sent less than five minutes ago in the dead-letter queue: SQS would drop them as duplicates; redrive again later"
            );
            for receipt in &held {
                let _ = self
                    .sqs
                    .change_message_visibility()
                    .queue_url(&dlq_url)
                    .receipt_handle(receipt)
                    .visibility_timeout(0)
                    .send()
                    .await;
            }
        }
        outcome
    }

    async fn purge(&self, queue: &str) -> Result<u64, TransportError> {
        let url = self.queue_url(queue).await?;
        let before = self.count(&url, queue, QueueAttributeName::ApproximateNumberOfMessages).await?
            + self.count(&url, queue, QueueAttributeName::ApproximateNumberOfMessagesNotVisible).await?;
        self.sqs
            .purge_queue()
            .queue_url(url)
            .send()
            .await
            .map_err(|e| error_for(e, TransportError::UnknownQueue(queue.to_owned())))?;
        Ok(before)
    }

    async fn stats(&self, queue: &str) -> Result<QueueStats, TransportError> {
        let url = self.queue_url(queue).await?;
        let names = [
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            QueueAttributeName::ApproximateNumberOfMessagesDelayed,
        ];
        let output = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .set_attribute_names(Some(names.to_vec()))
            .send()
            .await
            .map_err(|e| error_for(e, TransportError::UnknownQueue(queue.to_owned())))?;
        let count = |name: &QueueAttributeName| -> u64 {
            output.attributes().and_then(|a| a.get(name)).and_then(|v| v.parse().ok()).unwrap_or(0)
        };
        // The age of the oldest message is a CloudWatch metric only (no GetQueueAttributes
        // attribute): the control plane derives it from what workers receive.
        Ok(QueueStats {
            visible: count(&names[0]),
            in_flight: count(&names[1]),
            delayed: count(&names[2]),
            oldest_age: None,
        })
    }
}

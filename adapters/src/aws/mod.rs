//! The AWS engine: SNS FIFO topics and SQS FIFO queues behind the transport port, S3
//! behind the object-store port, and provisioning of the topology (plan, apply, check).
//!
//! Credentials and region come from the standard chain (environment, profile, IMDS);
//! `AWS_ENDPOINT_URL` or an explicit endpoint in config points every client at an
//! AWS-compatible server (tests use moto on loopback).

pub mod bus;
pub mod objects;
pub mod provision;
pub mod ses;
pub mod transport;

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_sqs::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_sqs::error::BoxError;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::orchestrator::Metadata;

use shared::config::AwsSettings;

pub use bus::EventBridgeBus;
pub use objects::S3ObjectStore;
pub use ses::SesEmailSender;
pub use transport::AwsTransport;

/// The SDK configuration loader: the standard chain, then the explicit settings.
/// Callers may add to it (tests pass static credentials) before `load()`.
pub fn loader(settings: &AwsSettings) -> aws_config::ConfigLoader {
    let http_client =
        aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(CryptoMode::Ring)).build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client)
        .retry_config(RetryConfig::standard().with_max_attempts(settings.max_attempts.max(1)))
        .timeout_config(TimeoutConfig::builder().connect_timeout(Duration::from_secs(3)).build());
    if let Some(region) = &settings.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(endpoint) = &settings.endpoint {
        loader = loader.endpoint_url(endpoint.clone());
    }
    loader
}

/// Loads the SDK configuration for `settings`.
pub async fn sdk_config(settings: &AwsSettings) -> SdkConfig {
    loader(settings).load().await
}

/// Counts AWS API calls (every HTTP attempt, retries included) per `Service.Operation`,
/// for benchmarks and metrics.
#[derive(Debug, Clone, Default)]
pub struct ApiCallCounter {
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl ApiCallCounter {
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

impl Intercept for ApiCallCounter {
    fn name(&self) -> &'static str {
        "ApiCallCounter"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(metadata) = cfg.load::<Metadata>() {
            if let Ok(mut counts) = self.counts.lock() {
                *counts.entry(format!("{}.{}", metadata.service(), metadata.name())).or_default() += 1;
            }
        }
        Ok(())
    }
}

/// How an SDK error should be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Throttled by the service.
    Throttled,
    /// The network, a timeout or a 5xx: may work later.
    Unavailable,
    /// The named resource does not exist.
    Missing,
    /// Anything else: the request was wrong.
    Rejected,
}

const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "TooManyRequestsException",
    "SlowDown",
];
const MISSING: &[&str] = &[
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
    "NotFound",
    "NotFoundException",
    "NoSuchBucket",
    "ResourceNotFoundException",
];

/// Classifies an SDK error by its code and HTTP status.
pub(crate) fn classify<E: ProvideErrorMetadata>(error: &SdkError<E, HttpResponse>) -> Failure {
    match error {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => Failure::Unavailable,
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or_default();
            if THROTTLING.contains(&code) {
                Failure::Throttled
            } else if MISSING.contains(&code) {
                Failure::Missing
            } else if service.raw().status().as_u16() >= 500 {
                Failure::Unavailable
            } else {
                Failure::Rejected
            }
        }
        _ => Failure::Rejected,
    }
}

/// The error's code and message, for logs and error texts.
pub(crate) fn describe<E>(error: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match error {
        SdkError::ServiceError(service) => format!(
            "{}: {}",
            service.err().code().unwrap_or("unknown error"),
            service.err().message().unwrap_or_default()
        ),
        other => {
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            text
        }
    }
}

//! [`Bus`] on NATS JetStream.

use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer, stream};
use bytes::Bytes;
use futures::StreamExt;

use crate::subject::valid_publish_subject;
use crate::{
    AckHandle, Acker, Bus, BusError, ConsumerLag, ConsumerSpec, Delivery, DeliveryStream, Headers,
    IncomingRequest, Message, Published, ReplayStream, RequestStream, RespondHandle, Result, Settle, StartAt,
    StoredMessage, StreamSpec, StreamState,
};

/// How long [`NatsBus::connect`] keeps trying to reach the server.
const CONNECT_PATIENCE: Duration = Duration::from_secs(15);

/// A [`Bus`] on a NATS server with JetStream. Cloning shares the connection.
#[derive(Clone)]
pub struct NatsBus {
    client: async_nats::Client,
    js: jetstream::Context,
}

/// How a client proves who it is to the NATS server, and how it uses TLS.
#[derive(Clone, Default)]
pub struct NatsSecurity {
    /// User and password.
    pub user_password: Option<(String, String)>,
    pub token: Option<String>,
    /// Use TLS even when the URL is `nats://`.
    pub tls_required: bool,
    /// PEM CA certificates to check the server's certificate against.
    pub ca_file: Option<std::path::PathBuf>,
    /// PEM client certificate and key (mutual TLS).
    pub client_cert: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl std::fmt::Debug for NatsSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets themselves.
        f.debug_struct("NatsSecurity")
            .field("user", &self.user_password.as_ref().map(|(u, _)| u))
            .field("token", &self.token.is_some())
            .field("tls_required", &self.tls_required)
            .field("ca_file", &self.ca_file)
            .field("client_cert", &self.client_cert)
            .finish()
    }
}

impl NatsSecurity {
    fn options(&self, name: &str) -> async_nats::ConnectOptions {
        let mut options = async_nats::ConnectOptions::new();
        if let Some((user, password)) = &self.user_password {
            options = options.user_and_password(user.clone(), password.clone());
        }
        if let Some(token) = &self.token {
            options = options.token(token.clone());
        }
        if self.tls_required {
            options = options.require_tls(true);
        }
        if let Some(ca) = &self.ca_file {
            options = options.add_root_certificates(ca.clone());
        }
        if let Some((cert, key)) = &self.client_cert {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        options.name(name).connection_timeout(Duration::from_secs(5))
    }
}

impl NatsBus {
    /// Connects to `url` (e.g. `nats://127.0.0.1:4222`); `name` shows in the server's
    /// connection list.
    pub async fn connect(url: &str, name: &str) -> Result<Self> {
        Self::connect_secure(url, name, &NatsSecurity::default()).await
    }

    /// [`NatsBus::connect`] with credentials and TLS settings. A server that refuses the
    /// credentials is [`BusError::Unauthorized`] at once (no retries).
    pub async fn connect_secure(url: &str, name: &str, security: &NatsSecurity) -> Result<Self> {
        // A service often starts together with (or before) its NATS server: retry for a while
        // with backoff before giving up.
        let deadline = std::time::Instant::now() + CONNECT_PATIENCE;
        let mut delay = Duration::from_millis(100);
        loop {
            let attempt = security.options(name).connect(url).await;
            match attempt {
                Ok(client) => return Ok(Self::from_client(client)),
                Err(e)
                    if matches!(
                        e.kind(),
                        async_nats::ConnectErrorKind::AuthorizationViolation
                            | async_nats::ConnectErrorKind::Authentication
                    ) =>
                {
                    return Err(BusError::Unauthorized { url: redact(url), reason: e.to_string() });
                }
                Err(e)
                    if matches!(e.kind(), async_nats::ConnectErrorKind::Tls)
                        || e.to_string().contains("certificate") =>
                {
                    return Err(BusError::Connect { url: redact(url), reason: format!("TLS: {e}") });
                }
                Err(e) if std::time::Instant::now() + delay < deadline => {
                    tracing::warn!(url = %redact(url), error = %e, retry_in = ?delay, "NATS not reachable yet");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(BusError::Connect { url: redact(url), reason: e.to_string() }),
            }
        }
    }

    pub fn from_client(client: async_nats::Client) -> Self {
        let js = jetstream::new(client.clone());
        Self { client, js }
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// Flushes buffered publishes and closes the connection.
    pub async fn drain(&self) -> Result<()> {
        self.client.drain().await.map_err(nats_err)
    }
}

/// Removes credentials from a URL before it is shown.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}***{}", &url[..scheme_end + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

fn nats_err(e: impl std::fmt::Display) -> BusError {
    BusError::Nats(e.to_string())
}

fn to_header_map(headers: &Headers) -> async_nats::HeaderMap {
    let mut map = async_nats::HeaderMap::new();
    for (k, v) in headers.iter() {
        map.insert(k, v);
    }
    map
}

fn from_header_map(map: Option<&async_nats::HeaderMap>) -> Headers {
    let mut headers = Headers::new();
    if let Some(map) = map {
        for (name, values) in map.iter() {
            let name: &str = name.as_ref();
            // JetStream's own headers are protocol details, not message headers.
            if name.starts_with("Nats-") {
                continue;
            }
            if let Some(v) = values.last() {
                headers.insert(name.to_string(), v.as_str().to_string());
            }
        }
    }
    headers
}

fn to_message(m: &async_nats::Message) -> Message {
    Message {
        subject: m.subject.to_string(),
        headers: from_header_map(m.headers.as_ref()),
        payload: m.payload.clone(),
    }
}

struct NatsAck(jetstream::message::Acker);

#[async_trait::async_trait]
impl AckHandle for NatsAck {
    async fn settle(self: Box<Self>, how: Settle) -> Result<()> {
        let kind = match how {
            // A plain ack: published, not awaited.
            Settle::AckUnconfirmed => return self.0.ack_with(AckKind::Ack).await.map_err(nats_err),
            Settle::Ack => AckKind::Ack,
            Settle::Nak(delay) => AckKind::Nak(delay),
            Settle::Term => AckKind::Term,
        };
        // Double ack: returns once the server has recorded it, so "acked" means acked.
        self.0.double_ack_with(kind).await.map_err(nats_err)
    }
}

struct NatsResponder {
    client: async_nats::Client,
    reply: Option<async_nats::Subject>,
}

#[async_trait::async_trait]
impl RespondHandle for NatsResponder {
    async fn respond(self: Box<Self>, headers: Headers, payload: Bytes) -> Result<()> {
        let Some(reply) = self.reply else { return Ok(()) };
        self.client.publish_with_headers(reply, to_header_map(&headers), payload).await.map_err(nats_err)
    }
}

fn deliver_policy(start: StartAt) -> consumer::DeliverPolicy {
    match start {
        StartAt::First => consumer::DeliverPolicy::All,
        StartAt::New => consumer::DeliverPolicy::New,
        StartAt::Sequence(n) => consumer::DeliverPolicy::ByStartSequence { start_sequence: n.max(1) },
    }
}

#[async_trait::async_trait]
impl Bus for NatsBus {
    async fn ensure_stream(&self, spec: &StreamSpec) -> Result<()> {
        let config = stream::Config {
            name: spec.name.clone(),
            subjects: spec.subjects.clone(),
            max_age: spec.max_age,
            duplicate_window: spec.duplicate_window,
            max_bytes: spec.max_bytes,
            storage: stream::StorageType::File,
            ..Default::default()
        };
        self.js.create_or_update_stream(config).await.map_err(nats_err)?;
        Ok(())
    }

    async fn publish(&self, message: Message, msg_id: Option<&str>) -> Result<Published> {
        if !valid_publish_subject(&message.subject) {
            return Err(BusError::InvalidSubject(message.subject));
        }
        let mut publish = jetstream::message::PublishMessage::build()
            .payload(message.payload)
            .headers(to_header_map(&message.headers));
        if let Some(id) = msg_id {
            publish = publish.message_id(id);
        }
        let subject = message.subject;
        let ack = self
            .js
            .send_publish(subject.clone(), publish)
            .await
            .map_err(|e| publish_err(&subject, e))?
            .await
            .map_err(|e| publish_err(&subject, e))?;
        Ok(Published { stream: ack.stream, sequence: ack.sequence, duplicate: ack.duplicate })
    }

    async fn consume(&self, spec: &ConsumerSpec) -> Result<DeliveryStream> {
        let stream = self.js.get_stream(&spec.stream).await.map_err(|e| stream_err(&spec.stream, e))?;
        // One filter goes in `filter_subject`, which every JetStream server version understands;
        // several need `filter_subjects` (nats-server 2.10 or later).
        let (filter_subject, filter_subjects) = match spec.filter_subjects.as_slice() {
            [one] => (one.clone(), Vec::new()),
            many => (String::new(), many.to_vec()),
        };
        let config = consumer::pull::Config {
            durable_name: Some(spec.durable.clone()),
            filter_subject,
            filter_subjects,
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: spec.ack_wait,
            max_deliver: spec.max_deliver,
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        };
        // create_consumer creates, or updates an existing durable to this config.
        let consumer: consumer::PullConsumer = stream.create_consumer(config).await.map_err(nats_err)?;
        let messages = consumer.messages().await.map_err(nats_err)?;
        Ok(messages
            .map(|m| {
                let m = m.map_err(nats_err)?;
                let (stream_sequence, delivered) =
                    m.info().map(|i| (i.stream_sequence, i.delivered.max(1) as u64)).map_err(nats_err)?;
                let (message, acker) = m.split();
                Ok(Delivery {
                    message: to_message(&message),
                    stream_sequence,
                    delivered,
                    acker: Acker::new(NatsAck(acker)),
                })
            })
            .boxed())
    }

    async fn replay(&self, stream: &str, filter: Option<&str>, start: StartAt) -> Result<ReplayStream> {
        let s = self.js.get_stream(stream).await.map_err(|e| stream_err(stream, e))?;
        let config = consumer::pull::OrderedConfig {
            filter_subject: filter.unwrap_or_default().to_string(),
            deliver_policy: deliver_policy(start),
            ..Default::default()
        };
        let consumer = s.create_consumer(config).await.map_err(nats_err)?;
        let messages = consumer.messages().await.map_err(nats_err)?;
        Ok(messages
            .map(|m| {
                let m = m.map_err(nats_err)?;
                let (sequence, pending) =
                    m.info().map(|i| (i.stream_sequence, i.pending)).map_err(nats_err)?;
                Ok(StoredMessage { message: to_message(&m), sequence, pending })
            })
            .boxed())
    }

    async fn stream_state(&self, stream: &str) -> Result<StreamState> {
        let mut s = self.js.get_stream(stream).await.map_err(|e| stream_err(stream, e))?;
        let info = s.info().await.map_err(nats_err)?;
        Ok(StreamState {
            messages: info.state.messages,
            first_sequence: info.state.first_sequence,
            last_sequence: info.state.last_sequence,
        })
    }

    async fn delete_message(&self, stream: &str, sequence: u64) -> Result<bool> {
        let s = self.js.get_stream(stream).await.map_err(|e| stream_err(stream, e))?;
        match s.delete_message(sequence).await {
            Ok(deleted) => Ok(deleted),
            Err(e) => match e.kind() {
                jetstream::stream::DeleteMessageErrorKind::JetStream(js)
                    if js.error_code() == jetstream::ErrorCode::SEQUENCE_NOT_FOUND =>
                {
                    Ok(false)
                }
                _ => Err(nats_err(e)),
            },
        }
    }

    async fn consumer_lag(&self, stream: &str, durable: &str) -> Result<ConsumerLag> {
        let s = self.js.get_stream(stream).await.map_err(|e| stream_err(stream, e))?;
        let info = s.consumer_info(durable).await.map_err(|e| match e.kind() {
            jetstream::context::ConsumerInfoErrorKind::NotFound => {
                BusError::UnknownConsumer { stream: stream.to_string(), durable: durable.to_string() }
            }
            jetstream::context::ConsumerInfoErrorKind::JetStream(js)
                if js.error_code() == jetstream::ErrorCode::CONSUMER_NOT_FOUND =>
            {
                BusError::UnknownConsumer { stream: stream.to_string(), durable: durable.to_string() }
            }
            _ => nats_err(e),
        })?;
        Ok(ConsumerLag { pending: info.num_pending, ack_pending: info.num_ack_pending as u64 })
    }

    async fn request(&self, message: Message, timeout: Duration) -> Result<Message> {
        if !valid_publish_subject(&message.subject) {
            return Err(BusError::InvalidSubject(message.subject));
        }
        let subject = message.subject;
        let request = async_nats::Request::new()
            .payload(message.payload)
            .headers(to_header_map(&message.headers))
            .timeout(Some(timeout));
        match self.client.send_request(subject.clone(), request).await {
            Ok(reply) => Ok(to_message(&reply)),
            Err(e) => Err(match e.kind() {
                async_nats::RequestErrorKind::NoResponders => BusError::NoResponders(subject),
                async_nats::RequestErrorKind::TimedOut => BusError::Timeout { subject, timeout },
                async_nats::RequestErrorKind::InvalidSubject => BusError::InvalidSubject(subject),
                _ => nats_err(e),
            }),
        }
    }

    async fn serve(&self, subject: &str, queue_group: &str) -> Result<RequestStream> {
        let sub = self
            .client
            .queue_subscribe(subject.to_string(), queue_group.to_string())
            .await
            .map_err(nats_err)?;
        let client = self.client.clone();
        Ok(sub
            .map(move |m| {
                let message = to_message(&m);
                IncomingRequest::new(message, NatsResponder { client: client.clone(), reply: m.reply })
            })
            .boxed())
    }

    async fn flush(&self) -> Result<()> {
        self.client.flush().await.map_err(nats_err)
    }

    fn kind(&self) -> &'static str {
        "nats"
    }
}

fn publish_err(subject: &str, e: jetstream::context::PublishError) -> BusError {
    match e.kind() {
        jetstream::context::PublishErrorKind::StreamNotFound => BusError::NoStream(subject.to_string()),
        _ => nats_err(e),
    }
}

fn stream_err(stream: &str, e: jetstream::context::GetStreamError) -> BusError {
    match e.kind() {
        jetstream::context::GetStreamErrorKind::JetStream(js)
            if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
        {
            BusError::UnknownStream(stream.to_string())
        }
        _ => nats_err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn credentials_are_not_shown() {
        assert_eq!(redact("nats://user:secret@host:4222"), "nats://***@host:4222");
        assert_eq!(redact("nats://host:4222"), "nats://host:4222");
    }
}

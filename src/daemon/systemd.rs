//! Talking to systemd: `sd_notify` messages (READY, STATUS, WATCHDOG,
//! STOPPING, RELOADING) over `$NOTIFY_SOCKET`, and structured journal logging.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Sends one notification; a no-op when not started by systemd.
///
/// Never blocks the daemon: a datagram socket whose reader stopped reading
/// fills after `net.unix.max_dgram_qlen` (10) messages, and a blocking send
/// then froze the main loop, SIGTERM included. A STATUS update that finds
/// the queue full is dropped (the next one replaces it); the rest (READY,
/// WATCHDOG, STOPPING, RELOADING) are retried for up to a second.
pub fn notify(message: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(socket) = UnixDatagram::unbound() else {
        return;
    };
    if socket.set_nonblocking(true).is_err() {
        return;
    }
    let bytes = path.as_encoded_bytes();
    let send = || {
        if let Some(name) = bytes.strip_prefix(b"@") {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name)
                .and_then(|addr| socket.send_to_addr(message.as_bytes(), &addr))
        } else {
            socket.send_to(message.as_bytes(), &path)
        }
    };
    let tries = if message.starts_with("STATUS=") {
        1
    } else {
        100
    };
    for _ in 0..tries {
        match send() {
            Ok(_) => return,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => {
                tracing::debug!("sd_notify failed: {e}");
                return;
            }
        }
    }
    tracing::debug!("sd_notify: the socket's queue is full; dropped {message:?}");
}

/// Half the watchdog interval systemd asks for, if it asks.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    Some(Duration::from_micros(usec / 2))
}

/// True when stderr is connected to the journal (started by systemd).
pub fn under_journal() -> bool {
    systemd_journal_logger::connected_to_journal()
}

/// A tracing layer that sends each event to the journal with its fields as
/// journal fields (FILE=, STAGE=, JOB=...), through systemd-journal-logger.
pub struct JournalLayer {
    journal: systemd_journal_logger::JournalLog,
}

impl JournalLayer {
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            journal: systemd_journal_logger::JournalLog::new()?
                .with_syslog_identifier("upscaled".into()),
        })
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    pairs: Vec<(String, String)>,
}

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.pairs
                .push((field.name().to_ascii_uppercase(), format!("{value:?}")));
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.pairs
                .push((field.name().to_ascii_uppercase(), value.to_string()));
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for JournalLayer {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        use log::Log;
        let mut fields = Fields::default();
        event.record(&mut fields);
        let level = match *event.metadata().level() {
            tracing::Level::ERROR => log::Level::Error,
            tracing::Level::WARN => log::Level::Warn,
            tracing::Level::INFO => log::Level::Info,
            tracing::Level::DEBUG => log::Level::Debug,
            tracing::Level::TRACE => log::Level::Trace,
        };
        let kvs: Vec<(&str, &str)> = fields
            .pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let kvs: &[(&str, &str)] = &kvs;
        self.journal.log(
            &log::Record::builder()
                .level(level)
                .target(event.metadata().target())
                .args(format_args!("{}", fields.message))
                .key_values(&kvs)
                .build(),
        );
    }
}

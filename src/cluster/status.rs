//! `upscaled cluster status`: the live workers and the queue, read from the
//! server (it needs no coordinator running).

use anyhow::Result;
use async_nats::jetstream;

use super::Names;
use crate::config::NatsLogin;

pub fn print(login: &NatsLogin, stream: &str, bucket: &str) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client = super::connect(login, "upscaled cluster status").await?;
        let js = jetstream::new(client);
        let names = Names::new(stream);
        let mut jobs = js.get_stream(names.jobs_stream()).await.map_err(|e| {
            anyhow::anyhow!(
                "no cluster on {} (stream {}): {e}",
                login.url,
                names.jobs_stream()
            )
        })?;
        let kv = super::workers_registry(&js, &names).await?;
        let workers = super::live_workers(&kv).await;
        println!("NATS {}: stream {}", login.url, names.jobs_stream());
        println!("workers ({}):", workers.len());
        for w in &workers {
            println!(
                "  {:<24} {:<16} pid {:<7} {:<5} {} threads, {} done, {} failed, {}; models: {}",
                w.name,
                w.host,
                w.pid,
                w.provider,
                w.threads,
                w.done,
                w.failed,
                w.busy
                    .as_deref()
                    .map_or("idle".to_string(), |j| format!("running {j}")),
                w.models.join(", ")
            );
        }
        let info = jobs.info().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        println!("queue: {} tasks stored", info.state.messages);
        if let Ok(mut bytes) = js.get_stream(format!("OBJ_{bucket}")).await
            && let Ok(state) = bytes.info().await.map(|i| i.state.clone())
        {
            println!(
                "bucket {bucket}: {:.1} MB in {} chunks (sources and outputs of files in flight)",
                state.bytes as f64 / 1e6,
                state.messages
            );
        }
        let mut consumers = jobs.consumers();
        use futures_util::StreamExt;
        let mut rows = Vec::new();
        while let Some(Ok(c)) = consumers.next().await {
            if c.num_pending > 0 || c.num_ack_pending > 0 {
                rows.push((c.name.clone(), c.num_pending, c.num_ack_pending));
            }
        }
        rows.sort();
        for (name, waiting, running) in rows {
            let model = name.strip_prefix("jobs-").unwrap_or(&name);
            let served = workers
                .iter()
                .any(|w| w.models.iter().any(|m| super::token(m) == model));
            println!(
                "  {model:<34} {waiting} waiting, {running} at workers{}",
                if served {
                    ""
                } else {
                    "  (no live worker serves it)"
                }
            );
        }
        anyhow::Ok(())
    })
}

//! What both comparison examples need besides their own workload: flag parsing helpers
//! and a session against a real cluster (`--cluster ADDR`).

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;

use ringkv::client::Client;

/// Parses a flag's value, with an error naming the flag.
pub fn number<T: std::str::FromStr>(text: &str, flag: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("{flag} {text}: not a number"))
}

/// Connects to `addr` with the `client` certificate in `certs` and runs `body` with the
/// client and a run id (milliseconds since the epoch), for per-run bucket names so an
/// earlier run's data does not count.
pub fn on_cluster<T, F, Fut>(addr: SocketAddr, certs: &Path, body: F) -> Result<T, String>
where
    F: FnOnce(Client, u128) -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async {
        let client = Client::connect(addr, certs, "client")
            .await
            .map_err(|e| e.to_string())?;
        let run = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        body(client, run).await
    })
}

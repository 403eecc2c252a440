//! Failure injection for crash and concurrency tests: a named point in a flow where a debug
//! build stops the process dead (as SIGKILL would) when `SYNVAULT_FAILPOINT` names it, or
//! pauses for `SYNVAULT_PAUSE_MS` (default 2000) when `SYNVAULT_PAUSE_AT` names it. Release
//! builds compile it to nothing.

/// Stops or pauses the process here if the environment names `name` (debug builds only).
#[inline]
pub fn hit(name: &str) {
    #[cfg(debug_assertions)]
    {
        if std::env::var_os("SYNVAULT_FAILPOINT").is_some_and(|v| v == name) {
            std::process::abort();
        }
        if std::env::var_os("SYNVAULT_PAUSE_AT").is_some_and(|v| v == name) {
            let ms = std::env::var("SYNVAULT_PAUSE_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(2000);
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}

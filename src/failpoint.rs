//! Failure injection for crash tests: a named point in a flow where a debug build stops the
//! process dead (as SIGKILL would) when `SYNVAULT_FAILPOINT` names it. Release builds compile
//! it to nothing.

/// Stops the process here if `SYNVAULT_FAILPOINT` is `name` (debug builds only).
#[inline]
pub fn hit(name: &str) {
    #[cfg(debug_assertions)]
    if std::env::var_os("SYNVAULT_FAILPOINT").is_some_and(|v| v == name) {
        std::process::abort();
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}

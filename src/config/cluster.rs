//! The cluster's hosts and this process's index: a hostfile, a list, or a DNS pattern with
//! the index in it (`tsmig-{i}.tsmig:2101`, the names a Kubernetes StatefulSet's pods get
//! from its headless Service), and `process: auto`, which takes the index from
//! `TSMIG_PROCESS` or from the ordinal a StatefulSet pod's hostname ends with (`tsmig-2`).
//!
//! Pure functions: the environment and the hostname are passed in, so the rules are
//! unit-tested here.

use serde::{Deserialize, Deserializer};
use std::path::Path;

/// The placeholder a DNS pattern replaces with the process index.
pub const INDEX: &str = "{i}";

/// `cluster.process`: an index, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessIndex {
    /// This index.
    At(usize),
    /// From `TSMIG_PROCESS`, else from the hostname's ordinal ([`ordinal`]).
    Auto,
}

impl Default for ProcessIndex {
    fn default() -> Self {
        ProcessIndex::At(0)
    }
}

impl<'de> Deserialize<'de> for ProcessIndex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ProcessIndex;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a process index or `auto`")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ProcessIndex, E> {
                Ok(ProcessIndex::At(v as usize))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ProcessIndex, E> {
                match v {
                    "auto" => Ok(ProcessIndex::Auto),
                    other => Err(E::custom(format!(
                        "`{other}` is not a process index or `auto`"
                    ))),
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Whether `text` is `host:port` (a port number after the last colon, something before).
pub fn is_host_port(text: &str) -> bool {
    text.rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

/// Checks a DNS pattern: `host:port` with `{i}` in the host, and no other `{`.
pub fn check_dns(pattern: &str) -> Result<(), String> {
    let Some((host, _)) = pattern.rsplit_once(':').filter(|_| is_host_port(pattern)) else {
        return Err(format!(
            "`{pattern}` is not host:port (e.g. tsmig-{{i}}.tsmig:2101)"
        ));
    };
    if !host.contains(INDEX) {
        return Err(format!(
            "`{pattern}` has no `{{i}}` for the process index (e.g. tsmig-{{i}}.tsmig:2101)"
        ));
    }
    if host.replace(INDEX, "").contains(['{', '}']) {
        return Err(format!("`{pattern}` has a placeholder other than `{{i}}`"));
    }
    Ok(())
}

/// The hosts of a DNS pattern: `{i}` replaced by 0 ..= processes-1.
pub fn expand_dns(pattern: &str, processes: usize) -> Vec<String> {
    (0..processes)
        .map(|i| pattern.replace(INDEX, &i.to_string()))
        .collect()
}

/// The ordinal a StatefulSet pod's name ends with: `tsmig-2` → 2, and a full name
/// (`tsmig-2.tsmig.ns.svc.cluster.local`) counts by its first label.
pub fn ordinal(hostname: &str) -> Option<usize> {
    let name = hostname.split('.').next().unwrap_or_default();
    let (stem, digits) = name.rsplit_once('-')?;
    if stem.is_empty() || digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Where `auto` found the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AutoFrom {
    /// `TSMIG_PROCESS`.
    Env,
    /// The hostname's ordinal.
    Hostname(String),
}

/// `process: auto`: `TSMIG_PROCESS` if set, else the hostname's ordinal.
pub fn auto_index(
    env: impl Fn(&str) -> Option<String>,
    hostname: impl FnOnce() -> Option<String>,
) -> Result<(usize, AutoFrom), String> {
    if let Some(value) = env("TSMIG_PROCESS").filter(|v| !v.is_empty()) {
        return value
            .trim()
            .parse()
            .map(|i| (i, AutoFrom::Env))
            .map_err(|_| format!("TSMIG_PROCESS is `{value}`, not a process index"));
    }
    let name = hostname().unwrap_or_default();
    match ordinal(&name) {
        Some(i) => Ok((i, AutoFrom::Hostname(name))),
        None => Err(format!(
            "`auto` takes the index from TSMIG_PROCESS, which is not set, or from a hostname ending in -<index> as a StatefulSet pod's does, which `{name}` is not"
        )),
    }
}

/// This machine's hostname: `HOSTNAME` when set (containers set it to the pod's name),
/// else the kernel's node name.
pub fn hostname(env: impl Fn(&str) -> Option<String>) -> Option<String> {
    env("HOSTNAME")
        .filter(|h| !h.is_empty())
        .or_else(|| {
            Some(
                rustix::system::uname()
                    .nodename()
                    .to_string_lossy()
                    .into_owned(),
            )
        })
        .filter(|h| !h.is_empty())
}

/// The hosts of a hostfile: one `host:port` a line, in process order; `#` starts a
/// comment, blank lines are skipped.
pub fn read_hostfile(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse_hostfile(&text).map_err(|(line, host)| {
        format!("{}: host {line} is `{host}`, not host:port", path.display())
    })
}

/// A hostfile's hosts; `Err` has the 1-based number of the first bad host and its text.
fn parse_hostfile(text: &str) -> Result<Vec<String>, (usize, String)> {
    let hosts: Vec<String> = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    match hosts.iter().position(|h| !is_host_port(h)) {
        Some(i) => Err((i + 1, hosts[i].clone())),
        None => Ok(hosts),
    }
}

/// The address this process listens on for its peers, where its own entry in `hosts`
/// names it by DNS: every interface at that port. A pod's own name may not resolve yet
/// when it starts (the headless Service publishes it moments later), and timely binds to
/// its own entry before it connects to the others; the peers still dial the name.
pub fn listen_address(own: &str) -> Option<String> {
    let (host, port) = own.rsplit_once(':')?;
    let is_ip = host
        .trim_matches(['[', ']'])
        .parse::<std::net::IpAddr>()
        .is_ok();
    (!is_ip).then(|| format!("0.0.0.0:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn a_dns_pattern_expands_to_one_host_per_process() {
        check_dns("tsmig-{i}.tsmig.etl.svc.cluster.local:2101").unwrap();
        assert_eq!(
            expand_dns("tsmig-{i}.tsmig:2101", 3),
            [
                "tsmig-0.tsmig:2101",
                "tsmig-1.tsmig:2101",
                "tsmig-2.tsmig:2101"
            ]
        );
    }

    #[test]
    fn a_dns_pattern_needs_the_index_and_a_port() {
        for (pattern, says) in [
            ("tsmig-0.tsmig:2101", "has no `{i}`"),
            ("tsmig-{i}.tsmig", "is not host:port"),
            ("tsmig-{i}.tsmig:99999", "is not host:port"),
            ("{i}:", "is not host:port"),
            ("tsmig-{i}.{ns}:2101", "placeholder other than `{i}`"),
            ("tsmig-1:{i}", "is not host:port"),
        ] {
            let err = check_dns(pattern).unwrap_err();
            assert!(err.contains(says), "{pattern}: {err}");
        }
    }

    #[test]
    fn a_statefulset_pod_name_gives_its_ordinal() {
        assert_eq!(ordinal("tsmig-0"), Some(0));
        assert_eq!(ordinal("tsmig-12"), Some(12));
        assert_eq!(ordinal("my-etl-job-3"), Some(3));
        assert_eq!(ordinal("tsmig-2.tsmig.etl.svc.cluster.local"), Some(2));
        for name in [
            "tsmig",
            "tsmig-",
            "-3",
            "tsmig-2a",
            "tsmig-backfill-x7k2p",
            "",
        ] {
            assert_eq!(ordinal(name), None, "{name}");
        }
    }

    #[test]
    fn auto_prefers_tsmig_process_then_the_hostname() {
        let named = || Some("tsmig-2".to_string());
        assert_eq!(
            auto_index(env(&[("TSMIG_PROCESS", "1")]), named),
            Ok((1, AutoFrom::Env))
        );
        assert_eq!(
            auto_index(env(&[("TSMIG_PROCESS", "")]), named),
            Ok((2, AutoFrom::Hostname("tsmig-2".into())))
        );
        let err = auto_index(env(&[("TSMIG_PROCESS", "two")]), named).unwrap_err();
        assert_eq!(err, "TSMIG_PROCESS is `two`, not a process index");
        let err = auto_index(env(&[]), || Some("laptop".into())).unwrap_err();
        assert!(err.contains("which `laptop` is not"), "{err}");
    }

    #[test]
    fn hostname_comes_from_the_environment_first() {
        assert_eq!(
            hostname(env(&[("HOSTNAME", "tsmig-4")])).as_deref(),
            Some("tsmig-4")
        );
        // Without it, the kernel's node name (whatever this machine's is).
        assert!(hostname(env(&[])).is_some());
    }

    #[test]
    fn a_hostfile_has_one_host_port_a_line() {
        let text = "# process 0 first\n10.0.0.1:2101\n\n10.0.0.2:2101  # the second\n";
        assert_eq!(
            parse_hostfile(text),
            Ok(vec![
                "10.0.0.1:2101".to_string(),
                "10.0.0.2:2101".to_string()
            ])
        );
        assert_eq!(parse_hostfile("a:1\nb\n"), Err((2, "b".to_string())));
    }

    #[test]
    fn a_name_is_listened_on_every_interface_an_address_as_it_is() {
        assert_eq!(
            listen_address("tsmig-1.tsmig:2101").as_deref(),
            Some("0.0.0.0:2101")
        );
        assert_eq!(listen_address("10.1.2.3:2101"), None);
        assert_eq!(listen_address("[::1]:2101"), None);
    }
}

//! Machines of their own for runner tests: a network namespace per
//! "host", joined to this one by a veth pair with addresses of its own,
//! so a link can be cut and restored like a cable. Removed when dropped.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub struct Netns {
    pub name: String,
    host_if: String,
    /// This machine's address on the link (where a server listens).
    pub host_ip: String,
    /// The namespace's own address.
    pub ns_ip: String,
}

impl Netns {
    pub fn create() -> Netns {
        let i = NEXT.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let tag = format!("{}x{i}", pid % 100_000);
        let name = format!("slw{tag}");
        let host_if = format!("slwh{tag}");
        let ns_if = format!("slwn{tag}");
        // A /24 per namespace, apart for each test process.
        let net = format!("10.{}.{}", 200 + (pid % 50), i % 250);
        let (host_ip, ns_ip) = (format!("{net}.1"), format!("{net}.2"));
        ip(&["netns", "add", &name]);
        let ns = Netns {
            name: name.clone(),
            host_if: host_if.clone(),
            host_ip: host_ip.clone(),
            ns_ip: ns_ip.clone(),
        };
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ]);
        ip(&["link", "set", &ns_if, "netns", &name]);
        ip(&["addr", "add", &format!("{host_ip}/24"), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        ip(&[
            "netns",
            "exec",
            &name,
            "ip",
            "addr",
            "add",
            &format!("{ns_ip}/24"),
            "dev",
            &ns_if,
        ]);
        ip(&["netns", "exec", &name, "ip", "link", "set", &ns_if, "up"]);
        ip(&["netns", "exec", &name, "ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Pulls the cable: nothing passes between the namespace and this host.
    pub fn cut(&self) {
        ip(&["link", "set", &self.host_if, "down"]);
    }

    pub fn restore(&self) {
        ip(&["link", "set", &self.host_if, "up"]);
    }

    /// `program` run inside the namespace.
    pub fn command(&self, program: &std::path::Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .stderr(std::process::Stdio::null())
            .status();
    }
}
